//! rusted-bbolt: bbolt database files, the format of etcd's backend — what etcd's
//! `Maintenance.Snapshot` streams and `etcdctl snapshot status` / `restore` open. rusted's own
//! page store (rusted-engine) is a different format; this crate only converts: [`write`] turns a
//! set of buckets into a fresh bbolt file (format version 2) in one sequential pass, [`read`]
//! walks an untrusted one, checking it as bbolt's `Tx.Check` does.
//!
//! **Main types.** [`BoltBucket`], [`write::write_bolt`], [`read::BoltReader`],
//! [`read::BoltEvent`].
//!
//! **Invariants.** A written file is one bbolt opens and checks clean (every page below the
//! high-water mark reachable exactly once); a read never panics or allocates without bound,
//! whatever the file holds.
//!
//! ## The format (bbolt's, version 2)
//!
//! All integers are little-endian (bbolt lays its structs out in native order; every platform
//! etcd ships for is little-endian). A file is an array of pages of `page_size` bytes; page `n`
//! starts at byte `n * page_size`. A node (branch or leaf) bigger than one page occupies several
//! contiguous pages: only the first has a header, whose `overflow` counts the others.
//!
//! Page header (16 bytes, at the start of every page or node):
//!
//! | offset | size | field                                                              |
//! |--------|------|--------------------------------------------------------------------|
//! | 0      | 8    | page id: the page's own position in the file                       |
//! | 8      | 2    | flags: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist            |
//! | 10     | 2    | count: elements on the page (freelist: ids; 0xFFFF means "see first id") |
//! | 12     | 4    | overflow: further pages this node spans                            |
//!
//! Leaf page: `count` elements of 16 bytes from offset 16, then each element's key immediately
//! followed by its value.
//!
//! | offset      | size | field                                                            |
//! |-------------|------|------------------------------------------------------------------|
//! | 16 + 16i    | 4    | flags: 0x01 when the value is a bucket header (a nested bucket) |
//! | 16 + 16i+4  | 4    | pos: distance from the start of *this element* to its key       |
//! | 16 + 16i+8  | 4    | key size                                                         |
//! | 16 + 16i+12 | 4    | value size (the value starts at pos + key size)                 |
//!
//! Branch page: `count` elements of 16 bytes, then the keys. Each key is the smallest key of
//! its child's subtree; a lookup descends into the last child whose key is `<=` the target.
//!
//! | offset      | size | field                                                            |
//! |-------------|------|------------------------------------------------------------------|
//! | 16 + 16i    | 4    | pos: distance from the start of this element to its key         |
//! | 16 + 16i+4  | 4    | key size                                                         |
//! | 16 + 16i+8  | 8    | child page id                                                    |
//!
//! Meta page (pages 0 and 1): a page header (flags 0x04, id 0 or 1) followed by:
//!
//! | offset | size | field                                                                |
//! |--------|------|----------------------------------------------------------------------|
//! | 16     | 4    | magic `0xED0CDAED`                                                   |
//! | 20     | 4    | format version (2)                                                   |
//! | 24     | 4    | page size                                                            |
//! | 28     | 4    | flags (0)                                                            |
//! | 32     | 8    | root bucket: page id of its root node                                |
//! | 40     | 8    | root bucket: sequence (0)                                            |
//! | 48     | 8    | freelist page id (`u64::MAX` = freelist not stored)                  |
//! | 56     | 8    | high-water mark: number of pages in use (the file's logical size)     |
//! | 64     | 8    | transaction id; the meta at page `txid % 2`                          |
//! | 72     | 8    | checksum: 64-bit FNV-1a of bytes 16..72 (the meta up to this field)  |
//!
//! bbolt opens with the valid meta (magic, version, checksum) of higher txid, else the other.
//!
//! Freelist page: header (flags 0x10) then `count` page ids of 8 bytes (when the count does not
//! fit 16 bits, `count` is 0xFFFF and the first u64 holds it). Ours is always empty.
//!
//! Buckets: the meta's root bucket is a B+tree whose leaf entries have flag 0x01, key = bucket
//! name, value = a bucket header (16 bytes):
//!
//! | offset | size | field                                                                |
//! |--------|------|----------------------------------------------------------------------|
//! | 0      | 8    | root page id of the bucket's tree; 0 = inline bucket                 |
//! | 8      | 8    | sequence (`NextSequence`), 0 here                                    |
//!
//! An inline bucket (root 0) carries its single leaf page right after the header, inside the
//! value; bbolt makes small buckets inline. This writer never does: every bucket, even an empty
//! one, gets its own root page (an empty leaf when it has no items), which bbolt reads and
//! updates like any other bucket.
//!
#![forbid(unsafe_code)]

pub mod read;
pub mod write;

pub use write::{write_bolt, write_bolt_stream, BucketStream};

/// bbolt's magic number.
pub const MAGIC: u32 = 0xED0C_DAED;
/// bbolt's data file format version.
pub const VERSION: u32 = 2;
/// Largest key (and bucket name) bbolt accepts.
pub const MAX_KEY_SIZE: usize = 32_768;
/// Largest value bbolt accepts.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;
/// Smallest page size accepted (bbolt reads the first 4096 bytes when it opens a file; the
/// smallest file, four pages, must hold them).
pub const MIN_PAGE_SIZE: usize = 1024;
/// Largest page size accepted.
pub const MAX_PAGE_SIZE: usize = 65_536;

pub(crate) const HEADER: usize = 16;
/// Size of a leaf element and of a branch element alike.
pub(crate) const ELEM: usize = 16;
pub(crate) const FLAG_BRANCH: u16 = 0x01;
pub(crate) const FLAG_LEAF: u16 = 0x02;
pub(crate) const FLAG_META: u16 = 0x04;
pub(crate) const FLAG_FREELIST: u16 = 0x10;
/// Leaf element flag: the value is a bucket header.
pub(crate) const BUCKET_ENTRY: u32 = 0x01;

/// One bucket of a bbolt file: a name and its key/value pairs, sorted by key, keys unique and
/// non-empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoltBucket {
    /// Bucket name (non-empty, at most [`MAX_KEY_SIZE`] bytes).
    pub name: Vec<u8>,
    /// Key/value pairs in strictly increasing key order.
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
}

/// 64-bit FNV-1a, the meta checksum.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
