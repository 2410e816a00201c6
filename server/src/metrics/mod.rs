//! Prometheus metrics under etcd's names, types, help texts and buckets (the ones dashboards
//! and alerts use), and a few `rusted_` ones of its own; README's metrics table lists each.
//! Most are read from the layers' own counters when scraped; durations are observed as they
//! happen through the WAL's and the store's observers.
//!
//! One file per source: [`grpc`] (the client port's calls), [`peer`] (peer links),
//! [`store`] (MVCC, leases, backend), [`process`] (fds, scrapes); the server's own (raft
//! state, WAL, health) are here.
#![forbid(unsafe_code)]

pub mod appends;
pub mod grpc;
pub mod peer;
pub mod process;
pub mod store;

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use grpc::{grpc_labels, CallCounters, GrpcMetrics};
pub use peer::PeerMetrics;
pub use process::ProcessMetrics;
pub use store::StoreMetrics;

use crate::api::ctx::Ctx;
use crate::{CLUSTER_VERSION, SERVER_VERSION};

/// The registry and every metric in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    has_leader: IntGauge,
    is_leader: IntGauge,
    leader_changes: IntCounter,
    committed: Gauge,
    applied: Gauge,
    pending: Gauge,
    failed: IntCounter,
    quota: IntGauge,
    server_id: IntGaugeVec,
    is_learner: IntGauge,
    heartbeat_failures: IntCounter,
    slow_applies: IntCounter,
    read_indexes_failed: IntCounter,
    slow_read_indexes: IntCounter,
    snapshot_applying: IntGauge,
    learner_promotes: IntCounter,
    health_success: IntCounter,
    health_failures: IntCounter,
    wal_fsync: Histogram,
    wal_bytes: Gauge,
    wal_groups: IntCounter,
    wal_records: IntCounter,
    wal_backend: IntGaugeVec,
    /// The client port's gRPC calls.
    pub grpc: GrpcMetrics,
    /// The store's.
    pub store: StoreMetrics,
    /// The peer links'.
    pub peer: PeerMetrics,
    /// The process's, and scrapes'.
    pub process: ProcessMetrics,
    render: Mutex<()>,
}

