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
    let streams = buckets
        .iter()
        .map(|b| BucketStream {
            name: b.name.clone(),
            items: Box::new(b.items.iter().map(|(k, v)| Ok((k.clone(), v.clone())))),
        })
        .collect();
    write_bolt_stream(path, page_size, streams)
}

/// Key/value pairs pulled one at a time; an error stops the write.
pub type Items<'a> = Box<dyn Iterator<Item = io::Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// One bucket's items, pulled in key order as they are written (from a database's read
/// transaction, say), so that a file of any size is written in memory bounded by a page per
/// tree level.
pub struct BucketStream<'a> {
    /// Bucket name (non-empty, at most [`MAX_KEY_SIZE`] bytes).
    pub name: Vec<u8>,
    /// Key/value pairs in strictly increasing key order; an error stops the write.
    pub items: Items<'a>,
}

impl std::fmt::Debug for BucketStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStream").field("name", &String::from_utf8_lossy(&self.name)).finish()
    }
}

/// [`write_bolt`] from streams: bucket names are checked first, each item as it comes (an item
/// bbolt could not hold is an [`io::ErrorKind::InvalidInput`] error, the partial file removed).
pub fn write_bolt_stream(
    path: &Path,
    page_size: usize,
    buckets: Vec<BucketStream<'_>>,
) -> io::Result<u64> {
    check_page_size(page_size)?;
    let mut prev: Option<&[u8]> = None;
    for (b, bucket) in buckets.iter().enumerate() {
        check_key(&bucket.name, prev).map_err(|why| invalid(format!("bucket {b}: name {why}")))?;
        prev = Some(&bucket.name);
    }
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

fn check_page_size(page_size: usize) -> io::Result<()> {
    if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(invalid(format!(
            "page size {page_size} is not a power of two in {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}"
        )));
    }
    Ok(())
}

