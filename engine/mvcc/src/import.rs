//! The reverse of [`crate::export`]: a new store file built from another store's contents
//! (what a snapshot restore does with a backend file from etcd or rusted), in one page-store
//! transaction. The index, leases and compaction state are rebuilt by [`Store::open`] as for
//! any store.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::error::{MvccError, Result};
use crate::export::Export;
use crate::lease::record_key;
use crate::revision::Revision;
use crate::store::{
    Store, CONSISTENT_INDEX, FINISHED_COMPACT, KEY_BUCKET, LEASE_BUCKET, META_BUCKET,
    SCHEDULED_COMPACT, TERM,
};
use rusted_engine::{Db, DbOptions};

impl Store {
    /// Writes a new store at `path` holding `contents` (its revisions, leases, applied index
    /// and compaction state) and the server's `blobs` in the meta bucket (keys starting
    /// `x-`, or the cluster record). `path` must not exist. Revisions must be in order, each
    /// at most once, and none newer than what a finished compaction would have removed.
    pub fn import(
        path: &Path,
        opts: &DbOptions,
        contents: &Export,
        blobs: &[(&[u8], Vec<u8>)],
    ) -> Result<()> {
        if path.exists() {
            return Err(MvccError::Corrupt(format!("{} exists", path.display())));
        }
        let db = Db::open(path, opts.clone())?;
        let mut tx = db.begin_write()?;
        for b in [KEY_BUCKET, META_BUCKET, LEASE_BUCKET] {
            tx.create_bucket_if_missing(b)?;
        }
        let mut last: Option<Revision> = None;
        for r in &contents.revisions {
            if last.is_some_and(|l| l >= r.rev) {
                return Err(MvccError::Corrupt(format!(
                    "revision {:?} out of order after {last:?}",
                    r.rev
                )));
            }
            last = Some(r.rev);
            let value = if r.tombstone {
                crate::kv::encode_parts(&r.kv.key, 0, 0, 0, &[])
            } else {
                r.kv.encode()
            };
            tx.put(KEY_BUCKET, &r.rev.to_key(r.tombstone), &value)?;
        }
        for l in &contents.leases {
            tx.put(LEASE_BUCKET, &record_key(l.id), &l.encode())?;
        }
        let applied = contents.applied;
        tx.put(META_BUCKET, CONSISTENT_INDEX, &applied.index.to_be_bytes())?;
        tx.put(META_BUCKET, TERM, &applied.term.to_be_bytes())?;
        for (key, rev) in [
            (SCHEDULED_COMPACT, contents.scheduled_compact),
            (FINISHED_COMPACT, contents.finished_compact),
        ] {
            if rev > 0 {
                tx.put(META_BUCKET, key, &(rev as u64).to_be_bytes())?;
            }
        }
        for (key, blob) in blobs {
            debug_assert!(key.starts_with(b"x-") || *key == crate::snapshot::CLUSTER);
            tx.put(META_BUCKET, key, blob)?;
        }
        tx.commit()?;
        Ok(())
    }
}
