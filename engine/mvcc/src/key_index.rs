//! The revisions of one key, grouped in generations (etcd's keyIndex semantics).
//!
//! A generation runs from the put that (re)creates the key to the tombstone that deletes it;
//! a tombstone closes the current generation and opens an empty one. For
//! put(1) put(2) delete(3) put(4) delete(5) the generations are
//! `{1, 2, 3(t)} {4, 5(t)} {}`.
//!
//! Compacting at R drops, per generation, the revisions ≤ R except the last of them, and drops
//! whole generations that ended (tombstone) before R; the key is gone once only an empty
//! generation is left. Every question about a revision ≥ R is answered as before compaction.
#![forbid(unsafe_code)]

use std::collections::HashSet;

use crate::revision::Revision;

/// Index errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The key has no revision visible at the asked revision (as etcd's ErrRevisionNotFound).
    #[error("mvcc: revision not found")]
    RevisionNotFound,
    /// A change must come after the key's last one.
    #[error("mvcc: revision {given:?} is not after the key's last revision {last:?}")]
    NotIncreasing {
        /// The revision given.
        given: Revision,
        /// The key's last revision.
        last: Revision,
    },
}

/// One generation: the revisions from a (re)creation up to and including its deletion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generation {
    /// Number of puts in the generation (its last revision's version), counting compacted ones.
    pub ver: i64,
    /// The revision that created the key in this generation.
    pub created: Revision,
    /// Revisions, ascending.
    pub revs: Vec<Revision>,
}

impl Generation {
    /// No revision?
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Index of the last revision whose main is ≤ `at`.
    fn last_at_or_before(&self, at: i64) -> Option<usize> {
        self.revs.partition_point(|r| r.main <= at).checked_sub(1)
    }
}

/// The revisions of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    /// The key.
    pub key: Vec<u8>,
    /// Its last change.
    pub modified: Revision,
    /// Generations, oldest first; the last one is the current (possibly empty) one.
    pub generations: Vec<Generation>,
}

/// What a key looked like at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visible {
    /// The revision of the visible value.
    pub modified: Revision,
    /// When the key was created (in that generation).
    pub created: Revision,
    /// Its version (1 for the creating put).
    pub version: i64,
}

impl KeyIndex {
    /// A key with no revision yet.
    pub fn new(key: Vec<u8>) -> Self {
        KeyIndex { key, modified: Revision::default(), generations: vec![Generation::default()] }
    }

    /// Records a put at `rev`.
    pub fn put(&mut self, rev: Revision) -> Result<(), IndexError> {
        if rev <= self.modified {
            return Err(IndexError::NotIncreasing { given: rev, last: self.modified });
        }
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let g = self.generations.last_mut().unwrap_or_else(|| unreachable!("pushed above"));
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
        Ok(())
    }

    /// Records a deletion at `rev`; fails when the key does not currently exist.
    pub fn tombstone(&mut self, rev: Revision) -> Result<(), IndexError> {
        if self.generations.last().is_none_or(Generation::is_empty) {
            return Err(IndexError::RevisionNotFound);
        }
        self.put(rev)?;
        self.generations.push(Generation::default());
        Ok(())
    }

    /// Rebuilding from the store: the key's first known revision is a live value.
    pub fn restore(&mut self, created: Revision, modified: Revision, version: i64) {
        debug_assert!(self.is_empty(), "restore starts a key");
        self.modified = modified;
        self.generations = vec![Generation { ver: version, created, revs: vec![modified] }];
    }

    /// Rebuilding from the store: the key's first known revision is a tombstone (its creation
    /// was compacted away).
    pub fn restore_tombstone(&mut self, rev: Revision) {
        self.restore(Revision::default(), rev, 1);
        self.generations.push(Generation::default());
    }

