//! Applying committed entries, in order, into the state machine; proposers answered;
//! membership changes recorded; snapshots triggered.
//!
//! The [`Applier`] sits behind an [`ApplyQueue`]: the apply thread runs the tasks the raft
//! thread queues, and a sole voter's raft thread applies ordinary entries itself when nothing
//! is queued (so a put on a one-member cluster is answered from the thread that made it durable,
//! with no hand-off to the apply thread and back). Membership changes, snapshot restores and
//! anything queued behind them stay on the apply thread: a conf change waits for the raft
//! thread, which must not be the one waiting.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver, Sender};
use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType};
use serde::{Deserialize, Serialize};

use crate::error::{ReplicationError, Result};
use crate::machine::StateMachine;
use crate::membership::{ClusterRecord, Member};
use crate::node::Input;
use crate::shared::{decode_ctx, Shared, Waiter, KIND_MEMBER_UPDATE, KIND_PROPOSAL};
use crate::transport::Transport;

/// Largest number of learners (etcd's maxLearners).
pub const MAX_LEARNERS: usize = 1;

/// What a conf change carries in its context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConfContext {
    pub member: Member,
    #[serde(default)]
    pub promote: bool,
}

/// A member attribute or peer-URL update (a normal entry of kind `KIND_MEMBER_UPDATE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemberUpdate {
    pub id: u64,
    pub name: Option<String>,
    pub client_urls: Option<Vec<String>>,
    pub peer_urls: Option<Vec<String>>,
}

pub(crate) enum ApplyTask {
    Entries(Vec<Entry>),
    Restore { path: PathBuf, done: Sender<Result<()>> },
}

pub(crate) struct Applier<S: StateMachine> {
    pub shared: Arc<Shared<S>>,
    pub node: Sender<Input>,
    pub conf: Sender<(ConfChangeV2, Sender<Result<ConfState>>)>,
    pub transport: Arc<dyn Transport>,
    pub snapshot_count: u64,
    pub applied: u64,
    pub last_compact: u64,
}

/// The applier, shared by the apply thread and (through [`ApplySender::try_inline`]) the raft
/// thread.
pub(crate) struct ApplyQueue<S: StateMachine> {
    applier: Mutex<Applier<S>>,
    /// Tasks sent to the apply thread and not yet finished. Only the raft thread adds to it
    /// (before sending), so when it reads zero every task it sent has been applied.
    queued: AtomicUsize,
}

/// The raft thread's end of the apply queue. Dropping it ends the apply thread.
pub(crate) struct ApplySender<S: StateMachine> {
    queue: Arc<ApplyQueue<S>>,
    tx: Sender<ApplyTask>,
}

impl<S: StateMachine> ApplySender<S> {
    /// Queues a task for the apply thread.
    pub fn send(&self, task: ApplyTask) -> Result<()> {
        self.queue.queued.fetch_add(1, Ordering::SeqCst);
        self.tx.send(task).map_err(|_| {
            self.queue.queued.fetch_sub(1, Ordering::SeqCst);
            ReplicationError::Stopped
        })
    }

    /// Applies `es` on the calling thread if nothing is queued before them and none of them is
    /// a membership change; otherwise gives them back. An error is the state machine's (the
    /// member stops).
    pub fn try_inline(&self, es: Vec<Entry>) -> std::result::Result<Result<()>, Vec<Entry>> {
        if self.queue.queued.load(Ordering::SeqCst) != 0
            || es.iter().any(|e| e.get_entry_type() != EntryType::EntryNormal)
        {
            return Err(es);
        }
        let mut a = self.queue.applier.lock().unwrap_or_else(|p| p.into_inner());
        Ok(a.apply_entries(es))
    }
}

impl<S: StateMachine> ApplyQueue<S> {
    /// The queue, the raft thread's sender, and the receiver the apply thread runs
    /// ([`ApplyQueue::run`]).
    pub fn new(applier: Applier<S>) -> (Arc<Self>, ApplySender<S>, Receiver<ApplyTask>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let queue =
            Arc::new(ApplyQueue { applier: Mutex::new(applier), queued: AtomicUsize::new(0) });
        (queue.clone(), ApplySender { queue, tx }, rx)
    }

    /// The apply thread's body: runs queued tasks until the raft thread goes away or a task
    /// fails (then the member stops).
    pub fn run(&self, rx: Receiver<ApplyTask>) {
        for task in rx {
            let r = {
                let mut a = self.applier.lock().unwrap_or_else(|p| p.into_inner());
                a.run_task(task)
            };
            self.queued.fetch_sub(1, Ordering::SeqCst);
            if let Err(e) = r {
                tracing::error!(error = %e, "apply failed; the member stops");
                let a = self.applier.lock().unwrap_or_else(|p| p.into_inner());
                let _ = a.node.send(Input::Fatal(e.to_string()));
                return;
            }
        }
    }
}

