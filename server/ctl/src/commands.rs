//! The commands built so far, each printing as etcdctl 3.4 does.
#![forbid(unsafe_code)]

use std::io::Read;

use clap::Args;

use super::kv;
use super::print::{self, Format};
use super::{Command, Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::keys::prefix_end;

/// `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key, then the value (read from stdin when absent).
    pub args: Vec<String>,
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long = "ignore-value")]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long = "ignore-lease")]
    pub ignore_lease: bool,
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key, and optionally the end of the range.
    pub args: Vec<String>,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long = "keys-only")]
    pub keys_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long = "print-value-only")]
    pub print_value_only: bool,
}

/// `del`.
#[derive(Debug, Args)]
pub struct DelArgs {
    /// The key, and optionally the end of the range.
    pub args: Vec<String>,
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    pub from_key: bool,
}

/// `compaction`.
#[derive(Debug, Args)]
pub struct CompactionArgs {
    /// The revision.
    pub args: Vec<String>,
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long)]
    pub physical: bool,
}

/// Runs the command.
pub async fn dispatch(ctl: &Ctl) -> CtlResult {
    match &ctl.command {
        Command::Put(a) => put(ctl, a).await,
        Command::Get(a) => get(ctl, a).await,
        Command::Del(a) => del(ctl, a).await,
        Command::Compaction(a) => compaction(ctl, a).await,
        Command::Endpoint(a) => super::endpoint::run(ctl, a).await,
        Command::Member(cmd) => super::member::run(ctl, cmd).await,
        Command::Alarm(cmd) => super::maintenance::alarm(ctl, cmd).await,
        Command::Defrag(a) => super::maintenance::defrag(ctl, a).await,
        Command::MakeMirror(a) => super::mirror::make_mirror(ctl, a).await,
        Command::MoveLeader { args } => super::maintenance::move_leader(ctl, args).await,
        Command::Snapshot(cmd) => super::maintenance::snapshot(ctl, cmd).await,
        Command::Watch(a) => super::watch::run(ctl, a).await,
        Command::Lock(a) => super::concurrency::lock(ctl, a).await,
        Command::Elect(a) => super::concurrency::elect(ctl, a).await,
        Command::Check(cmd) => super::check::run(ctl, cmd).await,
        Command::Lease(cmd) => super::lease::run(ctl, cmd).await,
        Command::User(cmd) => super::auth::user(ctl, cmd).await,
        Command::Role(cmd) => super::auth::role(ctl, cmd).await,
        Command::Auth(cmd) => super::auth::auth(ctl, cmd).await,
        Command::Txn { args, interactive } => super::txn::run(ctl, args, *interactive).await,
        Command::Version => {
            // The API version is the etcdctl whose output rustedctl reproduces.
            println!("rustedctl version: {}", env!("CARGO_PKG_VERSION"));
            println!("API version: 3.4");
            Ok(())
        }
    }
}

