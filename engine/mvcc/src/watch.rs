//! Watchers (etcd's watchableStore): streams of change events for a key or range from a start
//! revision.
//!
//! A watcher is either *synced* — it has every event up to the last published revision and
//! gets new ones as each write txn publishes them — or *unsynced*: it is behind (it started
//! in the past, or its stream's channel was full) and a catch-up thread reads its events from
//! the store, up to 1,000 revisions per response, until it is level again. A writer never waits
//! for a watcher: a full channel moves the watcher to the unsynced group, which keeps only its
//! next revision (memory stays bounded by the channel capacities). Each event is delivered
//! once, in revision order: the catch-up moves a watcher back to synced under the hub lock,
//! and only if nothing was published after the revision it read up to.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::kv::KeyValue;

/// Id of a watcher within its stream.
pub type WatchId = i64;

/// Most revisions a catch-up response carries (etcd's watchBatchMaxRevs).
pub const WATCH_BATCH_MAX_REVS: usize = 1000;
/// Watchers caught up per sync round (etcd's maxWatchersPerSync).
pub const MAX_WATCHERS_PER_SYNC: usize = 512;
/// Responses a stream buffers before its watchers fall behind (etcd's chanBufLen).
pub const STREAM_BUFFER: usize = 128;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The key-value after the change (a deletion: key and mod revision only).
    pub kv: KeyValue,
    /// A deletion?
    pub deleted: bool,
    /// The key-value before the change, when a watcher asked for it and there was one.
    pub prev_kv: Option<KeyValue>,
}

/// What a watcher receives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchResponse {
    /// The watcher (-1: a progress notification for the whole stream).
    pub watch_id: WatchId,
    /// Header revision.
    pub revision: i64,
    /// Events, in revision order.
    pub events: Vec<Event>,
    /// Set when the watcher was cancelled because its start revision is compacted.
    pub compact_revision: i64,
    /// The watcher is cancelled (it receives nothing more).
    pub canceled: bool,
}

/// How a watch is set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// First key (empty: etcd treats it as `"\0"`).
    pub key: Vec<u8>,
    /// End as in a range (empty: the key alone; `"\0"`: every key ≥ key).
    pub range_end: Vec<u8>,
    /// First revision to deliver (0: only future changes).
    pub start_revision: i64,
    /// Attach the previous key-value to events.
    pub prev_kv: bool,
    /// Drop put events.
    pub no_put: bool,
    /// Drop delete events.
    pub no_delete: bool,
}

/// Why a watch could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// key ≥ range end.
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    /// The id is in use on this stream.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
    /// The store is closed.
    #[error("mvcc: closed")]
    Closed,
    /// A negative start revision (below any compaction): etcd answers it as compacted.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
}

#[derive(Debug, Clone)]
pub(crate) struct Watcher {
    /// Unique over the hub's life (ids are only unique within a stream, and are reused).
    pub serial: u64,
    pub id: WatchId,
    pub opts: WatchOptions,
    /// First revision not yet delivered.
    pub next_rev: i64,
    pub tx: mpsc::Sender<WatchResponse>,
}

impl Watcher {
    pub(crate) fn matches(&self, key: &[u8]) -> bool {
        let o = &self.opts;
        match o.range_end.as_slice() {
            [] => key == o.key.as_slice(),
            [0] => key >= o.key.as_slice(),
            end => key >= o.key.as_slice() && key < end,
        }
    }

