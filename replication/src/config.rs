//! How a replica runs: timing, limits, where its files live, and how it starts.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use rusted_wal::WalOptions;

use crate::membership::ClusterRecord;

/// etcd's --max-snapshots default.
pub const DEFAULT_MAX_SNAPSHOTS: u64 = 5;
/// How long a peer link must have been up to count as connected for a membership change
/// (etcd's HealthInterval).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// etcd's default --heartbeat-interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
/// etcd's default --election-timeout.
pub const DEFAULT_ELECTION: Duration = Duration::from_millis(1000);
/// Applied entries between snapshots (etcd 3.4's --snapshot-count default, DefaultSnapshotCount;
/// 10,000 was etcd's default before 3.2).
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// Entries kept behind a snapshot for slow followers (etcd's SnapshotCatchUpEntries).
pub const DEFAULT_CATCHUP_ENTRIES: u64 = 5_000;
/// Proposals are refused while committed − applied exceeds this (etcd's
/// maxGapBetweenApplyAndCommitIndex).
pub const MAX_APPLY_GAP: u64 = 5_000;
/// Largest raft append message (etcd's maxSizePerMsg).
pub const MAX_SIZE_PER_MSG: u64 = 1 << 20;
/// Appends in flight per follower. etcd allows 512; with so many, a leader under load sends
/// one append per Ready (a few entries each), and every one costs the follower a Ready, a WAL
/// write and a reply. With one, the entries proposed during a round trip travel together in
/// the next append (up to [`MAX_SIZE_PER_MSG`], so a follower catching up still gets 1 MiB
/// per round trip). Chosen by measurement (benches/RESULTS.md, sessions 6 and 7).
pub const MAX_INFLIGHT_MSGS: usize = 1;
/// Longest a leader under heavy load holds a batch smaller than its last round to let more
/// proposals join it (the `linger` module; after rounds under 16 entries nothing waits). etcd
/// has no such wait: its leader keeps up to 512 appends in flight instead. Longer waits
/// trade latency near the machine's limit for throughput; the measurements behind 1.5 ms are
/// in benches/RESULTS.md (session 8).
pub const DEFAULT_PROPOSE_LINGER: Duration = Duration::from_micros(1500);

/// How the member starts when its data dir holds no state yet.
#[derive(Debug, Clone)]
pub enum Bootstrap {
    /// `--initial-cluster-state new`: every initial member starts from the same record.
    New(ClusterRecord),
    /// `--initial-cluster-state existing`: join a running cluster whose current record (as a
    /// peer reported it) lists this member; state arrives by snapshot from the leader.
    Existing(ClusterRecord),
}

/// A replica's configuration.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This member's ID.
    pub id: u64,
    /// WAL directory.
    pub wal_dir: PathBuf,
    /// Where snapshots are written and received.
    pub snap_dir: PathBuf,
    /// WAL options.
    pub wal: WalOptions,
    /// Raft tick (--heartbeat-interval).
    pub heartbeat: Duration,
    /// Election timeout (--election-timeout); a multiple of the heartbeat.
    pub election: Duration,
    /// Applied entries between snapshots (--snapshot-count).
    pub snapshot_count: u64,
    /// Entries kept for slow followers after a snapshot.
    pub catchup_entries: u64,
    /// Proposal refused past this apply lag.
    pub max_apply_gap: u64,
    /// How long a proposal or read may take (etcd: 5 s + 2 × election timeout).
    pub request_timeout: Duration,
    /// Used only when the data dir is empty.
    pub bootstrap: Bootstrap,
    /// Pre-vote (etcd's --pre-vote, on by default in 3.5).
    pub pre_vote: bool,
    /// Longest a leader with followers holds a small batch for more proposals (zero: never).
    pub propose_linger: Duration,
    /// Refuse membership changes that could cost the quorum (--strict-reconfig-check).
    pub strict_reconfig_check: bool,
    /// Snapshot files kept (--max-snapshots; 0: every one).
    pub max_snapshots: u64,
    /// Restart as the only member, keeping the data (--force-new-cluster; a restart only).
    pub force_new_cluster: bool,
}

impl ReplicaConfig {
    /// A configuration with etcd's defaults.
    pub fn new(id: u64, dir: impl Into<PathBuf>, bootstrap: Bootstrap) -> ReplicaConfig {
        let dir = dir.into();
        ReplicaConfig {
            id,
            wal_dir: dir.join("wal"),
            snap_dir: dir.join("snap"),
            wal: WalOptions::default(),
            heartbeat: DEFAULT_HEARTBEAT,
            election: DEFAULT_ELECTION,
            snapshot_count: DEFAULT_SNAPSHOT_COUNT,
            catchup_entries: DEFAULT_CATCHUP_ENTRIES,
            max_apply_gap: MAX_APPLY_GAP,
            request_timeout: Duration::from_secs(5) + 2 * DEFAULT_ELECTION,
            bootstrap,
            pre_vote: true,
            propose_linger: DEFAULT_PROPOSE_LINGER,
            strict_reconfig_check: true,
            max_snapshots: DEFAULT_MAX_SNAPSHOTS,
            force_new_cluster: false,
        }
    }

    /// Election ticks (election ÷ heartbeat), as raft wants it.
    pub fn election_ticks(&self) -> usize {
        let hb = self.heartbeat.as_millis().max(1);
        ((self.election.as_millis() / hb) as usize).max(2)
    }
}
