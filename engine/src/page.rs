//! Page layout: the header every page starts with, and bounds-checked views of branch and leaf
//! pages as they sit in the map.
//!
//! Page header (16 bytes, little-endian):
//!
//! | offset | size | field                                                          |
//! |--------|------|----------------------------------------------------------------|
//! | 0      | 8    | page id (must equal the page's position in the file)           |
//! | 8      | 2    | kind: 1 branch, 2 leaf, 4 meta, 8 freelist                     |
//! | 10     | 2    | count: elements on the page (branch, leaf)                      |
//! | 12     | 4    | overflow: further pages this one spans (the node is contiguous) |
//!
//! Leaf body: `count` key prefixes of 4 bytes, then `count` elements of 8 bytes, then the keys
//! and values they point to (12 bytes of overhead per entry).
//!
//! | offset                  | size | field                                                   |
//! |-------------------------|------|---------------------------------------------------------|
//! | 16 + 4i                 | 4    | prefix of key i: first 4 bytes, zero-padded, big-endian integer |
//! | 16 + 4n + 8i            | 2    | pos: offset of key i from the page start                |
//! | 16 + 4n + 8i + 2        | 2    | key length (keys are at most 32 KiB)                    |
//! | 16 + 4n + 8i + 4        | 4    | value length (the value follows the key)                |
//!
//! The prefixes sit together so a search reads a few cache lines of them and touches a key
//! only on a tie. A leaf with more than one entry never exceeds one page (≤ 64 KiB), so `pos`
//! fits 16 bits; a single oversized entry has its key right after the table.
//!
//! Branch body: `count` key prefixes of 8 bytes, then `count` elements of 16 bytes, then the
//! keys (each the first key of its child): 24 bytes of overhead per child.
//!
//! | offset                  | size | field                                                   |
//! |-------------------------|------|---------------------------------------------------------|
//! | 16 + 8i                 | 8    | prefix of key i: first 8 bytes, zero-padded, big-endian integer |
//! | 16 + 8n + 16i           | 4    | pos: offset of key i from the page start                |
//! | 16 + 8n + 16i + 4       | 4    | key length                                              |
//! | 16 + 8n + 16i + 8       | 8    | child page id                                           |
//!
//! In both kinds the prefixes sit together, so a search compares within a few cache lines and
//! touches a key only on a tie (different prefixes order keys exactly as the keys do).
//!
//! Views check the header and element table when opened and every key and value offset when
//! read, so a damaged page reads as an error, never as out-of-bounds memory; `validate` also
//! checks the key order (used by the consistency check).
#![forbid(unsafe_code)]

use crate::error::{EngineError, Result};

/// Page id.
pub type PageId = u64;

/// Size of the page header.
pub const PAGE_HEADER: usize = 16;
/// Bytes of overhead per leaf entry (a 4-byte prefix and an 8-byte element).
pub const LEAF_ELEM: usize = 12;
/// Size of a leaf element proper (after the prefixes).
const LEAF_SLOT: usize = 8;

/// Bytes of overhead per branch child (an 8-byte prefix and a 16-byte element).
pub const BRANCH_ELEM: usize = 24;
/// Size of a branch element proper (after the prefixes).
const BRANCH_SLOT: usize = 16;

/// The first 8 bytes of `key`, zero-padded, as a big-endian integer.
#[inline]
pub fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// The first 4 bytes of `key`, zero-padded, as a big-endian integer (the leaf prefix: the top
/// half of [`key_prefix`]).
#[inline]
pub fn leaf_prefix(key: &[u8]) -> u32 {
    (key_prefix(key) >> 32) as u32
}

/// Page kinds.
pub const KIND_BRANCH: u16 = 1;
/// Leaf page.
pub const KIND_LEAF: u16 = 2;
/// Meta page.
pub const KIND_META: u16 = 4;
/// Freelist page.
pub const KIND_FREELIST: u16 = 8;

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The decoded page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Page id.
    pub id: PageId,
    /// Kind.
    pub kind: u16,
    /// Element count.
    pub count: u16,
    /// Overflow pages.
    pub overflow: u32,
}

