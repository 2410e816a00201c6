//! The writer: a set of buckets into a fresh bbolt file, in one sequential pass. It only
//! writes; bbolt, [`crate::read`] or the independent reader in its tests read the result.
//!
//! Layout written: page 0 meta (txid 2), page 1 meta (txid 1, otherwise identical, so either
//! alone opens the file), page 2 the empty freelist, then each bucket's tree in name order
//! (leaves left to right, then each branch level bottom-up), then the root bucket's tree. Nodes
//! are filled greedily to one page; an entry that does not fit a page alone gets a node of its
//! own with overflow pages. Every branch node has at least two children, even when that takes
//! it past a page (bbolt's rebalancing asserts that a parent has two children or more; a lone
//! last child joins the node before it). Every page below the high-water mark is reachable
//! exactly once, as bbolt's `Tx.Check` requires.
#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use crate::{
    fnv1a64, BoltBucket, BUCKET_ENTRY, ELEM, FLAG_BRANCH, FLAG_FREELIST, FLAG_LEAF, FLAG_META,
    HEADER, MAGIC, MAX_KEY_SIZE, MAX_PAGE_SIZE, MAX_VALUE_SIZE, MIN_PAGE_SIZE, VERSION,
};

/// Bytes of the meta covered by its checksum (everything before the checksum field).
const META_SUMMED: usize = 56;
const FREELIST_PAGE: u64 = 2;
/// Txids of the metas in pages 0 and 1 (a meta lives in page `txid % 2`).
const META_TXIDS: [u64; 2] = [2, 1];
/// bbolt refuses to write a node of 0xFFFF or more elements; stay below.
const MAX_COUNT: usize = 0xFFFE;
const WRITE_BUFFER: usize = 1 << 20;
const ZEROS: [u8; 4096] = [0; 4096];

/// Writes a new bbolt (format version 2) database at `path` holding exactly these top-level
/// buckets (sorted by name; no nested buckets), with page size `page_size` (4096), txid 1 or 2,
/// an empty freelist. fsyncs the file. Returns the file size.
///
/// Input that bbolt could not hold (unsorted, duplicate or empty keys or bucket names, keys over
/// [`MAX_KEY_SIZE`], values over [`MAX_VALUE_SIZE`], a page size that is not a power of two in
/// [`MIN_PAGE_SIZE`]`..=`[`MAX_PAGE_SIZE`]) is an [`io::ErrorKind::InvalidInput`] error, found
/// before the file is created. On a write error the partial file is removed.
pub fn write_bolt(path: &Path, page_size: usize, buckets: &[BoltBucket]) -> io::Result<u64> {
    validate(page_size, buckets)?;
    let file = File::create(path)?;
    match write_file(file, page_size, buckets) {
        Ok(size) => Ok(size),
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn validate(page_size: usize, buckets: &[BoltBucket]) -> io::Result<()> {
    if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(invalid(format!(
            "page size {page_size} is not a power of two in {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}"
        )));
    }
    let mut prev_name: Option<&[u8]> = None;
    for (b, bucket) in buckets.iter().enumerate() {
        let name = bucket.name.as_slice();
        check_key(name, prev_name).map_err(|why| invalid(format!("bucket {b}: name {why}")))?;
        prev_name = Some(name);
        let mut prev: Option<&[u8]> = None;
        for (i, (k, v)) in bucket.items.iter().enumerate() {
            let at = || format!("bucket {:?} item {i}", String::from_utf8_lossy(name));
            check_key(k, prev).map_err(|why| invalid(format!("{}: key {why}", at())))?;
            if v.len() > MAX_VALUE_SIZE {
                return Err(invalid(format!(
                    "{}: value of {} bytes exceeds {MAX_VALUE_SIZE}",
                    at(),
                    v.len()
                )));
            }
            prev = Some(k);
        }
    }
    Ok(())
}

/// Why `key` cannot follow `prev`, if it cannot.
fn check_key(key: &[u8], prev: Option<&[u8]>) -> Result<(), String> {
    if key.is_empty() {
        return Err("is empty".into());
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(format!("of {} bytes exceeds {MAX_KEY_SIZE}", key.len()));
    }
    match prev {
        Some(p) if p == key => Err("is a duplicate".into()),
        Some(p) if p > key => Err("is out of order".into()),
        _ => Ok(()),
    }
}

/// A leaf entry: element flags, key, value.
#[derive(Clone, Copy)]
struct Entry<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
}

/// A branch entry: the smallest key under the child, and the child's page id.
type Child<'a> = (&'a [u8], u64);

fn to_u32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| invalid(format!("{n} does not fit a 32-bit page field")))
}

fn to_u16(n: usize) -> io::Result<u16> {
    u16::try_from(n).map_err(|_| invalid(format!("{n} does not fit a 16-bit page field")))
}

