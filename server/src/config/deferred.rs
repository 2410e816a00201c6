//! etcd server flags of features built after the core: logging (`logging`), metrics level,
//! pprof, discovery, the v2 API and proxy, `--force-new-cluster`, auth tokens, gRPC
//! keepalive. Each is parsed with etcd's name, variable and default, and checked as etcd
//! checks it ([`DeferredFlags::check`]).
#![forbid(unsafe_code)]

use std::time::Duration;

use clap::{ArgAction, Args};

use crate::config::flags::go_duration;

/// The refusal of a flag whose feature rusted does not have yet.
pub fn not_supported(flag: &str) -> String {
    format!("{flag} is not supported yet by rusted")
}

/// The v2 store's deprecation stages ("" is etcd's default, "not-yet").
fn v2_deprecation(s: &str) -> Result<String, String> {
    const STAGES: [&str; 5] =
        ["not-yet", "write-only", "write-only-skip-check", "write-only-drop-data", "gone"];
    if s.is_empty() || STAGES.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("invalid value {s:?}: valid values are {STAGES:?}"))
    }
}

/// Flags parsed for compatibility; their features are not built yet.
#[derive(Debug, Clone, Args)]
pub struct DeferredFlags {
    /// Discovery URL used to bootstrap the cluster.
    #[arg(long = "discovery", env = "ETCD_DISCOVERY", default_value = "")]
    pub discovery: String,
    /// Expected behavior ('exit' or 'proxy') when the discovery service fails.
    #[arg(long = "discovery-fallback", env = "ETCD_DISCOVERY_FALLBACK", default_value = "proxy",
          value_parser = ["exit", "proxy"])]
    pub discovery_fallback: String,
    /// HTTP proxy to use for traffic to the discovery service.
    #[arg(long = "discovery-proxy", env = "ETCD_DISCOVERY_PROXY", default_value = "")]
    pub discovery_proxy: String,
    /// DNS domain used to bootstrap the cluster (SRV records).
    #[arg(long = "discovery-srv", env = "ETCD_DISCOVERY_SRV", default_value = "")]
    pub discovery_srv: String,
    /// Suffix of the DNS SRV names queried for discovery.
    #[arg(long = "discovery-srv-name", env = "ETCD_DISCOVERY_SRV_NAME", default_value = "")]
    pub discovery_srv_name: String,
    /// V3 discovery: unique discovery token for the cluster being bootstrapped.
    #[arg(long = "discovery-token", env = "ETCD_DISCOVERY_TOKEN", default_value = "")]
    pub discovery_token: String,
    /// V3 discovery: the discovery service's gRPC endpoints (comma separated).
    #[arg(long = "discovery-endpoints", env = "ETCD_DISCOVERY_ENDPOINTS", default_value = "")]
    pub discovery_endpoints: String,
    /// V3 discovery: dial timeout for client connections.
    #[arg(long = "discovery-dial-timeout", env = "ETCD_DISCOVERY_DIAL_TIMEOUT",
          default_value = "2s", value_parser = go_duration)]
    pub discovery_dial_timeout: Duration,
    /// V3 discovery: timeout for discovery requests (excluding dial timeout).
    #[arg(long = "discovery-request-timeout", env = "ETCD_DISCOVERY_REQUEST_TIMEOUT",
          default_value = "5s", value_parser = go_duration)]
    pub discovery_request_timeout: Duration,
    /// V3 discovery: keepalive time for client connections.
    #[arg(long = "discovery-keepalive-time", env = "ETCD_DISCOVERY_KEEPALIVE_TIME",
          default_value = "2s", value_parser = go_duration)]
    pub discovery_keepalive_time: Duration,
    /// V3 discovery: keepalive timeout for client connections.
    #[arg(long = "discovery-keepalive-timeout", env = "ETCD_DISCOVERY_KEEPALIVE_TIMEOUT",
          default_value = "6s", value_parser = go_duration)]
    pub discovery_keepalive_timeout: Duration,
    /// V3 discovery: disable transport security for client connections.
    #[arg(long = "discovery-insecure-transport", env = "ETCD_DISCOVERY_INSECURE_TRANSPORT",
          default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub discovery_insecure_transport: bool,
    /// V3 discovery: skip server certificate verification.
    #[arg(long = "discovery-insecure-skip-tls-verify", env = "ETCD_DISCOVERY_INSECURE_SKIP_TLS_VERIFY",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub discovery_insecure_skip_tls_verify: bool,
    /// V3 discovery: identify secure client using this TLS certificate file.
    #[arg(long = "discovery-cert", env = "ETCD_DISCOVERY_CERT", default_value = "")]
    pub discovery_cert: String,
    /// V3 discovery: identify secure client using this TLS key file.
    #[arg(long = "discovery-key", env = "ETCD_DISCOVERY_KEY", default_value = "")]
    pub discovery_key: String,
    /// V3 discovery: verify certificates of TLS-enabled secure servers using this CA bundle.
    #[arg(long = "discovery-cacert", env = "ETCD_DISCOVERY_CACERT", default_value = "")]
    pub discovery_cacert: String,
    /// V3 discovery: username for authentication.
    #[arg(long = "discovery-user", env = "ETCD_DISCOVERY_USER", default_value = "")]
    pub discovery_user: String,
    /// V3 discovery: password for authentication.
    #[arg(long = "discovery-password", env = "ETCD_DISCOVERY_PASSWORD", default_value = "")]
    pub discovery_password: String,
    /// Force to create a new one-member cluster.
    #[arg(long = "force-new-cluster", env = "ETCD_FORCE_NEW_CLUSTER", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub force_new_cluster: bool,
    /// Accept etcd V2 client requests.
    #[arg(long = "enable-v2", env = "ETCD_ENABLE_V2", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub enable_v2: bool,
    /// Serve the v2 API from the v3 store under this prefix (with --enable-v2).
    #[arg(
        long = "experimental-enable-v2v3",
        env = "ETCD_EXPERIMENTAL_ENABLE_V2V3",
        default_value = ""
    )]
    pub enable_v2v3: String,
    /// Phase of the v2 store's deprecation.
    #[arg(long = "v2-deprecation", env = "ETCD_V2_DEPRECATION", default_value = "",
          value_parser = v2_deprecation)]
    pub v2_deprecation: String,
    /// Valid values include 'on', 'readonly', 'off'.
    #[arg(long = "proxy", env = "ETCD_PROXY", default_value = "off",
          value_parser = ["off", "readonly", "on"])]
    pub proxy: String,
    /// Time (in milliseconds) an endpoint stays failed in the proxy.
    #[arg(long = "proxy-failure-wait", env = "ETCD_PROXY_FAILURE_WAIT", default_value_t = 5000)]
    pub proxy_failure_wait: u64,
    /// Time (in milliseconds) of the proxy's endpoints refresh interval.
    #[arg(
        long = "proxy-refresh-interval",
        env = "ETCD_PROXY_REFRESH_INTERVAL",
        default_value_t = 30000
    )]
    pub proxy_refresh_interval: u64,
    /// Time (in milliseconds) for the proxy's dial timeout.
    #[arg(long = "proxy-dial-timeout", env = "ETCD_PROXY_DIAL_TIMEOUT", default_value_t = 1000)]
    pub proxy_dial_timeout: u64,
    /// Time (in milliseconds) for the proxy's write timeout.
    #[arg(long = "proxy-write-timeout", env = "ETCD_PROXY_WRITE_TIMEOUT", default_value_t = 5000)]
    pub proxy_write_timeout: u64,
    /// Time (in milliseconds) for the proxy's read timeout.
    #[arg(long = "proxy-read-timeout", env = "ETCD_PROXY_READ_TIMEOUT", default_value_t = 0)]
    pub proxy_read_timeout: u64,
    /// Logger: 'zap' (structured) in etcd 3.5.
    #[arg(long = "logger", env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Where logs go: 'default', 'stderr', 'stdout', or file paths (`logging`).
    #[arg(long = "log-outputs", env = "ETCD_LOG_OUTPUTS", default_value = "default")]
    pub log_outputs: String,
    /// Rotate the log file by size (one file output only; `logging`).
    #[arg(long = "enable-log-rotation", env = "ETCD_ENABLE_LOG_ROTATION", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub enable_log_rotation: bool,
    /// Log rotation settings as JSON.
    #[arg(
        long = "log-rotation-config-json",
        env = "ETCD_LOG_ROTATION_CONFIG_JSON",
        default_value = r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#
    )]
    pub log_rotation_config_json: String,
    /// Serve runtime profiling data at /debug/pprof/.
    #[arg(long = "enable-pprof", env = "ETCD_ENABLE_PPROF", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub enable_pprof: bool,
    /// Level of detail of exported metrics: 'basic' or 'extensive'.
    #[arg(long = "metrics", env = "ETCD_METRICS", default_value = "basic",
          value_parser = ["basic", "extensive"])]
    pub metrics: String,
    /// Auth token type and options: 'simple' or 'jwt,...' (read by `auth::jwt`).
    #[arg(long = "auth-token", env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Cost of the bcrypt hashes of passwords.
    #[arg(long = "bcrypt-cost", env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u64,
    /// Seconds a simple auth token lives unused.
    #[arg(long = "auth-token-ttl", env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// Least time a client should wait between keepalive pings.
    #[arg(long = "grpc-keepalive-min-time", env = "ETCD_GRPC_KEEPALIVE_MIN_TIME",
          default_value = "5s", value_parser = go_duration)]
    pub grpc_keepalive_min_time: Duration,
    /// Interval of the server's keepalive pings to clients (0: none).
    #[arg(long = "grpc-keepalive-interval", env = "ETCD_GRPC_KEEPALIVE_INTERVAL",
          default_value = "2h0m0s", value_parser = go_duration)]
    pub grpc_keepalive_interval: Duration,
    /// How long the server waits for a keepalive ping's answer before closing.
    #[arg(long = "grpc-keepalive-timeout", env = "ETCD_GRPC_KEEPALIVE_TIMEOUT",
          default_value = "20s", value_parser = go_duration)]
    pub grpc_keepalive_timeout: Duration,
    /// Read timeout of peer connections.
    #[arg(long = "raft-read-timeout", env = "ETCD_RAFT_READ_TIMEOUT",
          default_value = "5s", value_parser = go_duration)]
    pub raft_read_timeout: Duration,
    /// Write timeout of peer connections.
    #[arg(long = "raft-write-timeout", env = "ETCD_RAFT_WRITE_TIMEOUT",
          default_value = "5s", value_parser = go_duration)]
    pub raft_write_timeout: Duration,
}

