//! Recovery: scan and verify every segment, rebuild the [`LogView`], find the tail.
//!
//! Rules (see [`crate::frame`] for why the `batch` field decides torn versus corrupt):
//! - Segments must have consecutive sequence numbers and valid headers matching their names.
//! - In every segment but the last, the frames must be valid up to an end marker, and only zeros
//!   may follow it.
//! - In the last segment, the first bad frame (or the end marker) at offset X ends the log. If a
//!   valid frame of a later write group (`batch > X`) follows, the damage is in synced data: an
//!   error naming segment and offset. Otherwise the bytes from X on are a torn tail: dropped,
//!   and (when the log is opened for writing) overwritten with zeros so they can never be read
//!   back, with a warning saying how many bytes went.
//! - With `repair`, damage anywhere truncates the log there: the damaged segment is cut at the
//!   bad offset and every later segment deleted; the report says how much was dropped.
#![forbid(unsafe_code)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, WalError};
use crate::frame::{decode_frame, Frame, FRAME_HEADER_LEN};
use crate::record::{decode_payload, Decoded, SnapshotMarker};
use crate::segment::{list_dir, sync_dir, SegmentFile, SegmentHeader, HEADER_LEN};
use crate::view::{Loc, LogView, Op};

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments scanned.
    pub segments: usize,
    /// Valid records replayed.
    pub records: u64,
    /// A torn tail that was dropped: (segment, offset, bytes dropped).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// A repair that truncated damage: (segment, offset, bytes dropped, whole segments dropped).
    pub repaired: Option<(PathBuf, u64, u64, usize)>,
    /// Leftover preallocated `.tmp` files removed.
    pub tmp_removed: usize,
}

/// Where appending continues.
#[derive(Debug, Clone)]
pub struct TailPos {
    /// The last segment.
    pub seg: SegmentFile,
    /// Offset just past its last valid frame.
    pub offset: u64,
    /// The bytes of the partial 4 KiB block before `offset` (for O_DIRECT appends).
    pub tail_block: Vec<u8>,
}

/// The result of a scan.
#[derive(Debug)]
pub struct Recovered {
    /// Live entries and latest state.
    pub view: LogView,
    /// Surviving segments in order.
    pub segments: Vec<SegmentFile>,
    /// Where appending continues; `None` for an empty directory.
    pub tail: Option<TailPos>,
    /// What happened.
    pub report: RecoveryReport,
}

/// Scan settings.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Largest payload accepted.
    pub max_record_bytes: u32,
    /// Truncate at damage instead of failing.
    pub repair: bool,
    /// Change files (zero torn tails, delete `.tmp` files, apply repairs). `false` only reads.
    pub mutate: bool,
}

/// Scans `dir`. A missing directory is an empty log.
pub fn scan(dir: &Path, opts: ScanOptions) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let (mut segs, tmps) = match list_dir(dir) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), Vec::new()),
        Err(e) => return Err(e).at(dir),
    };
    if opts.mutate {
        for t in &tmps {
            std::fs::remove_file(t).at(t)?;
            report.tmp_removed += 1;
        }
    }
    // Consecutive sequence numbers.
    if let Some(pos) = segs.windows(2).position(|w| w[1].seq != w[0].seq + 1) {
        let (before, after) = (segs[pos].seq, segs[pos + 1].seq);
        if !opts.repair {
            return Err(WalError::MissingSegment { dir: dir.to_path_buf(), before, after });
        }
        let dropped = segs.split_off(pos + 1);
        let bytes = drop_segments(&dropped, opts.mutate)?;
        tracing::warn!(before, after, bytes, "wal repair: dropped segments after a gap");
        report.repaired = Some((segs[pos].path.clone(), 0, bytes, dropped.len()));
    }

    let mut view = LogView::default();
    let mut tail = None;
    let mut i = 0;
    while i < segs.len() {
        let seg = segs[i].clone();
        let is_last = i + 1 == segs.len();
        let data = std::fs::read(&seg.path).at(&seg.path)?;
        report.segments += 1;
        view.floating = i == 0;
        let scanned = scan_segment(&seg, &data, is_last, opts, &mut view, &mut report);
        view.floating = false;
        match scanned {
            Ok(end) => {
                if is_last {
                    let nonzero_end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                    if nonzero_end > end {
                        let dropped = (nonzero_end - end) as u64;
                        tracing::warn!(segment = %seg.path.display(), offset = end, dropped,
                            "wal: torn tail dropped");
                        report.torn_tail = Some((seg.path.clone(), end as u64, dropped));
                        if opts.mutate {
                            zero_range(&seg.path, end as u64, nonzero_end as u64)?;
                        }
                    }
                    let block_start = end & !4095;
                    tail = Some(TailPos {
                        seg: seg.clone(),
                        offset: end as u64,
                        tail_block: data[block_start..end].to_vec(),
                    });
                }
                i += 1;
            }
            Err(corrupt) => {
                let WalError::Corrupt { offset, .. } = &corrupt else { return Err(corrupt) };
                if !opts.repair {
                    return Err(corrupt);
                }
                let offset = *offset as usize;
                // Truncate here: a header too damaged to read drops the whole segment.
                let nonzero_end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                let mut bytes = nonzero_end.saturating_sub(offset) as u64;
                let later = segs.split_off(i + 1);
                bytes += drop_segments(&later, opts.mutate)?;
                let mut whole = later.len();
                if offset < HEADER_LEN {
                    whole += 1;
                    bytes = nonzero_end as u64;
                    drop_segments(std::slice::from_ref(&seg), opts.mutate)?;
                    segs.truncate(i);
                } else if opts.mutate {
                    zero_range(&seg.path, offset as u64, nonzero_end as u64)?;
                }
                tracing::warn!(segment = %seg.path.display(), offset, bytes, whole,
                    "wal repair: truncated the log at damage");
                report.repaired = Some((seg.path.clone(), offset as u64, bytes, whole));
                // Rescan from the start: the view must not hold entries of dropped bytes.
                return rescan_after_repair(dir, opts, report);
            }
        }
    }
    view.finish_replay();
    if opts.mutate && (report.torn_tail.is_some() || report.repaired.is_some()) {
        sync_dir(dir).at(dir)?;
    }
    Ok(Recovered { view, segments: segs, tail, report })
}

