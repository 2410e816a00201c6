//! The peer links' metrics (etcd's `etcd_network_peer_*`, per peer by hex ID), fed by the
//! peer transport and the peer service, and the received snapshots' (`etcd_snap_db_*`).
#![forbid(unsafe_code)]

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The peer links' metrics.
#[derive(Debug, Clone)]
pub struct PeerMetrics {
    sent_bytes: IntCounterVec,
    received_bytes: IntCounterVec,
    sent_failures: IntCounterVec,
    rtt: HistogramVec,
    active: IntGaugeVec,
    disconnected: IntCounterVec,
    snap_db_save: Histogram,
    snap_db_fsync: Histogram,
    /// Appends sent and received (`/v2/stats/self`).
    pub appends: super::appends::Appends,
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

impl PeerMetrics {
    pub(super) fn new(registry: &Registry) -> Result<PeerMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<_, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let sent_bytes = counter(
            "etcd_network_peer_sent_bytes_total",
            "The total number of bytes sent to peers.",
            &["To"],
        )?;
        let received_bytes = counter(
            "etcd_network_peer_received_bytes_total",
            "The total number of bytes received from peers.",
            &["From"],
        )?;
        let sent_failures = counter(
            "etcd_network_peer_sent_failures_total",
            "The total number of send failures from peers.",
            &["To"],
        )?;
        let disconnected = counter(
            "etcd_network_disconnected_peers_total",
            "The total number of disconnected peers.",
            &["Local", "Remote"],
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
        let histogram = |name: &str, help: &str, buckets| -> Result<_, prometheus::Error> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let snap_db_save = histogram(
            "etcd_snap_db_save_total_duration_seconds",
            "The total latency distributions of v3 snapshot save",
            prometheus::exponential_buckets(0.1, 2.0, 10)?,
        )?;
        let snap_db_fsync = histogram(
            "etcd_snap_db_fsync_duration_seconds",
            "The latency distributions of fsyncing .snap.db file",
            prometheus::exponential_buckets(0.001, 2.0, 14)?,
        )?;
        Ok(PeerMetrics {
            sent_bytes,
            received_bytes,
            sent_failures,
            rtt,
            active,
            disconnected,
            snap_db_save,
            snap_db_fsync,
            appends: Default::default(),
        })
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

    /// The probes to `to` (count, total seconds) and its failed sends (`/v2/stats/leader`).
    pub fn link_stats(&self, to: u64) -> (u64, f64, u64) {
        let h = self.rtt.with_label_values(&[&hex(to)]);
        let fails = self.sent_failures.with_label_values(&[&hex(to)]).get();
        (h.get_sample_count(), h.get_sample_sum(), fails)
    }

    /// Whether the link from `local` to `remote` is up; a link going down is counted.
    pub fn set_active(&self, local: u64, remote: u64, up: bool) {
        let (l, r) = (hex(local), hex(remote));
        let g = self.active.with_label_values(&[&l, &r]);
        if !up && g.get() > 0 {
            self.disconnected.with_label_values(&[&l, &r]).inc();
        }
        g.set(i64::from(up));
    }

    /// A snapshot from the leader was received and saved, this long after it began.
    pub fn snapshot_db_saved(&self, took: Duration) {
        self.snap_db_save.observe(took.as_secs_f64());
    }

    /// A received snapshot's file was synced in `took`.
    pub fn snapshot_db_fsync(&self, took: Duration) {
        self.snap_db_fsync.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_going_down_counts_once_per_disconnection() {
        let r = Registry::new();
        let m = PeerMetrics::new(&r).expect("metrics");
        m.set_active(1, 2, false);
        assert_eq!(m.disconnected.with_label_values(&["1", "2"]).get(), 0, "never up");
        m.set_active(1, 2, true);
        m.set_active(1, 2, false);
        m.set_active(1, 2, false);
        assert_eq!(m.disconnected.with_label_values(&["1", "2"]).get(), 1);
    }
}
