//! The commands built so far, each printing as etcdctl 3.4 does.
#![forbid(unsafe_code)]

use std::io::Read;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::print::{self, Format};
use super::{Command, Ctl, CtlError, CtlResult};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::mvccpb;
use crate::recipe::prefix_end;

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

/// `endpoint ...`.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
}

/// `member ...`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Lists all members in the cluster
    List,
}

/// `alarm ...`.
#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// Lists all alarms
    List,
}

/// Runs the command.
pub async fn dispatch(ctl: &Ctl) -> CtlResult {
    match &ctl.command {
        Command::Put(a) => put(ctl, a).await,
        Command::Get(a) => get(ctl, a).await,
        Command::Del(a) => del(ctl, a).await,
        Command::Compaction(a) => compaction(ctl, a).await,
        Command::Endpoint(EndpointCommand::Health) => endpoint_health(ctl).await,
        Command::Endpoint(EndpointCommand::Status) => endpoint_status(ctl).await,
        Command::Member(MemberCommand::List) => member_list(ctl).await,
        Command::Alarm(AlarmCommand::List) => alarm_list(ctl).await,
        Command::Defrag => defrag(ctl).await,
        Command::Lease(cmd) => super::lease::run(ctl, cmd).await,
        Command::Txn { interactive } => super::txn::run(ctl, *interactive).await,
        Command::Version => {
            println!("rustedctl version: {}", env!("CARGO_PKG_VERSION"));
            println!("API version: 3.5");
            Ok(())
        }
    }
}

fn only_simple_json_fields(ctl: &Ctl) -> CtlResult {
    match ctl.write_out {
        Format::Table => Err(CtlError {
            message: "table not supported as output format".into(),
            code: super::EXIT_BAD_FEATURE,
        }),
        Format::Protobuf => {
            Err(CtlError::failed("protobuf output is not supported by rustedctl yet"))
        }
        _ => Ok(()),
    }
}

fn print_kv(ctl: &Ctl, value_only: bool, kv: &mvccpb::KeyValue) {
    if !value_only {
        println!("{}", print::bytes(&kv.key, ctl.hex));
    }
    println!("{}", print::bytes(&kv.value, ctl.hex));
}

fn fields_header(h: &Option<pb::ResponseHeader>) {
    let h = (*h).unwrap_or_default();
    println!("\"ClusterID\" : {}", h.cluster_id);
    println!("\"MemberID\" : {}", h.member_id);
    println!("\"Revision\" : {}", h.revision);
    println!("\"RaftTerm\" : {}", h.raft_term);
}

fn fields_kv(kv: &mvccpb::KeyValue) {
    println!("\"Key\" : {:?}", String::from_utf8_lossy(&kv.key));
    println!("\"CreateRevision\" : {}", kv.create_revision);
    println!("\"ModRevision\" : {}", kv.mod_revision);
    println!("\"Version\" : {}", kv.version);
    println!("\"Value\" : {:?}", String::from_utf8_lossy(&kv.value));
    println!("\"Lease\" : {}", kv.lease);
}

async fn put(ctl: &Ctl, a: &PutArgs) -> CtlResult {
    only_simple_json_fields(ctl)?;
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
        Format::Fields => {
            fields_header(&r.header);
            if let Some(p) = &r.prev_kv {
                fields_kv(p);
            }
        }
        _ => {
            println!("OK");
            if let Some(p) = &r.prev_kv {
                print_kv(ctl, false, p);
            }
        }
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
    only_simple_json_fields(ctl)?;
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
        Format::Fields => {
            fields_header(&r.header);
            for kv in &r.kvs {
                fields_kv(kv);
            }
            println!("\"More\" : {}", r.more);
            println!("\"Count\" : {}", r.count);
        }
        _ => {
            for kv in &r.kvs {
                print_kv(ctl, a.print_value_only, kv);
            }
        }
    }
    Ok(())
}

