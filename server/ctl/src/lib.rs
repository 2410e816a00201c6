//! rusted-ctl, the `rustedctl` binary: etcdctl's command line (API v3), for rusted and etcd
//! alike; it talks to a server only through the etcd v3 gRPC API, except the offline
//! `snapshot restore`, which builds a data dir with rusted-server's restore. Flags, environment variables (`ETCDCTL_*`),
//! messages, exit codes and output formats are etcdctl 3.4's.
//!
//! Commands: put, get, del, txn (from stdin or interactive), compaction, watch (with exec and
//! interactive modes), lease grant/revoke/timetolive/list/keep-alive, member
//! list/add/remove/update/promote, endpoint health/status/hashkv (with `--cluster`), snapshot
//! save/status/restore, alarm list/disarm, defrag, move-leader, lock, elect, check perf, version,
//! user, role, auth enable/disable/status (with `--user`/`--password`: every request then
//! carries the token, see [`Conn`]), make-mirror, check datascale, defrag --data-dir. Not built:
//! `migrate` (etcd v2 data).
#![forbid(unsafe_code)]

pub mod auth;
pub mod check;
pub mod commands;
pub mod concurrency;
pub mod datascale;
pub mod endpoint;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod member;
pub mod mirror;
pub mod print;
pub mod restore;
pub mod txn;
pub mod watch;

use std::time::Duration;

use clap::{Parser, Subcommand};
use rusted_proto::tls::ClientTls;
use tonic::transport::Channel;

use print::Format;

/// etcdctl's exit code for a failed command.
pub const EXIT_ERROR: u8 = 1;
/// etcdctl's exit code when the connection or stream fails.
pub const EXIT_BAD_CONNECTION: u8 = 2;
/// etcdctl's exit code for input it cannot parse (txn and interactive watch lines).
pub const EXIT_INVALID_INPUT: u8 = 3;
/// etcdctl's exit code for a valid flag with a value it does not support.
pub const EXIT_BAD_FEATURE: u8 = 4;
/// etcdctl's exit code when a stream ends under it (watch canceled, snapshot failed).
pub const EXIT_INTERRUPTED: u8 = 5;
/// etcdctl's exit code for bad arguments.
pub const EXIT_BAD_ARGS: u8 = 128;

/// etcdctl's default `--command-timeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A command's failure: what etcdctl prints after `Error: `, and its exit code.
#[derive(Debug)]
pub struct CtlError {
    /// The message.
    pub message: String,
    /// The exit code.
    pub code: u8,
}

impl CtlError {
    /// Bad arguments (exit 128).
    pub fn args(m: impl Into<String>) -> Self {
        CtlError { message: m.into(), code: EXIT_BAD_ARGS }
    }

    /// A failed command (exit 1).
    pub fn failed(m: impl Into<String>) -> Self {
        CtlError { message: m.into(), code: EXIT_ERROR }
    }
}

impl From<tonic::Status> for CtlError {
    fn from(s: tonic::Status) -> Self {
        let m = match s.code() {
            tonic::Code::DeadlineExceeded => "context deadline exceeded".to_string(),
            // clientv3 turns the errors it knows (etcdserver's) into their message; others
            // stay gRPC statuses, as grpc-go prints them (auth refusals of maintenance calls).
            tonic::Code::Unknown if !s.message().starts_with("etcdserver: ") => {
                format!("rpc error: code = Unknown desc = {}", s.message())
            }
            _ => s.message().to_string(),
        };
        CtlError::failed(m)
    }
}

impl CtlError {
    /// A failure that has already been reported: exit with `code`, print nothing more.
    pub fn silent(code: u8) -> Self {
        CtlError { message: String::new(), code }
    }
}

/// etcdctl's answer to an output format a command cannot print (exit 4).
pub fn unsupported(f: Format) -> CtlError {
    let name = match f {
        Format::Simple => "simple",
        Format::Json => "json",
        Format::Fields => "fields",
        Format::Protobuf => "protobuf",
        Format::Table => "table",
    };
    CtlError { message: format!("{name} not supported as output format"), code: EXIT_BAD_FEATURE }
}

