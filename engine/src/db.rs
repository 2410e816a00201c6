//! The store: open/create, the meta pages, readers, the commit protocol, remapping, defrag and
//! the consistency check.
//!
//! File: page 0 and 1 are the meta pages ([`crate::meta`]); page 2 the first freelist and page 3
//! the first (empty) catalog leaf of a new file. The file grows in steps of an eighth of its
//! size (1 MiB to 256 MiB), sparse; every page below a durable meta's high-water mark is inside
//! the file.
//!
//! Commit: dirty nodes are written to free pages (copy-on-write; pages a reader or the durable
//! meta can still reach are pending, not free), then fdatasync, then the meta page — always
//! into the slot that does not hold the current durable meta, so a torn meta write falls back
//! to it — then fdatasync. A no-sync commit writes the pages but no meta: readers see it from
//! memory, and the next synced commit (or [`Db::sync`]) writes a meta that covers it. Pages freed
//! after the durable meta stay pending until a later sync, so a crash always finds the durable
//! tree intact.
//!
//! Remap: the map reserves [`DbOptions::initial_mmap_size`] bytes up front (etcd reserves
//! 10 GiB); when the file outgrows it, new transactions get a new, larger map while open ones
//! keep theirs (held by `Arc`) — nobody waits for readers.
//!
//! Defrag ([`crate::defrag`]) builds a new file beside this one and swaps it in through
//! `Db::swap_in`; write transactions record their edits for it meanwhile.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::defrag::{DefragObserver, Recorder};
use crate::error::{EngineError, IoContext, Result};
use crate::freelist::Freelist;
use crate::io::{OsIo, PageIo};
use crate::meta::{Meta, META_LEN};
use crate::mmap::Map;
use crate::node::Node;
use crate::page::{Header, PageId, PageView};
use crate::tree::{Dirty, Pages};
use crate::tx::{ReadTx, WriteTx};

/// Options of a store.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Page size of a new file (an existing file keeps its own).
    pub page_size: usize,
    /// Fill factor of splits not at the end of a node (bbolt's default 0.5).
    pub fill_percent: f64,
    /// Bytes of address space mapped up front.
    pub initial_mmap_size: usize,
    /// How the file is written ([`OsIo`]; tests inject faults with [`crate::io::FaultyIo`]).
    pub io: Arc<dyn PageIo>,
    /// Told the phases of each commit (bbolt's spill and write, for etcd's metrics).
    pub on_commit: PhaseObserver,
    /// Bytes of edits a defrag keeps while it copies (see [`crate::defrag`]).
    pub defrag_delta_limit: usize,
    /// Told when a defrag's copy is done (a test seam).
    pub on_defrag_copied: DefragObserver,
}

/// How long a commit spent in its phases: `spill` (nodes split, rebalanced and encoded into
/// pages; bbolt splits the two, rusted merges while it spills) and `write` (pages and meta
/// written, and synced when the commit syncs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPhases {
    /// Nodes into pages.
    pub spill: std::time::Duration,
    /// Pages (and meta) to the file.
    pub write: std::time::Duration,
}

/// Told the phases of each commit.
#[derive(Clone, Default)]
pub struct PhaseObserver(pub Option<Arc<dyn Fn(CommitPhases) + Send + Sync>>);

impl std::fmt::Debug for PhaseObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhaseObserver({})", if self.0.is_some() { "set" } else { "none" })
    }
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            page_size: 4096,
            fill_percent: 0.5,
            initial_mmap_size: 1 << 30,
            io: Arc::new(OsIo),
            on_commit: PhaseObserver::default(),
            defrag_delta_limit: crate::defrag::DEFAULT_DELTA_LIMIT,
            on_defrag_copied: DefragObserver::default(),
        }
    }
}

