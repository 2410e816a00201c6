//! etcd's v2 API (`--enable-v2`): the v2 keys store, replicated through raft like every
//! other write and kept in the page store beside the MVCC data (so snapshots carry it), and
//! the HTTP endpoints etcd 3.4 serves for it: `/v2/keys` ([`http`]), `/v2/members` and
//! `/v2/machines` ([`members`]), `/v2/stats/*` ([`stats`]).
//!
//! **Where a v2 write travels.** [`http`] parses the request as etcd's `parseKeyRequest`,
//! proposes a `rustedpb.V2Request`; [`crate::apply::machine`] applies it with
//! [`V2Store::apply`] on every member ([`store::Tree`] does the work), which records the
//! event in the [`event::History`] that `wait=true` reads, and saves the store's record and
//! the nodes the write changed ([`codec`]) at the entry's index.
//!
//! **Invariants.** Every member applies the same requests to the same tree: times come in
//! the request (expiry decided by the receiving member, SYNC's cutoff by the leader), never
//! from the applying member's clock, except the `ttl` seconds shown in answers.
#![forbid(unsafe_code)]

pub mod codec;
pub mod error;
pub mod event;
pub mod http;
pub mod members;
pub mod node;
pub mod stats;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusted_proto::rustedpb::V2Request;

use error::{V2Error, INVALID_FIELD};
use event::{Event, History};
use store::Tree;

/// The current time in Unix nanoseconds.
pub fn now_nanos() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The v2 store's counters (etcd's `/v2/stats/store`).
#[derive(Debug, Default)]
pub struct Stats {
    counts: [AtomicU64; 15],
}

/// The counters' names, in etcd's JSON order.
pub const STAT_NAMES: [&str; 15] = [
    "getsSuccess",
    "getsFail",
    "setsSuccess",
    "setsFail",
    "deleteSuccess",
    "deleteFail",
    "updateSuccess",
    "updateFail",
    "createSuccess",
    "createFail",
    "compareAndSwapSuccess",
    "compareAndSwapFail",
    "compareAndDeleteSuccess",
    "compareAndDeleteFail",
    "expireCount",
];

/// What a counter counts: its success counter's place in [`STAT_NAMES`] (the failure's is
/// the next).
#[derive(Debug, Clone, Copy)]
enum Op {
    Get = 0,
    Set = 2,
    Delete = 4,
    Update = 6,
    Create = 8,
    CompareAndSwap = 10,
    CompareAndDelete = 12,
    Expire = 14,
}

impl Stats {
    fn count(&self, op: Op, ok: bool) {
        let i = op as usize + usize::from(!ok && !matches!(op, Op::Expire));
        debug_assert!(i < self.counts.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        STAT_NAMES.iter().zip(&self.counts).map(|(n, c)| (*n, c.load(Ordering::Relaxed))).collect()
    }
}

/// The tree and its event history, under one lock.
#[derive(Debug)]
pub struct Inner {
    /// The keys.
    pub tree: Tree,
    /// The last 1,000 events.
    pub history: History,
}

/// The v2 store of a member.
#[derive(Debug)]
pub struct V2Store {
    inner: Mutex<Inner>,
    /// The index of the last event (watchers wake on it).
    index: tokio::sync::watch::Sender<u64>,
    /// Counters.
    pub stats: Stats,
    /// Waiting watchers.
    pub watchers: AtomicU64,
    /// When this member started (`/v2/stats/self`).
    pub started: std::time::SystemTime,
}

/// What applying a v2 request gives its proposer.
pub type V2Result = Result<Event, V2Error>;

impl V2Store {
    /// The store of a decoded tree.
    pub fn new(tree: Tree) -> Self {
        let index = tree.index;
        V2Store {
            inner: Mutex::new(Inner { history: History::starting_after(index), tree }),
            index: tokio::sync::watch::channel(index).0,
            stats: Stats::default(),
            watchers: AtomicU64::new(0),
            started: std::time::SystemTime::now(),
        }
    }

    /// The tree and history.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the tree (a snapshot was installed): watchers start over from its index.
    pub fn replace(&self, tree: Tree) {
        let mut g = self.lock();
        g.history = History::starting_after(tree.index);
        g.tree = tree;
        self.index.send_replace(g.tree.index);
    }

    /// The current index.
    pub fn index(&self) -> u64 {
        self.lock().tree.index
    }

