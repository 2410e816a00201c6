//! The replica handle: what the server calls. Proposals, linearizable reads, membership
//! changes and leader transfer, each answered once applied (or refused with etcd's error).
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{unbounded, Sender};
use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState};
use raft::{Config, RawNode, ReadOnlyOption};
use rusted_wal::{Record, Wal};
use tokio::sync::oneshot;

use crate::apply::{Applier, ApplyQueue, ConfContext, MemberUpdate};
use crate::config::{
    Bootstrap, ReplicaConfig, HEALTH_INTERVAL, MAX_INFLIGHT_MSGS, MAX_SIZE_PER_MSG,
};
use crate::error::{ReplicationError, Result};
use crate::machine::StateMachine;
use crate::membership::{member_id, ClusterRecord, Member};
use crate::node::{Input, LoopChannels, RaftLoop};
use crate::shared::{encode_ctx, Shared, Waiter, KIND_MEMBER_UPDATE, KIND_PROPOSAL};
use crate::snapshot::snapshot_loop;

mod reads;
use crate::storage::LogStore;
use crate::transport::{Inbox, Mailbox, Transport};

/// A point-in-time view of the replica, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// This member.
    pub id: u64,
    /// Cluster ID.
    pub cluster_id: u64,
    /// Known leader (0: none).
    pub leader: u64,
    /// Current term.
    pub term: u64,
    /// Whether this member leads.
    pub is_leader: bool,
    /// Whether this member is a learner.
    pub is_learner: bool,
    /// Highest committed index handed to the apply thread.
    pub committed: u64,
    /// Highest applied index.
    pub applied: u64,
    /// Proposals waiting to be applied.
    pub pending: usize,
    /// Proposals that failed.
    pub proposals_failed: u64,
    /// Leader changes seen.
    pub leader_changes: u64,
}

/// One member's replication: a raft node over the WAL driving a state machine.
pub struct Replica<S: StateMachine> {
    shared: Arc<Shared<S>>,
    tx: Sender<Input>,
    /// Proposals (their own channel: the raft loop batches them, see `node`).
    prop_tx: Sender<Input>,
    cfg: ReplicaConfig,
    mailbox: Mailbox,
    threads: Mutex<Vec<JoinHandle<()>>>,
    member_lock: tokio::sync::Mutex<()>,
    wal: Arc<Wal>,
    transport: Arc<dyn Transport>,
}

impl<S: StateMachine> std::fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("id", &self.shared.id).finish()
    }
}

/// Where the log starts for a new cluster: every initial member starts with the log compacted
/// at this index (and the state machine applied to it), so a member added later always starts
/// from a snapshot and never replays a history it has no membership for.
pub const BOOTSTRAP_INDEX: u64 = 1;
const BOOTSTRAP_TERM: u64 = 1;

/// An empty proposal of up to `len` bytes, for [`Replica::propose_buf`]: the caller appends
/// its encoded request (the first byte is the entry's kind, written here).
pub fn proposal_buf(len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len + 1);
    buf.push(KIND_PROPOSAL);
    buf
}

impl<S: StateMachine> Replica<S> {
    /// Opens the WAL, bootstraps or restarts, and starts the raft, apply and
    /// snapshot threads.
    pub fn start(cfg: ReplicaConfig, sm: Arc<S>, transport: Arc<dyn Transport>) -> Result<Self> {
        let (mailbox, inbox) = Mailbox::new(cfg.id, &cfg.snap_dir)?;
        Self::start_with_mailbox(cfg, sm, transport, mailbox, inbox)
    }