impl<S: StateMachine> Applier<S> {
    fn run_task(&mut self, task: ApplyTask) -> Result<()> {
        match task {
            ApplyTask::Entries(es) => self.apply_entries(es),
            ApplyTask::Restore { path, done } => {
                let r = self.restore(&path);
                let failed = r.as_ref().err().map(ToString::to_string);
                let _ = done.send(r);
                failed.map_or(Ok(()), |m| Err(ReplicationError::StateMachine(m)))
            }
        }
    }

    fn restore(&mut self, path: &std::path::Path) -> Result<()> {
        self.shared.sm.restore(path)?;
        self.applied = self.shared.sm.applied();
        self.last_compact = self.applied;
        if let Some(b) = self.shared.sm.cluster()? {
            let rec = ClusterRecord::decode(&b)?;
            for m in rec.members.values().filter(|m| m.id != self.shared.id) {
                self.transport.set_peer(m.id, &m.peer_urls);
            }
            self.shared.set_cluster(rec);
        }
        self.shared.applied.send_replace(self.applied);
        self.shared.counters.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn apply_entries(&mut self, es: Vec<Entry>) -> Result<()> {
        // Raft reads the applied index from `shared.applied` on its next turn; it is told at
        // once only after entries it may be waiting on (empty entries: a new leader's first).
        let mut tell_raft = false;
        for e in es {
            if e.index <= self.applied {
                continue;
            }
            let own = decode_ctx(&e.context).filter(|(m, _)| *m == self.shared.id).map(|(_, s)| s);
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {
                    self.shared.sm.apply_noop(e.index, e.term)?;
                    tell_raft = true;
                }
                EntryType::EntryNormal => match e.data[0] {
                    KIND_PROPOSAL => {
                        let out = self.shared.sm.apply(e.index, e.term, &e.data[1..])?;
                        if let Some(Waiter::Proposal(tx)) =
                            own.and_then(|s| self.shared.take_waiter(s))
                        {
                            let _ = tx.send(Ok(out));
                        }
                    }
                    KIND_MEMBER_UPDATE => {
                        let r = self.member_update(&e)?;
                        self.answer_members(own, e.index, r);
                    }
                    k => {
                        tracing::warn!(index = e.index, kind = k, "unknown entry kind; skipped");
                        self.shared.sm.apply_noop(e.index, e.term)?;
                    }
                },
                EntryType::EntryConfChangeV2 => {
                    let r = self.conf_change(&e)?;
                    self.answer_members(own, e.index, r);
                }
                EntryType::EntryConfChange => {
                    // Never proposed by rusted; keep the index moving.
                    self.shared.sm.apply_noop(e.index, e.term)?;
                }
            }
            self.applied = e.index;
        }
        self.shared.applied.send_replace(self.applied);
        if tell_raft {
            let _ = self.node.send(Input::Applied(self.applied));
        }
        if self.applied.saturating_sub(self.last_compact) >= self.snapshot_count {
            self.shared.sm.sync()?;
            self.last_compact = self.applied;
            let _ = self.node.send(Input::Compact(self.applied));
        }
        Ok(())
    }

    /// Raft learns of the application before the proposer does, so a membership change the
    /// proposer makes next is not refused as "another change is unapplied".
    fn answer_members(&self, own: Option<u64>, index: u64, r: Result<Vec<Member>>) {
        let _ = self.node.send(Input::Applied(index));
        if let Some(Waiter::Members(tx)) = own.and_then(|s| self.shared.take_waiter(s)) {
            let _ = tx.send(r);
        }
    }

