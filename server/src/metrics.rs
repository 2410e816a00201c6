//! Prometheus metrics under etcd's names (the ones dashboards and alerts use). Most are read
//! from the layers' own counters when scraped; durations are observed as they happen through
//! the WAL's and the store's observers.
#![forbid(unsafe_code)]

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::api::ctx::Ctx;
use crate::{CLUSTER_VERSION, SERVER_VERSION};

/// etcd's buckets for disk latencies: 1 ms doubling 14 times (to ~8 s).
fn disk_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 14).unwrap_or_default()
}

/// Services whose calls are counted by name.
const KNOWN_SERVICES: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3lockpb.Lock",
    "v3electionpb.Election",
    "grpc.health.v1.Health",
];

/// Methods whose calls are streams, by gRPC type label.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot")
        | ("v3electionpb.Election", "Observe")
        | ("grpc.health.v1.Health", "Watch") => "server_stream",
        ("rustedpb.Peer", "Send") | ("rustedpb.Peer", "Snapshot") => "client_stream",
        _ => "unary",
    }
}

fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// The labels of one gRPC method: type, service, method (go-grpc-prometheus's).
pub fn grpc_labels(path: &str) -> [&str; 3] {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (mut service, mut method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // Only the services this server has: a client must not create series at will.
    if !KNOWN_SERVICES.contains(&service) || method.is_empty() || method.len() > 64 {
        (service, method) = ("unknown", "unknown");
    }
    [grpc_type(service, method), service, method]
}

/// The peer links' metrics (etcd's `etcd_network_*`), fed by the transport and peer service.
#[derive(Debug, Clone)]
pub struct PeerMetrics {
    sent_bytes: IntCounterVec,
    received_bytes: IntCounterVec,
    sent_failures: IntCounterVec,
    rtt: HistogramVec,
    active: IntGaugeVec,
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

impl PeerMetrics {
    fn new(registry: &Registry) -> Result<PeerMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str, label: &str| -> Result<_, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let sent_bytes = counter(
            "etcd_network_peer_sent_bytes_total",
            "The total number of bytes sent to peers.",
            "To",
        )?;
        let received_bytes = counter(
            "etcd_network_peer_received_bytes_total",
            "The total number of bytes received from peers.",
            "From",
        )?;
        let sent_failures = counter(
            "etcd_network_peer_sent_failures_total",
            "The total number of send failures from peers.",
            "To",
        )?;
        let rtt = HistogramVec::new(
            HistogramOpts::new(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16)?),
            &["To"],
        )?;
        registry.register(Box::new(rtt.clone()))?;
        let active = IntGaugeVec::new(
            Opts::new(
                "etcd_network_active_peers",
                "The current number of active peer connections.",
            ),
            &["Local", "Remote"],
        )?;
        registry.register(Box::new(active.clone()))?;
        Ok(PeerMetrics { sent_bytes, received_bytes, sent_failures, rtt, active })
    }

    /// `bytes` of raft messages sent to `to`.
    pub fn sent(&self, to: u64, bytes: usize) {
        self.sent_bytes.with_label_values(&[&hex(to)]).inc_by(bytes as u64);
    }

    /// `bytes` of raft messages received from `from`.
    pub fn received(&self, from: u64, bytes: usize) {
        self.received_bytes.with_label_values(&[&hex(from)]).inc_by(bytes as u64);
    }

    /// `n` messages to `to` that could not be sent (dropped: raft sends again).
    pub fn send_failed(&self, to: u64, n: usize) {
        if n > 0 {
            self.sent_failures.with_label_values(&[&hex(to)]).inc_by(n as u64);
        }
    }

    /// A probe's round trip to `to`.
    pub fn round_trip(&self, to: u64, d: Duration) {
        self.rtt.with_label_values(&[&hex(to)]).observe(d.as_secs_f64());
    }

    /// Whether the link from `local` to `remote` is up.
    pub fn set_active(&self, local: u64, remote: u64, up: bool) {
        self.active.with_label_values(&[&hex(local), &hex(remote)]).set(i64::from(up));
    }
}

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
    /// etcd_disk_wal_fsync_duration_seconds.
    pub wal_fsync: Histogram,
    /// etcd_disk_backend_commit_duration_seconds.
    pub backend_commit: Histogram,
    db_size: IntGauge,
    db_in_use: IntGauge,
    keys: IntGauge,
    quota: IntGauge,
    server_id: IntGaugeVec,
    grpc_handled: IntCounterVec,
    grpc_started: IntCounterVec,
    /// With `--metrics=extensive` only, as etcd's.
    grpc_handling: Option<HistogramVec>,
    client_sent: IntCounter,
    client_received: IntCounter,
    is_learner: IntGauge,
    /// etcd_mvcc_{range,put,delete,txn}_total, read from the store's counts.
    mvcc_ops: [IntCounter; 4],
    /// The peer links' metrics.
    pub peer: PeerMetrics,
    render: Mutex<()>,
}

