//! Online defrag: the live data is copied into a new, compact file while writes go on; writes
//! wait only for the swap at the end, whose length grows with the writes made during the last
//! catch-up, not with the size of the database.
//!
//! 1. **Start** (writer lock held, so no write transaction is open): recording starts — from
//!    now on every committed write transaction appends its edits (puts, deletes, bucket
//!    creations and deletions, sequences, the user fields) to the [`Delta`] — and a read
//!    transaction of the latest commit is taken.
//! 2. **Copy** (no lock): that read view is written into `<name>.defrag-tmp` in batched
//!    no-sync commits ([`Db::copy_into`]).
//! 3. **Catch up** (no lock): the edits recorded so far are replayed into the copy, in rounds,
//!    until what is left is small ([`CATCH_UP_OPS`]) or [`CATCH_UP_ROUNDS`] have run.
//! 4. **Swap** (writer lock held; writes wait): the rest is replayed, recording stops, the copy
//!    is committed and synced, renamed over the store's name, the directory synced, and the new
//!    file mapped for the transactions that start from then on.
//!
//! Crash safety: until the rename the store's file is untouched (the copy is a temporary file,
//! removed by the next defrag); the copy is synced before the rename, and the rename is atomic,
//! so after a crash the name holds one complete file or the other.
//!
//! Memory: the delta holds copies of the edits made during steps 2–3. Past
//! [`DbOptions::defrag_delta_limit`] bytes it is dropped, and the defrag copies again from a
//! fresh view with the writer lock held (the stop-the-world defrag) rather than grow further.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::{Db, DbOptions};
use crate::error::{EngineError, IoContext, Result};
use crate::tx::{ReadTx, WriteTx};

/// A copy commits after this many keys (etcd's defragLimit) or bytes of keys and values,
/// whichever comes first; so does a replay of recorded edits.
pub const COPY_BATCH_KEYS: usize = 10_000;
/// See [`COPY_BATCH_KEYS`].
pub const COPY_BATCH_BYTES: usize = 8 << 20;
/// The catch-up stops when fewer edits than this wait: the swap replays them with writes held.
pub const CATCH_UP_OPS: usize = 2_000;
/// At most this many catch-up rounds (writes faster than the replay never let it converge).
pub const CATCH_UP_ROUNDS: usize = 8;
/// Default of [`DbOptions::defrag_delta_limit`].
pub const DEFAULT_DELTA_LIMIT: usize = 512 << 20;

/// Sizes and times of a defrag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragReport {
    /// File size before.
    pub before: u64,
    /// File size after.
    pub after: u64,
    /// How long write transactions were held back (the swap).
    pub paused: Duration,
    /// Edits committed during the copy and replayed into it.
    pub replayed: u64,
    /// The delta outgrew its limit and the copy was redone with writes held.
    pub stopped_the_world: bool,
}

/// What a [`DefragObserver`] calls.
pub type DefragHook = Arc<dyn Fn(&Db) + Send + Sync>;

/// Called after the copy, before the catch-up, with writes still flowing (a test seam: it may
/// commit write transactions on the store being defragmented).
#[derive(Clone, Default)]
pub struct DefragObserver(pub Option<DefragHook>);

impl std::fmt::Debug for DefragObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DefragObserver({})", if self.0.is_some() { "set" } else { "none" })
    }
}

/// One recorded edit of a committed write transaction.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put { bucket: Vec<u8>, key: Vec<u8>, value: Vec<u8> },
    Delete { bucket: Vec<u8>, key: Vec<u8> },
    CreateBucket(Vec<u8>),
    DeleteBucket(Vec<u8>),
    Sequence { bucket: Vec<u8>, seq: u64 },
    User([u64; 2]),
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Put { bucket, key, value } => bucket.len() + key.len() + value.len() + 32,
            Op::Delete { bucket, key } => bucket.len() + key.len() + 32,
            Op::CreateBucket(b) | Op::DeleteBucket(b) | Op::Sequence { bucket: b, .. } => {
                b.len() + 32
            }
            Op::User(_) => 32,
        }
    }
}

/// The edits committed since recording started.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    ops: Vec<Op>,
    bytes: usize,
    /// Past the limit: edits are no longer kept, and the copy must be redone.
    overflowed: bool,
}

/// Where a defrag's recording lives: `None` when no defrag runs. Toggled only with the
/// writer lock held, so a write transaction sees one state from begin to commit.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    delta: Mutex<Option<Delta>>,
    /// One defrag at a time.
    running: Mutex<()>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Delta>> {
        self.delta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a write transaction beginning now must record its edits.
    pub(crate) fn recording(&self) -> bool {
        self.lock().is_some()
    }

    /// Appends the edits of a committed write transaction.
    pub(crate) fn append(&self, ops: Vec<Op>, limit: usize) {
        let mut g = self.lock();
        let Some(d) = g.as_mut() else { return };
        if d.overflowed {
            return;
        }
        d.bytes += ops.iter().map(Op::bytes).sum::<usize>();
        if d.bytes > limit {
            *d = Delta { overflowed: true, ..Delta::default() };
            return;
        }
        d.ops.extend(ops);
    }

    fn start(&self) {
        *self.lock() = Some(Delta::default());
    }

    /// Takes what was recorded so far (recording goes on); `None` if it overflowed.
    fn take(&self) -> Option<Vec<Op>> {
        let mut g = self.lock();
        let d = g.as_mut()?;
        if d.overflowed {
            return None;
        }
        d.bytes = 0;
        Some(std::mem::take(&mut d.ops))
    }

    fn pending(&self) -> usize {
        self.lock().as_ref().map_or(0, |d| d.ops.len())
    }

    fn stop(&self) -> Option<Delta> {
        self.lock().take()
    }
}

