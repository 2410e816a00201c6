//! Segment files: naming, the 64-byte header, listing and preallocation.
//!
//! A WAL directory holds segment files named `{seq:016x}-{first_index:016x}.wal` (sequence
//! numbers are consecutive; `first_index` is the index the next entry was expected to have when
//! the segment was started, 0 for a log that has no entry yet). Files ending in `.tmp` are
//! preallocated segments not yet in use; they are deleted at open.
//!
//! Segment header, little-endian, followed directly by frames (see [`crate::frame`]):
//!
//! | offset | size | field                                              |
//! |--------|------|----------------------------------------------------|
//! | 0      | 8    | magic `RSTDWAL\0`                                   |
//! | 8      | 4    | format version (currently 1)                       |
//! | 12     | 4    | header length (64)                                 |
//! | 16     | 8    | segment sequence number                            |
//! | 24     | 8    | first index                                        |
//! | 32     | 28   | reserved, zero                                     |
//! | 60     | 4    | CRC32 of bytes 0..60                               |
//!
//! Every segment starts (right after the header) with the latest hard state, snapshot marker and
//! metadata known when it was started, so old segments can be deleted without losing them.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Magic bytes at the start of every segment.
pub const MAGIC: [u8; 8] = *b"RSTDWAL\0";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the segment header.
pub const HEADER_LEN: usize = 64;

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number (consecutive across the directory).
    pub seq: u64,
    /// Next entry index expected when the segment was started (0: none yet).
    pub first_index: u64,
}

/// Why a segment header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    /// The file is shorter than a header.
    Short,
    /// The magic bytes differ.
    Magic,
    /// A version this build cannot read.
    Version(u32),
    /// The header checksum does not match.
    Checksum,
    /// The header disagrees with the file name.
    NameMismatch,
}

impl std::fmt::Display for BadHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadHeader::Short => write!(f, "file shorter than the segment header"),
            BadHeader::Magic => write!(f, "bad magic (not a rusted WAL segment)"),
            BadHeader::Version(v) => {
                write!(f, "unsupported format version {v} (this build reads {FORMAT_VERSION})")
            }
            BadHeader::Checksum => write!(f, "header checksum mismatch"),
            BadHeader::NameMismatch => write!(f, "header does not match the file name"),
        }
    }
}

impl SegmentHeader {
    /// Encodes the header into its 64 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes and verifies a header from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, BadHeader> {
        let h = buf.get(..HEADER_LEN).ok_or(BadHeader::Short)?;
        let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let dword = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(a)
        };
        if h[0..8] != MAGIC {
            return Err(BadHeader::Magic);
        }
        if crc32fast::hash(&h[..60]) != word(60) {
            return Err(BadHeader::Checksum);
        }
        let version = word(8);
        if version != FORMAT_VERSION || word(12) != HEADER_LEN as u32 {
            return Err(BadHeader::Version(version));
        }
        Ok(SegmentHeader { seq: dword(16), first_index: dword(24) })
    }

    /// The file name of this segment.
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}.wal", self.seq, self.first_index)
    }
}

/// Parses a segment file name into (seq, first_index).
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
}

/// A segment file found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// Sequence number from the name.
    pub seq: u64,
    /// First index from the name.
    pub first_index: u64,
    /// Full path.
    pub path: PathBuf,
}

/// Lists the segments of `dir` in sequence order and the leftover `.tmp` files.
pub fn list_dir(dir: &Path) -> io::Result<(Vec<SegmentFile>, Vec<PathBuf>)> {
    let mut segs = Vec::new();
    let mut tmps = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let ent = ent?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((seq, first_index)) = parse_name(name) {
            segs.push(SegmentFile { seq, first_index, path: ent.path() });
        } else if name.ends_with(".tmp") {
            tmps.push(ent.path());
        }
    }
    segs.sort_by_key(|s| s.seq);
    Ok((segs, tmps))
}

/// How new segment files get their space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prealloc {
    /// `fallocate` the whole segment (unwritten extents; the first write of each block also
    /// updates the extent tree, which the following fdatasync must journal).
    Fallocate,
    /// Write zeros over the whole segment and sync them, so later writes only overwrite data
    /// blocks and fdatasync has no metadata to flush.
    ZeroFill,
}

/// Creates `path` (which must not exist) and gives it `len` bytes of space.
pub fn create_preallocated(path: &Path, len: u64, how: Prealloc) -> io::Result<File> {
    let f = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    match how {
        Prealloc::Fallocate => {
            if let Err(e) = rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, len) {
                tracing::debug!(error = %e, "fallocate unsupported, extending the file instead");
                f.set_len(len)?;
            }
        }
        Prealloc::ZeroFill => {
            use std::os::unix::fs::FileExt;
            let zeros = vec![0u8; 1 << 20];
            let mut off = 0u64;
            while off < len {
                let n = (len - off).min(zeros.len() as u64) as usize;
                f.write_all_at(&zeros[..n], off)?;
                off += n as u64;
            }
        }
    }
    f.sync_all()?;
    Ok(f)
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_rejections() {
        let h = SegmentHeader { seq: 3, first_index: 42 };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        assert_eq!(parse_name(&h.file_name()), Some((3, 42)));
        assert_eq!(SegmentHeader::decode(&b[..10]), Err(BadHeader::Short));
        let mut m = b;
        m[0] = b'X';
        assert_eq!(SegmentHeader::decode(&m), Err(BadHeader::Magic));
        let mut c = b;
        c[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&c), Err(BadHeader::Checksum));
        assert_eq!(parse_name("0001-0002.wal"), None);
        assert_eq!(parse_name("zzzzzzzzzzzzzzzz-0000000000000000.wal"), None);
    }
}
