//! Whole-store snapshots (what a raft snapshot ships to a member that fell behind) and the
//! cluster record the replication layer keeps in the store.
//!
//! The cluster record is an opaque blob in the `meta` bucket under `cluster`, written in the
//! same batch as the applied index of the entry that changed it. So a store file, a snapshot of
//! it included, always holds the membership that matches its applied index.
#![forbid(unsafe_code)]

use std::path::Path;

use super::error::{MvccError, Result};
use super::store::{read_meta, Applied, Store, META_BUCKET};
use crate::Db;

/// `meta` bucket key of the replication layer's cluster record.
pub const CLUSTER: &[u8] = b"cluster";

/// What a snapshot file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The applied index and term the file is consistent with.
    pub applied: Applied,
    /// The cluster record as of that index.
    pub cluster: Option<Vec<u8>>,
    /// File size in bytes.
    pub size: u64,
}

impl Store {
    /// Applies an entry that changes the cluster record (membership): stored with `at` as the
    /// applied index, atomically.
    pub fn apply_cluster(&self, at: Applied, record: &[u8]) -> Result<()> {
        let mut w = self.begin_apply(at)?;
        w.meta.meta.insert(CLUSTER, record.to_vec());
        drop(w);
        Ok(())
    }

    /// The latest cluster record (applied, flushed or not).
    pub fn cluster(&self) -> Result<Option<Vec<u8>>> {
        let w = self.inner.lock_writer();
        if let Some(b) = w.meta.meta.get(CLUSTER) {
            return Ok(Some(b.clone()));
        }
        let tx = self.inner.db.begin_read()?;
        Ok(tx.get(META_BUCKET, CLUSTER)?.map(<[u8]>::to_vec))
    }

    /// Writes a consistent copy of the whole store, as of the current applied index, to a new
    /// file at `dst`. Writers are held only while the buffer is flushed; the copy is made from a
    /// read transaction.
    pub fn write_snapshot(&self, dst: &Path) -> Result<SnapshotInfo> {
        let tx = {
            let mut w = self.inner.lock_writer();
            super::background::flush(&self.inner, &mut w)?;
            self.inner.db.begin_read()?
        };
        let (applied, _, _) = read_meta(&tx)?;
        let cluster = tx.get(META_BUCKET, CLUSTER)?.map(<[u8]>::to_vec);
        let _ = std::fs::remove_file(dst);
        let size = Db::copy_into(&tx, dst, &self.inner.opts.db)?;
        Ok(SnapshotInfo { applied, cluster, size })
    }

    /// Reads what a snapshot file holds without opening it as a store.
    pub fn inspect_snapshot(path: &Path) -> Result<SnapshotInfo> {
        let size = std::fs::metadata(path)
            .map_err(|e| MvccError::Corrupt(format!("snapshot {}: {e}", path.display())))?
            .len();
        let db = Db::open(path, crate::DbOptions::default())?;
        let tx = db.begin_read()?;
        let (applied, _, _) = read_meta(&tx)?;
        let cluster = tx.get(META_BUCKET, CLUSTER)?.map(<[u8]>::to_vec);
        Ok(SnapshotInfo { applied, cluster, size })
    }
}
