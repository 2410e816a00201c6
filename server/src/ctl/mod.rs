//! `rustedctl`: etcdctl's command line (API v3), for rusted and etcd alike; it talks to the
//! server only through the etcd v3 gRPC API. Flags, environment variables (`ETCDCTL_*`),
//! messages, exit codes and output formats are etcdctl 3.4's.
//!
//! Built so far: put, get, del, txn (from stdin), compaction, lease (grant, revoke, timetolive, list, keep-alive),
//! endpoint health/status, member list, alarm list, defrag, version. The other etcdctl commands are not built yet (issue 7).
#![forbid(unsafe_code)]

pub mod commands;
pub mod lease;
pub mod print;
pub mod txn;

use std::time::Duration;

use clap::{Parser, Subcommand};
use tonic::transport::{Channel, Endpoint};

use print::Format;

/// etcdctl's exit code for a failed command.
pub const EXIT_ERROR: u8 = 1;
/// etcdctl's exit code when the connection or stream fails.
pub const EXIT_BAD_CONNECTION: u8 = 2;
/// etcdctl's exit code for a valid flag with a value it does not support.
pub const EXIT_BAD_FEATURE: u8 = 4;
/// etcdctl's exit code for bad arguments.
pub const EXIT_BAD_ARGS: u8 = 128;

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
            _ => s.message().to_string(),
        };
        CtlError::failed(m)
    }
}

/// A command's result.
pub type CtlResult<T = ()> = Result<T, CtlError>;

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::autocompact::parse_go_duration(s).ok_or_else(|| format!("invalid duration {s:?}"))
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
    #[arg(long = "command-timeout", env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub command_timeout: Duration,
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
    /// The command.
    #[command(subcommand)]
    pub command: Command,
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
        /// Input from stdin (interactive mode)
        #[arg(short = 'i', long)]
        interactive: bool,
    },
    /// Compacts the event history in etcd
    Compaction(commands::CompactionArgs),
    /// Endpoint related commands
    #[command(subcommand)]
    Endpoint(commands::EndpointCommand),
    /// Membership related commands
    #[command(subcommand)]
    Member(commands::MemberCommand),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(commands::AlarmCommand),
    /// Lease related commands
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag,
    /// Prints the version of etcdctl
    Version,
}

/// `http://` in front of an endpoint given as host:port.
pub fn endpoint_url(e: &str) -> String {
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

impl Ctl {
    /// A channel to one endpoint.
    pub async fn dial_one(&self, endpoint: &str) -> CtlResult<Channel> {
        let ep = Endpoint::from_shared(endpoint_url(endpoint))
            .map_err(|e| CtlError::failed(format!("bad endpoint {endpoint}: {e}")))?
            .connect_timeout(self.dial_timeout)
            .tcp_nodelay(true);
        match tokio::time::timeout(self.dial_timeout, ep.connect()).await {
            Ok(Ok(c)) => Ok(c),
            _ => Err(CtlError::failed("context deadline exceeded")),
        }
    }

    /// A channel to the first endpoint that answers, in the order given (failover).
    pub async fn dial(&self) -> CtlResult<Channel> {
        let mut last = CtlError::failed("context deadline exceeded");
        for e in &self.endpoints {
            match self.dial_one(e).await {
                Ok(c) => return Ok(c),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    /// Runs `f` within the command timeout.
    pub async fn timed<T, F>(&self, f: F) -> CtlResult<T>
    where
        F: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        match tokio::time::timeout(self.command_timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(CtlError::failed("context deadline exceeded")),
        }
    }
}

/// Runs the command line; returns the exit code.
pub async fn run(ctl: Ctl) -> u8 {
    match commands::dispatch(&ctl).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {}", e.message);
            e.code
        }
    }
}
