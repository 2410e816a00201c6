//! Restart: the index, the revision counters and the leases rebuilt from the page store.
//!
//! The `key` bucket is read once in revision order; each put or tombstone goes into the index
//! and keys with a lease are re-attached to it (a later put without one, or a tombstone,
//! detaches). An interrupted compaction (scheduled after the finished one) is resumed.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::time::Instant;

use crate::error::{MvccError, Result};
use crate::kv;
use crate::lease::{LeaseRecord, Lessor};
use crate::pending::PendingMeta;
use crate::revision::Revision;
use crate::store::{read_meta, CompactJob, State, StoreOptions, Writer, KEY_BUCKET, LEASE_BUCKET};
use rusted_engine::Db;

/// Rebuilds the in-memory state from `db`.
pub(crate) fn restore(db: &Db, opts: &StoreOptions) -> Result<(State, Writer, Lessor)> {
    let t = Instant::now();
    let tx = db.begin_read()?;
    let (applied, scheduled, finished) = read_meta(&tx)?;
    let mut st = State { current: 1, compact: -1, ..Default::default() };
    let mut leased: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut c = tx.cursor(KEY_BUCKET)?;
    let mut it = c.first()?;
    let mut revisions = 0u64;
    while let Some((k, v)) = it {
        let (rev, tomb) = Revision::from_key(k)
            .ok_or_else(|| MvccError::Corrupt(format!("bad revision key {k:?} in key bucket")))?;
        let (key, _, create, version, lease) = kv::split(v)?;
        st.index.restore(key, rev, tomb, Revision::new(create, 0), version)?;
        if tomb || lease == 0 {
            leased.remove(key);
        } else {
            leased.insert(key.to_vec(), lease);
        }
        st.current = st.current.max(rev.main);
        revisions += 1;
        it = c.next()?;
    }
    let compacted = scheduled.max(finished);
    st.current = st.current.max(compacted);
    let mut compaction = None;
    if compacted >= 0 {
        st.compact = compacted;
        let keep = st.index.compact(compacted);
        if scheduled > finished {
            compaction = Some(CompactJob {
                rev: scheduled,
                scheduled: Instant::now(),
                index_next: None,
                keep,
                next: Vec::new(),
            });
        }
    }
    let mut lessor = Lessor::new(opts.min_lease_ttl);
    let mut records = Vec::new();
    let mut lc = tx.cursor(LEASE_BUCKET)?;
    let mut it = lc.first()?;
    while let Some((_, v)) = it {
        records.push(LeaseRecord::decode(v).map_err(|e| MvccError::Corrupt(e.to_string()))?);
        it = lc.next()?;
    }
    lessor.restore(records);
    for (key, id) in leased {
        // A key whose lease is gone (revoked while the key's deletion was lost) keeps no lease.
        if let Err(e) = lessor.attach(id, &key) {
            tracing::warn!(lease = id, error = %e, "key refers to a missing lease");
        }
    }
    let writer = Writer {
        applied,
        meta: PendingMeta::default(),
        last_flush: Instant::now(),
        unsynced_flushes: 0,
        compaction,
        finished_compact: finished,
    };
    tracing::info!(
        revisions,
        keys = st.index.len(),
        current = st.current,
        compacted = st.compact,
        leases = lessor.len(),
        elapsed_ms = t.elapsed().as_millis() as u64,
        "mvcc store restored"
    );
    Ok((st, writer, lessor))
}