    /// The events of `events` this watcher wants.
    pub(crate) fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.kv.mod_revision >= self.next_rev && self.matches(&e.kv.key))
            .filter(|e| if e.deleted { !self.opts.no_delete } else { !self.opts.no_put })
            .map(|e| {
                let mut e = e.clone();
                if !self.opts.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

type Key = (u64, WatchId);

/// The synced watchers, with single-key watchers found by key, so publishing a write costs
/// O(watchers of its keys + range watchers), not O(all watchers).
#[derive(Debug, Default)]
pub(crate) struct SyncedGroup {
    all: BTreeMap<Key, Watcher>,
    single: HashMap<Vec<u8>, BTreeSet<Key>>,
    ranges: BTreeSet<Key>,
}

impl SyncedGroup {
    pub(crate) fn insert(&mut self, k: Key, w: Watcher) {
        if w.opts.range_end.is_empty() {
            self.single.entry(w.opts.key.clone()).or_default().insert(k);
        } else {
            self.ranges.insert(k);
        }
        if let Some(old) = self.all.insert(k, w) {
            debug_assert!(false, "watcher {k:?} inserted twice");
            self.unindex(k, &old);
        }
    }

    fn unindex(&mut self, k: Key, w: &Watcher) {
        if w.opts.range_end.is_empty() {
            if let Some(set) = self.single.get_mut(&w.opts.key) {
                set.remove(&k);
                if set.is_empty() {
                    self.single.remove(&w.opts.key);
                }
            }
        } else {
            self.ranges.remove(&k);
        }
    }

    pub(crate) fn remove(&mut self, k: &Key) -> Option<Watcher> {
        let w = self.all.remove(k)?;
        self.unindex(*k, &w);
        Some(w)
    }

    pub(crate) fn contains_key(&self, k: &Key) -> bool {
        self.all.contains_key(k)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Key> {
        self.all.keys()
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    fn clear(&mut self) {
        *self = SyncedGroup::default();
    }

    /// An upper bound on the number of [`SyncedGroup::candidates`].
    fn candidate_count(&self, events: &[Event]) -> usize {
        self.ranges.len()
            + events
                .iter()
                .map(|e| self.single.get(&e.kv.key).map_or(0, BTreeSet::len))
                .sum::<usize>()
    }

    /// Watchers that may want some of `events`.
    fn candidates(&self, events: &[Event]) -> Vec<Key> {
        let mut out: Vec<Key> = self.ranges.iter().copied().collect();
        let mut sources = usize::from(!out.is_empty());
        for e in events {
            if let Some(set) = self.single.get(&e.kv.key) {
                out.extend(set.iter().copied());
                sources += 1;
            }
        }
        if sources > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out
    }
}

#[derive(Debug, Default)]
pub(crate) struct HubState {
    /// The last revision published to synced watchers.
    pub published: i64,
    pub synced: SyncedGroup,
    pub unsynced: BTreeMap<Key, Watcher>,
    next_stream: u64,
    next_serial: u64,
    closed: bool,
}

/// Every watcher of a store.
#[derive(Debug, Default)]
pub struct WatchHub {
    state: Mutex<HubState>,
    prev_kv_watchers: AtomicUsize,
    /// Streams open now.
    streams: AtomicUsize,
    /// Events handed to streams, ever.
    events_sent: AtomicU64,
    /// Events handed to streams and not yet taken by their receivers.
    events_pending: AtomicI64,
    /// Reads of history by the catch-up thread, ever.
    history_reads: AtomicU64,
    /// Wakes the catch-up thread.
    pub(crate) wake: std::sync::Condvar,
}

impl WatchHub {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_published(&self, rev: i64) {
        self.lock().published = rev;
    }

    /// Does any watcher want previous key-values (so writes should keep them)?
    pub fn wants_prev_kv(&self) -> bool {
        self.prev_kv_watchers.load(Ordering::Relaxed) > 0
    }

    /// Number of watchers (synced, unsynced).
    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.synced.len(), s.unsynced.len())
    }

    /// What the hub counts now, for metrics.
    pub fn stats(&self) -> WatchStats {
        let (synced, unsynced) = self.counts();
        WatchStats {
            watchers: synced + unsynced,
            slow: unsynced,
            streams: self.streams.load(Ordering::Relaxed),
            events_sent: self.events_sent.load(Ordering::Relaxed),
            events_pending: self.events_pending.load(Ordering::Relaxed).max(0) as u64,
            history_reads: self.history_reads.load(Ordering::Relaxed),
        }
    }

    /// The catch-up thread read history for a watcher.
    pub(crate) fn read_history(&self) {
        self.history_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` events went into a stream's channel.
    pub(crate) fn sent(&self, n: usize) {
        self.events_sent.fetch_add(n as u64, Ordering::Relaxed);
        self.events_pending.fetch_add(n as i64, Ordering::Relaxed);
    }

    /// A new stream; its watchers' responses arrive on the returned receiver.
    pub fn stream(self: &Arc<Self>, capacity: usize) -> (WatchStream, WatchReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let mut s = self.lock();
        s.next_stream += 1;
        let id = s.next_stream;
        self.streams.fetch_add(1, Ordering::Relaxed);
        (
            WatchStream { hub: self.clone(), id, tx, next_id: 0 },
            WatchReceiver { rx, hub: self.clone() },
        )
    }

    /// Publishes the events of the write txn at `rev` to synced watchers. A watcher whose
    /// stream is full falls behind (unsynced) instead of blocking the writer.
    pub(crate) fn notify(&self, rev: i64, events: Vec<Event>) {
        let mut s = self.lock();
        debug_assert!(rev > s.published, "revisions are published in order");
        s.published = rev;
        let mut behind = Vec::new();
        let mut gone = Vec::new();
        let mut publish = |k: Key, w: &mut Watcher| {
            let mine = w.select(&events);
            if mine.is_empty() {
                w.next_rev = w.next_rev.max(rev + 1);
                return;
            }
            let n = mine.len();
            let resp =
                WatchResponse { watch_id: w.id, revision: rev, events: mine, ..Default::default() };
            match w.tx.try_send(resp) {
                Ok(()) => {
                    self.sent(n);
                    w.next_rev = rev + 1;
                }
                Err(mpsc::error::TrySendError::Full(_)) => behind.push(k),
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(k),
            }
        };
        if s.synced.candidate_count(&events).saturating_mul(4) < s.synced.len() {
            // Few watchers of these keys among many: look them up.
            for k in s.synced.candidates(&events) {
                if let Some(w) = s.synced.all.get_mut(&k) {
                    publish(k, w);
                }
            }
        } else {
            // A hot key: one pass over all is cheaper than a lookup each.
            for (k, w) in s.synced.all.iter_mut() {
                publish(*k, w);
            }
        }
        for k in gone {
            if let Some(w) = s.synced.remove(&k) {
                self.forget(&w);
            }
        }
        let wake = !behind.is_empty();
        for k in behind {
            if let Some(w) = s.synced.remove(&k) {
                s.unsynced.insert(k, w);
            }
        }
        drop(s);
        if wake {
            self.wake.notify_all();
        }
    }

    pub(crate) fn forget(&self, w: &Watcher) {
        if w.opts.prev_kv {
            self.prev_kv_watchers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Stops the hub: streams get no more events.
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.synced.clear();
        s.unsynced.clear();
        drop(s);
        self.wake.notify_all();
    }
}

/// One client stream of watches (etcd's WatchStream): many watchers, one channel.
#[derive(Debug)]
pub struct WatchStream {
    hub: Arc<WatchHub>,
    id: u64,
    tx: mpsc::Sender<WatchResponse>,
    next_id: WatchId,
}

impl WatchStream {
    /// Creates a watcher; `id` 0 picks the next free id (as etcd's AutoWatchID).
    pub fn watch(&mut self, id: WatchId, mut opts: WatchOptions) -> Result<WatchId, WatchError> {
        if opts.key.is_empty() {
            opts.key = vec![0];
        }
        if !opts.range_end.is_empty() && opts.range_end != [0] && opts.key >= opts.range_end {
            return Err(WatchError::EmptyRange);
        }
        if opts.start_revision < 0 {
            return Err(WatchError::Compacted);
        }
        let mut s = self.hub.lock();
        if s.closed {
            return Err(WatchError::Closed);
        }
        let taken = |s: &HubState, id| {
            s.synced.contains_key(&(self.id, id)) || s.unsynced.contains_key(&(self.id, id))
        };
        let id = if id == 0 {
            while taken(&s, self.next_id) {
                self.next_id += 1;
            }
            // Never hand the same id out twice in a row: responses of a cancelled watcher may
            // still be queued on the stream.
            self.next_id += 1;
            self.next_id - 1
        } else if taken(&s, id) {
            return Err(WatchError::DuplicateId);
        } else {
            id
        };
        let published = s.published;
        let start = opts.start_revision;
        if opts.prev_kv {
            self.hub.prev_kv_watchers.fetch_add(1, Ordering::Relaxed);
        }
        s.next_serial += 1;
        let w = Watcher {
            serial: s.next_serial,
            id,
            next_rev: if start == 0 || start > published {
                start.max(published + 1)
            } else {
                start
            },
            opts,
            tx: self.tx.clone(),
        };
        if start == 0 || start > published {
            s.synced.insert((self.id, id), w);
        } else {
            s.unsynced.insert((self.id, id), w);
            drop(s);
            self.hub.wake.notify_all();
        }
        Ok(id)
    }

    /// Cancels a watcher; false when there is none with that id.
    pub fn cancel(&mut self, id: WatchId) -> bool {
        let mut s = self.hub.lock();
        let w = s.synced.remove(&(self.id, id)).or_else(|| s.unsynced.remove(&(self.id, id)));
        drop(s);
        match w {
            Some(w) => {
                self.hub.forget(&w);
                true
            }
            None => false,
        }
    }

    /// Progress for the whole stream (etcd's progress request): when every watcher of the
    /// stream is synced, a response with id -1 and the published revision is queued; otherwise
    /// nothing (the watchers' own events will carry the progress).
    pub fn request_progress(&self) -> bool {
        let s = self.hub.lock();
        let behind = s.unsynced.keys().any(|(st, _)| *st == self.id);
        if behind {
            return false;
        }
        let resp = WatchResponse { watch_id: -1, revision: s.published, ..Default::default() };
        self.tx.try_send(resp).is_ok()
    }

    /// Progress for one watcher (etcd's periodic progress_notify): sent only when it is synced.
    pub fn progress(&self, id: WatchId) -> bool {
        let s = self.hub.lock();
        if !s.synced.contains_key(&(self.id, id)) {
            return false;
        }
        let resp = WatchResponse { watch_id: id, revision: s.published, ..Default::default() };
        self.tx.try_send(resp).is_ok()
    }

    /// Ids of this stream's watchers.
    pub fn ids(&self) -> Vec<WatchId> {
        let s = self.hub.lock();
        let mut v: Vec<WatchId> = s
            .synced
            .keys()
            .chain(s.unsynced.keys())
            .filter(|(st, _)| *st == self.id)
            .map(|(_, id)| *id)
            .collect();
        v.sort_unstable();
        v
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.streams.fetch_sub(1, Ordering::Relaxed);
        let mut s = self.hub.lock();
        let mine: Vec<Key> = s
            .synced
            .keys()
            .chain(s.unsynced.keys())
            .filter(|(st, _)| *st == self.id)
            .copied()
            .collect();
        let mut removed = Vec::new();
        for k in mine {
            if let Some(w) = s.synced.remove(&k).or_else(|| s.unsynced.remove(&k)) {
                removed.push(w);
            }
        }
        drop(s);
        for w in removed {
            self.hub.forget(&w);
        }
    }
}

/// What a [`WatchHub`] counts (etcd's `etcd_debugging_mvcc_watch*` metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchStats {
    /// Watchers, synced and not.
    pub watchers: usize,
    /// Watchers behind (unsynced): slow readers and catch-ups from the past.
    pub slow: usize,
    /// Streams open.
    pub streams: usize,
    /// Events handed to streams, ever.
    pub events_sent: u64,
    /// Events in streams' channels, not yet taken by the server.
    pub events_pending: u64,
    /// History reads by the catch-up thread, ever (none for a watcher whose stream is full).
    pub history_reads: u64,
}

/// The receiving end of a [`WatchStream`]: its watchers' responses, in order.
#[derive(Debug)]
pub struct WatchReceiver {
    rx: mpsc::Receiver<WatchResponse>,
    hub: Arc<WatchHub>,
}

impl WatchReceiver {
    /// The next response; `None` once the stream and the hub are gone.
    pub async fn recv(&mut self) -> Option<WatchResponse> {
        let r = self.rx.recv().await;
        if let Some(resp) = &r {
            self.hub.events_pending.fetch_sub(resp.events.len() as i64, Ordering::Relaxed);
        }
        r
    }

    /// The next response if one is waiting.
    pub fn try_recv(&mut self) -> Result<WatchResponse, mpsc::error::TryRecvError> {
        let r = self.rx.try_recv();
        if let Ok(resp) = &r {
            self.hub.events_pending.fetch_sub(resp.events.len() as i64, Ordering::Relaxed);
        }
        r
    }
}

impl Drop for WatchReceiver {
    fn drop(&mut self) {
        // What was never taken is no longer pending.
        self.rx.close();
        while let Ok(resp) = self.rx.try_recv() {
            self.hub.events_pending.fetch_sub(resp.events.len() as i64, Ordering::Relaxed);
        }
    }
}
