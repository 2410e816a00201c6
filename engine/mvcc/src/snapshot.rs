//! Whole-store snapshots (what a raft snapshot ships to a member that fell behind) and the
//! cluster record the replication layer keeps in the store.
//!
//! The cluster record is an opaque blob in the `meta` bucket under `cluster`, written in the
//! same batch as the applied index of the entry that changed it. So a store file, a snapshot of
//! it included, always holds the membership that matches its applied index.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::{MvccError, Result};
use crate::store::{read_meta, Applied, Store, StoreOptions, META_BUCKET};
use rusted_engine::{Db, EngineError, IoContext};

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
        self.apply_meta_blob(at, CLUSTER, record)
    }

    /// The latest cluster record (applied, flushed or not).
    pub fn cluster(&self) -> Result<Option<Vec<u8>>> {
        self.meta_blob(CLUSTER)
    }

    /// Applies an entry that replaces the opaque blob under `key` in the `meta` bucket (the
    /// server's alarm list, say): stored with `at` as the applied index, atomically. `key` must
    /// not be one of the store's own meta keys.
    pub fn apply_meta_blob(&self, at: Applied, key: &'static [u8], blob: &[u8]) -> Result<()> {
        self.apply_meta_changes(at, &[(key, blob)], Vec::new())
    }

    /// [`Store::apply_meta_blob`] for several blobs, plus keyed `meta` entries written
    /// (`Some`) or deleted (`None`), all by one entry, atomically. Entry keys are a family
    /// under a prefix of the caller's (`x-…/`), read back with [`Store::meta_entries`].
    pub fn apply_meta_changes(
        &self,
        at: Applied,
        blobs: &[(&'static [u8], &[u8])],
        entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<()> {
        let mut w = self.begin_apply(at)?;
        for (key, blob) in blobs {
            debug_assert!(key.starts_with(b"x-") || *key == CLUSTER, "not a store meta key");
            w.meta.meta.insert(key, blob.to_vec());
        }
        for (key, value) in entries {
            debug_assert!(key.starts_with(b"x-") && key.contains(&b'/'), "not a keyed meta entry");
            w.meta.entries.insert(key, value);
        }
        drop(w);
        Ok(())
    }

    /// Every `meta` entry whose key starts with `prefix` (applied, flushed or not), in key
    /// order.
    pub fn meta_entries(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let w = self.inner.lock_writer();
        let tx = self.inner.db.begin_read()?;
        let mut out = std::collections::BTreeMap::new();
        tx.scan(META_BUCKET, prefix, &[], |k, v| {
            let more = k.starts_with(prefix);
            if more {
                out.insert(k.to_vec(), v.to_vec());
            }
            more
        })?;
        for (k, v) in w.meta.entries.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        Ok(out.into_iter().collect())
    }

    /// The latest blob under `key` (applied, flushed or not).
    pub fn meta_blob(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let w = self.inner.lock_writer();
        if let Some(b) = w.meta.meta.get(key) {
            return Ok(Some(b.clone()));
        }
        let tx = self.inner.db.begin_read()?;
        Ok(tx.get(META_BUCKET, key)?.map(<[u8]>::to_vec))
    }

    /// Writes a consistent copy of the whole store, as of the current applied index, to a new
    /// file at `dst`. Writers are held only while the buffer is flushed; the copy is made from a
    /// read transaction.
    pub fn write_snapshot(&self, dst: &Path) -> Result<SnapshotInfo> {
        let started = std::time::Instant::now();
        let tx = {
            let mut w = self.inner.lock_writer();
            crate::background::flush(&self.inner, &mut w)?;
            self.inner.db.begin_read()?
        };
        let (applied, _, _) = read_meta(&tx)?;
        let cluster = tx.get(META_BUCKET, CLUSTER)?.map(<[u8]>::to_vec);
        let _ = std::fs::remove_file(dst);
        let size = Db::copy_into(&tx, dst, &self.inner.opts.db)?;
        self.inner.opts.on_event.tell(crate::counters::StoreEvent::Snapshot(started.elapsed()));
        Ok(SnapshotInfo { applied, cluster, size })
    }

    /// Reads what a snapshot file holds without opening it as a store.
    pub fn inspect_snapshot(path: &Path) -> Result<SnapshotInfo> {
        let size = std::fs::metadata(path)
            .map_err(|e| MvccError::Corrupt(format!("snapshot {}: {e}", path.display())))?
            .len();
        let db = Db::open(path, rusted_engine::DbOptions::default())?;
        let tx = db.begin_read()?;
        let (applied, _, _) = read_meta(&tx)?;
        let cluster = tx.get(META_BUCKET, CLUSTER)?.map(<[u8]>::to_vec);
        Ok(SnapshotInfo { applied, cluster, size })
    }
}

/// A store a snapshot can replace whole (what a follower does when it installs the leader's
/// snapshot). Readers take the current store with [`StoreSlot::get`]; only
/// [`StoreSlot::restore`] swaps it.
#[derive(Debug)]
pub struct StoreSlot {
    path: PathBuf,
    opts: StoreOptions,
    store: RwLock<Arc<Store>>,
}

impl StoreSlot {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<StoreSlot> {
        let store = Store::open(path, opts.clone())?;
        Ok(StoreSlot { path: path.to_path_buf(), opts, store: RwLock::new(Arc::new(store)) })
    }

    /// The current store.
    pub fn get(&self) -> Arc<Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Closes the current store, moves the snapshot file at `snapshot` into its place (the
    /// rename and its directory are synced) and opens it. Handles to the old store fail with
    /// `Closed` from then on.
    pub fn restore(&self, snapshot: &Path) -> Result<()> {
        let mut g = self.store.write().unwrap_or_else(|p| p.into_inner());
        g.close()?;
        std::fs::rename(snapshot, &self.path).at(&self.path).map_err(MvccError::from)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .at(dir)
                .map_err(|e: EngineError| MvccError::from(e))?;
        }
        *g = Arc::new(Store::open(&self.path, self.opts.clone())?);
        Ok(())
    }
}
