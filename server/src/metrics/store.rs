//! The store's metrics: etcd's `etcd_mvcc_*`, `etcd_debugging_mvcc_*`, `etcd_debugging_lease_*`,
//! `etcd_disk_backend_*` and `etcd_disk_defrag_*`. Totals are read from the store's counters
//! when scraped; durations arrive as the store's events ([`StoreEvent`]) and commit phases.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use rusted_engine::CommitPhases;
use rusted_mvcc::{Store, StoreEvent};

use super::set_counter;

/// etcd's buckets: `start` doubling `count` times.
fn doubling(start: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, 2.0, count).unwrap_or_default()
}

/// The store's metrics.
#[derive(Debug)]
pub struct StoreMetrics {
    /// `etcd_mvcc_{range,put,delete,txn}_total` and their `etcd_debugging_mvcc_` twins.
    ops: [(IntCounter, IntCounter); 4],
    put_bytes: IntGauge,
    current_rev: IntGauge,
    compact_rev: IntGauge,
    db_size: IntGauge,
    db_size_debugging: IntGauge,
    db_in_use: IntGauge,
    keys: IntGauge,
    open_read_txs: IntGauge,
    compacted_keys: IntCounter,
    compaction_pause: Histogram,
    compaction_total: Histogram,
    index_compaction_pause: Histogram,
    events: IntCounter,
    pending_events: IntGauge,
    slow_watchers: IntGauge,
    watch_streams: IntGauge,
    watchers: IntGauge,
    leases_granted: IntCounter,
    leases_revoked: IntCounter,
    leases_renewed: IntCounter,
    lease_ttl: Histogram,
    /// Expired leases this member revoked as the leader.
    pub leases_expired: IntCounter,
    hash: Histogram,
    hash_rev: Histogram,
    commit: Histogram,
    commit_spill: Histogram,
    commit_write: Histogram,
    defrag: Histogram,
    defrag_pause: Histogram,
    defrag_inflight: IntGauge,
    snapshot: Histogram,
    auth_revision: IntGauge,
    pages: IntGauge,
    free_pages: IntGauge,
}