async fn put(ctl: &Ctl, a: &PutArgs) -> CtlResult {
    let (key, value) = match a.args.as_slice() {
        [k, v] => (k.clone(), v.clone().into_bytes()),
        [k] => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|e| CtlError::failed(format!("reading the value from stdin: {e}")))?;
            if v.is_empty() {
                return Err(CtlError::args(
                    "put command needs 1 argument and input from stdin or 2 arguments",
                ));
            }
            (k.clone(), v)
        }
        _ => {
            return Err(CtlError::args(
                "put command needs 1 argument and input from stdin or 2 arguments",
            ))
        }
    };
    let lease = i64::from_str_radix(&a.lease, 16)
        .map_err(|e| CtlError::args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    let req = pb::PutRequest {
        key: key.into_bytes(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    };
    let mut c = KvClient::new(ctl.dial().await?);
    let r = ctl.timed(c.put(req)).await?.into_inner();
    match ctl.write_out {
        Format::Json => println!("{}", print::json(&r)),
        Format::Protobuf => print::protobuf(&r),
        Format::Fields => kv::fields_put(&r),
        Format::Simple => kv::simple_put(ctl, &r),
        Format::Table => return Err(super::unsupported(Format::Table)),
    }
    Ok(())
}

/// Key and range end from the arguments and the --prefix / --from-key flags (etcdctl's rules).
pub fn key_range(
    args: &[String],
    prefix: bool,
    from_key: bool,
    what: &str,
) -> CtlResult<(Vec<u8>, Vec<u8>)> {
    let (mut key, mut end) = match args {
        [k] => (k.as_bytes().to_vec(), Vec::new()),
        [k, e] => (k.as_bytes().to_vec(), e.as_bytes().to_vec()),
        _ => {
            return Err(CtlError::args(format!(
                "{what} command needs one argument as key and an optional argument as range_end"
            )))
        }
    };
    if prefix && from_key {
        return Err(CtlError::args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if prefix {
        if !end.is_empty() {
            return Err(CtlError::args(
                "too many arguments, only accept one argument when `--prefix` is set.",
            ));
        }
        // As clientv3's WithPrefix: an empty prefix means every key.
        if key.is_empty() {
            key = vec![0];
            end = vec![0];
        } else {
            end = prefix_end(&key);
        }
    }
    if from_key {
        if !end.is_empty() {
            return Err(CtlError::args(
                "too many arguments, only accept one argument when `--from-key` is set.",
            ));
        }
        if key.is_empty() {
            key = vec![0];
        }
        end = vec![0];
    }
    Ok((key, end))
}

async fn get(ctl: &Ctl, a: &GetArgs) -> CtlResult {
    let (key, range_end) = key_range(&a.args, a.prefix, a.from_key, "get")?;
    use pb::range_request::{SortOrder, SortTarget};
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        other => {
            return Err(CtlError {
                message: format!("bad sort order {other}"),
                code: super::EXIT_BAD_FEATURE,
            })
        }
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        other => {
            return Err(CtlError {
                message: format!("bad sort target {other}"),
                code: super::EXIT_BAD_FEATURE,
            })
        }
    };
    // As clientv3's WithSort: ascending by key is the server's natural order.
    let order = if target == SortTarget::Key && order == SortOrder::Ascend {
        SortOrder::None
    } else {
        order
    };
    let serializable = match a.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => return Err(CtlError::args(format!("unknown consistency flag {other:?}"))),
    };
    let req = pb::RangeRequest {
        key,
        range_end,
        limit: a.limit,
        revision: a.rev,
        sort_order: order as i32,
        sort_target: target as i32,
        serializable,
        keys_only: a.keys_only,
        ..Default::default()
    };
    let mut c = KvClient::new(ctl.dial().await?);
    let r = ctl.timed(c.range(req)).await?.into_inner();
    match ctl.write_out {
        Format::Json => println!("{}", print::json(&r)),
        Format::Protobuf => print::protobuf(&r),
        Format::Fields => kv::fields_get(&r),
        Format::Simple => kv::simple_get(ctl, &r, a.print_value_only),
        Format::Table => return Err(super::unsupported(Format::Table)),
    }
    Ok(())
}

async fn del(ctl: &Ctl, a: &DelArgs) -> CtlResult {
    let (key, range_end) = key_range(&a.args, a.prefix, a.from_key, "del")?;
    let req = pb::DeleteRangeRequest { key, range_end, prev_kv: a.prev_kv };
    let mut c = KvClient::new(ctl.dial().await?);
    let r = ctl.timed(c.delete_range(req)).await?.into_inner();
    match ctl.write_out {
        Format::Json => println!("{}", print::json(&r)),
        Format::Protobuf => print::protobuf(&r),
        Format::Fields => kv::fields_del(&r),
        Format::Simple => kv::simple_del(ctl, &r),
        Format::Table => return Err(super::unsupported(Format::Table)),
    }
    Ok(())
}

async fn compaction(ctl: &Ctl, a: &CompactionArgs) -> CtlResult {
    let [rev] = a.args.as_slice() else {
        return Err(CtlError::args("compaction command needs 1 argument"));
    };
    let revision: i64 = rev.parse().map_err(|e| CtlError::args(format!("{e}")))?;
    let mut c = KvClient::new(ctl.dial().await?);
    ctl.timed(c.compact(pb::CompactionRequest { revision, physical: a.physical })).await?;
    println!("compacted revision {revision}");
    Ok(())
}

/// A duration as Go prints it ("1.002173ms", "987.786µs", "2.5s", "1m2s").
pub use rusted_proto::duration::format_go_duration as go_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_from_flags() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            key_range(&a(&["a"]), true, false, "get").unwrap(),
            (b"a".to_vec(), b"b".to_vec())
        );
        assert_eq!(key_range(&a(&[""]), true, false, "get").unwrap(), (vec![0], vec![0]));
        assert_eq!(key_range(&a(&[""]), false, true, "get").unwrap(), (vec![0], vec![0]));
        assert_eq!(key_range(&a(&[]), false, false, "get").unwrap_err().code, 128);
    }
}