/// What open transactions need: a meta and the map to read its pages from.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub meta: Meta,
    pub map: Arc<Map>,
    /// Which file (defrag swaps in a new one whose txids start over).
    pub epoch: u64,
    /// Every bucket's root page as of `meta`, read from the catalog by the first reader that
    /// needs one and shared by the rest (each read otherwise searched the catalog tree);
    /// `None` inside when the catalog could not be read whole (readers then search it).
    pub roots: Arc<OnceLock<Option<BucketRoots>>>,
}

/// Bucket names and their root pages, in catalog order.
pub(crate) type BucketRoots = Box<[(Box<[u8]>, crate::node::NodeId)]>;

impl Snapshot {
    pub(crate) fn new(meta: Meta, map: Arc<Map>, epoch: u64) -> Self {
        Snapshot { meta, map, epoch, roots: Arc::default() }
    }

    pub(crate) fn pages(&self) -> Pages {
        Pages { map: self.map.clone(), page_size: self.meta.page_size as usize, hwm: self.meta.hwm }
    }
}

#[derive(Debug)]
struct State {
    snap: Snapshot,
    /// Open readers by the txid they see.
    readers: BTreeMap<u64, usize>,
    /// Last txid whose meta is on disk and synced.
    durable_txid: u64,
    /// Meta slot (0 or 1) holding that meta.
    durable_slot: u64,
    poisoned: Option<String>,
}

/// Shared with read transactions.
#[derive(Debug)]
pub(crate) struct DbInner {
    state: Mutex<State>,
}

impl DbInner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn end_read(&self, epoch: u64, txid: u64) {
        let mut s = self.lock();
        if epoch != s.snap.epoch {
            return; // a reader of a file defrag replaced: it pins nothing in the current one
        }
        if let Some(n) = s.readers.get_mut(&txid) {
            *n -= 1;
            if *n == 0 {
                s.readers.remove(&txid);
            }
        }
    }
}

/// The writer's exclusive state.
#[derive(Debug)]
pub(crate) struct WriterState {
    freelist: Freelist,
    file: File,
    file_len: u64,
}

/// A file and map a defrag replaced; dropping it unmaps and closes them.
#[derive(Debug)]
pub(crate) struct Retired {
    _writer: WriterState,
    _snap: Snapshot,
}

/// Counters of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// File size in bytes.
    pub file_size: u64,
    /// Pages below the high-water mark.
    pub pages: u64,
    /// Free and pending pages.
    pub free_pages: u64,
    /// Current transaction id.
    pub txid: u64,
    /// Page size.
    pub page_size: u64,
    /// Read transactions open now.
    pub open_read_txs: u64,
}

/// A page store file. Share it by reference (or `Arc`); all methods take `&self`.
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    opts: DbOptions,
    inner: Arc<DbInner>,
    writer: Mutex<WriterState>,
    recorder: Recorder,
}

fn bad_file(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::BadFile { path: path.to_path_buf(), reason: reason.into() }
}

/// Takes an exclusive advisory lock, as bbolt does, so two processes never share a file.
pub(crate) fn lock_file(f: &File, path: &Path) -> Result<()> {
    rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        bad_file(path, format!("cannot lock the file (in use by another process?): {e}"))
    })
}