/// Sequential page output: hands out page ids in file order.
struct PageOut {
    out: BufWriter<File>,
    page_size: usize,
    /// Id of the next page to be written (= pages written so far).
    next: u64,
    /// Scratch for a node's header and element table.
    table: Vec<u8>,
}

impl PageOut {
    fn zeros(&mut self, mut n: usize) -> io::Result<()> {
        while n > 0 {
            let k = n.min(ZEROS.len());
            self.out.write_all(&ZEROS[..k])?;
            n -= k;
        }
        Ok(())
    }

    /// Starts a node of `size` bytes at the next page: puts its header into the table and
    /// returns (page id, pages spanned).
    fn begin(&mut self, size: usize, flags: u16, count: usize) -> io::Result<(u64, usize)> {
        let pages = size.div_ceil(self.page_size).max(1);
        let id = self.next;
        self.table.clear();
        self.table.extend_from_slice(&id.to_le_bytes());
        self.table.extend_from_slice(&flags.to_le_bytes());
        self.table.extend_from_slice(&to_u16(count)?.to_le_bytes());
        self.table.extend_from_slice(&to_u32(pages - 1)?.to_le_bytes());
        Ok((id, pages))
    }

    /// Pads the node begun at [`begin`](Self::begin) to its pages and advances past them.
    fn finish(&mut self, size: usize, pages: usize) -> io::Result<()> {
        self.zeros(pages * self.page_size - size)?;
        self.next += pages as u64;
        Ok(())
    }

