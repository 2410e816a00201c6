//! The two meta pages (ids 0 and 1), written alternately by transaction id.
//!
//! Meta page: a page header (kind 4) followed by, little-endian:
//!
//! | offset | size | field                                                        |
//! |--------|------|--------------------------------------------------------------|
//! | 16     | 4    | magic `0x52535444` ("RSTD")                                   |
//! | 20     | 4    | format version (1)                                           |
//! | 24     | 4    | page size                                                    |
//! | 28     | 4    | flags (0)                                                    |
//! | 32     | 8    | catalog root: page of the tree mapping bucket names to roots |
//! | 40     | 8    | freelist page                                                |
//! | 48     | 8    | high-water mark: pages `>= hwm` are not in use               |
//! | 56     | 8    | transaction id                                               |
//! | 64     | 8    | user field 1 (the owner's; rusted-mvcc: last flushed revision) |
//! | 72     | 8    | user field 2 (the owner's; rusted-mvcc: 0, unused)           |
//! | 80     | 4    | CRC32 of bytes 16..80                                        |
//!
//! Open reads both and takes the valid one with the higher transaction id, falling back to the
//! other when the newest is damaged (a torn meta write).
#![forbid(unsafe_code)]

use crate::page::{u32_at, u64_at, Header, PageId, KIND_META, PAGE_HEADER};

/// Magic number of a rusted page file.
pub const MAGIC: u32 = 0x5253_5444;
/// Format version.
pub const VERSION: u32 = 1;
/// Bytes of a meta page that carry data.
pub const META_LEN: usize = 84;

/// The decoded meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Page size in bytes.
    pub page_size: u32,
    /// Root of the bucket catalog tree.
    pub catalog: PageId,
    /// Freelist page.
    pub freelist: PageId,
    /// High-water mark (pages in use).
    pub hwm: PageId,
    /// Transaction id.
    pub txid: u64,
    /// Two fields the page store's owner sets with each commit (rusted-mvcc: the last
    /// revision flushed into its `key` bucket, then 0; its applied index lives in its `meta`
    /// bucket, committed with the data).
    pub user: [u64; 2],
}

/// Why a meta page was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadMeta {
    /// Shorter than a meta.
    Short,
    /// Not a meta page / wrong magic.
    Magic,
    /// Unknown version.
    Version(u32),
    /// Checksum mismatch.
    Checksum,
    /// Fields that cannot be right (page ids beyond the high-water mark, odd page size).
    Invalid(String),
}

impl std::fmt::Display for BadMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadMeta::Short => write!(f, "file too short for a meta page"),
            BadMeta::Magic => write!(f, "bad magic (not a rusted page file)"),
            BadMeta::Version(v) => write!(f, "unsupported format version {v}"),
            BadMeta::Checksum => write!(f, "meta checksum mismatch"),
            BadMeta::Invalid(s) => write!(f, "invalid meta: {s}"),
        }
    }
}

impl Meta {
    /// Encodes into the first [`META_LEN`] bytes of page `id`'s buffer.
    pub fn write(&self, id: PageId, b: &mut [u8]) {
        Header { id, kind: KIND_META, count: 0, overflow: 0 }.write(b);
        b[16..20].copy_from_slice(&MAGIC.to_le_bytes());
        b[20..24].copy_from_slice(&VERSION.to_le_bytes());
        b[24..28].copy_from_slice(&self.page_size.to_le_bytes());
        b[28..32].copy_from_slice(&0u32.to_le_bytes());
        b[32..40].copy_from_slice(&self.catalog.to_le_bytes());
        b[40..48].copy_from_slice(&self.freelist.to_le_bytes());
        b[48..56].copy_from_slice(&self.hwm.to_le_bytes());
        b[56..64].copy_from_slice(&self.txid.to_le_bytes());
        b[64..72].copy_from_slice(&self.user[0].to_le_bytes());
        b[72..80].copy_from_slice(&self.user[1].to_le_bytes());
        let crc = crc32fast::hash(&b[PAGE_HEADER..80]);
        b[80..84].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and verifies a meta page.
    pub fn read(b: &[u8]) -> Result<Meta, BadMeta> {
        if b.len() < META_LEN {
            return Err(BadMeta::Short);
        }
        let h = Header::read(b);
        if h.kind != KIND_META || u32_at(b, 16) != MAGIC {
            return Err(BadMeta::Magic);
        }
        if crc32fast::hash(&b[PAGE_HEADER..80]) != u32_at(b, 80) {
            return Err(BadMeta::Checksum);
        }
        let v = u32_at(b, 20);
        if v != VERSION {
            return Err(BadMeta::Version(v));
        }
        let m = Meta {
            page_size: u32_at(b, 24),
            catalog: u64_at(b, 32),
            freelist: u64_at(b, 40),
            hwm: u64_at(b, 48),
            txid: u64_at(b, 56),
            user: [u64_at(b, 64), u64_at(b, 72)],
        };
        if m.txid == u64::MAX {
            return Err(BadMeta::Invalid("transaction id at its maximum".into()));
        }
        if !m.page_size.is_power_of_two() || !(1024..=65536).contains(&m.page_size) {
            return Err(BadMeta::Invalid(format!("page size {}", m.page_size)));
        }
        for (what, id) in [("catalog", m.catalog), ("freelist", m.freelist)] {
            if id < 2 || id >= m.hwm {
                return Err(BadMeta::Invalid(format!("{what} page {id} outside 2..{}", m.hwm)));
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let m = Meta { page_size: 4096, catalog: 3, freelist: 2, hwm: 4, txid: 9, user: [7, 1] };
        let mut b = vec![0u8; 4096];
        m.write(1, &mut b);
        assert_eq!(Meta::read(&b), Ok(m));
        for i in 16..84 {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(Meta::read(&c).is_err(), "flip at {i} accepted");
        }
        assert_eq!(Meta::read(&b[..10]), Err(BadMeta::Short));
    }
}