impl Db {
    /// Opens the store at `path`, creating it if missing.
    pub fn open(path: impl AsRef<Path>, opts: DbOptions) -> Result<Db> {
        let path = path.as_ref().to_path_buf();
        if !opts.page_size.is_power_of_two() || !(1024..=65536).contains(&opts.page_size) {
            return Err(EngineError::InvalidOption(format!("page size {}", opts.page_size)));
        }
        if !(0.1..=1.0).contains(&opts.fill_percent) {
            return Err(EngineError::InvalidOption(format!("fill percent {}", opts.fill_percent)));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        lock_file(&file, &path)?;
        let mut file_len = file.metadata().at(&path)?.len();
        if file_len == 0 {
            file_len = init_file(&file, &path, opts.page_size)?;
        }
        let (meta, slot) = choose_meta(&file, &path, file_len, opts.page_size)?;
        let map =
            Arc::new(Map::new(&file, (file_len as usize).max(opts.initial_mmap_size)).at(&path)?);
        let snap = Snapshot::new(meta, map, 0);
        let freelist = load_freelist(&snap)?;
        let inner = Arc::new(DbInner {
            state: Mutex::new(State {
                snap,
                readers: BTreeMap::new(),
                durable_txid: meta.txid,
                durable_slot: slot,
                poisoned: None,
            }),
        });
        tracing::debug!(path = %path.display(), txid = meta.txid, pages = meta.hwm, "page store opened");
        Ok(Db {
            path,
            opts,
            inner,
            writer: Mutex::new(WriterState { freelist, file, file_len }),
            recorder: Recorder::default(),
        })
    }

    pub(crate) fn fill_percent(&self) -> f64 {
        self.opts.fill_percent
    }

    /// Starts a read transaction.
    pub fn begin_read(&self) -> Result<ReadTx> {
        let snap = {
            let mut s = self.inner.lock();
            if let Some(m) = &s.poisoned {
                return Err(EngineError::Poisoned(m.clone()));
            }
            let txid = s.snap.meta.txid;
            *s.readers.entry(txid).or_insert(0) += 1;
            s.snap.clone()
        };
        Ok(ReadTx::new(self.inner.clone(), snap))
    }

    /// Starts the write transaction (waits for the current one to finish).
    pub fn begin_write(&self) -> Result<WriteTx<'_>> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let snap = {
            let s = self.inner.lock();
            if let Some(m) = &s.poisoned {
                return Err(EngineError::Poisoned(m.clone()));
            }
            // Pages freed by transactions no reader and no durable meta can see become free.
            let min_reader = s.readers.keys().next().copied().unwrap_or(s.snap.meta.txid);
            guard.freelist.release(min_reader.min(s.durable_txid));
            s.snap.clone()
        };
        Ok(WriteTx::new(self, guard, snap))
    }

    fn poison(&self, e: &EngineError) {
        let mut s = self.inner.lock();
        s.poisoned.get_or_insert_with(|| e.to_string());
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit(
        &self,
        w: &mut WriterState,
        snap: &Snapshot,
        dirty: Dirty,
        catalog: u64,
        changed: Vec<(Vec<u8>, BucketChange)>,
        user: [u64; 2],
        sync: bool,
    ) -> Result<u64> {
        let r = self.commit_inner(w, snap, dirty, catalog, changed, user, sync);
        if let Err(e) = &r {
            tracing::error!(error = %e, "page store commit failed; reopen required");
            self.poison(e);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_inner(
        &self,
        w: &mut WriterState,
        snap: &Snapshot,
        mut dirty: Dirty,
        mut catalog: u64,
        changed: Vec<(Vec<u8>, BucketChange)>,
        user: [u64; 2],
        sync: bool,
    ) -> Result<u64> {
        let txid = snap.meta.txid.checked_add(1).ok_or_else(|| EngineError::Corrupt {
            page: 0,
            reason: "transaction id overflow".into(),
        })?;
        let ps = snap.meta.page_size as usize;
        let mut hwm = snap.meta.hwm;
        let mut out: Vec<(PageId, Vec<u8>)> = Vec::new();
        let started = std::time::Instant::now();
        {
            let freelist = &mut w.freelist;
            let mut alloc = |n: usize| -> PageId {
                freelist.allocate(n).unwrap_or_else(|| {
                    let id = hwm;
                    hwm += n as u64;
                    id
                })
            };
            for (name, b) in changed {
                let root = dirty.spill(b.root, &mut alloc, &mut out)?;
                let mut v = [0u8; 16];
                v[..8].copy_from_slice(&root.to_le_bytes());
                v[8..].copy_from_slice(&b.seq.to_le_bytes());
                catalog = dirty.put(catalog, &name, &v)?;
            }
            catalog = dirty.spill(catalog, &mut alloc, &mut out)?;
        }
        // Pages this transaction replaced, and the old freelist, are pending from now on.
        for &(id, overflow) in &dirty.freed {
            w.freelist.free(txid, id, overflow)?;
        }
        let old_overflow = Header::read(snap.pages().raw(snap.meta.freelist)?).overflow;
        w.freelist.free(txid, snap.meta.freelist, old_overflow)?;
        let n = w.freelist.pages_needed(ps);
        let fl_id = w.freelist.allocate(n).unwrap_or_else(|| {
            let id = hwm;
            hwm += n as u64;
            id
        });
        out.push((fl_id, w.freelist.encode(fl_id, n, ps)));
        drop(dirty);

        let spilled = std::time::Instant::now();
        // Grow the file (sparse) to hold every page.
        let needed = hwm * ps as u64;
        if needed > w.file_len {
            // Grow by an eighth of the file (1 MiB .. 256 MiB): few size changes for fdatasync
            // to journal, little slack.
            let step = (w.file_len / 8).clamp(1 << 20, 256 << 20);
            let new_len = needed.max(w.file_len + step).div_ceil(1 << 16) << 16;
            self.opts.io.set_len(&w.file, new_len).at(&self.path)?;
            w.file_len = new_len;
        }
        write_pages(&*self.opts.io, &w.file, &self.path, out, ps)?;
        let meta = Meta { page_size: ps as u32, catalog, freelist: fl_id, hwm, txid, user };
        let mut slot = None;
        if sync {
            self.opts.io.sync_data(&w.file).at(&self.path)?;
            slot = Some(self.write_meta(&w.file, &meta, ps)?);
        }
        if let Some(f) = &self.opts.on_commit.0 {
            f(CommitPhases { spill: spilled - started, write: spilled.elapsed() });
        }
        // Publish. A bigger map, when needed, is made before taking the lock readers use, so
        // begin_read never waits for an mmap call.
        let map = if w.file_len as usize > snap.map.len() {
            let len = (w.file_len as usize).max(snap.map.len() * 2);
            Arc::new(Map::new(&w.file, len).at(&self.path)?)
        } else {
            snap.map.clone()
        };
        let mut s = self.inner.lock();
        let epoch = s.snap.epoch;
        s.snap = Snapshot::new(meta, map, epoch);
        if let Some(slot) = slot {
            s.durable_txid = txid;
            s.durable_slot = slot;
        }
        Ok(txid)
    }

    /// Writes `meta` into the slot not holding the durable meta, syncs; returns the slot.
    fn write_meta(&self, file: &File, meta: &Meta, ps: usize) -> Result<u64> {
        let slot = 1 - self.inner.lock().durable_slot;
        let mut b = vec![0u8; META_LEN];
        meta.write(slot, &mut b);
        self.opts.io.write_at(file, &b, slot * ps as u64).at(&self.path)?;
        self.opts.io.sync_data(file).at(&self.path)?;
        Ok(slot)
    }

    /// Makes every commit so far durable (after no-sync commits).
    pub fn sync(&self) -> Result<()> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (meta, durable) = {
            let s = self.inner.lock();
            if let Some(m) = &s.poisoned {
                // A failed commit may have lost pages of earlier no-sync commits: never write a
                // meta that would point at them.
                return Err(EngineError::Poisoned(m.clone()));
            }
            (s.snap.meta, s.durable_txid)
        };
        if durable == meta.txid {
            return Ok(());
        }
        let r = self
            .opts
            .io
            .sync_data(&w.file)
            .at(&self.path)
            .and_then(|()| self.write_meta(&w.file, &meta, meta.page_size as usize));
        match r {
            Ok(slot) => {
                let mut s = self.inner.lock();
                s.durable_txid = meta.txid;
                s.durable_slot = slot;
                Ok(())
            }
            Err(e) => {
                self.poison(&e);
                Err(e)
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.inner.lock();
        Stats {
            file_size: w.file_len,
            pages: s.snap.meta.hwm,
            free_pages: w.freelist.count() as u64,
            txid: s.snap.meta.txid,
            page_size: s.snap.meta.page_size as u64,
            open_read_txs: s.readers.values().map(|&n| n as u64).sum(),
        }
    }

    /// Bytes in use up to the high-water mark of the latest commit (bbolt's `tx.Size()`, what
    /// etcd compares with its backend quota). Cheap: no writer lock.
    pub fn size(&self) -> u64 {
        let s = self.inner.lock();
        s.snap.meta.hwm * s.snap.meta.page_size as u64
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Walks every reachable page and checks it (bounds, key order, kinds), that no page is
    /// reached twice, and that reachable, free and meta pages account for every page below the
    /// high-water mark exactly once.
    pub fn check(&self) -> Result<CheckReport> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.begin_read()?;
        let (pages, catalog, meta) = tx.pages_for_check();
        let mut seen = vec![false; meta.hwm as usize];
        seen[0] = true;
        seen[1] = true;
        let mut problems = Vec::new();
        let mut mark = |id: PageId, overflow: u32, what: &str, problems: &mut Vec<String>| {
            for p in id..=id + overflow as u64 {
                match seen.get_mut(p as usize) {
                    Some(s) if !*s => *s = true,
                    Some(_) => problems.push(format!("page {p} ({what}) reached twice")),
                    None => problems.push(format!("page {p} ({what}) beyond the high-water mark")),
                }
            }
        };
        let fl = pages.raw(meta.freelist)?;
        mark(meta.freelist, Header::read(fl).overflow, "freelist", &mut problems);
        let mut keys = 0u64;
        let mut roots = vec![(b"<catalog>".to_vec(), catalog)];
        walk(pages, catalog, 0, &mut mark, &mut problems, &mut |_, _| {})?;
        let mut c = crate::cursor::Cursor::new(pages, catalog);
        let mut it = c.first()?;
        while let Some((name, v)) = it {
            if v.len() == 16 {
                roots.push((name.to_vec(), crate::page::u64_at(v, 0)));
            } else {
                problems
                    .push(format!("catalog entry {:?} malformed", String::from_utf8_lossy(name)));
            }
            it = c.next()?;
        }
        for (_, root) in roots.iter().skip(1) {
            walk(pages, *root, 0, &mut mark, &mut problems, &mut |_, _| keys += 1)?;
        }
        for id in w.freelist.all_ids() {
            mark(id, 0, "free", &mut problems);
        }
        let leaked: Vec<usize> =
            seen.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| i).collect();
        if !leaked.is_empty() {
            problems.push(format!(
                "{} pages neither reachable nor free (first {})",
                leaked.len(),
                leaked[0]
            ));
        }
        Ok(CheckReport { buckets: roots.len() - 1, keys, pages: meta.hwm, problems })
    }

    pub(crate) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub(crate) fn opts(&self) -> &DbOptions {
        &self.opts
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn file_len(&self, w: &WriterState) -> u64 {
        w.file_len
    }

    /// Makes `file` — which now holds the store's name — the store: maps it and starts the
    /// transactions from then on in it. Returns its length and the old file and map, for the
    /// caller to drop once it has let writers go (unmapping a big map and closing an unlinked
    /// file, which frees its blocks, take long). Any failure poisons the store, as the name no
    /// longer holds the file the writer state describes.
    pub(crate) fn swap_in(&self, w: &mut WriterState, file: File) -> Result<(u64, Retired)> {
        let swapped = (|| -> Result<(Meta, u64, Arc<Map>, Freelist, u64)> {
            sync_parent(&self.path)?;
            let file_len = file.metadata().at(&self.path)?.len();
            let (meta, slot) = choose_meta(&file, &self.path, file_len, self.opts.page_size)?;
            let map = Arc::new(
                Map::new(&file, (file_len as usize).max(self.opts.initial_mmap_size))
                    .at(&self.path)?,
            );
            let freelist = load_freelist(&Snapshot::new(meta, map.clone(), 0))?;
            Ok((meta, slot, map, freelist, file_len))
        })();
        let (meta, slot, map, freelist, file_len) = match swapped {
            Ok(x) => x,
            Err(e) => {
                self.poison(&e);
                return Err(e);
            }
        };
        let old_writer = std::mem::replace(w, WriterState { freelist, file, file_len });
        let mut s = self.inner.lock();
        let epoch = s.snap.epoch + 1;
        let old_snap = std::mem::replace(&mut s.snap, Snapshot::new(meta, map, epoch));
        // Readers of the old file keep their own txids; new ones count from the new file's.
        s.readers.clear();
        s.durable_txid = meta.txid;
        s.durable_slot = slot;
        Ok((file_len, Retired { _writer: old_writer, _snap: old_snap }))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if self.inner.lock().poisoned.is_some() {
            return;
        }
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "page store: final sync failed");
        }
    }
}

/// What a bucket's commit needs.
#[derive(Debug, Clone)]
pub(crate) struct BucketChange {
    pub root: u64,
    pub seq: u64,
}

/// The result of [`Db::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Buckets.
    pub buckets: usize,
    /// Keys over all buckets.
    pub keys: u64,
    /// Pages in use (high-water mark).
    pub pages: u64,
    /// Everything wrong (empty: consistent).
    pub problems: Vec<String>,
}

