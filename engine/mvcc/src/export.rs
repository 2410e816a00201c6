//! Everything a store holds, read out in one consistent view, for writing it in another
//! format (the server writes etcd's backend layout, so that etcd's tools can read a rusted
//! snapshot).
#![forbid(unsafe_code)]

use crate::error::{MvccError, Result};
use crate::kv::KeyValue;
use crate::lease::LeaseRecord;
use crate::revision::Revision;
use crate::store::{read_meta, Applied, Store, KEY_BUCKET, LEASE_BUCKET};
use rusted_engine::{Cursor, Pages, ReadTx};

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
            revisions.push(decode_revision(k, v)?);
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

/// A store's contents as of one applied index, read as they are consumed (a snapshot of a
/// store of any size in bounded memory): the read transaction keeps that view while this
/// lives; writes go on meanwhile.
pub struct ExportStream {
    tx: ReadTx,
    /// The applied index and term.
    pub applied: Applied,
    /// The last scheduled compaction (-1: none).
    pub scheduled_compact: i64,
    /// The last finished compaction (-1: none).
    pub finished_compact: i64,
}

/// Every stored revision of an [`ExportStream`], in revision order.
pub struct Revisions<'a> {
    cursor: Cursor<'a, Pages>,
    started: bool,
}

impl std::fmt::Debug for ExportStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportStream").field("applied", &self.applied).finish()
    }
}

impl std::fmt::Debug for Revisions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revisions").field("started", &self.started).finish()
    }
}

impl Iterator for Revisions<'_> {
    type Item = Result<StoredRevision>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = if self.started { self.cursor.next() } else { self.cursor.first() };
        self.started = true;
        let (k, v) = match item {
            Ok(Some(kv)) => kv,
            Ok(None) => return None,
            Err(e) => return Some(Err(e.into())),
        };
        Some(decode_revision(k, v))
    }
}

fn decode_revision(k: &[u8], v: &[u8]) -> Result<StoredRevision> {
    let (rev, tombstone) = Revision::from_key(k)
        .ok_or_else(|| MvccError::Corrupt(format!("bad revision key {k:?}")))?;
    let kv = KeyValue::decode(v, rev.main).map_err(|e| MvccError::Corrupt(e.to_string()))?;
    Ok(StoredRevision { rev, tombstone, kv })
}

impl ExportStream {
    /// The stored revisions, read as iterated.
    pub fn revisions(&self) -> Result<Revisions<'_>> {
        Ok(Revisions { cursor: self.tx.cursor(KEY_BUCKET)?, started: false })
    }

    /// Every lease (few enough to hold).
    pub fn leases(&self) -> Result<Vec<LeaseRecord>> {
        let mut leases = Vec::new();
        let mut lc = self.tx.cursor(LEASE_BUCKET)?;
        let mut it = lc.first()?;
        while let Some((_, v)) = it {
            leases.push(LeaseRecord::decode(v).map_err(|e| MvccError::Corrupt(e.to_string()))?);
            it = lc.next()?;
        }
        Ok(leases)
    }
}

impl Store {
    /// The store's contents as of now, to read while writes go on (buffered writes are
    /// flushed first).
    pub fn export_stream(&self) -> Result<ExportStream> {
        let tx = {
            let mut w = self.inner.lock_writer();
            crate::background::flush(&self.inner, &mut w)?;
            self.inner.db.begin_read()?
        };
        let (applied, scheduled_compact, finished_compact) = read_meta(&tx)?;
        Ok(ExportStream { tx, applied, scheduled_compact, finished_compact })
    }
}
