//! The WAL handle: open, append, read, truncate, release.
//!
//! Long (about 800 lines) because it is one concept: the handle's operations all work on the
//! shared pending tail and its lock, and reading them side by side is how its use is checked;
//! the options, frame, segment, record, recovery, writer and preallocator code live in their own
//! files.
//!
//! Appending is encode-under-lock: an append validates its records against the pending tail of
//! the log, encodes their frames into the open write group's chunk, and returns a [`Durable`]
//! handle for that group. The writer thread (see [`crate::writer`]) takes all pending chunks at
//! once. Records become visible to readers when their group is durable.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use crate::durable::{Durable, Signal};
use crate::error::{IoContext, Result, WalError};
use crate::frame::{decode_frame, Frame};
use crate::io::make_backend;
use crate::options::{Stats, StatsSnapshot, WalOptions, MAX_SEGMENT_SIZE};
use crate::prealloc::{AllocStatus, Allocator};
use crate::record::{decode_payload, Decoded, Entry, HardState, Record, SnapshotMarker};
use crate::recovery::{scan, RecoveryReport, ScanOptions, TailPos};
use crate::segment::{sync_dir, SegmentFile, SegmentHeader, HEADER_LEN};
use crate::view::{Loc, LogView, Op, Span};
use crate::writer::{create_first_segment, open_for_append, spawn_error, Current, Writer};

/// Bytes of reads coalesced into one pread.
const READ_SPAN: u64 = 4 << 20;

/// One chunk of a write group: bytes for one segment.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Set when this chunk starts a new segment (its bytes begin with the header).
    pub new_segment: Option<SegmentHeader>,
    /// Segment sequence.
    pub seq: u64,
    /// Offset in the segment where `buf` goes (also the frames' `batch`).
    pub base: u64,
    /// Encoded frames.
    pub buf: Vec<u8>,
    /// View changes, applied when the group is durable.
    pub ops: Vec<Op>,
    /// Records in the chunk.
    pub records: u64,
}

/// The appenders' view of where the log will be once everything pending is written.
#[derive(Debug)]
struct Tail {
    span: Span,
    seq: u64,
    off: u64,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotMarker>,
    metadata: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Pending {
    chunks: Vec<Chunk>,
    /// The group new appends join.
    group: u64,
    bytes: usize,
    tail: Tail,
    closed: bool,
    failed: Option<String>,
    /// The writer is waiting on `work` (only then is it signalled: a futex wake per append
    /// would cost a syscall each).
    writer_idle: bool,
}

/// A segment readers can read.
#[derive(Debug)]
struct SegRead {
    first_index: u64,
    path: PathBuf,
    file: Arc<File>,
}

#[derive(Debug, Default)]
struct ViewState {
    log: LogView,
    segs: BTreeMap<u64, SegRead>,
}

/// State shared by the handle and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub(crate) opts: WalOptions,
    pending: Mutex<Pending>,
    work: Condvar,
    space: Condvar,
    view: RwLock<ViewState>,
    signal: Arc<Signal>,
    pub stats: Stats,
    /// Highest segment sequence whose records are all published.
    published_seq: AtomicU64,
    /// Whether the next segment can be preallocated (a full disk shows here first).
    alloc: Arc<AllocStatus>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Waits until chunks are pending (true) or the log is closed and drained (false).
    pub(crate) fn wait_work(&self) -> bool {
        let mut p = lock(&self.pending);
        while p.chunks.is_empty() && !p.closed {
            p.writer_idle = true;
            p = self.work.wait(p).unwrap_or_else(|e| e.into_inner());
            p.writer_idle = false;
        }
        !p.chunks.is_empty()
    }

    /// Takes every pending chunk and opens the next group (`None` if nothing is pending).
    /// Called only with the [`Writer`] locked, so groups are written in the order taken.
    pub(crate) fn take_pending(&self) -> Option<(u64, Vec<Chunk>)> {
        let mut p = lock(&self.pending);
        if p.chunks.is_empty() {
            return None;
        }
        let group = p.group;
        p.group += 1;
        p.bytes = 0;
        let chunks = std::mem::take(&mut p.chunks);
        drop(p);
        self.space.notify_all();
        Some((group, chunks))
    }