type Mark<'m> = dyn FnMut(PageId, u32, &str, &mut Vec<String>) + 'm;

fn walk(
    pages: &Pages,
    id: PageId,
    depth: usize,
    mark: &mut Mark<'_>,
    problems: &mut Vec<String>,
    on_leaf_entry: &mut dyn FnMut(&[u8], &[u8]),
) -> Result<()> {
    if depth > crate::cursor::MAX_DEPTH {
        return Err(EngineError::Corrupt { page: id, reason: "tree too deep".into() });
    }
    let v: PageView<'_> = pages.view(id)?;
    mark(id, v.header.overflow, "tree", problems);
    v.validate()?;
    if v.is_leaf() {
        for i in 0..v.len() {
            on_leaf_entry(v.key(i)?, v.value(i)?);
        }
        return Ok(());
    }
    for i in 0..v.len() {
        walk(pages, v.child(i), depth + 1, mark, problems, on_leaf_entry)?;
    }
    Ok(())
}

fn write_pages(
    io: &dyn PageIo,
    file: &File,
    path: &Path,
    mut out: Vec<(PageId, Vec<u8>)>,
    ps: usize,
) -> Result<()> {
    out.sort_unstable_by_key(|p| p.0);
    let mut i = 0;
    while i < out.len() {
        // Coalesce runs of adjacent pages into one write.
        let start = out[i].0;
        let mut end = start + (out[i].1.len() / ps) as u64;
        let mut j = i + 1;
        while j < out.len() && out[j].0 == end {
            end += (out[j].1.len() / ps) as u64;
            j += 1;
        }
        if j == i + 1 {
            io.write_at(file, &out[i].1, start * ps as u64).at(path)?;
        } else {
            let mut buf = Vec::with_capacity(((end - start) as usize) * ps);
            for p in &out[i..j] {
                buf.extend_from_slice(&p.1);
            }
            io.write_at(file, &buf, start * ps as u64).at(path)?;
        }
        i = j;
    }
    Ok(())
}

