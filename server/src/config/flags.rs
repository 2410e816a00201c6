//! The `rusted` command line: etcd's flags, names, defaults and ETCD_* environment variables.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;

/// rusted: an etcd-compatible key-value store.
#[derive(Debug, Clone, Parser)]
#[command(name = "rusted", version, about)]
pub struct ServerConfig {
    /// Path to the server configuration file (YAML, etcd's keys). When given, the other
    /// command-line flags and environment variables are ignored.
    #[arg(long = "config-file", env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: ${name}.rusted).
    #[arg(long = "data-dir", env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to the dedicated WAL directory (default: inside the data dir).
    #[arg(long = "wal-dir", env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(
        long = "listen-client-urls",
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long = "advertise-client-urls",
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(
        long = "listen-peer-urls",
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long = "initial-advertise-peer-urls",
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping.
    #[arg(
        long = "initial-cluster",
        env = "ETCD_INITIAL_CLUSTER",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long = "initial-cluster-state", env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new",
          value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(
        long = "initial-cluster-token",
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(
        long = "snapshot-count",
        env = "ETCD_SNAPSHOT_COUNT",
        default_value_t = rusted_replication::config::DEFAULT_SNAPSHOT_COUNT
    )]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long = "heartbeat-interval", env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long = "election-timeout", env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota;
    /// negative disables the quota).
    #[arg(
        long = "quota-backend-bytes",
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long = "max-request-bytes", env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long = "max-txn-ops", env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision.
    #[arg(long = "auto-compaction-mode", env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic",
          value_parser = ["periodic", "revision"])]
    pub auto_compaction_mode: String,
    /// Auto compaction retention (0 means disable auto compaction).
    #[arg(
        long = "auto-compaction-retention",
        env = "ETCD_AUTO_COMPACTION_RETENTION",
        default_value = "0"
    )]
    pub auto_compaction_retention: String,
    /// Enable the raft Pre-Vote algorithm.
    #[arg(long = "pre-vote", env = "ETCD_PRE_VOTE", default_value_t = true, action = clap::ArgAction::Set)]
    pub pre_vote: bool,
    /// Currently only supports 'debug', 'info', 'warn', 'error', 'panic', or 'fatal'.
    #[arg(long = "log-level", env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// List of URLs to listen on for the metrics and health endpoints (https ones use the
    /// client TLS settings).
    #[arg(long = "listen-metrics-urls", env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,
    /// Duration of periodic watch progress notifications.
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m0s",
        value_parser = go_duration
    )]
    pub watch_progress_notify_interval: std::time::Duration,
    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(long = "experimental-initial-corrupt-check", env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK",
          default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub initial_corrupt_check: bool,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(
        long = "max-concurrent-streams",
        env = "ETCD_MAX_CONCURRENT_STREAMS",
        default_value_t = u32::MAX
    )]
    pub max_concurrent_streams: u32,
    /// Transport security (client and peer).
    #[command(flatten)]
    pub tls: crate::config::tls::TlsFlags,
}

impl ServerConfig {
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.rusted", self.name)))
    }

    /// `<data-dir>/member`.
    pub fn member_dir(&self) -> PathBuf {
        self.data_dir().join("member")
    }

    /// The WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir.clone().unwrap_or_else(|| self.member_dir().join("wal"))
    }

    /// `<data-dir>/member/snap`.
    pub fn snap_dir(&self) -> PathBuf {
        self.member_dir().join("snap")
    }
}

/// A Go duration flag value ("5s", "10m0s"), with etcd's wording when it is not one.
fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    rusted_proto::duration::parse_go_duration(s)
        .ok_or_else(|| format!("time: invalid duration {s:?}"))
}

/// Splits a comma-separated URL list.
pub fn urls(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()
}

/// `host:port` of an http URL, for binding.
pub fn bind_addr(url: &str) -> Result<std::net::SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("URL must start with http:// or https://: {url}"))?;
    let hostport = rest.trim_end_matches('/');
    let hostport = hostport.replace("localhost", "127.0.0.1");
    use std::net::ToSocketAddrs;
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))
}
