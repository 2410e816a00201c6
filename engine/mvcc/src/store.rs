//! The MVCC store: etcd's key-value state machine on the page store.
//!
//! Buckets: `key` (revision → encoded [`KeyValue`], see [`crate::kv`]), `meta` (applied index
//! and term, scheduled and finished compaction revisions, each an 8-byte big-endian integer
//! under the names below) and `lease` (lease id → [`LeaseRecord`]). The page store's meta user
//! field holds the last revision flushed into `key` (see [`crate::pending`]).
//!
//! Writes come from the apply path only, one at a time (a mutex), each tagged with the index of
//! the log entry it applies; reads run concurrently with writes and with each other.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::counters::{EventObserver, OpCounts};
use crate::error::{MvccError, Result};
use crate::kv::{self, KeyValue};
use crate::lease::Lessor;
use crate::pending::{Pending, PendingKv, PendingMeta};
use crate::request::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::revision::Revision;
use crate::tree_index::TreeIndex;
use crate::watch::WatchHub;
use rusted_engine::{Db, DbOptions, ReadTx};

/// Bucket of key-values by revision.
pub const KEY_BUCKET: &[u8] = b"key";
/// Bucket of the store's own state.
pub const META_BUCKET: &[u8] = b"meta";
/// Bucket of leases.
pub const LEASE_BUCKET: &[u8] = b"lease";
/// `meta` entry: index of the last applied log entry.
pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// `meta` entry: term of the last applied log entry.
pub const TERM: &[u8] = b"term";
/// `meta` entry: the revision the last compaction was asked for.
pub const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
/// `meta` entry: the revision the last finished compaction removed history up to.
pub const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";

/// Told how long each page-store commit of buffered writes took, for latency metrics.
#[derive(Clone, Default)]
pub struct CommitObserver(pub Option<Arc<dyn Fn(Duration) + Send + Sync>>);

impl std::fmt::Debug for CommitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommitObserver({})", if self.0.is_some() { "set" } else { "none" })
    }
}

/// Told, once, that the store failed for good: a background flush or sync of the page store
/// failed, so what was applied can no longer be made durable. The owner must stop using the
/// store (a member stops: its state would drift from the cluster's).
#[derive(Clone, Default)]
pub struct FailureObserver(pub Option<Arc<FailureFn>>);

/// What a [`FailureObserver`] calls.
pub type FailureFn = dyn Fn(&MvccError) + Send + Sync;

impl std::fmt::Debug for FailureObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FailureObserver({})", if self.0.is_some() { "set" } else { "none" })
    }
}

/// Options of the store (etcd's flag names in the comments).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Flush buffered writes at least this often (--backend-batch-interval, 100 ms).
    pub batch_interval: Duration,
    /// Flush once this many changes are buffered (--backend-batch-limit, 10,000).
    pub batch_limit: usize,
    /// Revisions deleted per compaction batch (--experimental-compaction-batch-limit, 1,000).
    pub compaction_batch_limit: usize,
    /// Pause between compaction batches, so writes interleave (10 ms, as etcd).
    pub compaction_sleep: Duration,
    /// Sync the page store after this many unsynced flushes (0: only on [`Store::sync`]).
    pub sync_every_flushes: usize,
    /// Minimum lease TTL in seconds (etcd derives it from the election timeout: 2 by default).
    pub min_lease_ttl: i64,
    /// Options of the page store.
    pub db: DbOptions,
    /// Called after each commit of buffered writes.
    pub on_commit: CommitObserver,
    /// Called once if a background flush or sync fails.
    pub on_failure: FailureObserver,
    /// Told compactions', hashes' and lease grants' events.
    pub on_event: EventObserver,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            batch_interval: Duration::from_millis(100),
            batch_limit: 10_000,
            compaction_batch_limit: 1_000,
            compaction_sleep: Duration::from_millis(10),
            sync_every_flushes: 10,
            min_lease_ttl: 2,
            db: DbOptions::default(),
            on_commit: CommitObserver::default(),
            on_failure: FailureObserver::default(),
            on_event: EventObserver::default(),
        }
    }
}