/// After a repair changed the files, scan them again (now clean) and keep the repair report.
fn rescan_after_repair(dir: &Path, opts: ScanOptions, report: RecoveryReport) -> Result<Recovered> {
    if opts.mutate {
        sync_dir(dir).at(dir)?;
        let mut again = scan(dir, ScanOptions { repair: false, ..opts })?;
        again.report.repaired = report.repaired;
        again.report.tmp_removed += report.tmp_removed;
        return Ok(again);
    }
    // Read-only: nothing changed on disk, so the repaired view cannot be rebuilt from the files;
    // report the damage as an error instead of a view that would not match them.
    let (path, offset, ..) = report.repaired.unwrap_or_default();
    Err(WalError::Corrupt { path, offset, reason: "damage (repair needs a writable open)".into() })
}

/// Replays one segment into `view`; returns the offset where its valid frames end.
fn scan_segment(
    seg: &SegmentFile,
    data: &[u8],
    is_last: bool,
    opts: ScanOptions,
    view: &mut LogView,
    report: &mut RecoveryReport,
) -> Result<usize> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        path: seg.path.clone(),
        offset: offset as u64,
        reason,
    };
    let hdr = SegmentHeader::decode(data).map_err(|e| corrupt(0, e.to_string()))?;
    if hdr.seq != seg.seq || hdr.first_index != seg.first_index {
        return Err(corrupt(0, crate::segment::BadHeader::NameMismatch.to_string()));
    }
    let mut off = HEADER_LEN;
    loop {
        let reason = match decode_frame(data, off, opts.max_record_bytes) {
            Frame::Record { ty, payload, next, batch: _ } => match decode_payload(ty, payload) {
                Some(d) => {
                    let op = to_op(d, seg.seq, off, next - off);
                    match view.apply(op) {
                        Ok(()) => {
                            report.records += 1;
                            off = next;
                            continue;
                        }
                        Err(e) => format!("record does not fit the log: {e}"),
                    }
                }
                None => format!("malformed {ty:?} payload of {} bytes", payload.len()),
            },
            Frame::End => {
                let junk = data.get(off..).unwrap_or(&[]).iter().any(|&b| b != 0);
                if !junk {
                    return Ok(off);
                }
                "zeros where a record should be, with non-zero bytes after them".to_string()
            }
            Frame::Bad(b) => b.to_string(),
        };
        if is_last && !later_group_follows(data, off, opts.max_record_bytes) {
            return Ok(off);
        }
        return Err(corrupt(off, reason));
    }
}

/// Is there, anywhere after `bad`, the first frame of a later write group? Then the damage at
/// `bad` is in a group that was synced before that one was written. A group's first frame sits
/// exactly at the offset its `batch` field names, which payload bytes cannot fake by accident.
fn later_group_follows(data: &[u8], bad: usize, max: u32) -> bool {
    let mut y = bad + 1;
    while y + FRAME_HEADER_LEN <= data.len() {
        let b = u32::from_le_bytes([data[y + 9], data[y + 10], data[y + 11], data[y + 12]]);
        if b as usize == y && crate::frame::RecordType::from_u8(data[y + 8]).is_some() {
            if let Frame::Record { ty, payload, .. } = decode_frame(data, y, max) {
                if decode_payload(ty, payload).is_some() {
                    return true;
                }
            }
        }
        y += 1;
    }
    false
}

fn to_op(d: Decoded<'_>, seg: u64, off: usize, len: usize) -> Op {
    match d {
        Decoded::Entry { index, term, .. } => {
            Op::Entry { index, loc: Loc { term, seg, off: off as u64, len: len as u32 } }
        }
        Decoded::HardState(hs) => Op::HardState(hs),
        Decoded::Snapshot { index, term, conf_state } => {
            Op::Snapshot(SnapshotMarker { index, term, conf_state: conf_state.to_vec() })
        }
        Decoded::SnapshotState { index, term, conf_state } => {
            Op::SnapshotState(SnapshotMarker { index, term, conf_state: conf_state.to_vec() })
        }
        Decoded::Metadata(m) => Op::Metadata(m.to_vec()),
        Decoded::Truncate { after } => Op::Truncate { after },
    }
}

/// Overwrites `[from, to)` of a file with zeros and syncs it.
fn zero_range(path: &Path, from: u64, to: u64) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new().write(true).open(path).at(path)?;
    let zeros = vec![0u8; (to - from).min(1 << 20) as usize];
    let mut off = from;
    while off < to {
        let n = (to - off).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], off).at(path)?;
        off += n as u64;
    }
    f.sync_data().at(path)
}

/// Deletes segments (when mutating); returns their total size.
fn drop_segments(segs: &[SegmentFile], mutate: bool) -> Result<u64> {
    let mut bytes = 0;
    for s in segs {
        bytes += std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
        if mutate {
            std::fs::remove_file(&s.path).at(&s.path)?;
        }
    }
    Ok(bytes)
}