/// Replays recorded edits into `db` in batched no-sync commits; returns how many.
fn replay(db: &Db, ops: &[Op]) -> Result<u64> {
    let mut tx = db.begin_write()?;
    let (mut n, mut bytes) = (0usize, 0usize);
    for op in ops {
        match op {
            Op::Put { bucket, key, value } => tx.put(bucket, key, value)?,
            Op::Delete { bucket, key } => {
                tx.delete(bucket, key)?;
            }
            Op::CreateBucket(b) => tx.create_bucket_if_missing(b)?,
            Op::DeleteBucket(b) => match tx.delete_bucket(b) {
                Ok(()) | Err(EngineError::BucketNotFound(_)) => {}
                Err(e) => return Err(e),
            },
            Op::Sequence { bucket, seq } => tx.set_sequence(bucket, *seq)?,
            Op::User(u) => tx.set_user(*u),
        }
        n += 1;
        bytes += op.bytes();
        if n % COPY_BATCH_KEYS == 0 || bytes >= COPY_BATCH_BYTES {
            tx.commit_nosync()?;
            tx = db.begin_write()?;
            bytes = 0;
        }
    }
    tx.commit_nosync()?;
    Ok(ops.len() as u64)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".defrag-tmp");
    path.with_file_name(name)
}

impl Db {
    /// Writes every bucket as `src` sees it into a new, compact, synced file at `dst` (which must
    /// not hold a database yet): a consistent copy without stopping writers (the backend of
    /// snapshots and of defrag). Returns the new file's size.
    pub fn copy_into(src: &ReadTx, dst: &Path, opts: &DbOptions) -> Result<u64> {
        let out = copy(src, dst, opts)?;
        out.sync()?;
        Ok(out.stats().file_size)
    }

    /// Copies all live data into a fresh file and swaps it in while writes go on (see the
    /// module's documentation); readers that started before keep reading the old file.
    pub fn defrag(&self) -> Result<DefragReport> {
        let rec = self.recorder();
        let _one = rec.running.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let tmp = tmp_path(self.path());
        let _ = std::fs::remove_file(&tmp);
        let (src, before) = {
            let w = self.lock_writer();
            rec.start();
            let src = self.begin_read();
            let before = self.file_len(&w);
            (src, before)
        };
        let r = self.defrag_online(src, &tmp, before);
        if r.is_err() {
            rec.stop();
            let _ = std::fs::remove_file(&tmp);
        }
        let report = r?;
        tracing::debug!(took = ?started.elapsed(), ?report, "page store defragmented");
        Ok(report)
    }

    fn defrag_online(&self, src: Result<ReadTx>, tmp: &Path, before: u64) -> Result<DefragReport> {
        let rec = self.recorder();
        let out = copy(&src?, tmp, self.opts())?;
        if let Some(f) = &self.opts().on_defrag_copied.0 {
            f(self);
        }
        let mut replayed = 0;
        for _ in 0..CATCH_UP_ROUNDS {
            if rec.pending() < CATCH_UP_OPS {
                break;
            }
            match rec.take() {
                Some(ops) => replayed += replay(&out, &ops)?,
                None => break,
            }
        }
        let mut w = self.lock_writer();
        let paused = Instant::now();
        let (out, stopped_the_world) = match rec.stop() {
            Some(Delta { ops, overflowed: false, .. }) => {
                replayed += replay(&out, &ops)?;
                (out, false)
            }
            _ => {
                tracing::warn!(
                    limit = self.opts().defrag_delta_limit,
                    "defrag: writes during the copy outgrew the limit; copying again with writes held"
                );
                drop(out);
                let _ = std::fs::remove_file(tmp);
                (copy(&self.begin_read()?, tmp, self.opts())?, true)
            }
        };
        out.sync()?;
        drop(out);
        // Lock the new file before it takes the name, so nobody can slip in between.
        let file = OpenOptions::new().read(true).write(true).open(tmp).at(tmp)?;
        crate::db::lock_file(&file, tmp)?;
        std::fs::rename(tmp, self.path()).at(self.path())?;
        let (after, retired) = self.swap_in(&mut w, file)?;
        let paused = paused.elapsed();
        drop(w);
        drop(retired);
        Ok(DefragReport { before, after, paused, replayed, stopped_the_world })
    }
}

/// Copies `src` into a new store at `dst` (batched no-sync commits, then one synced commit
/// carrying the user fields) and returns it open.
fn copy(src: &ReadTx, dst: &Path, opts: &DbOptions) -> Result<Db> {
    let out = Db::open(
        dst,
        DbOptions {
            fill_percent: 1.0,
            page_size: src.pages_for_check().2.page_size as usize,
            on_defrag_copied: DefragObserver::default(),
            ..opts.clone()
        },
    )?;
    let mut tx: WriteTx<'_> = out.begin_write()?;
    let (mut n, mut bytes) = (0usize, 0usize);
    for name in src.buckets()? {
        tx.create_bucket(&name)?;
        tx.set_sequence(&name, src.sequence(&name)?)?;
        let mut c = src.cursor(&name)?;
        let mut it = c.first()?;
        while let Some((k, v)) = it {
            tx.put(&name, k, v)?;
            n += 1;
            bytes += k.len() + v.len();
            // A batch's dirty pages live on the heap until its commit: keep it small. Each is
            // synced, so the kernel never holds more than a batch to write back at once (one
            // big flush at the end holds up the WAL's fsyncs on the same disk).
            if n >= COPY_BATCH_KEYS || bytes >= COPY_BATCH_BYTES {
                tx.commit()?;
                tx = out.begin_write()?;
                (n, bytes) = (0, 0);
            }
            it = c.next()?;
        }
    }
    tx.set_user(src.user());
    tx.commit()?;
    Ok(out)
}