impl Metrics {
    /// Builds the registry; `extensive` adds gRPC handling-time histograms (`--metrics`).
    pub fn new(extensive: bool) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            reg(Box::new(g.clone()))?;
            Ok(g)
        };
        let float = |name: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::new(name, help)?;
            reg(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            reg(Box::new(c.clone()))?;
            Ok(c)
        };
        let labelled = |name: &str, help: &str, label: &str| -> Result<_, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
            reg(Box::new(g.clone()))?;
            Ok(g)
        };
        let has_leader = gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
        )?;
        let is_leader = gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        )?;
        let leader_changes =
            counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.")?;
        let committed = float(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
        )?;
        let applied = float(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
        )?;
        let pending = float(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
        )?;
        let failed = counter(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
        )?;
        let quota = gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
        )?;
        let server_version = labelled(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
        )?;
        let cluster_version = labelled(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
        )?;
        let server_id = labelled(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
        )?;
        let is_learner = gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        )?;
        let heartbeat_failures = counter(
            "etcd_server_heartbeat_send_failures_total",
            "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
        )?;
        let slow_applies = counter(
            "etcd_server_slow_apply_total",
            "The total number of slow apply requests (likely overloaded from slow disk).",
        )?;
        let read_indexes_failed = counter(
            "etcd_server_read_indexes_failed_total",
            "The total number of failed read indexes seen.",
        )?;
        let slow_read_indexes = counter(
            "etcd_server_slow_read_indexes_total",
            "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
        )?;
        let snapshot_applying = gauge(
            "etcd_server_snapshot_apply_in_progress_total",
            "1 if the server is applying the incoming snapshot. 0 if none.",
        )?;
        let learner_promotes = counter(
            "etcd_server_learner_promote_successes",
            "The total number of successful learner promotions while this member is leader.",
        )?;
        let health_success =
            counter("etcd_server_health_success", "The total number of successful health checks")?;
        let health_failures =
            counter("etcd_server_health_failures", "The total number of failed health checks")?;
        let wal_fsync = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
        )?;
        reg(Box::new(wal_fsync.clone()))?;
        // A gauge, as etcd's.
        let wal_bytes =
            float("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.")?;
        let wal_groups = counter(
            "rusted_wal_write_groups_total",
            "WAL write groups (each one write and one fdatasync for every proposal in it).",
        )?;
        let wal_records = counter(
            "rusted_wal_records_total",
            "Records written to the WAL (divided by the groups: the mean group size).",
        )?;
        let wal_backend = labelled(
            "rusted_wal_backend",
            "The WAL's I/O backend. 1 for the 'backend' label with the one in use (io_uring or pwrite).",
            "backend",
        )?;
        let grpc = GrpcMetrics::new(&registry, extensive)?;
        let store = StoreMetrics::new(&registry)?;
        let peer = PeerMetrics::new(&registry)?;
        let process = ProcessMetrics::new(&registry)?;
        // process_* (resident memory, CPU, open fds), as every Go exporter has.
        reg(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        server_version.with_label_values(&[SERVER_VERSION]).set(1);
        cluster_version.with_label_values(&[CLUSTER_VERSION]).set(1);
        Ok(Metrics {
            registry,
            has_leader,
            is_leader,
            leader_changes,
            committed,
            applied,
            pending,
            failed,
            quota,
            server_id,
            is_learner,
            heartbeat_failures,
            slow_applies,
            read_indexes_failed,
            slow_read_indexes,
            snapshot_applying,
            learner_promotes,
            health_success,
            health_failures,
            wal_fsync,
            wal_bytes,
            wal_groups,
            wal_records,
            wal_backend,
            grpc,
            store,
            peer,
            process,
            render: Mutex::new(()),
        })
    }

    /// Records a WAL sync's duration.
    pub fn observe_wal_fsync(&self, d: Duration) {
        self.wal_fsync.observe(d.as_secs_f64());
        // etcd's warning, with its wording and threshold (1 s).
        if d > Duration::from_secs(1) {
            tracing::warn!(took = ?d, expected_duration = ?Duration::from_secs(1), "slow fdatasync");
        }
    }

    /// Counts a health check's outcome (/health).
    pub fn health_checked(&self, healthy: bool) {
        if healthy {
            self.health_success.inc();
        } else {
            self.health_failures.inc();
        }
    }

    /// The Prometheus text of every metric, read now.
    pub fn render(&self, ctx: &Ctx) -> Result<String, String> {
        let _one = self.render.lock().unwrap_or_else(|p| p.into_inner());
        let st = ctx.replica.status();
        self.has_leader.set(i64::from(st.leader != 0));
        self.is_leader.set(i64::from(st.is_leader));
        self.is_learner.set(i64::from(st.is_learner));
        set_counter(&self.leader_changes, st.leader_changes);
        self.committed.set(st.committed as f64);
        self.applied.set(st.applied as f64);
        self.pending.set(st.pending as f64);
        set_counter(&self.failed, st.proposals_failed);
        let c = ctx.replica.counters();
        set_counter(&self.heartbeat_failures, c.heartbeats_late.load(Ordering::Relaxed));
        set_counter(&self.read_indexes_failed, c.read_indexes_failed.load(Ordering::Relaxed));
        set_counter(&self.slow_read_indexes, c.read_indexes_slow.load(Ordering::Relaxed));
        set_counter(&self.learner_promotes, c.learners_promoted.load(Ordering::Relaxed));
        self.snapshot_applying.set(c.snapshot_installing.load(Ordering::Relaxed) as i64);
        set_counter(&self.slow_applies, ctx.machine.slow_applies.load(Ordering::Relaxed));
        let wal = ctx.replica.wal_stats();
        self.wal_bytes.set(wal.bytes as f64);
        set_counter(&self.wal_groups, wal.groups);
        set_counter(&self.wal_records, wal.records);
        self.wal_backend.reset();
        self.wal_backend.with_label_values(&[ctx.replica.wal_backend()]).set(1);
        let defragmenting = ctx.defragmenting.load(Ordering::Relaxed) > 0;
        self.store.read(&ctx.store(), defragmenting, ctx.auth().revision());
        self.process.read();
        self.quota.set(ctx.limits.quota_backend_bytes.map_or(-1, |q| q as i64));
        self.server_id.reset();
        self.server_id.with_label_values(&[&format!("{:x}", st.id)]).set(1);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).map_err(|e| e.to_string())?;
        let text = String::from_utf8(out).map_err(|e| e.to_string())?;
        Ok(go_bucket_labels(&text))
    }
}

/// Bucket bounds (`le` labels) written as Go's client writes them (`strconv`'s shortest `%g`:
/// `1.048576e+06`, not `1048576`): a label is matched as a string, so a dashboard that selects
/// one bucket must find it under the same name.
fn go_bucket_labels(text: &str) -> String {
    const LE: &str = "le=\"";
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut rest = text;
    while let Some(at) = rest.find(LE) {
        let (head, tail) = rest.split_at(at + LE.len());
        out.push_str(head);
        // The label `le`, not the end of another label's name (`rule=`).
        if !matches!(head[..at].chars().last(), Some('{' | ',')) {
            rest = tail;
            continue;
        }
        let end = tail.find('"').unwrap_or(tail.len());
        let (value, after) = tail.split_at(end);
        match value.parse::<f64>() {
            Ok(v) if v.is_finite() => out.push_str(&go_float(v)),
            _ => out.push_str(value),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `v` as Go's `strconv.FormatFloat(v, 'g', -1, 64)`.
fn go_float(v: f64) -> String {
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{v}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

/// Moves a counter to `value` (it only grows; the source is a monotonic counter).
fn set_counter(c: &IntCounter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_read_as_gos() {
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(524288.0), "524288");
        assert_eq!(go_float(1048576.0), "1.048576e+06");
        assert_eq!(go_float(8388608.0), "8.388608e+06");
        assert_eq!(go_float(819200.0), "819200");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(655.36), "655.36");
        let page =
            "x_bucket{le=\"1048576\"} 1\nx_bucket{le=\"+Inf\"} 2\ny{a=\"le\",rule=\"7\"} 1\n";
        assert_eq!(
            go_bucket_labels(page),
            "x_bucket{le=\"1.048576e+06\"} 1\nx_bucket{le=\"+Inf\"} 2\ny{a=\"le\",rule=\"7\"} 1\n"
        );
    }
}
