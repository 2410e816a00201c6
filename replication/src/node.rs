//! The raft thread: owns raft-rs's `RawNode`, turns inputs into raft steps, and handles each
//! `Ready` in raft-rs's documented async order:
//!
//! 1. leader messages go out at once (raft thesis 10.2.1: the leader replicates while it
//!    persists);
//! 2. a snapshot is installed (state machine first, then the WAL marker);
//! 3. committed entries go to the apply thread;
//! 4. entries and hard state are appended to the WAL's current write group — on a leader the
//!    call does not wait; a follower or candidate, which could only wait, writes and syncs the
//!    group on this thread (no hand-off to the WAL's writer thread and back);
//! 5. `advance_append_async`. The WAL's writer wakes this thread when the group is durable (a
//!    waker that posts [`Input::WalDone`]); the thread then sends the messages that had to wait
//!    for persistence and reports `on_persist_ready`, in Ready order.
//!
//! So a single member pays one group-committed fsync per batch and no network; a leader's
//! fsync overlaps its followers'.
//!
//! **Fewer wake-ups, bigger batches.** On a loaded machine the cost of a write is mostly the
//! thread hand-offs per batch, not the work, so the loop avoids them where it can:
//! - proposals come on their own channel, which a leader does not wait on while
//!   [`PROPOSE_GATE`] WAL writes are in flight or while no follower can take an append: they
//!   queue without waking anyone and the next Ready takes them all (an idle member still
//!   wakes for the first one at once);
//! - the proposals of one turn are stepped as one raft proposal, so they leave in one append
//!   (or, on a follower, one forwarded message);
//! - under heavy load a leader whose batch is smaller than its last round's waits briefly
//!   for more before stepping it (the `linger` module);
//! - durability comes straight from the WAL writer (no thread in between);
//! - the applied index is read from the shared counter on every turn instead of being posted
//!   after every applied batch (the apply thread still posts it after membership and empty
//!   entries, which raft must see before the next membership change).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use raft::eraftpb::{ConfChangeV2, ConfState, Message};
use raft::{RawNode, SnapshotStatus, StateRole};
use rusted_wal::Durable;
use tokio::sync::oneshot;

use crate::apply::{ApplySender, ApplyTask};
use crate::config::MAX_SIZE_PER_MSG;
use crate::error::{ReplicationError, Result};
use crate::heartbeat::HeartbeatWatch;
use crate::linger::Linger;
use crate::machine::StateMachine;
use crate::shared::Shared;
use crate::storage::{LogStore, SnapshotAvail};
use crate::transport::{NetInput, SnapDir, Transport};

mod reads;