impl DeferredFlags {
    /// etcd's checks of these flags, then a refusal naming the first flag that asks for a
    /// feature rusted does not have yet.
    pub fn check(&self) -> Result<(), String> {
        if self.logger == "capnslog" {
            return Err("--logger=capnslog is removed in v3.5".into());
        }
        if self.logger != "zap" {
            return Err(format!("unknown logger option {:?}", self.logger));
        }
        let outputs: Vec<&str> = self.log_outputs.split(',').map(str::trim).collect();
        if outputs.contains(&"default") && outputs.len() > 1 {
            return Err("multi logoutput for \"default\" is not supported yet".into());
        }
        let v3 = [
            &self.discovery_token,
            &self.discovery_endpoints,
            &self.discovery_cert,
            &self.discovery_key,
            &self.discovery_cacert,
            &self.discovery_user,
            &self.discovery_password,
        ];
        if (!self.discovery.is_empty() || !self.discovery_proxy.is_empty())
            && v3.iter().any(|v| !v.is_empty())
        {
            return Err("both v2 discovery settings (discovery, discovery-proxy) and v3 discovery settings (discovery-token, discovery-endpoints, discovery-cert, discovery-key, discovery-cacert, discovery-user, discovery-password) are set".into());
        }
        if self.discovery_token.is_empty() != self.discovery_endpoints.is_empty() {
            return Err("both --discovery-token and --discovery-endpoints must be set".into());
        }
        if !self.discovery_endpoints.is_empty()
            && self.discovery_endpoints.split(',').any(|e| e.trim().is_empty())
        {
            return Err("--discovery-endpoints must not contain empty endpoints".into());
        }
        if self.enable_v2 && !matches!(self.v2_deprecation.as_str(), "" | "not-yet") {
            return Err(format!(
                "--enable-v2 and --v2-deprecation={} are mutually exclusive",
                self.v2_deprecation
            ));
        }
        if outputs.contains(&"systemd/journal") {
            return Err(not_supported("--log-outputs=systemd/journal"));
        }
        crate::logging::Rotation::from_flags(
            self.enable_log_rotation,
            &self.log_outputs,
            &self.log_rotation_config_json,
        )?;
        Ok(())
    }
}