impl StoreMetrics {
    pub(super) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            reg(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            reg(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| -> Result<Histogram, prometheus::Error> {
                let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                reg(Box::new(h.clone()))?;
                Ok(h)
            };
        let op = |what: &str| -> Result<(IntCounter, IntCounter), prometheus::Error> {
            let help = format!("Total number of {what}s seen by this member.");
            Ok((
                counter(&format!("etcd_mvcc_{what}_total"), &help)?,
                counter(&format!("etcd_debugging_mvcc_{what}_total"), &help)?,
            ))
        };
        let disk = doubling(0.001, 14);
        Ok(StoreMetrics {
            ops: [op("range")?, op("put")?, op("delete")?, op("txn")?],
            put_bytes: gauge(
                "etcd_debugging_mvcc_total_put_size_in_bytes",
                "The total size of put kv pairs seen by this member.",
            )?,
            current_rev: gauge(
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            )?,
            compact_rev: gauge(
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            )?,
            db_size: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            )?,
            db_size_debugging: gauge(
                "etcd_debugging_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            )?,
            db_in_use: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            )?,
            keys: gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.")?,
            open_read_txs: gauge(
                "etcd_mvcc_db_open_read_transactions",
                "The number of currently open read transactions",
            )?,
            compacted_keys: counter(
                "etcd_debugging_mvcc_db_compaction_keys_total",
                "Total number of db keys compacted.",
            )?,
            compaction_pause: histogram(
                "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "Bucketed histogram of db compaction pause duration.",
                doubling(1.0, 13),
            )?,
            compaction_total: histogram(
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration.",
                doubling(100.0, 14),
            )?,
            index_compaction_pause: histogram(
                "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                "Bucketed histogram of index compaction pause duration.",
                doubling(0.5, 14),
            )?,
            events: counter(
                "etcd_debugging_mvcc_events_total",
                "Total number of events sent by this member.",
            )?,
            pending_events: gauge(
                "etcd_debugging_mvcc_pending_events_total",
                "Total number of pending events to be sent.",
            )?,
            slow_watchers: gauge(
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            )?,
            watch_streams: gauge(
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            )?,
            watchers: gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.")?,
            leases_granted: counter(
                "etcd_debugging_lease_granted_total",
                "The total number of granted leases.",
            )?,
            leases_revoked: counter(
                "etcd_debugging_lease_revoked_total",
                "The total number of revoked leases.",
            )?,
            leases_renewed: counter(
                "etcd_debugging_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
            )?,
            lease_ttl: histogram(
                "etcd_debugging_lease_ttl_total",
                "Bucketed histogram of lease TTLs.",
                doubling(1.0, 24),
            )?,
            leases_expired: counter(
                "etcd_debugging_server_lease_expired_total",
                "The total number of expired leases.",
            )?,
            hash: histogram(
                "etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                doubling(0.01, 15),
            )?,
            hash_rev: histogram(
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                doubling(0.01, 15),
            )?,
            commit: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                disk.clone(),
            )?,
            commit_spill: histogram(
                "etcd_debugging_disk_backend_commit_spill_duration_seconds",
                "The latency distributions of commit.spill called by bboltdb backend.",
                disk.clone(),
            )?,
            commit_write: histogram(
                "etcd_debugging_disk_backend_commit_write_duration_seconds",
                "The latency distributions of commit.write called by bboltdb backend.",
                disk,
            )?,
            defrag: histogram(
                "etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                doubling(0.1, 13),
            )?,
            defrag_pause: histogram(
                "rusted_defrag_pause_seconds",
                "How long a defragmentation held writes back.",
                doubling(0.001, 20),
            )?,
            defrag_inflight: gauge(
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            )?,
            snapshot: histogram(
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                doubling(0.01, 17),
            )?,
            auth_revision: gauge(
                "etcd_debugging_auth_revision",
                "The current revision of auth store.",
            )?,
            pages: gauge(
                "rusted_backend_pages",
                "Pages of the page store below its high-water mark.",
            )?,
            free_pages: gauge(
                "rusted_backend_free_pages",
                "Pages of the page store free or waiting for readers to finish.",
            )?,
        })
    }

    /// One of the store's timed events.
    pub fn observe(&self, e: StoreEvent) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match e {
            StoreEvent::CompactionBatch(d) => self.compaction_pause.observe(ms(d)),
            StoreEvent::IndexCompaction(d) => self.index_compaction_pause.observe(ms(d)),
            StoreEvent::CompactionDone(d) => self.compaction_total.observe(ms(d)),
            StoreEvent::LeaseGranted(ttl) => self.lease_ttl.observe(ttl as f64),
            StoreEvent::Hash(d) => self.hash.observe(d.as_secs_f64()),
            StoreEvent::HashKv(d) => self.hash_rev.observe(d.as_secs_f64()),
            StoreEvent::Snapshot(d) => self.snapshot.observe(d.as_secs_f64()),
        }
    }

    /// A page-store commit of buffered writes took `d`.
    pub fn commit(&self, d: Duration) {
        self.commit.observe(d.as_secs_f64());
    }

    /// The phases of a page-store commit.
    pub fn commit_phases(&self, p: CommitPhases) {
        self.commit_spill.observe(p.spill.as_secs_f64());
        self.commit_write.observe(p.write.as_secs_f64());
    }

    /// A defragmentation took `took`, of which writes waited `paused`.
    pub fn defragmented(&self, took: Duration, paused: Duration) {
        self.defrag.observe(took.as_secs_f64());
        self.defrag_pause.observe(paused.as_secs_f64());
    }

    /// A backend snapshot (a client's, or one for a follower) took `d` to write.
    pub fn snapshotted(&self, d: Duration) {
        self.snapshot.observe(d.as_secs_f64());
    }

    /// Reads the store's counters (at scrape time).
    pub(super) fn read(&self, store: &Store, defragmenting: bool, auth_revision: u64) {
        let ops = store.op_counts();
        let counts = [&ops.ranges, &ops.puts, &ops.deletes, &ops.txns];
        for ((c, d), n) in self.ops.iter().zip(counts) {
            let n = n.load(Ordering::Relaxed);
            set_counter(c, n);
            set_counter(d, n);
        }
        self.put_bytes.set(ops.put_bytes.load(Ordering::Relaxed) as i64);
        set_counter(&self.compacted_keys, ops.compacted_keys.load(Ordering::Relaxed));
        set_counter(&self.leases_granted, ops.leases_granted.load(Ordering::Relaxed));
        set_counter(&self.leases_revoked, ops.leases_revoked.load(Ordering::Relaxed));
        set_counter(&self.leases_renewed, ops.leases_renewed.load(Ordering::Relaxed));
        self.current_rev.set(store.current_revision());
        self.compact_rev.set(store.compact_revision());
        let stats = store.db().stats();
        self.db_size.set(stats.file_size as i64);
        self.db_size_debugging.set(stats.file_size as i64);
        let in_use = stats.pages.saturating_sub(stats.free_pages) * stats.page_size;
        self.db_in_use.set(in_use as i64);
        self.open_read_txs.set(stats.open_read_txs as i64);
        self.pages.set(stats.pages as i64);
        self.free_pages.set(stats.free_pages as i64);
        self.keys.set(store.key_count() as i64);
        let w = store.watch_hub().stats();
        set_counter(&self.events, w.events_sent);
        self.pending_events.set(w.events_pending as i64);
        self.slow_watchers.set(w.slow as i64);
        self.watch_streams.set(w.streams as i64);
        self.watchers.set(w.watchers as i64);
        self.defrag_inflight.set(i64::from(defragmenting));
        self.auth_revision.set(auth_revision as i64);
    }
}