/// The position of an applied log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Applied {
    /// Log index (0: not from the log — tests and tools; never recorded).
    pub index: u64,
    /// Its term.
    pub term: u64,
}

/// In-memory state readers consult: the revision index and revision counters.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub index: TreeIndex,
    /// Last main revision applied.
    pub current: i64,
    /// Revisions below this are compacted (0: none).
    pub compact: i64,
}

/// A physical compaction in progress: revisions ≤ `rev` not in `keep` are deleted in batches.
#[derive(Debug)]
pub(crate) struct CompactJob {
    pub rev: i64,
    /// When it was scheduled (its total duration is reported when it ends).
    pub scheduled: Instant,
    /// While the index is being compacted (in chunks): the key to continue from.
    pub index_next: Option<Vec<u8>>,
    /// Revisions ≤ `rev` to keep (complete once `index_next` is None).
    pub keep: std::collections::HashSet<Revision>,
    /// Bucket key to resume from.
    pub next: Vec<u8>,
}

/// The writer's state (under the writer mutex).
#[derive(Debug)]
pub(crate) struct Writer {
    pub applied: Applied,
    pub meta: PendingMeta,
    pub last_flush: Instant,
    pub unsynced_flushes: usize,
    pub compaction: Option<CompactJob>,
    /// Finished compaction revision (persisted when its job ends).
    pub finished_compact: i64,
}

pub(crate) struct Inner {
    pub db: Db,
    pub ops: OpCounts,
    pub opts: StoreOptions,
    pub state: RwLock<State>,
    pub pending: Pending,
    pub writer: Mutex<Writer>,
    pub lessor: Mutex<Lessor>,
    pub watch: Arc<WatchHub>,
    /// Wakes the background thread (a compaction to run, or closing).
    pub wake: Condvar,
    /// Signalled when a compaction job ends.
    pub compacted: Condvar,
    pub closed: AtomicBool,
    /// Why the store failed for good (a background flush or sync failed), once it has.
    pub failure: std::sync::OnceLock<String>,
}

/// The MVCC store. Cheap to share (`Arc` inside); a background thread flushes buffered writes
/// and runs physical compactions until the last handle is dropped or [`Store::close`] is called.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    threads: Arc<Threads>,
}

/// The background threads; stopped (and the store flushed and synced) when the last handle
/// goes away, or by [`Store::close`].
struct Threads {
    inner: Arc<Inner>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Threads {
    fn stop(&self) -> Result<()> {
        self.inner.closed.store(true, AtomicOrdering::SeqCst);
        {
            // Under the writer lock, so the flush thread is either waiting (and gets the
            // signal) or busy (and sees the flag before it waits again).
            let _w = self.inner.lock_writer();
            self.inner.wake.notify_all();
        }
        self.inner.watch.close();
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        if handles.is_empty() {
            return Ok(());
        }
        for h in handles {
            let _ = h.join();
        }
        self.inner.flush_and_sync()
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "closing the mvcc store failed");
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.read_state();
        f.debug_struct("Store").field("current", &st.current).field("compact", &st.compact).finish()
    }
}

/// Reads an 8-byte big-endian `meta` entry (None: absent).
fn meta_u64(tx: &ReadTx, name: &[u8]) -> Result<Option<u64>> {
    match tx.get(META_BUCKET, name)? {
        None => Ok(None),
        Some(b) => b
            .try_into()
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|_| MvccError::Corrupt(format!("meta entry {name:?} is {} bytes", b.len()))),
    }
}