async fn del(ctl: &Ctl, a: &DelArgs) -> CtlResult {
    only_simple_json_fields(ctl)?;
    let (key, range_end) = key_range(&a.args, a.prefix, a.from_key, "del")?;
    let req = pb::DeleteRangeRequest { key, range_end, prev_kv: a.prev_kv };
    let mut c = KvClient::new(ctl.dial().await?);
    let r = ctl.timed(c.delete_range(req)).await?.into_inner();
    match ctl.write_out {
        Format::Json => println!("{}", print::json(&r)),
        Format::Fields => {
            fields_header(&r.header);
            println!("\"Deleted\" : {}", r.deleted);
            for kv in &r.prev_kvs {
                fields_kv(kv);
            }
        }
        _ => {
            println!("{}", r.deleted);
            for kv in &r.prev_kvs {
                print_kv(ctl, false, kv);
            }
        }
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

/// A duration as Go prints it ("1.002173ms", "987.786µs", "2.5s").
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let trim = |v: f64, unit: &str| {
        let s = format!("{v:.9}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}{unit}")
    };
    if ns == 0 {
        "0s".into()
    } else if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        trim(ns as f64 / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        trim(ns as f64 / 1e6, "ms")
    } else {
        trim(ns as f64 / 1e9, "s")
    }
}

async fn endpoint_health(ctl: &Ctl) -> CtlResult {
    #[derive(serde::Serialize)]
    struct Health {
        endpoint: String,
        health: bool,
        took: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        error: String,
    }
    let mut all = Vec::new();
    for ep in &ctl.endpoints {
        let start = Instant::now();
        let result = async {
            let ch = ctl.dial_one(ep).await?;
            let mut kv = KvClient::new(ch.clone());
            // As etcdctl: a linearizable read of any key proves a quorum answers.
            let req = pb::RangeRequest { key: b"health".to_vec(), ..Default::default() };
            ctl.timed(kv.range(req)).await?;
            let mut m = MaintenanceClient::new(ch);
            let alarms = ctl.timed(m.alarm(pb::AlarmRequest::default())).await?.into_inner().alarms;
            if !alarms.is_empty() {
                let list: Vec<String> = alarms.iter().map(alarm_text).collect();
                return Err(CtlError::failed(format!("Active Alarm(s): {}", list.join(" "))));
            }
            Ok(())
        }
        .await;
        let took = go_duration(start.elapsed());
        let h = match result {
            Ok(()) => Health { endpoint: ep.clone(), health: true, took, error: String::new() },
            Err(e) => Health {
                endpoint: ep.clone(),
                health: false,
                took,
                error: format!("failed to commit proposal: {}", e.message),
            },
        };
        all.push(h);
    }
    let bad = all.iter().any(|h| !h.health);
    match ctl.write_out {
        Format::Json => println!("{}", serde_json::to_string(&all).unwrap_or_default()),
        _ => {
            for h in &all {
                if h.health {
                    eprintln!(
                        "{} is healthy: successfully committed proposal: took = {}",
                        h.endpoint, h.took
                    );
                } else {
                    eprintln!("{} is unhealthy: {}", h.endpoint, h.error);
                }
            }
        }
    }
    if bad {
        return Err(CtlError::failed("unhealthy cluster"));
    }
    Ok(())
}

fn alarm_text(a: &pb::AlarmMember) -> String {
    let name = pb::AlarmType::try_from(a.alarm).map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
    if a.alarm == 0 {
        format!("memberID:{} ", a.member_id)
    } else {
        format!("memberID:{} alarm:{name} ", a.member_id)
    }
}

async fn endpoint_status(ctl: &Ctl) -> CtlResult {
    let mut rows = Vec::new();
    for ep in &ctl.endpoints {
        let mut m = MaintenanceClient::new(ctl.dial_one(ep).await?);
        let st = ctl.timed(m.status(pb::StatusRequest {})).await?.into_inner();
        rows.push((ep.clone(), st));
    }
    match ctl.write_out {
        Format::Json => {
            let list: Vec<String> = rows
                .iter()
                .map(|(ep, st)| {
                    format!(
                        "{{\"Endpoint\":{},\"Status\":{}}}",
                        serde_json::Value::from(ep.as_str()),
                        print::json(st)
                    )
                })
                .collect();
            println!("[{}]", list.join(","));
        }
        Format::Table => {
            let header = [
                "ENDPOINT",
                "ID",
                "VERSION",
                "DB SIZE",
                "IS LEADER",
                "IS LEARNER",
                "RAFT TERM",
                "RAFT INDEX",
                "RAFT APPLIED INDEX",
                "ERRORS",
            ];
            let cells: Vec<Vec<String>> =
                rows.iter().map(|(ep, st)| status_cells(ep, st)).collect();
            print!("{}", print::table(&header, &cells));
        }
        _ => {
            for (ep, st) in &rows {
                println!("{}", status_cells(ep, st).join(", "));
            }
        }
    }
    Ok(())
}

fn status_cells(ep: &str, st: &pb::StatusResponse) -> Vec<String> {
    let id = st.header.as_ref().map_or(0, |h| h.member_id);
    vec![
        ep.to_string(),
        format!("{id:x}"),
        st.version.clone(),
        print::human_bytes(st.db_size.max(0) as u64),
        (st.leader == id).to_string(),
        st.is_learner.to_string(),
        st.raft_term.to_string(),
        st.raft_index.to_string(),
        st.raft_applied_index.to_string(),
        st.errors.join(", "),
    ]
}

async fn member_list(ctl: &Ctl) -> CtlResult {
    let mut c = ClusterClient::new(ctl.dial().await?);
    let r =
        ctl.timed(c.member_list(pb::MemberListRequest { linearizable: false })).await?.into_inner();
    let cells = |m: &pb::Member| {
        vec![
            format!("{:x}", m.id),
            if m.name.is_empty() { "unstarted" } else { "started" }.to_string(),
            m.name.clone(),
            m.peer_ur_ls.join(","),
            m.client_ur_ls.join(","),
            m.is_learner.to_string(),
        ]
    };
    match ctl.write_out {
        Format::Json => println!("{}", print::json(&r)),
        Format::Table => {
            let header = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"];
            let rows: Vec<Vec<String>> = r.members.iter().map(cells).collect();
            print!("{}", print::table(&header, &rows));
        }
        _ => {
            for m in &r.members {
                println!("{}", cells(m).join(", "));
            }
        }
    }
    Ok(())
}

async fn alarm_list(ctl: &Ctl) -> CtlResult {
    let mut m = MaintenanceClient::new(ctl.dial().await?);
    let r = ctl.timed(m.alarm(pb::AlarmRequest::default())).await?.into_inner();
    match ctl.write_out {
        Format::Json => {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            // etcdctl prints the alarm type as its number.
            if let Some(list) = v.get_mut("alarms").and_then(|a| a.as_array_mut()) {
                for (a, src) in list.iter_mut().zip(&r.alarms) {
                    if let Some(o) = a.as_object_mut() {
                        o.insert("memberID".into(), src.member_id.into());
                        o.insert("alarm".into(), src.alarm.into());
                    }
                }
            }
            println!("{v}");
        }
        _ => {
            for a in &r.alarms {
                println!("{}", alarm_text(a));
            }
        }
    }
    Ok(())
}

async fn defrag(ctl: &Ctl) -> CtlResult {
    let mut failed = false;
    for ep in &ctl.endpoints {
        let r = async {
            let mut m = MaintenanceClient::new(ctl.dial_one(ep).await?);
            ctl.timed(m.defragment(pb::DefragmentRequest {})).await
        }
        .await;
        match r {
            Ok(_) => println!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}] ({})", e.message);
                failed = true;
            }
        }
    }
    if failed {
        return Err(CtlError::failed("defrag failed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_nanos(1_002_173)), "1.002173ms");
        assert_eq!(go_duration(Duration::from_nanos(987_786)), "987.786µs");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
    }

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
