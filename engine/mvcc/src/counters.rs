//! What the store counts and reports for metrics: running totals ([`OpCounts`], read when
//! scraped) and timed events ([`StoreEvent`], told to an [`EventObserver`] as they happen).
//! The server maps both to etcd's metric names; this crate knows no metrics library.
#![forbid(unsafe_code)]

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Totals since the store was opened (etcd's `etcd_mvcc_*_total` and its debugging
/// counters). Operations count inside txns too.
#[derive(Debug, Default)]
pub struct OpCounts {
    /// Ranges served.
    pub ranges: AtomicU64,
    /// Puts applied.
    pub puts: AtomicU64,
    /// DeleteRanges applied.
    pub deletes: AtomicU64,
    /// Txns applied that ran more than one operation.
    pub txns: AtomicU64,
    /// Bytes of the keys and values put.
    pub put_bytes: AtomicU64,
    /// Leases granted (applied).
    pub leases_granted: AtomicU64,
    /// Leases revoked (applied, for any reason).
    pub leases_revoked: AtomicU64,
    /// Lease renewals this member made as the primary lessor.
    pub leases_renewed: AtomicU64,
    /// Revisions physically deleted by compactions.
    pub compacted_keys: AtomicU64,
}

/// A timed event of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEvent {
    /// One batch of a compaction's deletions held the page store's writer this long.
    CompactionBatch(Duration),
    /// One chunk of a compaction's index pass held the index this long.
    IndexCompaction(Duration),
    /// A compaction finished, this long after it was scheduled.
    CompactionDone(Duration),
    /// A lease was granted with this TTL (seconds).
    LeaseGranted(i64),
    /// A whole-store hash (Maintenance.Hash) took this long.
    Hash(Duration),
    /// A key-value hash (HashKV) took this long.
    HashKv(Duration),
    /// A snapshot of the store (for a follower) took this long to write.
    Snapshot(Duration),
}

/// Told every [`StoreEvent`].
#[derive(Clone, Default)]
pub struct EventObserver(pub Option<Arc<dyn Fn(StoreEvent) + Send + Sync>>);

impl EventObserver {
    /// Tells the observer, if any.
    pub fn tell(&self, e: StoreEvent) {
        if let Some(f) = &self.0 {
            f(e);
        }
    }
}

impl std::fmt::Debug for EventObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventObserver({})", if self.0.is_some() { "set" } else { "none" })
    }
}