impl Header {
    /// Reads a header from the first 16 bytes of `b` (the caller checked the length).
    pub fn read(b: &[u8]) -> Header {
        Header {
            id: u64_at(b, 0),
            kind: u16_at(b, 8),
            count: u16_at(b, 10),
            overflow: u32_at(b, 12),
        }
    }

    /// Writes this header into the first 16 bytes of `b`.
    pub fn write(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..10].copy_from_slice(&self.kind.to_le_bytes());
        b[10..12].copy_from_slice(&self.count.to_le_bytes());
        b[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// A verified view of a branch or leaf page (including its overflow pages).
#[derive(Debug, Clone, Copy)]
pub struct PageView<'a> {
    /// The page's bytes, `(1 + overflow) * page_size` long.
    pub bytes: &'a [u8],
    /// Its header.
    pub header: Header,
    /// Element size (leaf slot or branch element).
    elem: usize,
    /// Start of the element table.
    slots: usize,
    /// End of the element table (checked ≤ `bytes.len()`).
    elems_end: usize,
}

/// Compares keys; the first 8 bytes as one big-endian integer (most keys differ there: MVCC
/// revisions, hashes), then the rest bytewise. Same order as slice comparison.
#[inline]
pub fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if a.len() >= 8 && b.len() >= 8 {
        let mut x = [0u8; 8];
        let mut y = [0u8; 8];
        x.copy_from_slice(&a[..8]);
        y.copy_from_slice(&b[..8]);
        match u64::from_be_bytes(x).cmp(&u64::from_be_bytes(y)) {
            std::cmp::Ordering::Equal => a[8..].cmp(&b[8..]),
            o => o,
        }
    } else {
        a.cmp(b)
    }
}

impl<'a> PageView<'a> {
    /// Checks the header and every element of a node page. `bytes` must be exactly the page
    /// and its overflow pages.
    pub fn new(bytes: &'a [u8], id: PageId) -> Result<Self> {
        if bytes.len() < PAGE_HEADER {
            return Err(EngineError::Corrupt {
                page: id,
                reason: "page shorter than its header".into(),
            });
        }
        Self::with_header(bytes, Header::read(bytes), id)
    }

    /// As [`PageView::new`], with the header already read from `bytes`.
    #[inline]
    pub fn with_header(bytes: &'a [u8], header: Header, id: PageId) -> Result<Self> {
        let corrupt = |why: &str| EngineError::Corrupt { page: id, reason: why.to_string() };
        if header.id != id {
            return Err(corrupt(&format!("page claims id {}", header.id)));
        }
        let n = header.count as usize;
        let (elem, slots) = match header.kind {
            KIND_LEAF => (LEAF_SLOT, PAGE_HEADER + 4 * n),
            KIND_BRANCH => (BRANCH_SLOT, PAGE_HEADER + 8 * n),
            k => return Err(corrupt(&format!("unexpected page kind {k} in a tree"))),
        };
        if header.kind == KIND_BRANCH && n == 0 {
            return Err(corrupt("branch page without children"));
        }
        let elems_end = slots + n * elem;
        if elems_end > bytes.len() {
            return Err(corrupt("element table runs past the page"));
        }
        Ok(PageView { bytes, header, elem, slots, elems_end })
    }

    /// Checks every element's bounds and the key order (O(n); reads check lazily instead).
    pub fn validate(&self) -> Result<()> {
        for i in 0..self.len() {
            let k = self.key(i)?;
            if self.is_leaf() {
                self.value(i)?;
            }
            if i > 0 && key_cmp(self.key(i - 1)?, k).is_ge() {
                return Err(self.corrupt(&format!("keys out of order at element {i}")));
            }
            let prefix_ok = if self.is_leaf() {
                self.leaf_prefix(i) == leaf_prefix(k)
            } else {
                self.prefix(i) == key_prefix(k)
            };
            if !prefix_ok {
                return Err(
                    self.corrupt(&format!("key prefix of element {i} disagrees with its key"))
                );
            }
        }
        Ok(())
    }

    #[cold]
    fn corrupt(&self, why: &str) -> EngineError {
        EngineError::Corrupt { page: self.header.id, reason: why.to_string() }
    }