/// Go's strconv error text for a number that did not parse, as `fn_name` ("ParseUint",
/// "ParseInt") words it: `strconv.ParseUint: parsing "zz": invalid syntax`.
pub fn go_parse_uint_error(fn_name: &str, input: &str, e: &std::num::ParseIntError) -> String {
    use std::num::IntErrorKind;
    let why = match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
        _ => "invalid syntax",
    };
    format!("strconv.{fn_name}: parsing {}: {why}", print::go_quote(input))
}

/// A command's result.
pub type CtlResult<T = ()> = Result<T, CtlError>;

/// A connection: a channel whose requests carry the auth token, if any.
pub type Conn = tonic::service::interceptor::InterceptedService<Channel, Token>;

/// Puts the token (from `--user`) in each request's `token` metadata, as clientv3 does.
#[derive(Debug, Clone)]
pub struct Token(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            r.metadata_mut().insert("token", t.clone());
        }
        Ok(r)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    rusted_proto::duration::parse_go_duration(s).ok_or_else(|| format!("invalid duration {s:?}"))
}

/// The global flags.
#[derive(Debug, Parser)]
#[command(
    name = "rustedctl",
    version,
    about = "A simple command line client for etcd3 (and rusted)."
)]
pub struct Ctl {
    /// gRPC endpoints
    #[arg(
        long,
        env = "ETCDCTL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    pub endpoints: Vec<String>,
    /// dial timeout for client connections
    #[arg(long = "dial-timeout", env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = parse_duration, global = true)]
    pub dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    /// (default 5s; unset matters: a snapshot save then has no deadline)
    #[arg(long = "command-timeout", env = "ETCDCTL_COMMAND_TIMEOUT", value_parser = parse_duration, global = true)]
    pub command_timeout_flag: Option<Duration>,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple",
        value_enum,
        global = true
    )]
    pub write_out: Format,
    /// print byte strings as hex encoded strings
    #[arg(long, env = "ETCDCTL_HEX", global = true)]
    pub hex: bool,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, env = "ETCDCTL_CACERT", global = true)]
    pub cacert: Option<std::path::PathBuf>,
    /// identify secure client using this TLS certificate file
    #[arg(long, env = "ETCDCTL_CERT", global = true)]
    pub cert: Option<std::path::PathBuf>,
    /// identify secure client using this TLS key file
    #[arg(long, env = "ETCDCTL_KEY", global = true)]
    pub key: Option<std::path::PathBuf>,
    /// skip server certificate verification (CAUTION: this option should be enabled only for
    /// testing purposes)
    #[arg(long = "insecure-skip-tls-verify", env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", global = true,
          default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_skip_tls_verify: bool,
    /// disable transport security for client connections
    #[arg(long = "insecure-transport", env = "ETCDCTL_INSECURE_TRANSPORT", global = true,
          default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_transport: bool,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, env = "ETCDCTL_USER", global = true)]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include
    /// password)
    #[arg(long, env = "ETCDCTL_PASSWORD", global = true)]
    pub password: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long = "discovery-srv", env = "ETCDCTL_DISCOVERY_SRV", global = true)]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery
    #[arg(long = "discovery-srv-name", env = "ETCDCTL_DISCOVERY_SRV_NAME", global = true)]
    pub discovery_srv_name: Option<String>,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long = "insecure-discovery", env = "ETCDCTL_INSECURE_DISCOVERY", global = true,
          default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_discovery: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Ctl {
    /// `--discovery-srv`: the endpoints the domain's `_etcd-client[-ssl]._tcp` records name
    /// replace `--endpoints` (http ones dropped unless `--insecure-discovery`); none found
    /// leaves `--endpoints`.
    pub async fn discover_endpoints(&mut self) -> CtlResult<()> {
        let Some(domain) = self.discovery_srv.clone().filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        let name = self.discovery_srv_name.clone().unwrap_or_default();
        let mut eps = rusted_server::discovery::srv::client_endpoints(&domain, &name)
            .await
            .map_err(CtlError::failed)?;
        if !self.insecure_discovery {
            eps.retain(|e| {
                let secure = e.starts_with("https://");
                if !secure {
                    eprintln!("ignoring discovered insecure endpoint {e:?}");
                }
                secure
            });
        }
        if !eps.is_empty() {
            self.endpoints = eps;
        }
        Ok(())
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Puts the given key into the store
    Put(commands::PutArgs),
    /// Gets the key or a range of keys
    Get(commands::GetArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(commands::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn {
        /// (none)
        args: Vec<String>,
        /// Input from stdin (interactive mode)
        #[arg(short = 'i', long)]
        interactive: bool,
    },
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Acquires a named lock
    Lock(concurrency::LockArgs),
    /// Observes and participates in leader election
    Elect(concurrency::ElectArgs),
    /// commands for checking properties of the etcd cluster
    #[command(subcommand)]
    Check(check::CheckCommand),
    /// Compacts the event history in etcd
    Compaction(commands::CompactionArgs),
    /// Endpoint related commands
    Endpoint(endpoint::EndpointArgs),
    /// Membership related commands
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(maintenance::AlarmCommand),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader {
        /// The transferee's member ID (hex).
        args: Vec<String>,
    },
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(maintenance::SnapshotCommand),
    /// Lease related commands
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(maintenance::DefragArgs),
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(mirror::MirrorArgs),
    /// User related commands
    #[command(subcommand)]
    User(auth::UserCommand),
    /// Role related commands
    #[command(subcommand)]
    Role(auth::RoleCommand),
    /// Enable or disable authentication
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Prints the version of etcdctl
    Version,
}

impl Ctl {
    /// A connection to one endpoint, authenticated when `--user` is given.
    pub async fn dial_one(&self, endpoint: &str) -> CtlResult<Conn> {
        self.dial_with(endpoint, self.tls().as_ref(), true).await
    }

    /// A connection to `endpoint` with `tls`; authenticated as `--user` when `auth` (another
    /// cluster, as make-mirror's destination, gets no credentials, as etcdctl's).
    pub async fn dial_with(
        &self,
        endpoint: &str,
        tls: Option<&ClientTls>,
        auth: bool,
    ) -> CtlResult<Conn> {
        let target = rusted_proto::dial::target(endpoint, tls)
            .map_err(|e| CtlError::failed(e.to_string()))?
            .with(|e| e.connect_timeout(self.dial_timeout));
        let ch = match tokio::time::timeout(self.dial_timeout, target.connect()).await {
            Ok(Ok(c)) => c,
            _ => return Err(CtlError::failed("context deadline exceeded")),
        };
        let token = if auth { self.authenticate(&ch).await? } else { None };
        Ok(tonic::service::interceptor::InterceptedService::new(ch, Token(token)))
    }

    /// `--user` (and `--password`): the name and password, prompting for a password not given.
    fn credentials(&self) -> CtlResult<Option<(String, String)>> {
        let Some(user) = self.user.as_ref().filter(|u| !u.is_empty()) else { return Ok(None) };
        // As etcdctl: with --password, --user is the whole name (colons included).
        if let Some(pw) = self.password.as_ref().filter(|p| !p.is_empty()) {
            return Ok(Some((user.clone(), pw.clone())));
        }
        match user.split_once(':') {
            Some((name, pw)) => Ok(Some((name.to_string(), pw.to_string()))),
            None => {
                let pw = auth::prompt("Password: ")
                    .map_err(|e| CtlError::failed(format!("bad user name or password: {e}")))?;
                Ok(Some((user.clone(), pw)))
            }
        }
    }

    /// A token for the credentials, as clientv3 gets one: none without `--user`, or when the
    /// server says auth is not enabled.
    async fn authenticate(
        &self,
        ch: &Channel,
    ) -> CtlResult<Option<tonic::metadata::AsciiMetadataValue>> {
        let Some((name, password)) = self.credentials()? else { return Ok(None) };
        let mut c = rusted_proto::etcdserverpb::auth_client::AuthClient::new(ch.clone());
        let req = rusted_proto::etcdserverpb::AuthenticateRequest { name, password };
        match tokio::time::timeout(
            self.dial_timeout.max(self.command_timeout()),
            c.authenticate(req),
        )
        .await
        {
            Ok(Ok(r)) => {
                let t = r.into_inner().token;
                Ok(t.parse().ok())
            }
            Ok(Err(s))
                if s.code() == tonic::Code::FailedPrecondition
                    && s.message() == "etcdserver: authentication is not enabled" =>
            {
                Ok(None)
            }
            Ok(Err(s)) => Err(CtlError { code: EXIT_BAD_CONNECTION, ..CtlError::from(s) }),
            Err(_) => Err(CtlError::failed("context deadline exceeded")),
        }
    }

    /// The TLS settings, as etcdctl reads its flags: TLS when a certificate, key or CA is given
    /// or `--insecure-transport=false`; `--insecure-skip-tls-verify` then skips verification.
    /// (An `https://` endpoint speaks TLS in any case.)
    pub fn tls(&self) -> Option<ClientTls> {
        let files = self.cacert.is_some() || self.cert.is_some() || self.key.is_some();
        if !files && self.insecure_transport {
            return None;
        }
        Some(ClientTls {
            ca_file: self.cacert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            skip_verify: self.insecure_skip_tls_verify,
        })
    }

    /// A connection to the first endpoint that answers, in the order given (failover).
    pub async fn dial(&self) -> CtlResult<Conn> {
        let mut last = CtlError::failed("context deadline exceeded");
        for e in &self.endpoints {
            match self.dial_one(e).await {
                Ok(c) => return Ok(c),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    /// The command timeout: `--command-timeout`, 5 s by default.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout_flag.unwrap_or(DEFAULT_COMMAND_TIMEOUT)
    }

    /// Runs `f` within the command timeout.
    pub async fn timed<T, F>(&self, f: F) -> CtlResult<T>
    where
        F: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        match tokio::time::timeout(self.command_timeout(), f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(CtlError::failed("context deadline exceeded")),
        }
    }
}

/// Global flags that `ETCDCTL_*` variables also set: (clap id, variable).
const ENV_FLAGS: &[(&str, &str)] = &[
    ("endpoints", "ETCDCTL_ENDPOINTS"),
    ("dial_timeout", "ETCDCTL_DIAL_TIMEOUT"),
    ("command_timeout_flag", "ETCDCTL_COMMAND_TIMEOUT"),
    ("write_out", "ETCDCTL_WRITE_OUT"),
    ("hex", "ETCDCTL_HEX"),
];

/// Parses the command line. As etcdctl, a flag given both on the command line and in its
/// `ETCDCTL_*` variable is refused (etcdctl's critical log line, exit 1).
pub fn parse() -> Result<Ctl, u8> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Ctl::command().get_matches();
    for (id, var) in ENV_FLAGS {
        let from_line =
            matches.value_source(id).is_some_and(|s| s == clap::parser::ValueSource::CommandLine);
        if from_line && std::env::var(var).is_ok_and(|v| !v.is_empty()) {
            eprintln!(
                "{} C | pkg/flags: conflicting environment variable {var:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
                log_time(std::time::SystemTime::now())
            );
            return Err(EXIT_ERROR);
        }
    }
    Ctl::from_arg_matches(&matches).map_err(|e| {
        let _ = e.print();
        EXIT_BAD_ARGS
    })
}

/// A UTC time as capnslog prints it: "2026-11-22 04:42:29.519892".
pub fn log_time(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Runs the command line; returns the exit code.
pub async fn run(mut ctl: Ctl) -> u8 {
    let done = match ctl.discover_endpoints().await {
        Ok(()) => commands::dispatch(&ctl).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => 0,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("Error: {}", e.message);
            }
            e.code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capnslog_times() {
        let t = std::time::UNIX_EPOCH + Duration::from_micros(1_795_322_549_519_892);
        assert_eq!(log_time(t), "2026-11-22 04:42:29.519892");
        assert_eq!(log_time(std::time::UNIX_EPOCH), "1970-01-01 00:00:00.000000");
    }
}