impl Inner {
    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits every buffered write and syncs the page store.
    pub(crate) fn flush_and_sync(&self) -> Result<()> {
        let mut w = self.lock_writer();
        crate::background::flush(self, &mut w)?;
        self.db.sync()?;
        w.unsynced_flushes = 0;
        Ok(())
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn watch_forget(&self, w: &crate::watch::Watcher) {
        self.watch.forget(w);
    }

    pub(crate) fn lock_lessor(&self) -> MutexGuard<'_, Lessor> {
        self.lessor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The change at `rev` (a put, or a deletion: `true`): from `tx` up to its flushed
    /// revision, else from the buffer — or, when it was flushed (and dropped from the buffer)
    /// after `tx` began, from a newer snapshot: a revision's value never changes.
    pub(crate) fn fetch_change(&self, tx: &ReadTx, rev: Revision) -> Result<(KeyValue, bool)> {
        let flushed = tx.user()[0] as i64;
        if rev.main > flushed {
            if let Some(PendingKv { tombstone, bytes }) = self.pending.get(rev) {
                return decode_change(&bytes, rev, tombstone);
            }
            let fresh = self.db.begin_read()?;
            return self.stored(&fresh, rev);
        }
        self.stored(tx, rev)
    }

    fn stored(&self, tx: &ReadTx, rev: Revision) -> Result<(KeyValue, bool)> {
        for tomb in [false, true] {
            let (key, n) = rev.key_bytes(tomb);
            if let Some(b) = tx.get(KEY_BUCKET, &key[..n])? {
                return decode_change(b, rev, tomb);
            }
        }
        let compact = self.read_state().compact;
        if rev.main <= compact {
            // Physically compacted while the read was under way.
            return Err(MvccError::Compacted { compact_revision: compact });
        }
        Err(MvccError::Corrupt(format!("revision {rev:?} is indexed but not stored")))
    }

    /// The key-value a put at `rev` stored.
    pub(crate) fn fetch(&self, tx: &ReadTx, rev: Revision) -> Result<KeyValue> {
        Ok(self.fetch_change(tx, rev)?.0)
    }
}

fn decode_change(b: &[u8], rev: Revision, tomb: bool) -> Result<(KeyValue, bool)> {
    let mut kv = KeyValue::decode(b, rev.main)?;
    if tomb {
        kv.create_revision = 0;
        kv.version = 0;
        kv.lease = 0;
    }
    Ok((kv, tomb))
}

/// The keys a range returns, before values are read.
pub(crate) struct Plan {
    pub keys: Vec<(Vec<u8>, crate::key_index::Visible)>,
    pub total: usize,
    pub current: i64,
}

impl Store {
    /// Opens (or creates) the store at `path`, rebuilding the index from the `key` bucket.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let db = Db::open(path, opts.db.clone())?;
        {
            let mut tx = db.begin_write()?;
            for b in [KEY_BUCKET, META_BUCKET, LEASE_BUCKET] {
                tx.create_bucket_if_missing(b)?;
            }
            tx.commit()?;
        }
        let (state, writer, lessor) = crate::restore::restore(&db, &opts)?;
        let inner = Arc::new(Inner {
            db,
            ops: OpCounts::default(),
            state: RwLock::new(state),
            pending: Pending::default(),
            writer: Mutex::new(writer),
            lessor: Mutex::new(lessor),
            watch: Arc::new(WatchHub::default()),
            wake: Condvar::new(),
            compacted: Condvar::new(),
            closed: AtomicBool::new(false),
            failure: std::sync::OnceLock::new(),
            opts,
        });
        inner.watch.set_published(inner.read_state().current);
        let spawn = |name: &str, f: fn(&Inner)| {
            let bg = inner.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&bg))
                .map_err(|e| MvccError::Corrupt(format!("cannot start thread {name}: {e}")))
        };
        let threads = vec![
            spawn("mvcc-flush", crate::background::run)?,
            spawn("mvcc-watch", crate::watch_sync::run)?,
        ];
        Ok(Store {
            threads: Arc::new(Threads { inner: inner.clone(), handles: Mutex::new(threads) }),
            inner,
        })
    }

    /// Flushes, syncs and stops the background threads. Later writes fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        self.threads.stop()
    }

    /// The last applied main revision.
    pub fn current_revision(&self) -> i64 {
        self.inner.read_state().current
    }

    /// The compacted revision (0: none).
    pub fn compact_revision(&self) -> i64 {
        self.inner.read_state().compact
    }

    /// Why the store failed for good, if it has (see [`FailureObserver`]).
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.get().cloned()
    }

    /// Index and term of the last applied log entry.
    pub fn applied(&self) -> Applied {
        self.inner.lock_writer().applied
    }

    /// Number of keys that currently exist.
    pub fn key_count(&self) -> usize {
        let st = self.inner.read_state();
        st.index.range(&[0], &[0], st.current, 0).1
    }

    /// The page store (stats, defrag, snapshots).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The watch hub (watchers of this store's changes).
    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.inner.watch
    }

    /// Commits every buffered write to the page store (no fsync).
    pub fn flush(&self) -> Result<()> {
        let mut w = self.inner.lock_writer();
        crate::background::flush(&self.inner, &mut w)
    }

    /// Flushes and makes everything applied durable in the page store (so the log before the
    /// applied index can be released).
    pub fn sync(&self) -> Result<()> {
        self.inner.flush_and_sync()
    }

    /// Serves a range (etcd's Range, outside a txn).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.inner.ops.ranges.fetch_add(1, AtomicOrdering::Relaxed);
        range(&self.inner, req)
    }

    /// Operations seen since the store was opened.
    pub fn op_counts(&self) -> &OpCounts {
        &self.inner.ops
    }

    /// The value of one key at revision `at` (≤ 0: current), as a range of that key.
    pub fn get(&self, key: &[u8], at: i64) -> Result<Option<KeyValue>> {
        get_at(&self.inner, key, at)
    }

    /// Every stored change (puts and deletions) to keys in the range (`end` encoded as in a
    /// range) with main revision in `[from, to]`, in revision order, at most `max_revs` whole
    /// revisions (0: all).
    /// Deletions come with only the key and mod revision set. For watchers catching up.
    pub fn changes(
        &self,
        key: &[u8],
        end: &[u8],
        from: i64,
        to: i64,
        max_revs: usize,
    ) -> Result<Vec<(KeyValue, bool)>> {
        changes(&self.inner, key, end, from, to, max_revs)
    }

    /// Starts a watch stream on this store (see [`crate::watch`]).
    pub fn watch_stream(
        &self,
        capacity: usize,
    ) -> (crate::watch::WatchStream, crate::watch::WatchReceiver) {
        self.inner.watch.stream(capacity)
    }
}