    /// Only an empty generation left (the key can be dropped from the index)?
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// The generation holding the key's state at main revision `at`; `None` when the key did
    /// not exist then (before its creation, or deleted).
    fn generation_at(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (g.revs.first(), g.revs.last()) else { continue };
            if i != last && end.main <= at {
                return None; // deleted at or before `at`
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The key's state at main revision `at`.
    pub fn get(&self, at: i64) -> Result<Visible, IndexError> {
        let g = self.generation_at(at).ok_or(IndexError::RevisionNotFound)?;
        let n = g.last_at_or_before(at).ok_or(IndexError::RevisionNotFound)?;
        Ok(Visible {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// Revisions with main ≥ `rev`, ascending; of several with the same main only the one with
    /// the highest sub (what a watcher sees of one transaction).
    pub fn since(&self, rev: i64) -> Vec<Revision> {
        let since = Revision::new(rev, 0);
        // Start at the newest generation created before `rev` (or the first).
        let mut start = 0;
        for (i, g) in self.generations.iter().enumerate().skip(1).rev() {
            if !g.is_empty() && since > g.created {
                start = i;
                break;
            }
        }
        let mut out: Vec<Revision> = Vec::new();
        for g in &self.generations[start..] {
            for &r in &g.revs {
                if r < since {
                    continue;
                }
                match out.last_mut() {
                    Some(last) if last.main == r.main => *last = r,
                    _ => out.push(r),
                }
            }
        }
        out
    }

    /// Where compaction at `at` cuts: (generation, revision within it) and the revision kept.
    fn compaction_point(&self, at: i64) -> (usize, Option<usize>) {
        let mut gi = 0;
        while gi + 1 < self.generations.len() {
            let g = &self.generations[gi];
            if g.revs.last().is_some_and(|t| t.main >= at) {
                break;
            }
            gi += 1;
        }
        (gi, self.generations[gi].last_at_or_before(at))
    }

    /// Compacts at `at`, adding the revision kept for `at` (if any) to `available`.
    pub fn compact(&mut self, at: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (gi, ri) = self.compaction_point(at);
        if let Some(ri) = ri {
            available.insert(self.generations[gi].revs[ri]);
            self.generations[gi].revs.drain(..ri);
        }
        self.generations.drain(..gi);
    }

    /// What compaction at `at` would keep, without changing anything (for hashing a compacted
    /// view). Unlike `compact`, a tombstone at the cut is not kept.
    pub fn keep(&self, at: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (gi, ri) = self.compaction_point(at);
        if let Some(ri) = ri {
            let g = &self.generations[gi];
            let is_tombstone = ri + 1 == g.revs.len() && gi + 1 != self.generations.len();
            if !is_tombstone {
                available.insert(g.revs[ri]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: i64) -> Revision {
        Revision::new(m, 0)
    }

    /// put(1) put(2) delete(3) put(4) delete(5).
    fn example() -> KeyIndex {
        let mut k = KeyIndex::new(b"foo".to_vec());
        k.put(r(1)).unwrap();
        k.put(r(2)).unwrap();
        k.tombstone(r(3)).unwrap();
        k.put(r(4)).unwrap();
        k.tombstone(r(5)).unwrap();
        k
    }

    #[test]
    fn get_follows_generations() {
        let k = example();
        assert_eq!(k.get(0), Err(IndexError::RevisionNotFound));
        assert_eq!(k.get(1), Ok(Visible { modified: r(1), created: r(1), version: 1 }));
        assert_eq!(k.get(2), Ok(Visible { modified: r(2), created: r(1), version: 2 }));
        assert_eq!(k.get(3), Err(IndexError::RevisionNotFound));
        assert_eq!(k.get(4), Ok(Visible { modified: r(4), created: r(4), version: 1 }));
        assert_eq!(k.get(5), Err(IndexError::RevisionNotFound));
        assert_eq!(k.get(100), Err(IndexError::RevisionNotFound));
        assert_eq!(k.since(2), vec![r(2), r(3), r(4), r(5)]);
        assert!(matches!(k.clone().put(r(5)), Err(IndexError::NotIncreasing { .. })));
        assert_eq!(k.clone().tombstone(r(9)), Err(IndexError::RevisionNotFound));
    }

    #[test]
    fn compaction_as_etcd_documents_it() {
        let mut k = example();
        let mut av = HashSet::new();
        k.compact(2, &mut av);
        assert_eq!(k.generations[0].revs, vec![r(2), r(3)]);
        assert!(av.contains(&r(2)));
        k.compact(4, &mut av);
        assert_eq!(k.generations.len(), 2);
        assert_eq!(k.generations[0].revs, vec![r(4), r(5)]);
        k.compact(5, &mut av);
        assert_eq!(k.generations[0].revs, vec![r(5)]);
        assert!(av.contains(&r(5)), "the tombstone at the cut is kept");
        k.compact(6, &mut av);
        assert!(k.is_empty(), "everything compacted: the key can go");
        // keep() does not keep a tombstone at the cut.
        let mut av = HashSet::new();
        example().keep(5, &mut av);
        assert!(av.is_empty());
        example().keep(4, &mut av);
        assert_eq!(av, HashSet::from([r(4)]));
    }

    #[test]
    fn since_keeps_the_last_change_of_each_transaction() {
        let mut k = KeyIndex::new(b"k".to_vec());
        k.put(Revision::new(2, 0)).unwrap();
        k.put(Revision::new(2, 1)).unwrap();
        k.put(Revision::new(3, 0)).unwrap();
        assert_eq!(k.since(1), vec![Revision::new(2, 1), Revision::new(3, 0)]);
        assert_eq!(k.since(3), vec![Revision::new(3, 0)]);
        assert_eq!(k.get(2).unwrap().version, 2);
    }
}
