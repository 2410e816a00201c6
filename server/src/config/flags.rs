//! The `rusted` command line: etcd's flags, names, defaults and ETCD_* environment variables.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// rusted: an etcd-compatible key-value store.
#[derive(Debug, Clone, Parser)]
#[command(name = "rusted", version, about, args_override_self = true)]
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
    #[arg(long = "pre-vote", env = "ETCD_PRE_VOTE", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = go_bool)]
    pub pre_vote: bool,
    /// Currently only supports 'debug', 'info', 'warn', 'error', 'panic', or 'fatal'.
    #[arg(long = "log-level", env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// List of URLs to listen on for the metrics and health endpoints (https ones use the
    /// client TLS settings).
    #[arg(long = "listen-metrics-urls", env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(
        long = "max-concurrent-streams",
        env = "ETCD_MAX_CONCURRENT_STREAMS",
        default_value_t = u32::MAX
    )]
    pub max_concurrent_streams: u32,
    /// List of URLs to listen on for HTTP-only client traffic (gateway, health, metrics); the
    /// --listen-client-urls then serve gRPC only.
    #[arg(
        long = "listen-client-http-urls",
        env = "ETCD_LISTEN_CLIENT_HTTP_URLS",
        default_value = ""
    )]
    pub listen_client_http_urls: String,
    /// Maximum number of snapshot files to retain (0 is unlimited).
    #[arg(long = "max-snapshots", env = "ETCD_MAX_SNAPSHOTS", default_value_t = 5)]
    pub max_snapshots: u64,
    /// Maximum number of WAL files to retain (0 is unlimited).
    #[arg(long = "max-wals", env = "ETCD_MAX_WALS", default_value_t = 5)]
    pub max_wals: u64,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(long = "strict-reconfig-check", env = "ETCD_STRICT_RECONFIG_CHECK", default_value_t = true,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub strict_reconfig_check: bool,
    /// Fast-forward election ticks at start (rusted: see the README's flag table).
    #[arg(long = "initial-election-tick-advance", env = "ETCD_INITIAL_ELECTION_TICK_ADVANCE",
          default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub initial_election_tick_advance: bool,
    /// bbolt's freelist type (rusted's page store has one freelist; accepted, no effect).
    #[arg(
        long = "backend-bbolt-freelist-type",
        env = "ETCD_BACKEND_BBOLT_FREELIST_TYPE",
        default_value = ""
    )]
    pub backend_bbolt_freelist_type: String,
    /// Maximum time before committing the backend transaction (rusted: no effect).
    #[arg(long = "backend-batch-interval", env = "ETCD_BACKEND_BATCH_INTERVAL",
          default_value = "0s", value_parser = go_duration)]
    pub backend_batch_interval: Duration,
    /// Maximum operations before committing the backend transaction (rusted: no effect).
    #[arg(
        long = "backend-batch-limit",
        env = "ETCD_BACKEND_BATCH_LIMIT",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub backend_batch_limit: i64,
    /// Enable SO_REUSEPORT on the listeners.
    #[arg(long = "socket-reuse-port", env = "ETCD_SOCKET_REUSE_PORT", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub socket_reuse_port: bool,
    /// Enable SO_REUSEADDR on the listeners.
    #[arg(long = "socket-reuse-address", env = "ETCD_SOCKET_REUSE_ADDRESS", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub socket_reuse_address: bool,
    /// Serve etcd's JSON gateway (/v3/...) on the client URLs.
    #[arg(long = "enable-grpc-gateway", env = "ETCD_ENABLE_GRPC_GATEWAY", default_value_t = true,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub enable_grpc_gateway: bool,
    /// Comma-separated whitelist of origins for CORS (cross-origin resource sharing).
    #[arg(long = "cors", env = "ETCD_CORS", default_value = "*")]
    pub cors: String,
    /// Acceptable hostnames from HTTP client requests, if the server is not secure.
    #[arg(long = "host-whitelist", env = "ETCD_HOST_WHITELIST", default_value = "*")]
    pub host_whitelist: String,
    /// Disables fsync: unsafe, for tests and throwaway clusters only (a host crash may lose
    /// acknowledged writes).
    #[arg(long = "unsafe-no-fsync", env = "ETCD_UNSAFE_NO_FSYNC", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub unsafe_no_fsync: bool,
    /// The `--experimental-*` flags.
    #[command(flatten)]
    pub experimental: crate::config::experimental::ExperimentalFlags,
    /// Flags whose features are not built yet (refused when they ask for them).
    #[command(flatten)]
    pub deferred: crate::config::deferred::DeferredFlags,
    /// Transport security (client and peer).
    #[command(flatten)]
    pub tls: crate::config::tls::TlsFlags,
}

/// etcd's longest election timeout, in milliseconds.
pub const MAX_ELECTION_MS: u64 = 50_000;

impl ServerConfig {
    /// etcd's start-time checks of the flags (its embed.Config.Validate and flag parsing),
    /// and refusals of what rusted does not do yet. TLS files are checked when loaded.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat_interval == 0 {
            return Err(format!(
                "--heartbeat-interval must be >0 (set to {}ms)",
                self.heartbeat_interval
            ));
        }
        if self.election_timeout == 0 {
            return Err(format!(
                "--election-timeout must be >0 (set to {}ms)",
                self.election_timeout
            ));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        if self.election_timeout > MAX_ELECTION_MS {
            return Err(format!(
                "--election-timeout[{}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms",
                self.election_timeout
            ));
        }
        for origin in urls(&self.cors) {
            crate::net::access::check_origin(&origin)?;
        }
        let grpc: Vec<String> = urls(&self.listen_client_urls);
        for u in urls(&self.listen_client_http_urls) {
            bind_addr(&u)?;
            if grpc.contains(&u) {
                return Err(format!(
                    "http only client URL {u} cannot be the same as a client URL (--listen-client-urls and --listen-client-http-urls)"
                ));
            }
        }
        self.experimental.check()?;
        self.deferred.check()
    }

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

/// A Go bool flag value (strconv.ParseBool: 1, t, T, TRUE, true, True, 0, f, F, FALSE,
/// false, False).
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("parse error: invalid boolean value {s:?}")),
    }
}

/// A Go duration flag value ("5s", "10m0s"), with etcd's wording when it is not one.
pub fn go_duration(s: &str) -> Result<std::time::Duration, String> {
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
