//! The in-memory revision index over all keys (etcd's treeIndex): key → [`KeyIndex`].
//!
//! Range ends follow etcd's API encoding: an empty end means the single key, `[0]` means every
//! key ≥ the start, anything else is an exclusive end.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::key_index::{IndexError, KeyIndex, Visible};
use crate::revision::Revision;

/// All keys' revisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

/// A range of keys as `BTreeMap::range` takes it.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The keys a range covers, from etcd's (key, range_end); `None` for a single key.
fn bounds<'a>(key: &'a [u8], end: &'a [u8]) -> Option<KeyBounds<'a>> {
    if end.is_empty() {
        return None; // a single key
    }
    if end == [0] {
        return Some((Bound::Included(key), Bound::Unbounded));
    }
    if end <= key {
        return Some((Bound::Included(key), Bound::Excluded(key))); // empty
    }
    Some((Bound::Included(key), Bound::Excluded(end)))
}

impl TreeIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys held (including keys that only have history).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No keys?
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Records a put of `key` at `rev`.
    pub fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), IndexError> {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::new(key.to_vec());
                ki.put(rev)?;
                self.keys.insert(key.to_vec(), ki);
                Ok(())
            }
        }
    }

    /// Records the deletion of `key` at `rev`; fails when the key does not currently exist.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), IndexError> {
        self.keys.get_mut(key).ok_or(IndexError::RevisionNotFound)?.tombstone(rev)
    }

    /// Rebuilding from the store, in revision order: a put (with the stored create revision
    /// and version of the value) or a tombstone of `key` at `rev`.
    pub fn restore(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        created: Revision,
        version: i64,
    ) -> Result<(), IndexError> {
        match self.keys.get_mut(key) {
            Some(ki) if tombstone => ki.tombstone(rev),
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::new(key.to_vec());
                if tombstone {
                    ki.restore_tombstone(rev);
                } else {
                    ki.restore(created, rev, version);
                }
                self.keys.insert(key.to_vec(), ki);
                Ok(())
            }
        }
    }

    /// The state of `key` at main revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Result<Visible, IndexError> {
        self.keys.get(key).ok_or(IndexError::RevisionNotFound)?.get(at)
    }

    /// Keys of the range that exist at `at`, in key order: at most `limit` of them (0: all),
    /// and how many there are in total (as etcd counts for `count` and `more`).
    pub fn range(
        &self,
        key: &[u8],
        end: &[u8],
        at: i64,
        limit: usize,
    ) -> (Vec<(&[u8], Visible)>, usize) {
        let Some(b) = bounds(key, end) else {
            return match self.keys.get_key_value(key).map(|(k, ki)| (k, ki.get(at))) {
                Some((k, Ok(v))) => (vec![(k.as_slice(), v)], 1),
                _ => (Vec::new(), 0),
            };
        };
        let mut out = Vec::new();
        let mut total = 0;
        for (k, ki) in self.keys.range::<[u8], _>(b) {
            if let Ok(v) = ki.get(at) {
                total += 1;
                if limit == 0 || out.len() < limit {
                    out.push((k.as_slice(), v));
                }
            }
        }
        (out, total)
    }

    /// Up to `limit` keys of the range that exist at `at` and sort after `after` (all of
    /// them from the start when `None`), in key order: a range read in pieces.
    pub fn range_after(
        &self,
        key: &[u8],
        end: &[u8],
        after: Option<&[u8]>,
        at: i64,
        limit: usize,
    ) -> Vec<(&[u8], Visible)> {
        let Some((lo, hi)) = bounds(key, end) else {
            return if after.is_some() { Vec::new() } else { self.range(key, end, at, 1).0 };
        };
        let lo = after.map_or(lo, Bound::Excluded);
        let from = match lo {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => &[][..],
        };
        if let Bound::Excluded(e) = hi {
            if from >= e {
                return Vec::new();
            }
        }
        let mut out = Vec::new();
        for (k, ki) in self.keys.range::<[u8], _>((lo, hi)) {
            if out.len() >= limit {
                break;
            }
            if let Ok(v) = ki.get(at) {
                out.push((k.as_slice(), v));
            }
        }
        out
    }

    /// Every change in the range with main revision ≥ `rev` (the last of each transaction per
    /// key), ordered by revision: what a watcher from `rev` has to replay.
    pub fn range_since(&self, key: &[u8], end: &[u8], rev: i64) -> Vec<(Revision, &[u8])> {
        let mut out: Vec<(Revision, &[u8])> = match bounds(key, end) {
            None => match self.keys.get_key_value(key) {
                Some((k, ki)) => ki.since(rev).into_iter().map(|r| (r, k.as_slice())).collect(),
                None => Vec::new(),
            },
            Some(b) => self
                .keys
                .range::<[u8], _>(b)
                .flat_map(|(k, ki)| ki.since(rev).into_iter().map(move |r| (r, k.as_slice())))
                .collect(),
        };
        out.sort_unstable();
        out
    }

    /// Compacts every key at `at`, dropping keys left with nothing; returns the revisions the
    /// store must keep (everything else ≤ `at` can be deleted from the `key` bucket).
    pub fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut available);
            !ki.is_empty()
        });
        available
    }

    /// Compacts up to `limit` keys from `from` on at `at`, adding the revisions to keep to
    /// `available`; returns the key to continue from, or None when every key is done. Lets
    /// compaction run in chunks with writes in between (readers at ≥ `at` see no difference).
    pub fn compact_chunk(
        &mut self,
        at: i64,
        from: &[u8],
        limit: usize,
        available: &mut HashSet<Revision>,
    ) -> Option<Vec<u8>> {
        let mut empty = Vec::new();
        let mut next = None;
        for (n, (k, ki)) in
            self.keys.range_mut::<[u8], _>((Bound::Included(from), Bound::Unbounded)).enumerate()
        {
            if n == limit.max(1) {
                next = Some(k.clone());
                break;
            }
            ki.compact(at, available);
            if ki.is_empty() {
                empty.push(k.clone());
            }
        }
        for k in empty {
            self.keys.remove(&k);
        }
        next
    }

    /// The revisions compaction at `at` would keep (tombstones at the cut excluded), without
    /// changing anything.
    pub fn keep(&self, at: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(at, &mut available);
        }
        available
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: i64) -> Revision {
        Revision::new(m, 0)
    }

    #[test]
    fn ranges_use_etcds_end_encoding() {
        let mut t = TreeIndex::new();
        for (i, k) in [&b"a"[..], b"b", b"c", b"d"].iter().enumerate() {
            t.put(k, r(i as i64 + 2)).unwrap();
        }
        t.tombstone(b"c", r(6)).unwrap();
        let keys = |end: &[u8], at, limit| {
            let (v, n) = t.range(b"b", end, at, limit);
            (v.into_iter().map(|(k, _)| k.to_vec()).collect::<Vec<_>>(), n)
        };
        assert_eq!(keys(b"", 10, 0), (vec![b"b".to_vec()], 1));
        assert_eq!(keys(b"d", 10, 0), (vec![b"b".to_vec()], 1), "c is deleted at 10");
        assert_eq!(keys(b"d", 5, 0), (vec![b"b".to_vec(), b"c".to_vec()], 2));
        assert_eq!(keys(&[0], 10, 0), (vec![b"b".to_vec(), b"d".to_vec()], 2));
        assert_eq!(keys(&[0], 10, 1), (vec![b"b".to_vec()], 2), "limit keeps the total");
        assert_eq!(keys(b"a", 10, 0), (vec![], 0), "end before start: nothing");
        let since: Vec<_> =
            t.range_since(b"a", &[0], 4).into_iter().map(|(rv, k)| (rv.main, k.to_vec())).collect();
        assert_eq!(since, vec![(4, b"c".to_vec()), (5, b"d".to_vec()), (6, b"c".to_vec())]);
        let av = t.compact(7);
        assert_eq!(t.len(), 3, "c is gone after compaction past its deletion");
        assert_eq!(av, HashSet::from([r(2), r(3), r(5)]), "a deletion before the cut is not kept");
    }
}
