//! The `wal_recovery` fuzz harness, kept here so the default test suite runs it too.
//!
//! Input layout: byte 0 holds flags; the rest is up to four segment files, each a little-endian
//! u16 length followed by that many bytes.
//!
//! | flag bit | meaning                                                                  |
//! |----------|--------------------------------------------------------------------------|
//! | 0        | recompute header and frame checksums first, so mutations reach the parser's semantic checks instead of stopping at a CRC |
//! | 1        | after the read-only inspection, open the log for writing and read it all |
//! | 2        | open with `repair`                                                       |
//!
//! A file whose first bytes are a header gets the name its header claims (so the name check
//! passes), otherwise `{i}-0`.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::frame::FRAME_HEADER_LEN;
use crate::segment::{SegmentHeader, HEADER_LEN, MAGIC};
use crate::{IoMode, Wal, WalOptions};

/// Lays `data` out as a WAL directory in `dir` (which must be empty) and recovers it. Returns
/// normally whatever the bytes; a panic is a bug.
pub fn wal_recovery(data: &[u8], dir: &Path) {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    for i in 0..4u64 {
        if rest.len() < 2 {
            break;
        }
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let body = &rest[2..];
        let mut file = body[..len.min(body.len())].to_vec();
        rest = &body[len.min(body.len())..];
        if flags & 1 != 0 {
            fix_checksums(&mut file);
        }
        let name = match SegmentHeader::decode(&file) {
            Ok(h) => h.file_name(),
            Err(_) => SegmentHeader { seq: i, first_index: 0 }.file_name(),
        };
        if std::fs::write(dir.join(name), &file).is_err() {
            return;
        }
    }
    if let Ok(ins) = Wal::inspect(dir, 1 << 20) {
        for pair in ins.entries.windows(2) {
            assert_eq!(pair[0].index + 1, pair[1].index, "inspection returned a gap");
        }
    }
    if flags & 2 != 0 {
        let opts = WalOptions {
            segment_size: 64 * 1024,
            io: IoMode::Pwrite,
            direct_io: false,
            repair: flags & 4 != 0,
            ..WalOptions::default()
        };
        if let Ok((w, _)) = Wal::open(dir, opts) {
            let (f, l) = (w.first_index(), w.last_index());
            if f != 0 && l >= f {
                let _ = w.entries(f, l + 1, u64::MAX);
            }
        }
    }
}

/// Rewrites the header CRC and every frame CRC it can walk to.
fn fix_checksums(file: &mut [u8]) {
    if file.len() >= HEADER_LEN && file[..8] == MAGIC {
        let crc = crc32fast::hash(&file[..60]);
        file[60..64].copy_from_slice(&crc.to_le_bytes());
    }
    let mut off = HEADER_LEN;
    while off + FRAME_HEADER_LEN <= file.len() {
        let len =
            u32::from_le_bytes([file[off], file[off + 1], file[off + 2], file[off + 3]]) as usize;
        let end = off + FRAME_HEADER_LEN + len;
        if end > file.len() || file[off..off + FRAME_HEADER_LEN].iter().all(|&b| b == 0) {
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&file[off..off + 4]);
        h.update(&file[off + 8..off + FRAME_HEADER_LEN]);
        h.update(&file[off + FRAME_HEADER_LEN..end]);
        let crc = h.finalize();
        file[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

/// Packs segment files into the harness's input format (for seed corpora).
pub fn pack(flags: u8, files: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![flags];
    for f in files.iter().take(4) {
        let f = &f[..f.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(f.len() as u16).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}