    /// A group is durable: publish its records, then wake its waiters.
    pub(crate) fn publish(&self, group: u64, chunks: Vec<Chunk>) {
        let records: u64 = chunks.iter().map(|c| c.records).sum();
        let max_seq = chunks.iter().map(|c| c.seq).max().unwrap_or(0);
        {
            let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
            for op in crate::writer::ops_of(chunks) {
                // Appends were validated against the same rules; a failure here is a bug.
                let r = v.log.apply(op);
                debug_assert!(r.is_ok(), "validated op failed to apply: {r:?}");
            }
        }
        self.published_seq.fetch_max(max_seq, Ordering::AcqRel);
        self.stats.add_records(records);
        self.signal.complete(group);
    }

    /// The writer failed: refuse everything from now on.
    pub(crate) fn fail(&self, msg: String) {
        let mut p = lock(&self.pending);
        p.failed.get_or_insert(msg.clone());
        p.chunks.clear();
        drop(p);
        self.space.notify_all();
        self.signal.poison(msg);
    }

    /// Registers a new segment for readers.
    pub(crate) fn add_segment(&self, seg: SegmentFile, file: File) {
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        v.segs.insert(
            seg.seq,
            SegRead { first_index: seg.first_index, path: seg.path, file: Arc::new(file) },
        );
    }
}

/// A write-ahead log. Cheap to share (`Arc` it); all methods take `&self`.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    /// The group writer: run by the writer thread, or by a caller of [`Wal::write_pending`];
    /// taken (its files closed) by [`Wal::close`].
    group_writer: Arc<Mutex<Option<Writer>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    backend: &'static str,
    direct: bool,
}