/// See [`Store::changes`].
pub(crate) fn changes(
    inner: &Inner,
    key: &[u8],
    end: &[u8],
    from: i64,
    to: i64,
    max_revs: usize,
) -> Result<Vec<(KeyValue, bool)>> {
    let tx = inner.db.begin_read()?;
    let revs: Vec<Revision> = {
        let st = inner.read_state();
        if from < st.compact {
            return Err(MvccError::Compacted { compact_revision: st.compact });
        }
        let mut revs: Vec<Revision> = st
            .index
            .range_since(key, end, from)
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.main <= to)
            .collect();
        if max_revs > 0 {
            // Whole revisions only: cut before the (max_revs + 1)-th distinct main revision.
            let mut distinct = 0;
            let mut last = None;
            let cut = revs.iter().position(|r| {
                if last != Some(r.main) {
                    distinct += 1;
                    last = Some(r.main);
                }
                distinct > max_revs
            });
            if let Some(c) = cut {
                revs.truncate(c);
            }
        }
        revs
    };
    revs.into_iter().map(|rev| inner.fetch_change(&tx, rev)).collect()
}

/// The key's key-value at revision `at` (≤ 0: current).
pub(crate) fn get_at(inner: &Inner, key: &[u8], at: i64) -> Result<Option<KeyValue>> {
    let req = RangeRequest { key: key.to_vec(), revision: at, ..Default::default() };
    Ok(range(inner, &req)?.kvs.pop())
}

