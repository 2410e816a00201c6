//! The freelist: pages free for reuse, and pages freed by recent transactions that an open
//! reader may still see (pending, by freeing transaction id).
//!
//! Freelist page (one page plus overflow pages), little-endian:
//!
//! | offset | size  | field                                     |
//! |--------|-------|-------------------------------------------|
//! | 0      | 16    | page header (kind 8)                      |
//! | 16     | 8     | n: number of ids                          |
//! | 24     | 8 × n | free page ids, ascending                  |
//!
//! Pending pages are written as free: after a restart no reader can see them.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::{EngineError, Result};
use crate::page::{u64_at, Header, PageId, KIND_FREELIST, PAGE_HEADER};

/// Free and pending pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freelist {
    free: BTreeSet<PageId>,
    pending: BTreeMap<u64, Vec<PageId>>,
    /// Every pending id, for the double-free check.
    pending_ids: HashSet<PageId>,
}

impl Freelist {
    /// Takes a run of `n` contiguous free pages; `None` if there is none.
    pub fn allocate(&mut self, n: usize) -> Option<PageId> {
        debug_assert!(n > 0);
        let start = if n == 1 {
            *self.free.first()?
        } else {
            let mut run_start = None;
            let mut run_len = 0usize;
            let mut prev = None;
            let mut found = None;
            for &id in &self.free {
                if prev.is_some_and(|p: PageId| p + 1 == id) {
                    run_len += 1;
                } else {
                    run_start = Some(id);
                    run_len = 1;
                }
                prev = Some(id);
                if run_len == n {
                    found = run_start;
                    break;
                }
            }
            found?
        };
        for id in start..start + n as u64 {
            self.free.remove(&id);
        }
        Some(start)
    }

    /// Marks the `1 + overflow` pages at `id` freed by transaction `txid` (pending). A page
    /// that is free or pending already means the file is damaged (a tree reaches a free page,
    /// or reaches one page twice): an error, and nothing is changed.
    pub fn free(&mut self, txid: u64, id: PageId, overflow: u32) -> Result<()> {
        let end = id.checked_add(overflow as u64).ok_or(EngineError::Corrupt {
            page: id,
            reason: format!("overflow {overflow} wraps around"),
        })?;
        for p in id..=end {
            if self.free.contains(&p) || self.pending_ids.contains(&p) {
                return Err(EngineError::Corrupt {
                    page: p,
                    reason: "page freed twice: reachable from a tree and free, or reached twice"
                        .into(),
                });
            }
        }
        let v = self.pending.entry(txid).or_default();
        for p in id..=end {
            v.push(p);
            self.pending_ids.insert(p);
        }
        Ok(())
    }

    /// Makes the pages freed by transactions `<= upto` reusable (no reader can see them).
    pub fn release(&mut self, upto: u64) {
        let keep = self.pending.split_off(&(upto.saturating_add(1)));
        for (_, ids) in std::mem::replace(&mut self.pending, keep) {
            for p in &ids {
                self.pending_ids.remove(p);
            }
            self.free.extend(ids);
        }
    }

    /// Free plus pending pages.
    pub fn count(&self) -> usize {
        self.free.len() + self.pending.values().map(Vec::len).sum::<usize>()
    }

    /// Pages reusable now.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Every free or pending id, ascending.
    pub fn all_ids(&self) -> Vec<PageId> {
        let mut v: Vec<PageId> = self.free.iter().copied().collect();
        v.extend(self.pending.values().flatten());
        v.sort_unstable();
        v
    }

    /// Pages (including overflow) the encoded freelist needs.
    pub fn pages_needed(&self, page_size: usize) -> usize {
        (PAGE_HEADER + 8 + 8 * self.count()).div_ceil(page_size)
    }

    /// Encodes as page `id` spanning `pages` pages.
    pub fn encode(&self, id: PageId, pages: usize, page_size: usize) -> Vec<u8> {
        let ids = self.all_ids();
        let mut b = vec![0u8; pages * page_size];
        Header { id, kind: KIND_FREELIST, count: 0, overflow: (pages - 1) as u32 }.write(&mut b);
        b[16..24].copy_from_slice(&(ids.len() as u64).to_le_bytes());
        for (i, p) in ids.iter().enumerate() {
            b[24 + 8 * i..32 + 8 * i].copy_from_slice(&p.to_le_bytes());
        }
        b
    }

    /// Decodes a freelist page (with its overflow) read at `id`; every id must be below `hwm`.
    pub fn decode(b: &[u8], id: PageId, hwm: PageId) -> Result<Freelist> {
        let bad = |why: String| EngineError::Corrupt { page: id, reason: why };
        if b.len() < 24 {
            return Err(bad("freelist page too short".into()));
        }
        let h = Header::read(b);
        if h.kind != KIND_FREELIST || h.id != id {
            return Err(bad(format!("not a freelist page (kind {}, id {})", h.kind, h.id)));
        }
        let n = u64_at(b, 16);
        let end = n.checked_mul(8).and_then(|x| x.checked_add(24));
        if end.is_none_or(|e| e > b.len() as u64) {
            return Err(bad(format!("freelist of {n} ids does not fit its pages")));
        }
        let mut free = BTreeSet::new();
        for i in 0..n as usize {
            let p = u64_at(b, 24 + 8 * i);
            if p < 2 || p >= hwm || !free.insert(p) {
                return Err(bad(format!("freelist holds invalid or repeated page {p}")));
            }
        }
        Ok(Freelist { free, pending: BTreeMap::new(), pending_ids: HashSet::new() })
    }

    /// Removes the run `id..=id+overflow` from the free set (the freelist's own pages, which a
    /// damaged file might also list as free).
    pub fn exclude(&mut self, id: PageId, overflow: u32) {
        for p in id..=id.saturating_add(overflow as u64) {
            self.free.remove(&p);
        }
    }

    /// Is `id` free or pending?
    pub fn contains(&self, id: PageId) -> bool {
        self.free.contains(&id) || self.pending_ids.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_release_roundtrip() {
        let mut f = Freelist::default();
        f.free(5, 10, 2).unwrap(); // 10, 11, 12
        f.free(6, 20, 0).unwrap();
        assert!(f.free(7, 11, 0).is_err(), "double free is refused");
        assert_eq!(f.allocate(1), None, "pending pages are not reusable");
        f.release(5);
        assert_eq!(f.allocate(3), Some(10));
        f.release(6);
        assert_eq!(f.allocate(2), None);
        assert_eq!(f.allocate(1), Some(20));
        f.free(7, 30, 0).unwrap();
        f.free(7, 31, 0).unwrap();
        let b = f.encode(4, f.pages_needed(4096), 4096);
        let g = Freelist::decode(&b, 4, 100).unwrap();
        assert_eq!(g.all_ids(), vec![30, 31]);
        assert!(Freelist::decode(&b, 4, 31).is_err(), "id beyond hwm");
    }
}
