//! State shared by a replica's threads and its handle: waiters, leadership, progress.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{oneshot, watch};

use crate::error::{ReplicationError, Result};
use crate::machine::StateMachine;
use crate::membership::{ClusterRecord, Member};

/// Entry payload kinds (the first byte of a normal entry's data).
pub(crate) const KIND_PROPOSAL: u8 = 0;
pub(crate) const KIND_MEMBER_UPDATE: u8 = 1;

/// Who waits for an entry to be applied.
pub(crate) enum Waiter<O> {
    Proposal(oneshot::Sender<Result<O>>),
    Members(oneshot::Sender<Result<Vec<Member>>>),
}

/// Counters in etcd's metric terms.
#[derive(Debug, Default)]
pub struct Counters {
    /// Proposals that failed (etcd_server_proposals_failed_total).
    pub proposals_failed: AtomicU64,
    /// Leader changes seen (etcd_server_leader_changes_seen_total).
    pub leader_changes: AtomicU64,
    /// Snapshots sent to followers.
    pub snapshots_sent: AtomicU64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: AtomicU64,
    /// Log compactions (WAL releases).
    pub compactions: AtomicU64,
    /// Rounds a leader held back for more proposals to join (the `linger` module).
    pub batches_held: AtomicU64,
    /// Proposals forwarded by followers that joined this leader's own batches.
    pub forwarded_batched: AtomicU64,
    /// Heartbeats the leader sent late (etcd_server_heartbeat_send_failures_total).
    pub heartbeats_late: AtomicU64,
    /// Read barriers that failed (etcd_server_read_indexes_failed_total).
    pub read_indexes_failed: AtomicU64,
    /// Read barriers that timed out (etcd_server_slow_read_indexes_total).
    pub read_indexes_slow: AtomicU64,
    /// 1 while a snapshot from the leader is being installed.
    pub snapshot_installing: AtomicU64,
    /// Learners promoted by this member (etcd_server_learner_promote_successes).
    pub learners_promoted: AtomicU64,
}

pub(crate) struct Shared<S: StateMachine> {
    pub id: u64,
    pub sm: Arc<S>,
    pub seq: AtomicU64,
    pub waiters: Mutex<HashMap<u64, Waiter<S::Output>>>,
    pub leader: AtomicU64,
    pub term: AtomicU64,
    pub is_leader: AtomicBool,
    pub committed: AtomicU64,
    /// A linearizable read index readers may take without asking the raft thread: the commit
    /// index while this member is the cluster's only member, leads, and has committed an
    /// entry of its term (so everything acknowledged by any earlier leader is below it);
    /// 0 otherwise. Set by the raft thread on every turn.
    pub local_read: AtomicU64,
    pub applied: watch::Sender<u64>,
    pub leader_watch: watch::Sender<u64>,
    pub cluster: RwLock<ClusterRecord>,
    /// The record's cluster ID, readable without cloning the record (every response header
    /// carries it).
    pub cluster_id: AtomicU64,
    pub stopped: AtomicBool,
    /// Why the replica stopped on its own (a fatal error), once it has.
    pub failure: watch::Sender<Option<String>>,
    /// Set once this member learns the cluster removed it (its own removal applied, or a
    /// peer refusing its messages as a removed member's).
    pub removed: watch::Sender<bool>,
    pub counters: Counters,
}

impl<S: StateMachine> Shared<S> {
    pub fn new(id: u64, sm: Arc<S>, cluster: ClusterRecord, applied: u64) -> Self {
        Shared {
            id,
            sm,
            seq: AtomicU64::new(1),
            waiters: Mutex::new(HashMap::new()),
            leader: AtomicU64::new(0),
            term: AtomicU64::new(0),
            is_leader: AtomicBool::new(false),
            committed: AtomicU64::new(applied),
            local_read: AtomicU64::new(0),
            applied: watch::channel(applied).0,
            leader_watch: watch::channel(0).0,
            cluster_id: AtomicU64::new(cluster.cluster_id),
            cluster: RwLock::new(cluster),
            stopped: AtomicBool::new(false),
            failure: watch::channel(None).0,
            removed: watch::channel(false).0,
            counters: Counters::default(),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn add_waiter(&self, seq: u64, w: Waiter<S::Output>) {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).insert(seq, w);
    }

    pub fn take_waiter(&self, seq: u64) -> Option<Waiter<S::Output>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq)
    }

    pub fn pending(&self) -> usize {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Fails every waiter (the replica stops).
    pub fn fail_all(&self, why: fn() -> ReplicationError) {
        let ws: Vec<_> = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in ws {
            match w {
                Waiter::Proposal(tx) => {
                    let _ = tx.send(Err(why()));
                }
                Waiter::Members(tx) => {
                    let _ = tx.send(Err(why()));
                }
            }
        }
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    pub fn cluster(&self) -> ClusterRecord {
        self.cluster.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_cluster(&self, rec: ClusterRecord) {
        self.cluster_id.store(rec.cluster_id, Ordering::Relaxed);
        *self.cluster.write().unwrap_or_else(|p| p.into_inner()) = rec;
    }
}

/// The 16-byte entry context: proposer member ID and its sequence number.
pub(crate) fn encode_ctx(member: u64, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&member.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v
}

/// Decodes [`encode_ctx`]; `None` for anything else (entries raft made itself).
pub(crate) fn decode_ctx(b: &[u8]) -> Option<(u64, u64)> {
    let m = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let s = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
    Some((m, s))
}
