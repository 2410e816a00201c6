//! Applied writes not yet committed to the page store (etcd's backend write buffer).
//!
//! The apply path writes each change here first; a flush (every batch interval or batch limit)
//! copies them into one page-store transaction, commits it without fsync (the WAL is the
//! durability) together with the flushed revision in the meta's user field, and only then
//! drops them from here. So every applied revision is, at any moment, in the page store as of
//! the newest commit, here, or both.
//!
//! Readers take a page-store read transaction first and read its flushed revision F: a revision
//! ≤ F is read from that transaction; a later one from here. A later revision missing here was
//! flushed (and dropped) after the reader's transaction began: the reader starts over with a
//! new transaction, which sees it.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::lease::{LeaseId, LeaseRecord};
use crate::revision::Revision;

/// One buffered change of the `key` bucket.
#[derive(Debug, Clone)]
pub struct PendingKv {
    /// A deletion (stored under the tombstone key).
    pub tombstone: bool,
    /// The encoded key-value.
    pub bytes: Arc<[u8]>,
}

/// The buffer shared by the writer and readers.
#[derive(Debug, Default)]
pub struct Pending {
    kvs: RwLock<BTreeMap<Revision, PendingKv>>,
}

impl Pending {
    /// Buffers a change.
    pub fn insert(&self, rev: Revision, kv: PendingKv) {
        let mut m = self.kvs.write().unwrap_or_else(|p| p.into_inner());
        debug_assert!(m.last_key_value().is_none_or(|(r, _)| *r < rev), "revisions ascend");
        m.insert(rev, kv);
    }

    /// The buffered change at `rev`.
    pub fn get(&self, rev: Revision) -> Option<PendingKv> {
        self.kvs.read().unwrap_or_else(|p| p.into_inner()).get(&rev).cloned()
    }

    /// Number of buffered changes.
    pub fn len(&self) -> usize {
        self.kvs.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Nothing buffered?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every buffered change (cheap: the bytes are shared).
    pub fn snapshot(&self) -> Vec<(Revision, PendingKv)> {
        let m = self.kvs.read().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(r, kv)| (*r, kv.clone())).collect()
    }

    /// Drops the changes up to and including `rev` (they are committed to the page store).
    pub fn drop_through(&self, rev: Revision) {
        let mut m = self.kvs.write().unwrap_or_else(|p| p.into_inner());
        let rest = m.split_off(&Revision::new(rev.main, rev.sub.saturating_add(1)));
        *m = rest;
    }
}

/// Writer-side changes to the other buckets, flushed with the key-values.
#[derive(Debug, Default)]
pub struct PendingMeta {
    /// Lease records to write (`Some`) or delete (`None`).
    pub leases: BTreeMap<LeaseId, Option<LeaseRecord>>,
    /// Entries of the `meta` bucket to write.
    pub meta: BTreeMap<&'static [u8], Vec<u8>>,
    /// Keyed families of `meta` entries (the v2 store's nodes, say) to write (`Some`) or
    /// delete (`None`).
    pub entries: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The applied log position to record (`consistent_index` and `term`), encoded only at
    /// the flush: every apply moves it.
    pub applied: Option<crate::store::Applied>,
}

impl PendingMeta {
    /// Anything to write?
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
            && self.meta.is_empty()
            && self.entries.is_empty()
            && self.applied.is_none()
    }
}