/// Reads the freelist a meta points to (never listing its own pages as free).
fn load_freelist(snap: &Snapshot) -> Result<Freelist> {
    let pages = snap.pages();
    let raw = pages.raw(snap.meta.freelist)?;
    let mut f = Freelist::decode(raw, snap.meta.freelist, snap.meta.hwm)?;
    f.exclude(snap.meta.freelist, Header::read(raw).overflow);
    Ok(f)
}

/// Writes the four pages of a new file; returns its length.
fn init_file(file: &File, path: &Path, ps: usize) -> Result<u64> {
    let mut b = vec![0u8; 4 * ps];
    for slot in 0..2u64 {
        let m = Meta {
            page_size: ps as u32,
            catalog: 3,
            freelist: 2,
            hwm: 4,
            txid: slot,
            user: [0, 0],
        };
        m.write(slot, &mut b[slot as usize * ps..]);
    }
    let fl = Freelist::default().encode(2, 1, ps);
    b[2 * ps..3 * ps].copy_from_slice(&fl);
    let mut leaf = Vec::new();
    Node::Leaf(Vec::new()).write(3, ps, &mut leaf);
    b[3 * ps..4 * ps].copy_from_slice(&leaf);
    file.write_all_at(&b, 0).at(path)?;
    file.sync_all().at(path)?;
    sync_parent(path)?;
    Ok(b.len() as u64)
}