/// What the raft thread is asked to do.
pub(crate) enum Input {
    Propose {
        ctx: Vec<u8>,
        data: Vec<u8>,
    },
    ConfChange {
        ctx: Vec<u8>,
        cc: ConfChangeV2,
    },
    Net(NetInput),
    Read(oneshot::Sender<Result<u64>>),
    /// A WAL group this loop waits for completed (or the WAL failed).
    WalDone,
    Applied(u64),
    Compact(u64),
    SnapshotReady(SnapshotAvail),
    SnapshotFailed,
    TransferLeader(u64),
    Campaign,
    PromoteCheck {
        id: u64,
        reply: oneshot::Sender<Result<()>>,
    },
    Status(oneshot::Sender<crate::status::RaftStatus>),
    Fatal(String),
    /// A peer said the cluster removed this member.
    Removed,
    Stop,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

/// A read-index round in flight: its context number, its readers, when it started.
pub(crate) type ReadRound = (u64, Vec<oneshot::Sender<Result<u64>>>, Instant);

/// WAL writes in flight at which the loop stops waking for proposals (they queue meanwhile).
pub(crate) const PROPOSE_GATE: usize = 1;

/// One Ready's persistence: done once its WAL group is durable (or at once without one).
pub(crate) struct PersistJob {
    pub number: u64,
    pub durable: Option<Durable>,
    pub msgs: Vec<Message>,
    pub last: u64,
}

/// Wakes the raft loop when a WAL group it waits for is durable.
pub(crate) struct WalWake(pub Sender<Input>);

impl Wake for WalWake {
    fn wake(self: Arc<Self>) {
        let _ = self.0.send(Input::WalDone);
    }
}

pub(crate) struct RaftLoop<S: StateMachine> {
    raw: RawNode<LogStore>,
    store: LogStore,
    shared: Arc<Shared<S>>,
    transport: Arc<dyn Transport>,
    snaps: SnapDir,
    rx: Receiver<Input>,
    /// Proposals (a leader waits on them only while not gated, see `proposals_gated`).
    prop_rx: Receiver<Input>,
    conf_rx: Receiver<(ConfChangeV2, Sender<Result<ConfState>>)>,
    apply: ApplySender<S>,
    /// Readies whose persistence is not yet reported, oldest first.
    persisting: VecDeque<PersistJob>,
    /// Posts [`Input::WalDone`] to this loop.
    wal_waker: Waker,
    /// A WAL wake-up arrived: the oldest job is polled (to see a failure) if not durable.
    wal_woken: bool,
    /// Applied index last told to raft.
    applied_seen: u64,
    /// Commit index this leader last broadcast on its own.
    bcast_commit: u64,
    snap_tx: Sender<()>,
    tick: Duration,
    election: Duration,
    catchup: u64,
    reads_waiting: Vec<oneshot::Sender<Result<u64>>>,
    reads_inflight: Option<ReadRound>,
    read_seq: u64,
    role: StateRole,
    snapshot_building: bool,
    deferred_conf: Vec<(Vec<u8>, ConfChangeV2, Instant)>,
    /// Proposals taken this turn, stepped as one batch before the Ready.
    proposals: Vec<raft::eraftpb::Entry>,
    /// Bytes of `proposals` (a batch is stepped before it passes [`MAX_SIZE_PER_MSG`]).
    proposals_bytes: usize,
    /// When a leader steps `proposals` (at once, or after a short wait for more).
    linger: Linger,
    heartbeats: HeartbeatWatch,
}

/// The channels a raft loop reads from and writes to (made by [`crate::Replica::start`]).
pub(crate) struct LoopChannels<S: StateMachine> {
    /// Inputs from the transport, readers and the WAL writer.
    pub rx: Receiver<Input>,
    /// Posts inputs to the loop itself (the WAL writer's wake-ups).
    pub tx: Sender<Input>,
    /// Proposals.
    pub prop_rx: Receiver<Input>,
    /// Membership changes to apply to raft's configuration.
    pub conf_rx: Receiver<(ConfChangeV2, Sender<Result<ConfState>>)>,
    /// Committed entries, to the apply thread (or applied here, see [`ApplySender`]).
    pub apply: ApplySender<S>,
    /// Asks the snapshot thread for a new snapshot.
    pub snap_tx: Sender<()>,
}

impl<S: StateMachine> RaftLoop<S> {
    /// A loop over `raw` (its log `store`), sending through `transport`; `applied` is the index
    /// raft was told at start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raw: RawNode<LogStore>,
        store: LogStore,
        shared: Arc<Shared<S>>,
        transport: Arc<dyn Transport>,
        snaps: SnapDir,
        ch: LoopChannels<S>,
        cfg: &crate::ReplicaConfig,
        applied: u64,
    ) -> Self {
        RaftLoop {
            raw,
            store,
            shared,
            transport,
            snaps,
            rx: ch.rx,
            prop_rx: ch.prop_rx,
            conf_rx: ch.conf_rx,
            apply: ch.apply,
            persisting: VecDeque::new(),
            wal_waker: Waker::from(Arc::new(WalWake(ch.tx))),
            wal_woken: false,
            applied_seen: applied,
            bcast_commit: 0,
            snap_tx: ch.snap_tx,
            tick: cfg.heartbeat,
            election: cfg.election,
            catchup: cfg.catchup_entries,
            reads_waiting: Vec::new(),
            reads_inflight: None,
            read_seq: 0,
            role: StateRole::Follower,
            snapshot_building: false,
            deferred_conf: Vec::new(),
            proposals: Vec::new(),
            proposals_bytes: 0,
            linger: Linger::new(cfg.propose_linger),
            heartbeats: HeartbeatWatch::new(cfg.heartbeat),
        }
    }

