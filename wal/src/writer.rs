//! The group-commit writer (run by its thread, or by a caller of `Wal::write_pending`, under one
//! lock).
//!
//! Appenders encode their records into the pending chunks under one mutex (see [`crate::wal`]).
//! The writer takes everything pending at once, writes each chunk with one write, fdatasyncs,
//! publishes the new entries in the view, then completes the group. A chunk that starts a new
//! segment is written into a preallocated `.tmp` file, synced, renamed to its segment name, and
//! the directory is synced, all before the group completes. The previous segment is always
//! synced before the first byte of the next one is written, and one group is synced before the
//! next group is written: recovery relies on both (see [`crate::frame`]).
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::{IoContext, Result, WalError};
use crate::io::IoBackend;
use crate::prealloc::Allocator;
use crate::segment::{create_preallocated, sync_dir, Prealloc, SegmentFile, SegmentHeader};
use crate::view::Op;
use crate::wal::{Chunk, Shared};

/// Alignment of O_DIRECT writes.
pub const DIRECT_ALIGN: usize = 4096;

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Current {
    pub seg: SegmentFile,
    pub file: File,
    /// Write position (end of the valid frames).
    pub off: u64,
    /// With O_DIRECT: bytes of the partial block before `off`.
    pub tail_block: Vec<u8>,
}

/// Opens a segment for appending, with O_DIRECT when asked.
pub(crate) fn open_for_append(path: &Path, direct: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

/// The writer's own state.
#[derive(Debug)]
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub backend: Box<dyn IoBackend>,
    pub current: Current,
    pub allocator: Allocator,
    pub direct: bool,
    /// Reused buffer for aligned O_DIRECT writes.
    pub scratch: Vec<u8>,
}

/// The writer thread's body: wait for pending chunks, then take and write them as one group
/// with the writer locked; until the log is closed and drained, or failed.
pub(crate) fn run(shared: &Shared, writer: &Mutex<Option<Writer>>) {
    while shared.wait_work() {
        let mut g = writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = g.as_mut() else { return };
        // A caller of `write_pending` may have taken them meanwhile.
        if let Some((group, chunks)) = shared.take_pending() {
            if !w.write_and_publish(group, chunks) {
                return;
            }
        }
    }
}

impl Writer {
    /// Writes, syncs and publishes one group; false (the log failed, and is poisoned) on an
    /// error. A panic fails the log too: the taken group would otherwise be neither published
    /// nor failed, and the next one written at the wrong offset.
    pub(crate) fn write_and_publish(&mut self, group: u64, chunks: Vec<Chunk>) -> bool {
        let started = Instant::now();
        let written =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write_group(&chunks)))
                .unwrap_or_else(|_| {
                    Err(WalError::Poisoned("the wal group writer panicked".into()))
                });
        match written {
            Ok(bytes) => {
                let took = started.elapsed();
                self.shared.stats.record_group(chunks.len(), bytes, took);
                if let Some(observe) = &self.shared.opts.on_sync {
                    observe(took);
                }
                self.shared.publish(group, chunks);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "wal write failed; the log is closed to writes");
                self.shared.fail(e.to_string());
                false
            }
        }
    }

    fn write_group(&mut self, chunks: &[Chunk]) -> Result<u64> {
        let mut bytes = 0;
        for c in chunks {
            bytes += c.buf.len() as u64;
            match c.new_segment {
                None => {
                    debug_assert_eq!(c.seq, self.current.seg.seq);
                    debug_assert_eq!(c.base, self.current.off, "chunks continue the segment");
                    self.append_current(&c.buf)?;
                }
                Some(h) => self.start_segment(h, &c.buf)?,
            }
        }
        Ok(bytes)
    }

    /// Writes `buf` at the end of the current segment and fdatasyncs it.
    fn append_current(&mut self, buf: &[u8]) -> Result<()> {
        let cur = &mut self.current;
        let path = cur.seg.path.clone();
        if self.direct {
            // Rewrite the partial block before the end, then the new bytes, padded with zeros
            // to the alignment; the padding is past the end and reads as the end marker.
            let start = cur.off - cur.tail_block.len() as u64;
            debug_assert_eq!(start % DIRECT_ALIGN as u64, 0);
            let len = cur.tail_block.len() + buf.len();
            let padded = len.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
            self.scratch.clear();
            self.scratch.resize(padded + DIRECT_ALIGN, 0);
            let a = self.scratch.as_ptr().align_offset(DIRECT_ALIGN);
            let view = &mut self.scratch[a..a + padded];
            view[..cur.tail_block.len()].copy_from_slice(&cur.tail_block);
            view[cur.tail_block.len()..len].copy_from_slice(buf);
            self.backend.write_sync(&cur.file, start, view, true).at(&path)?;
            let end = start + len as u64;
            let keep = (end % DIRECT_ALIGN as u64) as usize;
            cur.tail_block.clear();
            cur.tail_block.extend_from_slice(&view[len - keep..len]);
            cur.off = end;
        } else {
            self.backend.write_sync(&cur.file, cur.off, buf, true).at(&path)?;
            cur.off += buf.len() as u64;
        }
        Ok(())
    }

    /// Starts segment `h` with `buf` (its header and first frames) in a preallocated file.
    fn start_segment(&mut self, h: SegmentHeader, buf: &[u8]) -> Result<()> {
        let dir = self.shared.dir.clone();
        let tmp = self.allocator.take().at(&dir)?;
        let path = dir.join(h.file_name());
        let file = open_for_append(&tmp, self.direct).at(&tmp)?;
        // The previous segment was synced by its own chunk's write; start the new one.
        let seg = SegmentFile { seq: h.seq, first_index: h.first_index, path: path.clone() };
        self.current = Current { seg, file, off: 0, tail_block: Vec::new() };
        self.append_current(buf)?;
        std::fs::rename(&tmp, &path).at(&path)?;
        sync_dir(&dir).at(&dir)?;
        let read = File::open(&path).at(&path)?;
        self.shared.add_segment(self.current.seg.clone(), read);
        Ok(())
    }
}

/// Applies a finished group's ops to a view (shared by the writer's publish step).
pub(crate) fn ops_of(chunks: Vec<Chunk>) -> impl Iterator<Item = Op> {
    chunks.into_iter().flat_map(|c| c.ops.into_iter())
}

/// Creates the first segment of an empty log: header written, synced, renamed, dir synced.
pub(crate) fn create_first_segment(
    dir: &Path,
    size: u64,
    how: Prealloc,
) -> Result<(SegmentFile, Vec<u8>)> {
    std::fs::create_dir_all(dir).at(dir)?;
    let h = SegmentHeader { seq: 0, first_index: 0 };
    let tmp = dir.join("first.tmp");
    let _ = std::fs::remove_file(&tmp);
    let f = create_preallocated(&tmp, size, how).at(&tmp)?;
    let bytes = h.encode();
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes, 0).at(&tmp)?;
    f.sync_data().at(&tmp)?;
    let path = dir.join(h.file_name());
    std::fs::rename(&tmp, &path).at(&path)?;
    sync_dir(dir).at(dir)?;
    Ok((SegmentFile { seq: 0, first_index: 0, path }, bytes.to_vec()))
}

/// Error for a writer that could not start.
pub(crate) fn spawn_error(e: std::io::Error) -> WalError {
    WalError::Io { path: PathBuf::from("<wal writer thread>"), source: e }
}