    /// Applies a request; returns its answer (none for a SYNC) and, when it changed the
    /// tree, what to store.
    pub fn apply(&self, r: &V2Request) -> (Option<V2Result>, Option<codec::Save>) {
        let now = now_nanos();
        let mut g = self.lock();
        let t = &mut g.tree;
        if let Err(mut e) = store::check_key(&r.path) {
            e.index = t.index;
            return (Some(Err(e)), None);
        }
        let expire = (r.expiration != 0).then_some(r.expiration);
        let (kind, res) = match r.method.as_str() {
            "POST" => (Op::Create, t.create(&r.path, r.dir, r.val.clone(), true, expire, now)),
            "PUT" => match r.prev_exist {
                Some(true) if r.prev_index == 0 && r.prev_value.is_empty() => {
                    (Op::Update, t.update(&r.path, r.val.clone(), expire, r.refresh, now))
                }
                Some(false) => {
                    (Op::Create, t.create(&r.path, r.dir, r.val.clone(), false, expire, now))
                }
                Some(true) => (Op::CompareAndSwap, cas(t, r, expire, now)),
                None if r.prev_index > 0 || !r.prev_value.is_empty() => {
                    (Op::CompareAndSwap, cas(t, r, expire, now))
                }
                None => (Op::Set, t.set(&r.path, r.dir, r.val.clone(), expire, r.refresh, now)),
            },
            "DELETE" if r.prev_index > 0 || !r.prev_value.is_empty() => (
                Op::CompareAndDelete,
                t.compare_and_delete(&r.path, &r.prev_value, r.prev_index, now),
            ),
            "DELETE" => (Op::Delete, t.delete(&r.path, r.dir, r.recursive, now)),
            "SYNC" => {
                let events = t.expire(r.time, now);
                if events.is_empty() {
                    return (None, None);
                }
                for e in events {
                    self.stats.count(Op::Expire, true);
                    g.history.push(e);
                }
                let save = codec::save(&mut g.tree);
                self.index.send_replace(g.tree.index);
                return (None, Some(save));
            }
            _ => {
                let cur = t.index;
                return (Some(Err(V2Error::new(INVALID_FIELD, "unknown method", cur))), None);
            }
        };
        self.stats.count(kind, res.is_ok());
        match res {
            Ok(e) => {
                g.history.push(e.clone());
                let save = codec::save(&mut g.tree);
                self.index.send_replace(g.tree.index);
                (Some(Ok(e)), Some(save))
            }
            Err(e) => (Some(Err(e)), None),
        }
    }

    /// etcd's v2 store also holds the membership (under `/0`): each member added, removed,
    /// or updated, each publish, and the cluster version's first setting is a write there
    /// that moves the index users see. `old` → `new` is one applied membership change;
    /// the index moves as etcd's would, and what to store is returned to be saved with it.
    pub fn membership(
        &self,
        old: Option<&rusted_replication::membership::ClusterRecord>,
        new: &rusted_replication::membership::ClusterRecord,
    ) -> codec::Save {
        let mut writes = 0u64;
        match old {
            None => writes += new.members.len() as u64,
            Some(old) => {
                for (id, m) in &new.members {
                    writes += match old.members.get(id) {
                        None => 1,
                        Some(o) if o.peer_urls != m.peer_urls || o.is_learner != m.is_learner => 1,
                        Some(o) if o.name != m.name || o.client_urls != m.client_urls => 1,
                        Some(_) => 0,
                    };
                }
                let removed = old.members.keys().filter(|id| !new.members.contains_key(id));
                writes += 2 * removed.count() as u64;
                if writes == 0 {
                    // A publish of what the record already holds (every start publishes).
                    writes = 1;
                }
            }
        }
        let mut g = self.lock();
        if !g.tree.version_set && new.members.values().all(|m| !m.name.is_empty()) {
            g.tree.version_set = true;
            writes += 1;
        }
        g.tree.index += writes;
        // The history holds every index; these events are under `/0`, which no keys watcher
        // can watch, so they are not kept: a wait from before them finds the next key event.
        let save = codec::save(&mut g.tree);
        self.index.send_replace(g.tree.index);
        save
    }

    /// A read of this member's tree (counted as etcd counts gets).
    pub fn get(&self, path: &str, recursive: bool, sorted: bool) -> V2Result {
        let r = self.lock().tree.get(path, recursive, sorted, now_nanos());
        self.stats.count(Op::Get, r.is_ok());
        r
    }

    /// Waits for the first event at or after `since` (0: the next one) that a watcher of
    /// `key` is told of. `begun`: the watch began earlier (a stream's next event), so the
    /// events already in the history are judged by the rules of a waiting watcher.
    pub async fn wait(&self, key: &str, recursive: bool, since: u64, begun: bool) -> V2Result {
        let key = store::clean(key);
        let mut rx = self.index.subscribe();
        let mut since = since;
        let start;
        {
            let g = self.lock();
            start = g.tree.index;
            if since == 0 {
                since = g.tree.index + 1;
            }
            if let Some(e) = g.history.scan(&key, recursive, since, begun).map_err(|mut e| {
                e.index = g.tree.index;
                e
            })? {
                let mut e = e.clone();
                e.etcd_index = g.tree.index;
                return Ok(e);
            }
        }
        self.watchers.fetch_add(1, Ordering::Relaxed);
        let _gone = Gone(&self.watchers);
        loop {
            if rx.changed().await.is_err() {
                return Err(V2Error::new(error::WATCHER_CLEARED, "", 0));
            }
            let g = self.lock();
            if let Some(e) = g.history.scan(&key, recursive, since, true)? {
                let mut e = e.clone();
                e.etcd_index = start;
                return Ok(e);
            }
            since = since.max(g.tree.index + 1);
        }
    }
}

fn cas(t: &mut Tree, r: &V2Request, expire: Option<i64>, now: i64) -> V2Result {
    t.compare_and_swap(&r.path, &r.prev_value, r.prev_index, r.val.clone(), expire, r.refresh, now)
}

/// Counts a watcher out when its wait ends however it ends.
struct Gone<'a>(&'a AtomicU64);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