    /// [`Replica::start`] with a mailbox made beforehand ([`Mailbox::new`]), so that the
    /// transport can hold it from the outset (it reports unreachable peers and snapshot
    /// outcomes there, and its server delivers there).
    pub fn start_with_mailbox(
        cfg: ReplicaConfig,
        sm: Arc<S>,
        transport: Arc<dyn Transport>,
        mailbox: Mailbox,
        inbox: Inbox,
    ) -> Result<Self> {
        if mailbox.id != cfg.id || mailbox.snaps.path() != cfg.snap_dir {
            return Err(ReplicationError::Config(format!(
                "mailbox of member {:x} ({}) given to member {:x} ({})",
                mailbox.id,
                mailbox.snaps.path().display(),
                cfg.id,
                cfg.snap_dir.display()
            )));
        }
        let (wal, cluster, cs) = open_log(&cfg, &sm)?;
        let snaps = mailbox.snaps.clone();
        snaps.set_max_files(cfg.max_snapshots);
        let transport_handle = transport.clone();
        let store = LogStore::open(wal.clone(), cs.clone())?;
        let hs = store.hard_state();
        let applied = sm.applied().min(hs.commit);
        let rcfg = Config {
            id: cfg.id,
            election_tick: cfg.election_ticks(),
            heartbeat_tick: 1,
            applied,
            max_size_per_msg: MAX_SIZE_PER_MSG,
            max_inflight_msgs: MAX_INFLIGHT_MSGS,
            check_quorum: true,
            // The commit index rides on the next append under load; `node` broadcasts it
            // itself once the log is fully committed.
            skip_bcast_commit: true,
            pre_vote: cfg.pre_vote,
            read_only_option: ReadOnlyOption::Safe,
            ..Config::default()
        };
        rcfg.validate().map_err(|e| ReplicationError::Config(e.to_string()))?;
        let logger = crate::logger::raft_logger(cfg.id);
        let mut raw = RawNode::new(&rcfg, store.clone(), &logger)?;
        if is_sole_voter(&cs, cfg.id) {
            // A one-member cluster need not wait an election timeout to lead.
            raw.campaign()?;
        }

        let shared = Arc::new(Shared::new(cfg.id, sm.clone(), cluster.clone(), sm.applied()));
        let tx = mailbox.tx.clone();
        let rx = inbox.rx;
        let (conf_tx, conf_rx) = unbounded();
        let (prop_tx, prop_rx) = unbounded();
        let (snap_tx, snap_rx) = unbounded();
        for m in cluster.members.values().filter(|m| m.id != cfg.id) {
            transport.set_peer(m.id, &m.peer_urls);
        }
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            let (shared, what) = (shared.clone(), name.to_string());
            std::thread::Builder::new()
                .name(format!("{name}-{:x}", cfg.id & 0xffff))
                .spawn(move || {
                    // A thread that panics has said why on stderr; the member must not go on
                    // answering without it (a raft thread gone leaves the member mute to the
                    // cluster but up for clients): it stops, and its process exits.
                    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                        let why = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(thread = %what, panic = %why, "thread panicked; the member stops");
                        shared.stopped.store(true, Ordering::SeqCst);
                        if shared.failure.borrow().is_none() {
                            shared.failure.send_replace(Some(format!("{what} thread panicked: {why}")));
                        }
                        shared.fail_all(|| ReplicationError::Stopped);
                    }
                })
                .map_err(|e| ReplicationError::Config(format!("cannot start thread {name}: {e}")))
        };
        let applier = Applier {
            shared: shared.clone(),
            node: tx.clone(),
            conf: conf_tx,
            transport: transport.clone(),
            snapshot_count: cfg.snapshot_count.max(1),
            applied: sm.applied(),
            last_compact: sm.applied(),
        };
        let (queue, apply, apply_rx) = ApplyQueue::new(applier);
        threads.push(spawn("apply", Box::new(move || queue.run(apply_rx)))?);
        {
            let (node, shared, snaps) = (tx.clone(), shared.clone(), snaps.clone());
            threads.push(spawn(
                "snapshot",
                Box::new(move || snapshot_loop(snap_rx, node, shared, snaps)),
            )?);
        }
        let channels = LoopChannels { rx, tx: tx.clone(), prop_rx, conf_rx, apply, snap_tx };
        let raft_loop =
            RaftLoop::new(raw, store, shared.clone(), transport, snaps, channels, &cfg, applied);
        threads.push(spawn("raft", Box::new(move || raft_loop.run()))?);
        Ok(Replica {
            shared,
            tx,
            prop_tx,
            cfg,
            mailbox,
            threads: Mutex::new(threads),
            member_lock: tokio::sync::Mutex::new(()),
            wal,
            transport: transport_handle,
        })
    }

    /// The inbox the transport delivers to.
    pub fn mailbox(&self) -> Mailbox {
        self.mailbox.clone()
    }

    /// This member's ID.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The state machine.
    pub fn state_machine(&self) -> &Arc<S> {
        &self.shared.sm
    }

    /// The WAL (for its statistics).
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// The configuration the replica runs with.
    pub fn config(&self) -> &ReplicaConfig {
        &self.cfg
    }

    /// Known leader (0: none).
    pub fn leader(&self) -> u64 {
        self.shared.leader.load(Ordering::SeqCst)
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader.load(Ordering::SeqCst)
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.shared.term.load(Ordering::Relaxed)
    }

    /// Highest applied index.
    pub fn applied(&self) -> u64 {
        self.shared.applied_index()
    }

    /// Highest index known committed.
    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Relaxed)
    }

    /// Current membership.
    pub fn cluster(&self) -> ClusterRecord {
        self.shared.cluster()
    }

    /// Whether `id` was a member and has been removed (without a copy of the membership).
    pub fn was_removed(&self, id: u64) -> bool {
        self.shared.cluster.read().unwrap_or_else(|p| p.into_inner()).removed.contains(&id)
    }

    /// The cluster ID (cheap: no copy of the membership).
    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id.load(Ordering::Relaxed)
    }

    /// Current members, sorted by ID.
    pub fn members(&self) -> Vec<Member> {
        self.shared.cluster().list()
    }

    /// A status snapshot.
    pub fn status(&self) -> ReplicaStatus {
        let c = &self.shared.counters;
        let rec = self.shared.cluster();
        ReplicaStatus {
            id: self.shared.id,
            cluster_id: rec.cluster_id,
            leader: self.leader(),
            term: self.term(),
            is_leader: self.is_leader(),
            is_learner: rec.members.get(&self.shared.id).is_some_and(|m| m.is_learner),
            committed: self.shared.committed.load(Ordering::Relaxed),
            applied: self.applied(),
            pending: self.shared.pending(),
            proposals_failed: c.proposals_failed.load(Ordering::Relaxed),
            leader_changes: c.leader_changes.load(Ordering::Relaxed),
        }
    }

    /// The WAL's I/O backend ("io_uring", "pwrite", ...).
    pub fn wal_backend(&self) -> &'static str {
        self.wal.backend()
    }

    /// The WAL's write counters (bytes, groups, records).
    pub fn wal_stats(&self) -> rusted_wal::StatsSnapshot {
        self.wal.stats()
    }

    /// Counters (snapshots sent and installed, compactions, ...).
    pub fn counters(&self) -> &crate::shared::Counters {
        &self.shared.counters
    }

    /// Why the replica stopped on its own (a storage or state machine failure), if it has.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.borrow().clone()
    }

    /// Waits until the replica stops on its own; returns why. A member then exits: it can no
    /// longer apply what the cluster commits.
    pub async fn failed(&self) -> String {
        let mut rx = self.shared.failure.subscribe();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            // The sender lives as long as the replica: not reached while `self` exists.
            Err(_) => String::from("replica dropped"),
        };
        why
    }

    /// Waits until this member learns that the cluster removed it (its own removal applied,
    /// or a peer refusing its messages as a removed member's). etcd's member then stops.
    pub async fn removed(&self) {
        let mut rx = self.shared.removed.subscribe();
        // The sender lives as long as the replica: an error is not reached while `self` exists.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Whether the replica stopped (fatal error, removal or [`Replica::stop`]).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    fn check_running(&self) -> Result<()> {
        if *self.shared.removed.borrow() {
            return Err(ReplicationError::Removed);
        }
        if self.is_stopped() {
            return Err(ReplicationError::Stopped);
        }
        Ok(())
    }

    /// Waits up to an election timeout for a leader to be known.
    async fn wait_leader(&self) -> Result<u64> {
        // The common case, without a watch subscription or a timer.
        let known = self.shared.leader.load(Ordering::SeqCst);
        if known != 0 {
            return Ok(known);
        }
        let mut rx = self.shared.leader_watch.subscribe();
        let wait = tokio::time::timeout(self.cfg.election, rx.wait_for(|l| *l != 0))
            .await
            .map(|r| r.map(|l| *l));
        match wait {
            Ok(Ok(l)) => Ok(l),
            _ => Err(ReplicationError::NoLeader),
        }
    }

    /// etcd's admission checks before a proposal.
    async fn admit(&self) -> Result<u64> {
        self.check_running()?;
        let leader = self.wait_leader().await?;
        let committed = self.shared.committed.load(Ordering::Relaxed);
        if committed > self.applied() + self.cfg.max_apply_gap {
            self.shared.counters.proposals_failed.fetch_add(1, Ordering::Relaxed);
            return Err(ReplicationError::TooManyRequests);
        }
        Ok(leader)
    }

    async fn await_applied<T>(
        &self,
        seq: u64,
        leader: u64,
        rx: oneshot::Receiver<Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ReplicationError::Stopped),
            Err(_) => {
                self.shared.take_waiter(seq);
                self.shared.counters.proposals_failed.fetch_add(1, Ordering::Relaxed);
                if self.leader() != leader {
                    Err(ReplicationError::TimeoutLeaderFail)
                } else {
                    Err(ReplicationError::Timeout)
                }
            }
        }
    }

    /// Replicates `data`, applies it, and returns what the state machine returned.
    pub async fn propose(&self, data: &[u8]) -> Result<S::Output> {
        let mut buf = proposal_buf(data.len());
        buf.extend_from_slice(data);
        self.propose_buf(buf).await
    }

    /// [`Replica::propose`] of a buffer made by [`proposal_buf`] and filled by the caller:
    /// the request goes into the log without another copy.
    pub async fn propose_buf(&self, buf: Vec<u8>) -> Result<S::Output> {
        if buf.first() != Some(&KIND_PROPOSAL) {
            return Err(ReplicationError::Corrupt {
                what: "proposal",
                detail: "not made by proposal_buf".into(),
            });
        }
        let leader = self.admit().await?;
        let seq = self.shared.next_seq();
        let (tx, rx) = oneshot::channel();
        self.shared.add_waiter(seq, Waiter::Proposal(tx));
        let ctx = encode_ctx(self.shared.id, seq);
        if self.prop_tx.send(Input::Propose { ctx, data: buf }).is_err() {
            self.shared.take_waiter(seq);
            return Err(ReplicationError::Stopped);
        }
        self.await_applied(seq, leader, rx).await
    }

    async fn propose_members(&self, input: impl FnOnce(Vec<u8>) -> Input) -> Result<Vec<Member>> {
        let leader = self.admit().await?;
        let seq = self.shared.next_seq();
        let (tx, rx) = oneshot::channel();
        self.shared.add_waiter(seq, Waiter::Members(tx));
        if self.tx.send(input(encode_ctx(self.shared.id, seq))).is_err() {
            self.shared.take_waiter(seq);
            return Err(ReplicationError::Stopped);
        }
        self.await_applied(seq, leader, rx).await
    }

    async fn conf_change(&self, t: ConfChangeType, ctx: ConfContext) -> Result<Vec<Member>> {
        let _one_at_a_time = self.member_lock.lock().await;
        let mut cc = ConfChangeV2::default();
        let mut ch = ConfChangeSingle::default();
        ch.set_change_type(t);
        ch.node_id = ctx.member.id;
        cc.mut_changes().push(ch);
        cc.set_context(serde_json::to_vec(&ctx).unwrap_or_default().into());
        self.propose_members(|c| Input::ConfChange { ctx: c, cc }).await
    }

    /// etcd's strict reconfiguration check for adding a voter: enough started members.
    fn ready_to_add_voter(&self) -> bool {
        let rec = self.shared.cluster();
        let nmembers = 1 + rec.voters().count();
        let nstarted = rec.voters().filter(|m| m.is_started()).count();
        (nstarted == 1 && nmembers == 2) || nstarted > nmembers / 2
    }

    /// Voters this member has been connected to for the health interval (itself included).
    fn connected_voters(&self) -> (usize, usize) {
        let rec = self.shared.cluster();
        let since = Instant::now().checked_sub(HEALTH_INTERVAL);
        let mut connected = 0;
        let mut total = 0;
        for m in rec.voters() {
            total += 1;
            let up = m.id == self.shared.id
                || self.transport.active_since(m.id).is_some_and(|t| since.is_some_and(|s| t <= s));
            connected += usize::from(up);
        }
        (connected, total)
    }

    /// etcd 3.5's mayAddMember: a voter needs a started quorum after the change; any new
    /// member needs this one connected to a quorum of the grown cluster (the newcomer counted
    /// as down), except in a one-member cluster.
    fn may_add_member(&self, is_learner: bool) -> Result<()> {
        if !self.cfg.strict_reconfig_check {
            return Ok(());
        }
        if !is_learner && !self.ready_to_add_voter() {
            return Err(ReplicationError::NotEnoughStartedMembers);
        }
        let (connected, total) = self.connected_voters();
        // etcd: a quorum of the cluster with the newcomer, i.e. (total + 1) / 2 + 1.
        if total > 1 && connected < total.div_ceil(2) + 1 {
            tracing::warn!(connected, total, "rejecting member add: not connected to a quorum");
            return Err(ReplicationError::Unhealthy);
        }
        Ok(())
    }

    /// etcd's mayRemoveMember: the rest keep a started quorum, and removing a voter that is
    /// up does not leave fewer connected voters than a quorum.
    fn may_remove_member(&self, id: u64) -> Result<()> {
        if !self.cfg.strict_reconfig_check {
            return Ok(());
        }
        let rec = self.shared.cluster();
        if rec.members.get(&id).is_some_and(|m| m.is_learner) {
            return Ok(());
        }
        let rest: Vec<_> = rec.voters().filter(|m| m.id != id).collect();
        let started = rest.iter().filter(|m| m.is_started()).count();
        if started < rest.len() / 2 + 1 {
            return Err(ReplicationError::NotEnoughStartedMembers);
        }
        // A member that is down is not part of the active quorum: removing it is safe.
        if id != self.shared.id && self.transport.active_since(id).is_none() {
            return Ok(());
        }
        let (connected, total) = self.connected_voters();
        if connected.saturating_sub(1) < 1 + total.saturating_sub(1) / 2 {
            tracing::warn!(
                connected,
                total,
                "rejecting member remove: it would break the active quorum"
            );
            return Err(ReplicationError::Unhealthy);
        }
        Ok(())
    }

    /// etcd's mayPromoteMember: counting the learner as a started voter, a quorum is started.
    fn may_promote_member(&self) -> Result<()> {
        if !self.cfg.strict_reconfig_check {
            return Ok(());
        }
        let rec = self.shared.cluster();
        let nmembers = 1 + rec.voters().count();
        let nstarted = 1 + rec.voters().filter(|m| m.is_started()).count();
        if nstarted < nmembers / 2 + 1 {
            return Err(ReplicationError::NotEnoughStartedMembers);
        }
        Ok(())
    }

    /// Adds a member (`member add`); returns it and the membership after the change.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>)> {
        if peer_urls.is_empty() {
            return Err(ReplicationError::Config("member peer URLs are empty".into()));
        }
        for u in &peer_urls {
            crate::membership::check_url(u)?;
        }
        self.may_add_member(is_learner)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        // etcd's ID: the peer URLs and the time in seconds. Re-adding the URLs of a member
        // removed in the same second would give that member's ID, which etcd then refuses as
        // removed; we step the time salt past IDs already used instead.
        let rec = self.shared.cluster();
        let mut id = member_id(&peer_urls, "", Some(now));
        for salt in 1..64 {
            if !rec.members.contains_key(&id) && !rec.removed.contains(&id) {
                break;
            }
            id = member_id(&peer_urls, "", Some(now + salt));
        }
        let m = Member { id, name: String::new(), peer_urls, client_urls: Vec::new(), is_learner };
        let t = if is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
        let list = self.conf_change(t, ConfContext { member: m.clone(), promote: false }).await?;
        Ok((m, list))
    }

    /// Removes a member (`member remove`).
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>> {
        self.may_remove_member(id)?;
        let m = Member {
            id,
            name: String::new(),
            peer_urls: Vec::new(),
            client_urls: Vec::new(),
            is_learner: false,
        };
        self.conf_change(ConfChangeType::RemoveNode, ConfContext { member: m, promote: false })
            .await
    }

    /// Promotes a learner to voter (`member promote`): only once it is in sync with the
    /// leader. Must run on the leader.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>> {
        let rec = self.shared.cluster();
        match rec.members.get(&id) {
            None => return Err(ReplicationError::MemberNotFound),
            Some(m) if !m.is_learner => return Err(ReplicationError::MemberNotLearner),
            Some(_) => {}
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Input::PromoteCheck { id, reply: tx })
            .map_err(|_| ReplicationError::Stopped)?;
        rx.await.map_err(|_| ReplicationError::Stopped)??;
        // etcd checks the learner is in sync first, then the started quorum.
        self.may_promote_member()?;
        let m = Member {
            id,
            name: String::new(),
            peer_urls: Vec::new(),
            client_urls: Vec::new(),
            is_learner: false,
        };
        let list = self
            .conf_change(ConfChangeType::AddNode, ConfContext { member: m, promote: true })
            .await?;
        self.shared.counters.learners_promoted.fetch_add(1, Ordering::Relaxed);
        Ok(list)
    }

    /// Changes a member's peer URLs (`member update`).
    pub async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<Vec<Member>> {
        let u = MemberUpdate { id, name: None, client_urls: None, peer_urls: Some(peer_urls) };
        self.propose_update(u).await
    }

    /// Publishes this member's name and client URLs (etcd's publish at start).
    pub async fn publish(&self, name: &str, client_urls: Vec<String>) -> Result<Vec<Member>> {
        let u = MemberUpdate {
            id: self.shared.id,
            name: Some(name.to_string()),
            client_urls: Some(client_urls),
            peer_urls: None,
        };
        self.propose_update(u).await
    }

    async fn propose_update(&self, u: MemberUpdate) -> Result<Vec<Member>> {
        let mut data = vec![KIND_MEMBER_UPDATE];
        data.extend(serde_json::to_vec(&u).unwrap_or_default());
        self.propose_members(|ctx| Input::Propose { ctx, data }).await
    }

    /// Hands leadership to `to` (etcd's MoveLeader) and waits until it leads.
    pub async fn transfer_leader(&self, to: u64) -> Result<()> {
        self.check_running()?;
        let rec = self.shared.cluster();
        if rec.members.get(&to).is_none_or(|m| m.is_learner) {
            return Err(ReplicationError::BadLeaderTransferee);
        }
        if !self.is_leader() {
            return Err(ReplicationError::NotLeader);
        }
        let mut rx = self.shared.leader_watch.subscribe();
        self.tx.send(Input::TransferLeader(to)).map_err(|_| ReplicationError::Stopped)?;
        let r = tokio::time::timeout(self.cfg.request_timeout, rx.wait_for(|l| *l == to))
            .await
            .map(|r| r.is_ok());
        match r {
            Ok(true) => Ok(()),
            _ => Err(ReplicationError::Timeout),
        }
    }

    /// Starts an election now (tests, and a member that must not wait).
    pub fn campaign(&self) {
        let _ = self.tx.send(Input::Campaign);
    }

    /// Raft progress (member → matched index); only the leader has it.
    pub async fn progress(&self) -> Vec<(u64, u64)> {
        self.raft_status().await.progress.iter().map(|p| (p.id, p.matched)).collect()
    }

    /// The raft node's state (etcd's `raft.status`); the default once the replica stopped.
    pub async fn raft_status(&self) -> crate::status::RaftStatus {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Input::Status(tx)).is_err() {
            return Default::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Stops every thread; acknowledged writes are durable (the WAL was synced before they
    /// were acknowledged). The state machine is left to its owner.
    pub fn stop(&self) {
        let _ = self.tx.send(Input::Stop);
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        // The raft thread ends first and drops the apply and snapshot senders.
        for t in threads.into_iter().rev() {
            let _ = t.join();
        }
        if let Err(e) = self.wal.close() {
            tracing::warn!(error = %e, "wal close");
        }
    }
}

impl<S: StateMachine> Drop for Replica<S> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_sole_voter(cs: &ConfState, id: u64) -> bool {
    cs.voters == [id] && cs.learners.is_empty()
}

/// Opens the WAL and brings the log and the state machine to a common start: a new cluster's
/// bootstrap log (compacted at [`BOOTSTRAP_INDEX`], membership applied), a joining member's
/// empty log, or a restart's log as it is. Returns the WAL, the membership raft starts with,
/// and its configuration.
fn open_log<S: StateMachine>(
    cfg: &ReplicaConfig,
    sm: &Arc<S>,
) -> Result<(Arc<Wal>, ClusterRecord, raft::eraftpb::ConfState)> {
    let (wal, report) = Wal::open(&cfg.wal_dir, cfg.wal.clone())?;
    tracing::info!(?report, dir = %cfg.wal_dir.display(), "wal opened");
    let wal = Arc::new(wal);
    let fresh_log = wal.hard_state().is_none() && wal.snapshot().is_none() && wal.last_index() == 0;
    let mut record = match sm.cluster()? {
        Some(b) => Some(ClusterRecord::decode(&b)?),
        None => None,
    };
    let mut joining = None;
    if fresh_log {
        match (&cfg.bootstrap, &record) {
            (Bootstrap::New(rec), None) => {
                sm.apply_cluster(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, &rec.encode())?;
                // Durable before the log says index 1 is applied-and-compacted.
                sm.sync()?;
                record = Some(rec.clone());
            }
            (Bootstrap::New(_), Some(_)) if sm.applied() <= BOOTSTRAP_INDEX => {}
            (Bootstrap::Existing(rec), None) => joining = Some(rec.clone()),
            (_, Some(_)) => {
                return Err(ReplicationError::Config(format!(
                    "the WAL in {} is empty but the state machine has applied index {}: \
                     refusing to start without the log",
                    cfg.wal_dir.display(),
                    sm.applied()
                )))
            }
        }
        if let Some(rec) = &record {
            // The bootstrap log: compacted at BOOTSTRAP_INDEX, that index committed.
            let cs = rec.conf_state().write_to_bytes().map_err(|e| ReplicationError::Corrupt {
                what: "conf state",
                detail: e.to_string(),
            })?;
            wal.append_sync(&[
                Record::Snapshot { index: BOOTSTRAP_INDEX, term: BOOTSTRAP_TERM, conf_state: &cs },
                Record::HardState(rusted_wal::HardState {
                    term: BOOTSTRAP_TERM,
                    vote: 0,
                    commit: BOOTSTRAP_INDEX,
                }),
            ])?;
        }
    }
    if !fresh_log && record.is_none() && sm.applied() < BOOTSTRAP_INDEX {
        // The state machine lost the bootstrap record (a crash before it was flushed, in a
        // data dir from before it was synced at once): the log starts compacted at
        // BOOTSTRAP_INDEX, so the record must be there; it is the one the flags describe.
        if let (Bootstrap::New(rec), Some(snap)) = (&cfg.bootstrap, wal.snapshot()) {
            if snap.index == BOOTSTRAP_INDEX {
                tracing::warn!("re-applying the bootstrap membership the store lost");
                sm.apply_cluster(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, &rec.encode())?;
                sm.sync()?;
                record = Some(rec.clone());
            }
        }
    }
    if cfg.force_new_cluster && !fresh_log {
        if let Some(rec) = &record {
            crate::force::rewrite_as_sole_member(&wal, cfg.id, rec, sm.applied())?;
        }
    }
    let cluster = match (&record, joining) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => r,
        (None, None) => match &cfg.bootstrap {
            // Joined before but no snapshot arrived yet: still waiting for one.
            Bootstrap::Existing(r) | Bootstrap::New(r) => r.clone(),
        },
    };
    let cs = record.as_ref().map(ClusterRecord::conf_state).unwrap_or_default();
    Ok((wal, cluster, cs))
}