impl Metrics {
    /// Builds the registry; `extensive` adds gRPC handling-time histograms (`--metrics`).
    pub fn new(extensive: bool) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let g = |name: &str, help: &str| IntGauge::new(name, help);
        let has_leader = g(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
        )?;
        let is_leader = g(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        )?;
        let leader_changes = IntCounter::new(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
        )?;
        let committed = Gauge::new(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
        )?;
        let applied = Gauge::new(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
        )?;
        let pending = Gauge::new(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
        )?;
        let failed = IntCounter::new(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
        )?;
        let wal_fsync = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )
            .buckets(disk_buckets()),
        )?;
        let backend_commit = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            )
            .buckets(disk_buckets()),
        )?;
        let db_size = g(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
        )?;
        let db_in_use = g(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
        )?;
        let keys = g("etcd_debugging_mvcc_keys_total", "Total number of keys.")?;
        let quota =
            g("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")?;
        let server_version = IntGaugeVec::new(
            Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            ),
            &["server_version"],
        )?;
        let cluster_version = IntGaugeVec::new(
            Opts::new("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version"),
            &["cluster_version"],
        )?;
        let server_id = IntGaugeVec::new(
            Opts::new("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."),
            &["server_id"],
        )?;
        let grpc_handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        registry.register(Box::new(has_leader.clone()))?;
        registry.register(Box::new(is_leader.clone()))?;
        registry.register(Box::new(leader_changes.clone()))?;
        registry.register(Box::new(committed.clone()))?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        registry.register(Box::new(wal_fsync.clone()))?;
        registry.register(Box::new(backend_commit.clone()))?;
        registry.register(Box::new(db_size.clone()))?;
        registry.register(Box::new(db_in_use.clone()))?;
        registry.register(Box::new(keys.clone()))?;
        registry.register(Box::new(quota.clone()))?;
        registry.register(Box::new(server_version.clone()))?;
        registry.register(Box::new(cluster_version.clone()))?;
        registry.register(Box::new(server_id.clone()))?;
        registry.register(Box::new(grpc_handled.clone()))?;
        let grpc_started = IntCounterVec::new(
            Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."),
            &["grpc_type", "grpc_service", "grpc_method"],
        )?;
        registry.register(Box::new(grpc_started.clone()))?;
        let grpc_handling = if extensive {
            let h = HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                ),
                &["grpc_type", "grpc_service", "grpc_method"],
            )?;
            registry.register(Box::new(h.clone()))?;
            Some(h)
        } else {
            None
        };
        let client_sent = IntCounter::new(
            "etcd_network_client_grpc_sent_bytes_total",
            "The total number of bytes sent to grpc clients.",
        )?;
        let client_received = IntCounter::new(
            "etcd_network_client_grpc_received_bytes_total",
            "The total number of bytes received from grpc clients.",
        )?;
        let is_learner = g(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        )?;
        registry.register(Box::new(client_sent.clone()))?;
        registry.register(Box::new(client_received.clone()))?;
        registry.register(Box::new(is_learner.clone()))?;
        let peer = PeerMetrics::new(&registry)?;
        let op = |what: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(
                format!("etcd_mvcc_{what}_total"),
                format!("Total number of {what}s seen by this member."),
            )?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let mvcc_ops = [op("range")?, op("put")?, op("delete")?, op("txn")?];
        // process_* (resident memory, CPU, open fds), as every Go exporter has.
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
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
            wal_fsync,
            backend_commit,
            db_size,
            db_in_use,
            keys,
            quota,
            server_id,
            grpc_handled,
            grpc_started,
            grpc_handling,
            client_sent,
            client_received,
            is_learner,
            mvcc_ops,
            peer,
            render: Mutex::new(()),
        })
    }

    /// Counts one gRPC call to `path` ("/package.Service/Method") as started.
    pub fn grpc_started(&self, path: &str) {
        self.grpc_started.with_label_values(&grpc_labels(path)).inc();
    }

    /// Counts one finished gRPC call to `path`, answered `code` after `took` (the handling
    /// histogram exists with `--metrics=extensive` only).
    pub fn grpc_handled(&self, path: &str, code: i32, took: Duration) {
        let [t, service, method] = grpc_labels(path);
        self.grpc_handled.with_label_values(&[t, service, method, code_name(code)]).inc();
        if let Some(h) = &self.grpc_handling {
            h.with_label_values(&[t, service, method]).observe(took.as_secs_f64());
        }
    }

    /// The counter of bytes received from gRPC clients.
    pub fn client_received(&self) -> &IntCounter {
        &self.client_received
    }

    /// The counter of bytes sent to gRPC clients.
    pub fn client_sent(&self) -> &IntCounter {
        &self.client_sent
    }

    /// Records a WAL sync's duration.
    pub fn observe_wal_fsync(&self, d: Duration) {
        self.wal_fsync.observe(d.as_secs_f64());
        // etcd's warning, with its wording and threshold (1 s).
        if d > Duration::from_secs(1) {
            tracing::warn!(took = ?d, expected_duration = ?Duration::from_secs(1), "slow fdatasync");
        }
    }

    /// Records a page-store commit's duration.
    pub fn observe_backend_commit(&self, d: Duration) {
        self.backend_commit.observe(d.as_secs_f64());
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
        let store = ctx.store();
        let stats = store.db().stats();
        self.db_size.set(stats.file_size as i64);
        let in_use = stats.pages.saturating_sub(stats.free_pages) * stats.page_size;
        self.db_in_use.set(in_use as i64);
        self.keys.set(store.key_count() as i64);
        let ops = store.op_counts();
        let counts = [&ops.ranges, &ops.puts, &ops.deletes, &ops.txns];
        for (c, n) in self.mvcc_ops.iter().zip(counts) {
            set_counter(c, n.load(std::sync::atomic::Ordering::Relaxed));
        }
        self.quota.set(ctx.limits.quota_backend_bytes.map_or(-1, |q| q as i64));
        self.server_id.reset();
        self.server_id.with_label_values(&[&format!("{:x}", st.id)]).set(1);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).map_err(|e| e.to_string())?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

/// Moves a counter to `value` (it only grows; the source is a monotonic counter).
fn set_counter(c: &IntCounter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}