    fn write_leaf(&mut self, entries: &[Entry<'_>]) -> io::Result<u64> {
        let n = entries.len();
        let data: usize = entries.iter().map(|e| e.key.len() + e.value.len()).sum();
        let size = HEADER + ELEM * n + data;
        let (id, pages) = self.begin(size, FLAG_LEAF, n)?;
        let mut off = HEADER + ELEM * n;
        for (i, e) in entries.iter().enumerate() {
            let pos = to_u32(off - (HEADER + ELEM * i))?;
            let (ksize, vsize) = (to_u32(e.key.len())?, to_u32(e.value.len())?);
            for field in [e.flags, pos, ksize, vsize] {
                self.table.extend_from_slice(&field.to_le_bytes());
            }
            off += e.key.len() + e.value.len();
        }
        self.out.write_all(&self.table)?;
        for e in entries {
            self.out.write_all(e.key)?;
            self.out.write_all(e.value)?;
        }
        self.finish(size, pages)?;
        Ok(id)
    }

    fn write_branch(&mut self, children: &[Child<'_>]) -> io::Result<u64> {
        let n = children.len();
        let data: usize = children.iter().map(|c| c.0.len()).sum();
        let size = HEADER + ELEM * n + data;
        let (id, pages) = self.begin(size, FLAG_BRANCH, n)?;
        let mut off = HEADER + ELEM * n;
        for (i, (key, child)) in children.iter().enumerate() {
            let pos = to_u32(off - (HEADER + ELEM * i))?;
            self.table.extend_from_slice(&pos.to_le_bytes());
            self.table.extend_from_slice(&to_u32(key.len())?.to_le_bytes());
            self.table.extend_from_slice(&child.to_le_bytes());
            off += key.len();
        }
        self.out.write_all(&self.table)?;
        for (key, _) in children {
            self.out.write_all(key)?;
        }
        self.finish(size, pages)?;
        Ok(id)
    }
}

/// Groups leaf entries greedily into nodes of at most one page, calling `emit` on each full
/// node; an entry too big for a page alone gets a node to itself.
struct LeafPacker<'a> {
    page_size: usize,
    node: Vec<Entry<'a>>,
    size: usize,
}

impl<'a> LeafPacker<'a> {
    fn push(
        &mut self,
        e: Entry<'a>,
        mut emit: impl FnMut(&[Entry<'a>]) -> io::Result<()>,
    ) -> io::Result<()> {
        let bytes = ELEM + e.key.len() + e.value.len();
        if !self.node.is_empty()
            && (self.size + bytes > self.page_size || self.node.len() >= MAX_COUNT)
        {
            emit(&self.node)?;
            self.node.clear();
            self.size = HEADER;
        }
        self.node.push(e);
        self.size += bytes;
        Ok(())
    }
}

/// Splits one branch level (`children.len() >= 2`) into nodes: greedily up to a page each,
/// but every node takes at least two children. bbolt relies on that (its rebalancing asserts
/// that a non-root node's parent has two children or more), and it makes each level at most
/// half as wide as the one below. Returns the end index of each node.
fn branch_ends(page_size: usize, children: &[Child<'_>]) -> Vec<usize> {
    let mut ends = Vec::new();
    let (mut start, mut size) = (0, HEADER);
    for (i, child) in children.iter().enumerate() {
        let bytes = ELEM + child.0.len();
        if i - start >= 2 && (size + bytes > page_size || i - start >= MAX_COUNT) {
            ends.push(i);
            (start, size) = (i, HEADER);
        }
        size += bytes;
    }
    let n = children.len();
    if n - start == 1 {
        // A lone last child: take one from the node before (which keeps two or more, and only
        // shrinks), or join that node when it has just two.
        match ends.pop() {
            Some(end) if end - ends.last().copied().unwrap_or(0) >= 3 => {
                ends.push(end - 1);
            }
            _ => {}
        }
    }
    ends.push(n);
    ends
}

/// Writes one B+tree holding `entries` (in key order) bottom-up; returns its root page id.
fn write_tree<'a>(out: &mut PageOut, entries: impl Iterator<Item = Entry<'a>>) -> io::Result<u64> {
    let mut level: Vec<Child<'a>> = Vec::new();
    let mut leaves = LeafPacker { page_size: out.page_size, node: Vec::new(), size: HEADER };
    for e in entries {
        leaves.push(e, |node| {
            level.push((node[0].key, out.write_leaf(node)?));
            Ok(())
        })?;
    }
    if !leaves.node.is_empty() || level.is_empty() {
        // The last leaf, or the one empty leaf of an empty tree.
        let first: &'a [u8] = leaves.node.first().map_or(&[][..], |e| e.key);
        level.push((first, out.write_leaf(&leaves.node)?));
    }
    while level.len() > 1 {
        let mut upper: Vec<Child<'a>> = Vec::new();
        let mut start = 0;
        for end in branch_ends(out.page_size, &level) {
            let node = &level[start..end];
            upper.push((node[0].0, out.write_branch(node)?));
            start = end;
        }
        level = upper;
    }
    level.first().map(|c| c.1).ok_or_else(|| io::Error::other("bolt tree without a root"))
}

/// A meta page: header for page `slot`, then the meta with its checksum.
fn meta_page(page_size: usize, slot: u64, root: u64, hwm: u64, txid: u64) -> io::Result<Vec<u8>> {
    let mut p = vec![0u8; page_size];
    p[0..8].copy_from_slice(&slot.to_le_bytes());
    p[8..10].copy_from_slice(&FLAG_META.to_le_bytes());
    let mut m = Vec::with_capacity(META_SUMMED + 8);
    m.extend_from_slice(&MAGIC.to_le_bytes());
    m.extend_from_slice(&VERSION.to_le_bytes());
    m.extend_from_slice(&to_u32(page_size)?.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes()); // flags
    m.extend_from_slice(&root.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes()); // root bucket sequence
    m.extend_from_slice(&FREELIST_PAGE.to_le_bytes());
    m.extend_from_slice(&hwm.to_le_bytes());
    m.extend_from_slice(&txid.to_le_bytes());
    let sum = fnv1a64(&m);
    m.extend_from_slice(&sum.to_le_bytes());
    p[HEADER..HEADER + m.len()].copy_from_slice(&m);
    Ok(p)
}

fn write_file(file: File, page_size: usize, buckets: &[BoltBucket]) -> io::Result<u64> {
    let mut out = PageOut {
        out: BufWriter::with_capacity(WRITE_BUFFER, file),
        page_size,
        next: 0,
        table: Vec::new(),
    };
    // Pages 0 and 1 hold the metas, written last once the root and high-water mark are known.
    out.zeros(2 * page_size)?;
    out.next = 2;
    // Page 2: the empty freelist.
    let (id, pages) = out.begin(HEADER, FLAG_FREELIST, 0)?;
    debug_assert_eq!(id, FREELIST_PAGE);
    let table = std::mem::take(&mut out.table);
    out.out.write_all(&table)?;
    out.table = table;
    out.finish(HEADER, pages)?;

    let mut headers: Vec<[u8; 16]> = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let entries = bucket.items.iter().map(|(k, v)| Entry { flags: 0, key: k, value: v });
        let root = write_tree(&mut out, entries)?;
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(&root.to_le_bytes()); // sequence (bytes 8..16) stays 0
        headers.push(header);
    }
    let entries = buckets.iter().zip(&headers).map(|(b, h)| Entry {
        flags: BUCKET_ENTRY,
        key: &b.name,
        value: h,
    });
    let root = write_tree(&mut out, entries)?;
    let hwm = out.next;

    let mut w = out.out;
    w.seek(SeekFrom::Start(0))?;
    for (slot, txid) in (0u64..).zip(META_TXIDS) {
        w.write_all(&meta_page(page_size, slot, root, hwm, txid)?)?;
    }
    let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(hwm * page_size as u64)
}

#[cfg(test)]
mod tests;