fn validate(page_size: usize, buckets: &[BoltBucket]) -> io::Result<()> {
    check_page_size(page_size)?;
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
struct Entry {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// A branch entry: the smallest key under the child, and the child's page id.
type Child = (Vec<u8>, u64);

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

    fn write_leaf(&mut self, entries: &[Entry]) -> io::Result<u64> {
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
            self.out.write_all(&e.key)?;
            self.out.write_all(&e.value)?;
        }
        self.finish(size, pages)?;
        Ok(id)
    }

    fn write_branch(&mut self, children: &[Child]) -> io::Result<u64> {
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

/// Branch levels built as their children arrive, each level holding its node being filled and
/// the last full one (held back: a lone last child at the end joins it, see [`branch_ends`]).
/// Greedily up to a page per node, but every node takes at least two children: bbolt relies
/// on that (its rebalancing asserts that a non-root node's parent has two children or more),
/// and it makes each level at most half as wide as the one below.
struct Branches {
    levels: Vec<Level>,
    page_size: usize,
}

struct Level {
    cur: Vec<Child>,
    size: usize,
    held: Option<Vec<Child>>,
}

impl Branches {
    fn new(page_size: usize) -> Self {
        Branches { levels: Vec::new(), page_size }
    }

    /// Adds a child at `depth` (0: a leaf); `write` writes a branch node, returning its page.
    fn add(
        &mut self,
        depth: usize,
        child: Child,
        write: &mut impl FnMut(&[Child]) -> io::Result<u64>,
    ) -> io::Result<()> {
        if self.levels.len() <= depth {
            self.levels.push(Level { cur: Vec::new(), size: HEADER, held: None });
        }
        let bytes = ELEM + child.0.len();
        let l = &mut self.levels[depth];
        if l.cur.len() >= 2 && (l.size + bytes > self.page_size || l.cur.len() >= MAX_COUNT) {
            let full = std::mem::take(&mut l.cur);
            l.size = HEADER;
            if let Some(node) = l.held.replace(full) {
                let first = node[0].0.clone();
                let id = write(&node)?;
                self.add(depth + 1, (first, id), write)?;
            }
        }
        let l = &mut self.levels[depth];
        l.size += bytes;
        l.cur.push(child);
        Ok(())
    }

    /// Writes what is left, bottom-up; returns the root's page.
    fn finish(mut self, write: &mut impl FnMut(&[Child]) -> io::Result<u64>) -> io::Result<u64> {
        let mut depth = 0;
        loop {
            let Some(l) = self.levels.get_mut(depth) else {
                return Err(io::Error::other("bolt tree without a root"));
            };
            let mut cur = std::mem::take(&mut l.cur);
            let mut held = l.held.take();
            if held.is_none() && cur.len() == 1 {
                return Ok(cur[0].1);
            }
            if cur.len() == 1 {
                match held.as_mut() {
                    // Take one from the node before, which keeps two or more.
                    Some(h) if h.len() >= 3 => {
                        if let Some(last) = h.pop() {
                            cur.insert(0, last);
                        }
                    }
                    // Join the node before, which has just two.
                    Some(h) => {
                        let mut joined = std::mem::take(h);
                        joined.append(&mut cur);
                        cur = joined;
                        held = None;
                    }
                    None => {}
                }
            }
            for node in held.into_iter().chain(std::iter::once(cur)) {
                let first = node[0].0.clone();
                let id = write(&node)?;
                self.add(depth + 1, (first, id), write)?;
            }
            depth += 1;
        }
    }
}

/// Splits one branch level (`children.len() >= 2`) into nodes as [`Branches`] does, all at
/// once: the end index of each node (the reference its tests compare with).
#[cfg(test)]
fn branch_ends(page_size: usize, children: &[Child]) -> Vec<usize> {
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

/// Writes one B+tree holding `entries` (in key order) bottom-up, leaves as they fill and
/// branches as theirs do; returns its root page id. `check` vets each entry after the one
/// before it (an error stops the write).
fn write_tree(
    out: &mut PageOut,
    entries: impl Iterator<Item = io::Result<Entry>>,
    mut check: impl FnMut(&Entry, Option<&[u8]>) -> io::Result<()>,
) -> io::Result<u64> {
    let page_size = out.page_size;
    let mut branches = Branches::new(page_size);
    let mut node: Vec<Entry> = Vec::new();
    let mut size = HEADER;
    let mut prev: Option<Vec<u8>> = None;
    let mut leaves = 0usize;
    for e in entries {
        let e = e?;
        check(&e, prev.as_deref())?;
        let bytes = ELEM + e.key.len() + e.value.len();
        if !node.is_empty() && (size + bytes > page_size || node.len() >= MAX_COUNT) {
            let first = node[0].key.clone();
            let id = out.write_leaf(&node)?;
            branches.add(0, (first, id), &mut |c| out.write_branch(c))?;
            leaves += 1;
            node.clear();
            size = HEADER;
        }
        prev = Some(e.key.clone());
        size += bytes;
        node.push(e);
    }
    if !node.is_empty() || leaves == 0 {
        // The last leaf, or the one empty leaf of an empty tree.
        let first = node.first().map_or_else(Vec::new, |e| e.key.clone());
        let id = out.write_leaf(&node)?;
        branches.add(0, (first, id), &mut |c| out.write_branch(c))?;
    }
    branches.finish(&mut |c| out.write_branch(c))
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

fn write_file(file: File, page_size: usize, buckets: Vec<BucketStream<'_>>) -> io::Result<u64> {
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

    let mut roots: Vec<Entry> = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let name = bucket.name;
        let entries = bucket.items.map(|r| r.map(|(key, value)| Entry { flags: 0, key, value }));
        let check = |e: &Entry, prev: Option<&[u8]>| -> io::Result<()> {
            let at = || format!("bucket {:?} item", String::from_utf8_lossy(&name));
            check_key(&e.key, prev).map_err(|why| invalid(format!("{}: key {why}", at())))?;
            if e.value.len() > MAX_VALUE_SIZE {
                return Err(invalid(format!(
                    "{}: value of {} bytes exceeds {MAX_VALUE_SIZE}",
                    at(),
                    e.value.len()
                )));
            }
            Ok(())
        };
        let root = write_tree(&mut out, entries, check)?;
        let mut header = vec![0u8; 16];
        header[..8].copy_from_slice(&root.to_le_bytes()); // sequence (bytes 8..16) stays 0
        roots.push(Entry { flags: BUCKET_ENTRY, key: name, value: header });
    }
    let root = write_tree(&mut out, roots.into_iter().map(Ok), |_, _| Ok(()))?;
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
