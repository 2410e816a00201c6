//! Everything a store holds, read out in one consistent view, for writing it in another
//! format (the server writes etcd's backend layout, so that etcd's tools can read a rusted
//! snapshot).
#![forbid(unsafe_code)]

use crate::error::{MvccError, Result};
use crate::kv::KeyValue;
use crate::lease::LeaseRecord;
use crate::revision::Revision;
use crate::store::{read_meta, Applied, Store, KEY_BUCKET, LEASE_BUCKET};

/// One stored revision of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRevision {
    /// Its revision.
    pub rev: Revision,
    /// A deletion (the key-value holds only the key and mod revision).
    pub tombstone: bool,
    /// The key-value.
    pub kv: KeyValue,
}

/// A store's contents as of one applied index.
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// Every stored revision, in revision order.
    pub revisions: Vec<StoredRevision>,
    /// Every lease.
    pub leases: Vec<LeaseRecord>,
    /// The applied index and term.
    pub applied: Applied,
    /// The last scheduled compaction (-1: none).
    pub scheduled_compact: i64,
    /// The last finished compaction (-1: none).
    pub finished_compact: i64,
}

impl Store {
    /// Reads out the whole store in one read transaction (buffered writes are flushed first).
    pub fn export(&self) -> Result<Export> {
        let tx = {
            let mut w = self.inner.lock_writer();
            crate::background::flush(&self.inner, &mut w)?;
            self.inner.db.begin_read()?
        };
        let (applied, scheduled_compact, finished_compact) = read_meta(&tx)?;
        let mut revisions = Vec::new();
        let mut c = tx.cursor(KEY_BUCKET)?;
        let mut it = c.first()?;
        while let Some((k, v)) = it {
            let (rev, tombstone) = Revision::from_key(k)
                .ok_or_else(|| MvccError::Corrupt(format!("bad revision key {k:?}")))?;
            let kv =
                KeyValue::decode(v, rev.main).map_err(|e| MvccError::Corrupt(e.to_string()))?;
            revisions.push(StoredRevision { rev, tombstone, kv });
            it = c.next()?;
        }
        let mut leases = Vec::new();
        let mut lc = tx.cursor(LEASE_BUCKET)?;
        let mut it = lc.first()?;
        while let Some((_, v)) = it {
            leases.push(LeaseRecord::decode(v).map_err(|e| MvccError::Corrupt(e.to_string()))?);
            it = lc.next()?;
        }
        Ok(Export { revisions, leases, applied, scheduled_compact, finished_compact })
    }
}