/// See [`Store::range`].
pub(crate) fn range(inner: &Inner, req: &RangeRequest) -> Result<RangeResponse> {
    req.validate()?;
    let tx = inner.db.begin_read()?;
    let plan = {
        let st = inner.read_state();
        plan_range(&st, req, st.current, None)?
    };
    finish_range(inner, &tx, req, plan)
}

/// Checks the revision and picks the keys a range returns (etcd's Range in apply.go and
/// rangeKeys in the mvcc store). `current` is the revision of the view (a write txn's view is
/// one ahead once it wrote); `begin` is the store's revision before the txn (checked against
/// for explicit revisions, as etcd's pre-apply check does).
pub(crate) fn plan_range(
    st: &State,
    req: &RangeRequest,
    current: i64,
    begin: Option<i64>,
) -> Result<Plan> {
    let at = range_revision(st, req, current, begin)?;
    let fetch_all = req.sort_order != SortOrder::None
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let limit = if fetch_all || req.limit <= 0 { 0 } else { req.limit as usize + 1 };
    let (keys, total) = st.index.range(&req.key, &req.range_end, at, limit);
    let keys = if req.count_only {
        Vec::new()
    } else {
        keys.into_iter().map(|(k, v)| (k.to_vec(), v)).collect()
    };
    Ok(Plan { keys, total, current })
}

/// The revision a range reads at, checked as [`plan_range`] documents.
pub(crate) fn range_revision(
    st: &State,
    req: &RangeRequest,
    current: i64,
    begin: Option<i64>,
) -> Result<i64> {
    let at = if req.revision <= 0 { current } else { req.revision };
    if req.revision > begin.unwrap_or(current) {
        return Err(MvccError::FutureRevision);
    }
    if at < st.compact {
        return Err(MvccError::Compacted { compact_revision: st.compact });
    }
    Ok(at)
}

/// Reads the values of a planned range and shapes the response as etcd does: filters, sort,
/// limit and `more`, keys_only.
pub(crate) fn finish_range(
    inner: &Inner,
    tx: &ReadTx,
    req: &RangeRequest,
    plan: Plan,
) -> Result<RangeResponse> {
    let kvs = plan
        .keys
        .iter()
        .map(|(_, vis)| inner.fetch(tx, vis.modified))
        .collect::<Result<Vec<_>>>()?;
    Ok(shape_range(req, kvs, plan.total, plan.current))
}

/// Filters, sorts and limits fetched key-values as etcd's apply.go Range does.
pub(crate) fn shape_range(
    req: &RangeRequest,
    mut kvs: Vec<KeyValue>,
    total: usize,
    current: i64,
) -> RangeResponse {
    let keep = |kv: &KeyValue| {
        (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
    };
    kvs.retain(keep);
    let mut order = req.sort_order;
    if req.sort_target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        // Stable: ties stay in key order (etcd's sort is not stable; ties have no defined order).
        kvs.sort_by(|a, b| {
            let o = match req.sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend {
                o.reverse()
            } else {
                o
            }
        });
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    RangeResponse { revision: current, kvs, more, count: total as i64 }
}

/// Reads the `meta` bucket entries the store keeps.
/// Compaction revisions are -1 when absent (never compacted), as etcd's compactMainRev.
pub(crate) fn read_meta(tx: &ReadTx) -> Result<(Applied, i64, i64)> {
    let applied = Applied {
        index: meta_u64(tx, CONSISTENT_INDEX)?.unwrap_or(0),
        term: meta_u64(tx, TERM)?.unwrap_or(0),
    };
    let rev = |name| -> Result<i64> { Ok(meta_u64(tx, name)?.map_or(-1, |r| r as i64)) };
    Ok((applied, rev(SCHEDULED_COMPACT)?, rev(FINISHED_COMPACT)?))
}

/// Encoded tombstone for `key`.
pub(crate) fn tombstone_bytes(key: &[u8]) -> Arc<[u8]> {
    kv::encode_parts(key, 0, 0, 0, &[]).into()
}