    /// Runs until the replica stops or fails.
    pub fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        let never = crossbeam_channel::never();
        loop {
            // Reporting persistence can make new work (a commit, committed entries) with no
            // input to wake the loop for it: then only look, do not wait.
            let wait = if self.raw.has_ready() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            let gated = self.proposals_gated();
            // A held batch is stepped when its wait ends, if nothing comes before.
            let wait = match self.batch_hold(Instant::now()) {
                Some(left) => wait.min(left),
                // A batch no longer held (its wait ended during the last turn, or this member
                // stopped leading) is stepped this turn, without waiting for input.
                None if !self.proposals.is_empty() && !gated => Duration::ZERO,
                None => wait,
            };
            let props = if gated { &never } else { &self.prop_rx };
            let first = select! {
                recv(self.rx) -> m => match m { Ok(i) => Some(i), Err(_) => break },
                recv(props) -> m => match m { Ok(i) => Some(i), Err(_) => break },
                recv(self.conf_rx) -> c => {
                    if let Ok((cc, reply)) = c { self.apply_conf(cc, reply); }
                    None
                },
                default(wait) => None,
            };
            let mut stop = false;
            if let Some(i) = first {
                stop |= self.handle(i);
            }
            // Take everything already queued: one Ready then covers the whole batch.
            for _ in 0..4096 {
                match self.rx.try_recv() {
                    Ok(i) => stop |= self.handle(i),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.drain_persisted() {
                tracing::error!(error = %e, "wal write failed; the member stops");
                self.shared.failure.send_replace(Some(format!("wal write failed: {e}")));
                break;
            }
            if !self.proposals_gated() {
                for _ in 0..4096 {
                    match self.prop_rx.try_recv() {
                        Ok(i) => stop |= self.handle(i),
                        Err(_) => break,
                    }
                }
            }
            // Forwarded proposals are queued while gated too; they wait as the leader's own.
            if stop || (!self.proposals_gated() && self.batch_hold(Instant::now()).is_none()) {
                self.propose_batch();
            }
            if stop {
                break;
            }
            self.sync_applied();
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick += self.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.tick;
                }
                self.expire_reads();
            }
            self.start_read_round();
            self.bcast_commit();
            if !self.snapshot_building && self.store.take_snapshot_request().is_some() {
                self.snapshot_building = true;
                let _ = self.snap_tx.send(());
            }
            if let Err(e) = self.on_ready() {
                // An apply on this thread has already said why (see `apply`).
                if self.shared.failure.borrow().is_none() {
                    tracing::error!(error = %e, "raft ready failed; the member stops");
                    self.shared.failure.send_replace(Some(format!("raft ready failed: {e}")));
                }
                break;
            }
            self.publish_local_read();
        }
        self.shared.local_read.store(0, Ordering::SeqCst);
        self.shared.stopped.store(true, Ordering::SeqCst);
        for tx in self.reads_waiting.drain(..) {
            let _ = tx.send(Err(ReplicationError::Stopped));
        }
        if let Some((_, txs, _)) = self.reads_inflight.take() {
            for tx in txs {
                let _ = tx.send(Err(ReplicationError::Stopped));
            }
        }
        self.shared.fail_all(|| ReplicationError::Stopped);
    }

    /// Returns true when the loop must stop.
    fn handle(&mut self, i: Input) -> bool {
        match i {
            Input::Propose { ctx, data } => self.queue_proposal(raft::eraftpb::Entry {
                context: ctx.into(),
                data: data.into(),
                ..Default::default()
            }),
            Input::ConfChange { ctx, cc } => {
                // raft-rs turns a conf change proposed while another is unapplied into an
                // empty entry (and its proposer would only time out): hold it until then.
                if self.raw.raft.state == StateRole::Leader && self.raw.raft.has_pending_conf() {
                    self.deferred_conf.push((ctx, cc, Instant::now()));
                } else if let Err(e) = self.raw.propose_conf_change(ctx.clone(), cc) {
                    self.fail_proposal(&ctx, e.into());
                }
            }
            Input::Net(NetInput::Step(mut m)) => {
                // For another ID (a removed member's, whose URL this one took): raft-rs would
                // take its commit index for this log's.
                if m.to != self.raw.raft.id {
                    tracing::warn!(to = %format!("{:x}", m.to), "dropped a message for another ID");
                    return false;
                }
                // A follower's forwarded proposals join the leader's own: stepped at once,
                // each would start a WAL write and a replication round of its own.
                if m.get_msg_type() == raft::eraftpb::MessageType::MsgPropose
                    && self.raw.raft.state == StateRole::Leader
                {
                    let entries = m.take_entries();
                    let n = entries.len() as u64;
                    for e in entries {
                        self.queue_proposal(e);
                    }
                    self.shared.counters.forwarded_batched.fetch_add(n, Ordering::Relaxed);
                    return false;
                }
                if let Err(e) = self.raw.step(m) {
                    tracing::debug!(error = %e, "raft step refused a message");
                }
            }
            Input::Net(NetInput::Unreachable(to)) => self.raw.report_unreachable(to),
            Input::Net(NetInput::SnapshotDone { to, ok }) => {
                let s = if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
                self.raw.report_snapshot(to, s);
                if ok {
                    self.shared.counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Input::Read(tx) => self.reads_waiting.push(tx),
            Input::WalDone => self.wal_woken = true,
            Input::Applied(i) => {
                self.advance_applied(i);
                self.retry_deferred_conf();
            }
            Input::Compact(applied) => self.compact(applied),
            Input::SnapshotReady(a) => {
                self.snapshot_building = false;
                self.store.set_snapshot_avail(a);
            }
            Input::SnapshotFailed => self.snapshot_building = false,
            Input::TransferLeader(to) => self.raw.transfer_leader(to),
            Input::Campaign => {
                let _ = self.raw.campaign();
            }
            Input::PromoteCheck { id, reply } => {
                let _ = reply.send(self.promote_check(id));
            }
            Input::Status(tx) => {
                let applied = *self.shared.applied.borrow();
                let _ = tx.send(crate::status::RaftStatus::of(&self.raw, applied));
            }
            Input::Fatal(m) => {
                tracing::error!(reason = %m, "member stops");
                self.shared.failure.send_replace(Some(m));
                return true;
            }
            Input::Removed => {
                if !self.shared.removed.send_replace(true) {
                    tracing::warn!("a peer refused this member's messages: the cluster removed it");
                }
            }
            Input::Stop => return true,
        }
        false
    }

    /// Queues an entry for the next [`Self::propose_batch`]. A batch stays within one
    /// message's size (a follower forwards it whole).
    fn queue_proposal(&mut self, e: raft::eraftpb::Entry) {
        let size = e.context.len() + e.data.len();
        if self.proposals_bytes + size > MAX_SIZE_PER_MSG as usize {
            self.propose_batch();
        }
        self.proposals.push(e);
        self.proposals_bytes += size;
    }

    /// Steps everything proposed this turn as one raft proposal: a leader appends it and sends
    /// it to each follower that can take an append in one message, and a follower forwards it
    /// in one message. (One `propose` per entry would send the first entry alone to a follower
    /// that was free, and with one append in flight the rest would wait a round trip.)
    fn propose_batch(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.proposals);
        self.proposals_bytes = 0;
        if self.raw.raft.state == StateRole::Leader {
            self.linger.stepped(entries.len());
        }
        // Contexts are shared buffers: keeping them for the failure path copies nothing.
        let ctxs: Vec<bytes::Bytes> = entries.iter().map(|e| e.context.clone()).collect();
        let mut m = Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
        m.from = self.raw.raft.id;
        m.set_entries(entries.into());
        if let Err(e) = self.raw.raft.step(m) {
            for ctx in ctxs {
                self.fail_proposal(&ctx, ReplicationError::of_raft(&e));
            }
        }
    }

    /// How much longer a leader holds this turn's proposals for more to join them (see
    /// the `linger` module), or `None` to step them now. Only a leader with voting followers
    /// waits, and only while one of them can take an append (otherwise the batch could not
    /// leave yet anyway).
    fn batch_hold(&mut self, now: Instant) -> Option<Duration> {
        if self.proposals.is_empty()
            || self.raw.raft.state != StateRole::Leader
            || self.persisting.len() >= PROPOSE_GATE
            || self.follower_free() != Some(true)
        {
            return None;
        }
        let was = self.linger.waiting();
        let hold = self.linger.hold(self.proposals.len(), now);
        if hold.is_some() && !was {
            self.shared.counters.batches_held.fetch_add(1, Ordering::Relaxed);
        }
        hold
    }

    /// A leader holds proposals back while its WAL write is in flight (they would only start
    /// a second, smaller write); a follower forwards them at once (they cost it no write).
    fn proposals_gated(&self) -> bool {
        self.role == StateRole::Leader
            && (self.persisting.len() >= PROPOSE_GATE || self.follower_free() == Some(false))
    }

    /// Can a voting follower take an append now? `None` when this member has no voting
    /// followers; `Some(false)` when each has its in-flight window full, or is probing or
    /// getting a snapshot. While none can, a leader leaves proposals queued: taken when the
    /// next answer frees a window, they go into the same WAL write and the same append, so a
    /// loaded leader writes its WAL once per replication round rather than once per fsync.
    fn follower_free(&self) -> Option<bool> {
        let r = &self.raw.raft;
        let prs = r.prs();
        let mut free = None;
        for (id, pr) in prs.iter() {
            if *id == r.id || !prs.conf().voters().contains(*id) {
                continue;
            }
            if !pr.is_paused() {
                return Some(true);
            }
            free = Some(false);
        }
        free
    }

    /// raft-rs would send every follower an append (empty if need be) each time the commit
    /// index moves, doubling the messages under load; with `skip_bcast_commit` the new index
    /// rides on the next append instead. When no append will follow — every entry is
    /// committed — the leader broadcasts it here, so followers apply the last writes of a
    /// burst at once rather than at the next heartbeat.
    fn bcast_commit(&mut self) {
        let r = &mut self.raw.raft;
        if r.state != StateRole::Leader {
            return;
        }
        let committed = r.raft_log.committed;
        if committed > self.bcast_commit && r.raft_log.last_index() == committed {
            r.bcast_append();
            self.bcast_commit = committed;
        }
    }

    /// Tells raft what the apply thread has applied since the last turn.
    fn sync_applied(&mut self) {
        if self.advance_applied(self.shared.applied_index()) {
            self.retry_deferred_conf();
        }
    }

    /// Moves raft's applied index forward (never past what is committed and persisted here: a
    /// state machine restored ahead of the log reports more, and raft-rs refuses an applied
    /// index beyond either). True if it moved.
    fn advance_applied(&mut self, applied: u64) -> bool {
        let log = &self.raw.raft.raft_log;
        let to = applied.min(log.committed).min(log.persisted);
        if to <= self.applied_seen {
            return false;
        }
        self.applied_seen = to;
        self.raw.advance_apply_to(to);
        true
    }

    /// Reports, in Ready order, every job whose WAL group is durable: its messages go out,
    /// then raft hears of it. A WAL failure is returned (the member stops).
    fn drain_persisted(&mut self) -> Result<()> {
        let woken = std::mem::take(&mut self.wal_woken);
        while let Some(job) = self.persisting.front_mut() {
            if let Some(d) = &mut job.durable {
                if !d.is_durable() {
                    if !woken {
                        break;
                    }
                    // Woken but not durable: the WAL failed, or the wake-up was for a later
                    // poll. Polling tells which (and re-registers for the latter).
                    let mut cx = Context::from_waker(&self.wal_waker);
                    match Pin::new(d).poll(&mut cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Err(e.into()),
                        Poll::Pending => break,
                    }
                }
            }
            let Some(job) = self.persisting.pop_front() else { break };
            self.store.persisted_to(job.last);
            if !job.msgs.is_empty() {
                self.send(job.msgs);
            }
            self.raw.on_persist_ready(job.number);
        }
        Ok(())
    }

    fn retry_deferred_conf(&mut self) {
        while !self.deferred_conf.is_empty() && !self.raw.raft.has_pending_conf() {
            let (ctx, cc, _) = self.deferred_conf.remove(0);
            if let Err(e) = self.raw.propose_conf_change(ctx.clone(), cc) {
                self.fail_proposal(&ctx, e.into());
            }
        }
        // Proposers give up after their request timeout; drop what they no longer wait for.
        let limit = self.election * 10;
        self.deferred_conf.retain(|(_, _, at)| at.elapsed() < limit);
    }

    fn fail_proposal(&self, ctx: &[u8], e: ReplicationError) {
        // A proposal forwarded by another member is its proposer's to count and time out.
        if let Some((_, seq)) =
            crate::shared::decode_ctx(ctx).filter(|(member, _)| *member == self.raw.raft.id)
        {
            self.shared.counters.proposals_failed.fetch_add(1, Ordering::Relaxed);
            match self.shared.take_waiter(seq) {
                Some(crate::shared::Waiter::Proposal(tx)) => {
                    let _ = tx.send(Err(e));
                }
                Some(crate::shared::Waiter::Members(tx)) => {
                    let _ = tx.send(Err(e));
                }
                None => {}
            }
        }
    }

    fn promote_check(&self, id: u64) -> Result<()> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(ReplicationError::NotLeader);
        }
        let prs = self.raw.raft.prs();
        let me = prs.get(self.raw.raft.id).map_or(0, |p| p.matched);
        match prs.get(id) {
            None => Err(ReplicationError::MemberNotFound),
            // etcd: a learner is ready once its match reaches 90% of the leader's.
            Some(p) if (p.matched as f64) < 0.9 * me as f64 => {
                Err(ReplicationError::LearnerNotReady)
            }
            Some(_) => Ok(()),
        }
    }

    fn apply_conf(&mut self, cc: ConfChangeV2, reply: Sender<Result<ConfState>>) {
        let r = self.raw.apply_conf_change(&cc).map_err(ReplicationError::from);
        if let Ok(cs) = &r {
            self.store.set_conf_state(cs.clone());
        }
        let _ = reply.send(r);
    }

    /// After the state machine synced at `applied`: compact the log, keeping a tail.
    fn compact(&mut self, applied: u64) {
        let upto = applied.saturating_sub(self.catchup);
        match self.store.compact(upto) {
            Ok(Some(durable)) => {
                self.shared.counters.compactions.fetch_add(1, Ordering::Relaxed);
                // Segments go once the marker is durable; rare, so a short-lived thread.
                let wal = self.store.wal().clone();
                std::thread::spawn(move || {
                    if durable.wait().is_ok() {
                        if let Err(e) = wal.release_prefix(upto) {
                            tracing::warn!(error = %e, "wal release failed");
                        }
                    }
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "log compaction failed"),
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            self.soft_state(ss.leader_id, ss.raft_state);
        }
        if !rd.messages().is_empty() {
            self.send(rd.take_messages());
        }
        let mut hs = rd.hs().cloned();
        if !rd.snapshot().is_empty() {
            let meta = rd.snapshot().get_metadata().clone();
            self.install_snapshot(&meta, hs.take().as_ref())?;
        }
        let sole = self.sole_voter();
        let committed = rd.take_committed_entries();
        if let Some(last) = committed.last() {
            self.shared.committed.store(last.index, Ordering::Relaxed);
            self.apply(committed, sole)?;
        }
        for rs in rd.take_read_states() {
            self.read_state(&rs.request_ctx, rs.index);
        }
        if let Some(h) = &hs {
            self.shared.term.store(h.term, Ordering::Relaxed);
        }
        // A leader goes on (stepping answers, taking proposals) while its WAL syncs; a
        // follower, a candidate or a sole voter has nothing to do but wait for it, so it
        // writes the group itself instead of handing it to the WAL's writer thread and being
        // woken back.
        let mut durable = if self.role == StateRole::Leader && !sole {
            self.store.append(rd.take_entries(), hs.as_ref())?
        } else {
            self.store.append_inline(rd.take_entries(), hs.as_ref())?
        };
        let msgs = rd.take_persisted_messages();
        let number = rd.number();
        self.raw.advance_append_async(rd);
        let last = self.store.last();
        if let Some(d) = &mut durable {
            // Register for the wake-up now; a group already durable needs none.
            let mut cx = Context::from_waker(&self.wal_waker);
            if let Poll::Ready(Err(e)) = Pin::new(d).poll(&mut cx) {
                return Err(e.into());
            }
        }
        self.persisting.push_back(PersistJob { number, durable, msgs, last });
        self.drain_persisted()
    }

    /// Committed entries into the state machine: on this thread when this member is the only
    /// one (`sole`: nothing to replicate to, so the raft thread would only wait for the apply
    /// thread), else on the apply thread. A failure stops the member with the same words
    /// either way.
    fn apply(&mut self, es: Vec<raft::eraftpb::Entry>, sole: bool) -> Result<()> {
        let es = if sole {
            match self.apply.try_inline(es) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "apply failed; the member stops");
                    self.shared.failure.send_replace(Some(e.to_string()));
                    return Err(e);
                }
                Err(es) => es,
            }
        } else {
            es
        };
        self.apply.send(ApplyTask::Entries(es))
    }

    /// Is this member the cluster's only member (one voter, itself; no learners)?
    fn sole_voter(&self) -> bool {
        let prs = self.raw.raft.prs();
        prs.iter().count() == 1 && prs.get(self.raw.raft.id).is_some()
    }

    fn send(&mut self, msgs: Vec<raft::eraftpb::Message>) {
        let late = self.heartbeats.observe(&msgs, Instant::now());
        if late > 0 {
            self.shared.counters.heartbeats_late.fetch_add(late, Ordering::Relaxed);
        }
        self.transport.send(msgs);
    }

    fn soft_state(&mut self, leader: u64, role: StateRole) {
        let old = self.shared.leader.swap(leader, Ordering::SeqCst);
        let (id, term) = (self.shared.id, self.raw.raft.term);
        if old != leader && leader != raft::INVALID_ID {
            self.shared.counters.leader_changes.fetch_add(1, Ordering::Relaxed);
            // etcd's raft.node lines, which operators' alerts match.
            if old == raft::INVALID_ID {
                tracing::info!("raft.node: {id:x} elected leader {leader:x} at term {term}");
            } else {
                tracing::info!(
                    "raft.node: {id:x} changed leader from {old:x} to {leader:x} at term {term}"
                );
            }
        } else if old != leader && old != raft::INVALID_ID {
            tracing::info!("raft.node: {id:x} lost leader {old:x} at term {term}");
        }
        self.shared.leader_watch.send_replace(leader);
        let was = self.role == StateRole::Leader;
        let is = role == StateRole::Leader;
        if was != is {
            self.linger.reset();
            self.heartbeats.reset();
        }
        self.role = role;
        self.shared.is_leader.store(is, Ordering::SeqCst);
        self.shared.term.store(self.raw.raft.term, Ordering::Relaxed);
        if was != is {
            tracing::info!(id = %format!("{:x}", self.shared.id), leader = is, term = self.raw.raft.term, "leadership changed");
            self.shared.sm.on_leader_change(is);
        }
        if leader == raft::INVALID_ID {
            if let Some((_, txs, _)) = self.reads_inflight.take() {
                for tx in txs {
                    let _ = tx.send(Err(ReplicationError::NoLeader));
                }
            }
        }
    }

    /// State machine first (so a crash in between leaves a state machine ahead of the log,
    /// which restart tolerates), then the log marker.
    fn install_snapshot(
        &mut self,
        meta: &raft::eraftpb::SnapshotMetadata,
        hs: Option<&raft::eraftpb::HardState>,
    ) -> Result<()> {
        let shared = self.shared.clone();
        shared.counters.snapshot_installing.store(1, Ordering::Relaxed);
        let r = self.install_snapshot_inner(meta, hs);
        shared.counters.snapshot_installing.store(0, Ordering::Relaxed);
        r
    }

    fn install_snapshot_inner(
        &mut self,
        meta: &raft::eraftpb::SnapshotMetadata,
        hs: Option<&raft::eraftpb::HardState>,
    ) -> Result<()> {
        let path = self.snaps.incoming(meta.index, meta.term);
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.apply.send(ApplyTask::Restore { path: path.clone(), done: tx })?;
        // The apply thread may need conf changes applied before it reaches the restore.
        let r = loop {
            select! {
                recv(rx) -> r => break r.map_err(|_| ReplicationError::Stopped)?,
                recv(self.conf_rx) -> c => {
                    if let Ok((cc, reply)) = c { self.apply_conf(cc, reply); }
                }
            }
        };
        r?;
        self.store.apply_snapshot(meta, hs)?.wait()?;
        self.snaps.prune("in-", &path);
        tracing::info!(index = meta.index, term = meta.term, "installed snapshot");
        Ok(())
    }
}