    /// Applies a membership change; a change that fails validation is applied as a no-op (on
    /// every member alike, since the check reads only the replicated record).
    fn conf_change(&mut self, e: &Entry) -> Result<Result<Vec<Member>>> {
        let parsed =
            ConfChangeV2::parse_from_bytes(&e.data).map_err(|err| err.to_string()).and_then(|cc| {
                let ctx: ConfContext =
                    serde_json::from_slice(cc.get_context()).map_err(|err| err.to_string())?;
                Ok((cc, ctx))
            });
        let (cc, ctx) = match parsed {
            Ok(x) => x,
            Err(m) => {
                tracing::warn!(index = e.index, error = %m, "undecodable conf change; skipped");
                self.shared.sm.apply_noop(e.index, e.term)?;
                return Ok(Err(ReplicationError::Corrupt { what: "conf change", detail: m }));
            }
        };
        let mut rec = self.shared.cluster();
        let verdict = validate(&rec, &cc, &ctx).and_then(|()| {
            let (tx, rx) = bounded(1);
            self.conf.send((cc.clone(), tx)).map_err(|_| ReplicationError::Stopped)?;
            rx.recv().map_err(|_| ReplicationError::Stopped)?
        });
        match verdict {
            Ok(_cs) => {
                let Some(ch) = cc.changes.first() else {
                    self.shared.sm.apply_noop(e.index, e.term)?;
                    return Ok(Ok(rec.list()));
                };
                let id = ch.node_id;
                match ch.get_change_type() {
                    ConfChangeType::RemoveNode => {
                        rec.members.remove(&id);
                        rec.removed.insert(id);
                        if id == self.shared.id {
                            self.shared.removed.send_replace(true);
                        } else {
                            self.transport.remove_peer(id);
                        }
                    }
                    t => {
                        let learner = t == ConfChangeType::AddLearnerNode;
                        if ctx.promote {
                            if let Some(m) = rec.members.get_mut(&id) {
                                m.is_learner = false;
                            }
                        } else {
                            let mut m = ctx.member.clone();
                            m.is_learner = learner;
                            if id != self.shared.id {
                                self.transport.set_peer(id, &m.peer_urls);
                            }
                            rec.members.insert(id, m);
                        }
                    }
                }
                self.shared.sm.apply_cluster(e.index, e.term, &rec.encode())?;
                let list = rec.list();
                self.shared.set_cluster(rec);
                Ok(Ok(list))
            }
            Err(err) => {
                self.shared.sm.apply_noop(e.index, e.term)?;
                Ok(Err(err))
            }
        }
    }

    /// Applies a member update: the outer error is a failure of the state machine (the member
    /// stops), the inner one the refusal its proposer gets.
    fn member_update(&mut self, e: &Entry) -> Result<Result<Vec<Member>>> {
        let u: MemberUpdate = match serde_json::from_slice(&e.data[1..]) {
            Ok(u) => u,
            Err(err) => {
                self.shared.sm.apply_noop(e.index, e.term)?;
                return Ok(Err(ReplicationError::Corrupt {
                    what: "member update",
                    detail: err.to_string(),
                }));
            }
        };
        let mut rec = self.shared.cluster();
        let check = match rec.members.get(&u.id) {
            None => Err(ReplicationError::MemberNotFound),
            Some(_) if u.peer_urls.as_ref().is_some_and(|p| rec.peer_url_taken(p, u.id)) => {
                Err(ReplicationError::PeerUrlExists)
            }
            Some(_) => Ok(()),
        };
        if let Err(err) = check {
            self.shared.sm.apply_noop(e.index, e.term)?;
            return Ok(Err(err));
        }
        if let Some(m) = rec.members.get_mut(&u.id) {
            if let Some(n) = u.name {
                m.name = n;
            }
            if let Some(c) = u.client_urls {
                m.client_urls = c;
            }
            if let Some(p) = u.peer_urls {
                if u.id != self.shared.id {
                    self.transport.set_peer(u.id, &p);
                }
                m.peer_urls = p;
            }
        }
        self.shared.sm.apply_cluster(e.index, e.term, &rec.encode())?;
        let list = rec.list();
        self.shared.set_cluster(rec);
        Ok(Ok(list))
    }
}

/// etcd's ValidateConfigurationChange, on the replicated record.
fn validate(rec: &ClusterRecord, cc: &ConfChangeV2, ctx: &ConfContext) -> Result<()> {
    let Some(ch) = cc.changes.first() else { return Ok(()) };
    let id = ch.node_id;
    if rec.removed.contains(&id) {
        return Err(ReplicationError::MemberRemoved);
    }
    match ch.get_change_type() {
        ConfChangeType::RemoveNode => {
            if !rec.members.contains_key(&id) {
                return Err(ReplicationError::MemberNotFound);
            }
        }
        t if ctx.promote => {
            debug_assert_eq!(t, ConfChangeType::AddNode);
            match rec.members.get(&id) {
                None => return Err(ReplicationError::MemberNotFound),
                Some(m) if !m.is_learner => return Err(ReplicationError::MemberNotLearner),
                Some(_) => {}
            }
        }
        t => {
            if rec.members.contains_key(&id) {
                return Err(ReplicationError::MemberExists);
            }
            if rec.peer_url_taken(&ctx.member.peer_urls, id) {
                return Err(ReplicationError::PeerUrlExists);
            }
            if t == ConfChangeType::AddLearnerNode
                && rec.members.values().filter(|m| m.is_learner).count() >= MAX_LEARNERS
            {
                return Err(ReplicationError::TooManyLearners);
            }
        }
    }
    Ok(())
}