/// Syncs the directory holding `path`, so a file created or renamed there survives a crash.
fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    }
    Ok(())
}

/// Reads both metas; returns the valid one with the higher txid and its slot.
fn choose_meta(file: &File, path: &Path, file_len: u64, default_ps: usize) -> Result<(Meta, u64)> {
    let read = |off: u64| -> Option<Vec<u8>> {
        let mut b = vec![0u8; META_LEN];
        file.read_exact_at(&mut b, off).ok().map(|()| b)
    };
    let fits = |m: &Meta| m.hwm.checked_mul(m.page_size as u64).is_some_and(|end| end <= file_len);
    let m0 = read(0).map(|b| Meta::read(&b));
    // A meta of another format version, intact, means the file is in that format: refuse it
    // rather than fall back to the other meta (an older state) or misread it.
    let other_version = |v: u32| {
        Err(bad_file(
            path,
            format!(
                "written in page-store format version {v}; this build reads version {}",
                crate::meta::VERSION
            ),
        ))
    };
    if let Some(Err(crate::meta::BadMeta::Version(v))) = &m0 {
        return other_version(*v);
    }
    // Meta 1 sits one page in: use meta 0's page size when it can be read, else try the usual.
    let mut sizes = vec![];
    if let Some(Ok(m)) = &m0 {
        sizes.push(m.page_size as u64);
    }
    sizes.extend([default_ps as u64, 4096, 1024, 2048, 8192, 16384, 32768, 65536]);
    let mut m1_version = None;
    let m1 = sizes.iter().find_map(|&ps| {
        let b = read(ps)?;
        match Meta::read(&b) {
            Err(crate::meta::BadMeta::Version(v)) => {
                m1_version = Some(v);
                None
            }
            r => r.ok().filter(|m| m.page_size as u64 == ps),
        }
    });
    if let (None, Some(v)) = (&m1, m1_version) {
        return other_version(v);
    }
    let mut why = Vec::new();
    let m0 = match m0 {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            why.push(format!("meta 0: {e}"));
            None
        }
        None => {
            why.push("meta 0: file too short".into());
            None
        }
    };
    if m1.is_none() {
        why.push("meta 1: unreadable or invalid".into());
    }
    // The newest valid meta decides. If its pages do not fit the file, the file lost data
    // (truncated): falling back to the older meta could read pages since reused, so refuse.
    let newest = match (m0, m1) {
        (Some(a), Some(b)) if b.txid > a.txid => Some((b, 1)),
        (Some(a), _) => Some((a, 0)),
        (None, Some(b)) => Some((b, 1)),
        (None, None) => None,
    };
    match newest {
        Some((m, slot)) if fits(&m) => Ok((m, slot)),
        Some((m, slot)) => Err(bad_file(
            path,
            format!(
                "meta {slot} (txid {}) needs {} pages but the file is shorter (truncated?)",
                m.txid, m.hwm
            ),
        )),
        None => Err(bad_file(path, why.join("; "))),
    }
}