    /// Is this a leaf?
    pub fn is_leaf(&self) -> bool {
        self.header.kind == KIND_LEAF
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.header.count as usize
    }

    /// No elements?
    pub fn is_empty(&self) -> bool {
        self.header.count == 0
    }

    #[inline]
    fn elem(&self, i: usize) -> usize {
        self.slots + i * self.elem
    }

    /// (key position, key length) of element `i`.
    #[inline]
    fn key_loc(&self, i: usize) -> Option<(usize, usize)> {
        let e = self.elem(i);
        let h = self.bytes.get(e..e + 8)?;
        Some(if self.is_leaf() {
            (u16::from_le_bytes([h[0], h[1]]) as usize, u16::from_le_bytes([h[2], h[3]]) as usize)
        } else {
            (
                u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize,
                u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize,
            )
        })
    }

    /// Key of element `i` (< len).
    #[inline]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let Some((pos, klen)) = self.key_loc(i) else {
            return Err(self.corrupt(&format!("element {i} beyond the table")));
        };
        match self.bytes.get(pos..pos.saturating_add(klen)) {
            Some(k) if pos >= self.elems_end => Ok(k),
            _ => Err(self.corrupt(&format!("key {i} points outside the page"))),
        }
    }

    /// Value of leaf element `i` (< len).
    pub fn value(&self, i: usize) -> Result<&'a [u8]> {
        debug_assert!(self.is_leaf());
        let (pos, klen) = self.key_loc(i).unwrap_or((usize::MAX, 0));
        let vlen = u32_at(self.bytes, self.elem(i) + 4) as usize;
        pos.checked_add(klen)
            .and_then(|start| Some((start, start.checked_add(vlen)?)))
            .and_then(|(start, end)| self.bytes.get(start..end))
            .ok_or_else(|| self.corrupt(&format!("value {i} points outside the page")))
    }

    /// The stored key prefix of leaf element `i` (< len).
    #[inline]
    pub fn leaf_prefix(&self, i: usize) -> u32 {
        u32_at(self.bytes, PAGE_HEADER + 4 * i)
    }

    /// The stored key prefix of branch element `i` (< len).
    #[inline]
    pub fn prefix(&self, i: usize) -> u64 {
        u64_at(self.bytes, PAGE_HEADER + 8 * i)
    }

    /// Child page of branch element `i` (< len).
    pub fn child(&self, i: usize) -> PageId {
        debug_assert!(!self.is_leaf());
        u64_at(self.bytes, self.elem(i) + 8)
    }

    /// Loads every cache line of the prefix array at once. The binary search's loads depend on
    /// each other, so on a page not in cache each probe would wait for the one before; these
    /// independent loads let the CPU fetch all the lines in parallel (one memory round trip).
    #[inline]
    fn touch_prefixes(&self) {
        let end = self.slots.min(self.bytes.len());
        let mut acc = 0u8;
        let mut at = PAGE_HEADER;
        while at < end {
            acc ^= self.bytes[at];
            at += 64;
        }
        std::hint::black_box(acc);
    }

    /// Binary search: `Ok(i)` where key `i` equals `key`, else `Err(i)` with `i` the index of
    /// the first greater key.
    #[inline]
    pub fn search(&self, key: &[u8]) -> Result<Result<usize, usize>> {
        let (mut lo, mut hi) = (0, self.len());
        self.touch_prefixes();
        let kp = key_prefix(key);
        let lp = leaf_prefix(key);
        let branch = !self.is_leaf();
        while lo < hi {
            let mid = (lo + hi) / 2;
            let ord =
                if branch { self.prefix(mid).cmp(&kp) } else { self.leaf_prefix(mid).cmp(&lp) };
            let ord = match ord {
                std::cmp::Ordering::Equal => key_cmp(self.key(mid)?, key),
                o => o,
            };
            match ord {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// Index of the first element whose key is ≥ `key` (binary search).
    #[inline]
    pub fn lower_bound(&self, key: &[u8]) -> Result<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if key_cmp(self.key(mid)?, key).is_lt() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}