/// The frames that restate the current state at the start of a segment.
fn state_records<'a>(t: &'a Tail) -> impl Iterator<Item = Record<'a>> {
    let hs = t.hard_state.map(Record::HardState);
    let snap = t.snapshot.as_ref().map(|s| Record::SnapshotState {
        index: s.index,
        term: s.term,
        conf_state: &s.conf_state,
    });
    let meta = t.metadata.as_deref().map(Record::Metadata);
    hs.into_iter().chain(snap).chain(meta)
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, recovering what is there.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<(Wal, RecoveryReport)> {
        let dir = dir.as_ref().to_path_buf();
        if opts.segment_size < 2 * HEADER_LEN as u64 + 4096 || opts.segment_size > MAX_SEGMENT_SIZE
        {
            return Err(WalError::InvalidOption(format!(
                "segment size {} outside [8 KiB, 2 GiB]",
                opts.segment_size
            )));
        }
        std::fs::create_dir_all(&dir).at(&dir)?;
        let scan_opts = ScanOptions {
            max_record_bytes: opts.max_record_bytes,
            repair: opts.repair,
            mutate: true,
        };
        let rec = scan(&dir, scan_opts)?;
        let (segments, tail) = match rec.tail {
            Some(t) => (rec.segments, t),
            None => {
                let (seg, header) = create_first_segment(&dir, opts.segment_size, opts.prealloc)?;
                let t = TailPos { seg: seg.clone(), offset: HEADER_LEN as u64, tail_block: header };
                (vec![seg], t)
            }
        };
        let backend = match &opts.backend_factory {
            Some(f) => f(),
            None => make_backend(opts.io, opts.sync),
        }
        .at(&dir)?;
        let backend_name = backend.name();
        let mut direct = opts.direct_io;
        let file = match open_for_append(&tail.seg.path, direct) {
            Ok(f) => f,
            Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!("O_DIRECT unsupported here, using buffered writes");
                direct = false;
                open_for_append(&tail.seg.path, false).at(&tail.seg.path)?
            }
            Err(e) => return Err(e).at(&tail.seg.path),
        };
        tracing::info!(dir = %dir.display(), backend = backend_name, direct,
            segments = segments.len(), records = rec.report.records, "wal opened");

        let mut view = ViewState { log: rec.view, segs: BTreeMap::new() };
        for s in &segments {
            let f = File::open(&s.path).at(&s.path)?;
            view.segs.insert(
                s.seq,
                SegRead { first_index: s.first_index, path: s.path.clone(), file: Arc::new(f) },
            );
        }
        let t = Tail {
            span: view.log.span,
            seq: tail.seg.seq,
            off: tail.offset,
            hard_state: view.log.hard_state,
            snapshot: view.log.snapshot.clone(),
            metadata: view.log.metadata.clone(),
        };
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            opts: opts.clone(),
            pending: Mutex::new(Pending {
                chunks: Vec::new(),
                group: 1,
                bytes: 0,
                tail: t,
                closed: false,
                failed: None,
                writer_idle: false,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            view: RwLock::new(view),
            signal: Arc::new(Signal::default()),
            stats: Stats::default(),
            published_seq: AtomicU64::new(tail.seg.seq),
            alloc: Arc::new(AllocStatus::default()),
        });
        let writer = Writer {
            shared: shared.clone(),
            backend,
            current: Current {
                seg: tail.seg.clone(),
                file,
                off: tail.offset,
                tail_block: if direct { tail.tail_block } else { Vec::new() },
            },
            allocator: Allocator::start(
                dir.clone(),
                opts.segment_size,
                opts.prealloc,
                opts.prealloc_hook.clone(),
                shared.alloc.clone(),
            ),
            direct,
            scratch: Vec::new(),
        };
        let group_writer = Arc::new(Mutex::new(Some(writer)));
        let (on_panic, thread_writer, thread_shared) =
            (shared.clone(), group_writer.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::writer::run(&thread_shared, &thread_writer)
                }));
                if r.is_err() {
                    on_panic.fail("the wal writer thread panicked".into());
                }
            })
            .map_err(spawn_error)?;
        let wal = Wal {
            shared,
            group_writer,
            writer: Mutex::new(Some(handle)),
            backend: backend_name,
            direct,
        };
        Ok((wal, rec.report))
    }

    /// Reads a log without changing anything (no repair, no truncation, no writer): every
    /// live entry and the latest state, for inspection tools and fuzzing.
    pub fn inspect(dir: impl AsRef<Path>, max_record_bytes: u32) -> Result<Inspection> {
        let dir = dir.as_ref();
        let rec = scan(dir, ScanOptions { max_record_bytes, repair: false, mutate: false })?;
        let segs: BTreeMap<u64, SegRead> = rec
            .segments
            .iter()
            .map(|s| {
                let f = File::open(&s.path).at(&s.path)?;
                Ok((
                    s.seq,
                    SegRead { first_index: s.first_index, path: s.path.clone(), file: Arc::new(f) },
                ))
            })
            .collect::<Result<_>>()?;
        let view = ViewState { log: rec.view, segs };
        let (first, next) = (view.log.span.first, view.log.span.next);
        let entries = if next > first {
            read_entries(&view, first, next, u64::MAX, max_record_bytes)?
        } else {
            Vec::new()
        };
        Ok(Inspection {
            entries,
            hard_state: view.log.hard_state,
            snapshot: view.log.snapshot,
            metadata: view.log.metadata,
            report: rec.report,
        })
    }

    /// Appends records; the handle completes when they are durable. Records are validated
    /// first: on an error nothing of the batch is appended.
    pub fn append(&self, records: &[Record<'_>]) -> Result<Durable> {
        self.append_inner(records, true)
    }

    /// Appends records like [`Wal::append`] but leaves the writer thread asleep: the caller
    /// writes the group itself with [`Wal::write_pending`] (saving two thread hand-offs when
    /// it would only wait anyway). Until then the records wait for the next [`Wal::append`],
    /// which wakes the writer.
    pub fn append_deferred(&self, records: &[Record<'_>]) -> Result<Durable> {
        self.append_inner(records, false)
    }

    /// Writes and syncs everything pending on the calling thread (one group, as the writer
    /// thread would; if the writer thread is in the middle of a group, after it). On return
    /// every earlier append is durable, or the log has failed.
    pub fn write_pending(&self) -> Result<()> {
        let mut g = lock(&self.group_writer);
        if let Some(w) = g.as_mut() {
            if let Some((group, chunks)) = self.shared.take_pending() {
                w.write_and_publish(group, chunks);
            }
        }
        drop(g);
        match self.shared.signal.poisoned() {
            Some(m) => Err(WalError::Poisoned(m)),
            None => Ok(()),
        }
    }

    fn append_inner(&self, records: &[Record<'_>], wake_writer: bool) -> Result<Durable> {
        if records.is_empty() {
            return self.flush();
        }
        let opts = &self.shared.opts;
        let mut p = lock(&self.shared.pending);
        loop {
            if let Some(m) = &p.failed {
                return Err(WalError::Poisoned(m.clone()));
            }
            if p.closed {
                return Err(WalError::Closed);
            }
            if p.bytes < opts.max_pending_bytes {
                break;
            }
            p = self.shared.space.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        Self::validate(&p.tail, records, opts)?;
        for r in records {
            Self::encode_one(&mut p, r, opts);
        }
        let group = p.group;
        let wake = wake_writer && p.writer_idle;
        if wake {
            p.writer_idle = false;
        }
        drop(p);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(Durable::new(group, self.shared.signal.clone()))
    }

    /// Appends and waits until durable.
    pub fn append_sync(&self, records: &[Record<'_>]) -> Result<()> {
        self.append(records)?.wait()
    }

    fn validate(tail: &Tail, records: &[Record<'_>], opts: &WalOptions) -> Result<()> {
        let mut span = tail.span;
        // Sizes of the state frames a new segment would start with, as this batch changes them.
        let len_of = |r: Option<Record<'_>>| r.map_or(0, |r| r.frame_len());
        let mut hs_len = len_of(tail.hard_state.map(Record::HardState));
        let mut snap_len = tail.snapshot.as_ref().map_or(0, |s| 29 + s.conf_state.len());
        let mut meta_len = tail.metadata.as_ref().map_or(0, |m| 13 + m.len());
        let fit = opts.segment_size as usize - HEADER_LEN;
        for r in records {
            if r.index() > crate::record::MAX_INDEX {
                return Err(WalError::IndexTooLarge(r.index()));
            }
            // A rollover before this record restates the state as it is before the record.
            let state_len = hs_len + snap_len + meta_len;
            match *r {
                Record::Entry { index, .. } => {
                    span.check_entry(index)?;
                    span.push_entry(index);
                }
                Record::Truncate { after } => {
                    span.check_truncate(after)?;
                    span.truncate(after);
                }
                Record::Snapshot { index, .. } => {
                    span.snapshot(index);
                    snap_len = r.frame_len();
                }
                Record::SnapshotState { .. } => snap_len = r.frame_len(),
                Record::HardState(_) => hs_len = r.frame_len(),
                Record::Metadata(_) => meta_len = r.frame_len(),
            }
            let size = r.payload_len();
            if size > opts.max_record_bytes as usize || r.frame_len() + state_len > fit {
                let limit = (opts.max_record_bytes as usize).min(fit.saturating_sub(state_len));
                return Err(WalError::RecordTooLarge { size, limit });
            }
        }
        Ok(())
    }

    /// Encodes one validated record at the tail, starting a new segment when it does not fit.
    fn encode_one(p: &mut Pending, r: &Record<'_>, opts: &WalOptions) {
        let len = r.frame_len() as u64;
        if p.tail.off + len > opts.segment_size {
            let h = SegmentHeader {
                seq: p.tail.seq + 1,
                first_index: if p.tail.span.first == 0 { 0 } else { p.tail.span.next },
            };
            let mut buf = h.encode().to_vec();
            for s in state_records(&p.tail) {
                s.encode(&mut buf, 0);
            }
            p.tail.seq = h.seq;
            p.tail.off = buf.len() as u64;
            p.bytes += buf.len();
            p.chunks.push(Chunk {
                new_segment: Some(h),
                seq: h.seq,
                base: 0,
                buf,
                ops: Vec::new(),
                records: 0,
            });
        }
        if p.chunks.last().is_none_or(|c| c.seq != p.tail.seq) {
            let (seq, base) = (p.tail.seq, p.tail.off);
            p.chunks.push(Chunk {
                new_segment: None,
                seq,
                base,
                buf: Vec::new(),
                ops: Vec::new(),
                records: 0,
            });
        }
        let off = p.tail.off;
        let seq = p.tail.seq;
        let tail = &mut p.tail;
        let Some(chunk) = p.chunks.last_mut() else { return };
        r.encode(&mut chunk.buf, chunk.base as u32);
        chunk.records += 1;
        tail.off += len;
        p.bytes += len as usize;
        let op = match *r {
            Record::Entry { index, term, .. } => {
                tail.span.push_entry(index);
                Op::Entry { index, loc: Loc { term, seg: seq, off, len: len as u32 } }
            }
            Record::HardState(hs) => {
                tail.hard_state = Some(hs);
                Op::HardState(hs)
            }
            Record::Snapshot { index, term, conf_state } => {
                tail.span.snapshot(index);
                let s = SnapshotMarker { index, term, conf_state: conf_state.to_vec() };
                tail.snapshot = Some(s.clone());
                Op::Snapshot(s)
            }
            Record::SnapshotState { index, term, conf_state } => {
                let s = SnapshotMarker { index, term, conf_state: conf_state.to_vec() };
                tail.snapshot = Some(s.clone());
                Op::SnapshotState(s)
            }
            Record::Metadata(m) => {
                tail.metadata = Some(m.to_vec());
                Op::Metadata(m.to_vec())
            }
            Record::Truncate { after } => {
                tail.span.truncate(after);
                Op::Truncate { after }
            }
        };
        chunk.ops.push(op);
    }

    /// Logically drops every entry after `after` (raft log conflict); durable when the handle
    /// completes.
    pub fn truncate_suffix(&self, after: u64) -> Result<Durable> {
        self.append(&[Record::Truncate { after }])
    }

    /// A handle that completes when everything appended so far is durable.
    pub fn flush(&self) -> Result<Durable> {
        let p = lock(&self.shared.pending);
        if let Some(m) = &p.failed {
            return Err(WalError::Poisoned(m.clone()));
        }
        // With nothing pending, the last group taken (group - 1) covers every append so far.
        let g = if p.chunks.is_empty() { p.group - 1 } else { p.group };
        Ok(Durable::new(g, self.shared.signal.clone()))
    }

    /// Entries with index in `[lo, hi)`, stopping early once `max_bytes` of payload were read
    /// (at least one entry is always returned when the range is not empty).
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        let v = self.shared.view.read().unwrap_or_else(|e| e.into_inner());
        read_entries(&v, lo, hi, max_bytes, self.shared.opts.max_record_bytes)
    }

    /// Term of entry `index`.
    pub fn term(&self, index: u64) -> Result<u64> {
        let v = self.shared.view.read().unwrap_or_else(|e| e.into_inner());
        check_range(&v.log.span, index, index.saturating_add(1))?;
        v.log.loc(index).map(|l| l.term).ok_or(WalError::Unavailable(index))
    }

    /// First live index (the next index when there is no entry; 0 for a log that never had one).
    pub fn first_index(&self) -> u64 {
        self.shared.view.read().unwrap_or_else(|e| e.into_inner()).log.span.first
    }

    /// Last live index (`first_index() - 1` when empty).
    pub fn last_index(&self) -> u64 {
        self.shared.view.read().unwrap_or_else(|e| e.into_inner()).log.span.last()
    }

    /// Latest durable hard state.
    pub fn hard_state(&self) -> Option<HardState> {
        self.shared.view.read().unwrap_or_else(|e| e.into_inner()).log.hard_state
    }

    /// Latest durable snapshot marker.
    pub fn snapshot(&self) -> Option<SnapshotMarker> {
        self.shared.view.read().unwrap_or_else(|e| e.into_inner()).log.snapshot.clone()
    }

    /// Latest durable metadata.
    pub fn metadata(&self) -> Option<Vec<u8>> {
        self.shared.view.read().unwrap_or_else(|e| e.into_inner()).log.metadata.clone()
    }

    /// Deletes whole segments whose entries all have index ≤ `upto` (after a snapshot at
    /// `upto`), oldest first, while more than [`WalOptions::max_files`] segments remain. The
    /// segment being written is never deleted. Returns how many were deleted.
    pub fn release_prefix(&self, upto: u64) -> Result<usize> {
        let doomed: Vec<PathBuf> = {
            // Lock order: pending, then view (publish takes only the view).
            let mut p = lock(&self.shared.pending);
            let mut v = self.shared.view.write().unwrap_or_else(|e| e.into_inner());
            let published = self.shared.published_seq.load(Ordering::Acquire);
            let seqs: Vec<(u64, u64)> = v.segs.iter().map(|(s, r)| (*s, r.first_index)).collect();
            let mut releasable = 0;
            for w in seqs.windows(2) {
                // Only once the group that started the next segment is published are all
                // entries of this one published (and covered by `upto`).
                if w[1].0 > published {
                    break;
                }
                let next_first = w[1].1;
                if next_first == 0 || next_first - 1 <= upto {
                    releasable += 1;
                } else {
                    break;
                }
            }
            // etcd's --max-wals: the newest `max_files` segments stay even when released;
            // 0 keeps every one.
            let max_files = self.shared.opts.max_files;
            let n = if max_files == 0 {
                0
            } else {
                releasable.min(seqs.len().saturating_sub(max_files))
            };
            if n == 0 {
                return Ok(0);
            }
            let min_seg = seqs[n].0;
            v.log.release(min_seg);
            // Appends are validated against the tail: it must not accept entries below the
            // new first index either.
            if p.tail.span.first != 0 && v.log.span.first > p.tail.span.first {
                p.tail.span.first = v.log.span.first;
            }
            let keep = v.segs.split_off(&min_seg);
            let gone = std::mem::replace(&mut v.segs, keep);
            gone.into_values().map(|s| s.path).collect()
        };
        for p in &doomed {
            std::fs::remove_file(p).at(p)?;
        }
        sync_dir(&self.shared.dir).at(&self.shared.dir)?;
        tracing::debug!(upto, segments = doomed.len(), "wal released prefix");
        Ok(doomed.len())
    }

    /// Why the next segment cannot be preallocated, while it cannot (a full disk): appends
    /// still go into the current segment, and the log fails at the cut if this lasts.
    pub fn space_error(&self) -> Option<String> {
        self.shared.alloc.error().map(|e| e.to_string())
    }

    /// Writer counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The backend in use ("io_uring", "pwrite", ...).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Whether segments are written with O_DIRECT.
    pub fn direct_io(&self) -> bool {
        self.direct
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared.view.read().unwrap_or_else(|e| e.into_inner()).segs.len()
    }

    /// Writes everything pending, stops the writer and returns its result. Later appends fail
    /// with [`WalError::Closed`].
    pub fn close(&self) -> Result<()> {
        lock(&self.shared.pending).closed = true;
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        if let Some(h) = lock(&self.writer).take() {
            let _ = h.join();
        }
        // Waits for a caller of `write_pending` still writing, then closes the segment files
        // and stops the preallocator.
        drop(lock(&self.group_writer).take());
        match self.shared.signal.poisoned() {
            Some(m) => Err(WalError::Poisoned(m)),
            None => Ok(()),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// What [`Wal::inspect`] read.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Every live entry.
    pub entries: Vec<Entry>,
    /// Latest hard state.
    pub hard_state: Option<HardState>,
    /// Latest snapshot marker.
    pub snapshot: Option<SnapshotMarker>,
    /// Latest metadata.
    pub metadata: Option<Vec<u8>>,
    /// What the scan found.
    pub report: RecoveryReport,
}

fn check_range(span: &Span, lo: u64, hi: u64) -> Result<()> {
    if lo < span.first || span.first == 0 {
        return Err(if span.first == 0 {
            WalError::Unavailable(lo)
        } else {
            WalError::Compacted(lo)
        });
    }
    if hi > span.next {
        return Err(WalError::Unavailable(hi - 1));
    }
    Ok(())
}

fn read_entries(
    v: &ViewState,
    lo: u64,
    hi: u64,
    max_bytes: u64,
    max_rec: u32,
) -> Result<Vec<Entry>> {
    if lo >= hi {
        return Ok(Vec::new());
    }
    check_range(&v.log.span, lo, hi)?;
    let mut out = Vec::with_capacity((hi - lo).min(4096) as usize);
    let mut total = 0u64;
    let mut idx = lo;
    while idx < hi {
        // Gather a run of entries in one segment, read with a single pread.
        let first = v.log.loc(idx).ok_or(WalError::Unavailable(idx))?;
        let seg = v.segs.get(&first.seg).ok_or(WalError::Compacted(idx))?;
        let mut run = vec![(idx, first)];
        let mut end = first.off + first.len as u64;
        let mut bytes = first.len as u64;
        while idx + (run.len() as u64) < hi && total + bytes < max_bytes {
            let i = idx + run.len() as u64;
            let Some(l) = v.log.loc(i) else { break };
            let new_end = l.off + l.len as u64;
            if l.seg != first.seg || l.off < first.off || new_end - first.off > READ_SPAN {
                break;
            }
            run.push((i, l));
            end = end.max(new_end);
            bytes += l.len as u64;
        }
        let mut buf = vec![0u8; (end - first.off) as usize];
        seg.file.read_exact_at(&mut buf, first.off).at(&seg.path)?;
        for (i, l) in &run {
            let at = (l.off - first.off) as usize;
            let bad = |reason: String| WalError::Corrupt {
                path: seg.path.clone(),
                offset: l.off,
                reason,
            };
            let e = match decode_frame(&buf, at, max_rec) {
                Frame::Record { ty, payload, .. } => match decode_payload(ty, payload) {
                    Some(Decoded::Entry { index, term, data }) if index == *i && term == l.term => {
                        Entry { index, term, data: data.to_vec() }
                    }
                    _ => return Err(bad(format!("expected entry {i}"))),
                },
                Frame::End => return Err(bad(format!("entry {i} reads as zeros"))),
                Frame::Bad(b) => return Err(bad(b.to_string())),
            };
            total += e.data.len() as u64;
            out.push(e);
            if total >= max_bytes {
                return Ok(out);
            }
        }
        idx += run.len() as u64;
    }
    Ok(out)
}
