//! `alarm list|disarm`, `defrag`, `move-leader` and `snapshot save|status`, as etcdctl 3.4.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use rusted_bbolt::read::{BoltEvent, BoltReader};

use super::kv::fields_header;
use super::print::{self, Format};
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;

/// `alarm ...`.
#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// Disarms all alarms
    Disarm {
        /// (none)
        args: Vec<String>,
    },
    /// Lists all alarms
    List {
        /// (none)
        args: Vec<String>,
    },
}

/// `defrag`.
#[derive(Debug, Args)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long)]
    pub cluster: bool,
    /// Optional. If present, defragments a data directory not in use by etcd.
    #[arg(long = "data-dir", default_value = "")]
    pub data_dir: String,
}

/// `snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save {
        /// The file.
        args: Vec<String>,
    },
    /// Gets backend snapshot status of a given file
    Status {
        /// The file.
        args: Vec<String>,
    },
    /// Restores an etcd member snapshot to an etcd directory
    Restore(crate::restore::RestoreArgs),
}

/// Runs an `alarm` command.
pub async fn alarm(ctl: &Ctl, cmd: &AlarmCommand) -> CtlResult {
    let (args, what) = match cmd {
        AlarmCommand::Disarm { args } => (args, "disarm"),
        AlarmCommand::List { args } => (args, "list"),
    };
    if !args.is_empty() {
        return Err(CtlError::args(format!("alarm {what} command accepts no arguments")));
    }
    let mut m = MaintenanceClient::new(ctl.dial().await?);
    let list = ctl.timed(m.alarm(pb::AlarmRequest::default())).await?.into_inner();
    let r = match cmd {
        AlarmCommand::List { .. } => list,
        AlarmCommand::Disarm { .. } => {
            // As clientv3's AlarmDisarm with no member and no type: disarm each listed alarm
            // and answer with the disarmed ones, without a header.
            let mut out = pb::AlarmResponse::default();
            for a in &list.alarms {
                let req = pb::AlarmRequest {
                    action: pb::alarm_request::AlarmAction::Deactivate as i32,
                    member_id: a.member_id,
                    alarm: a.alarm,
                };
                out.alarms.extend(ctl.timed(m.alarm(req)).await?.into_inner().alarms);
            }
            out
        }
    };
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
            if let Some(h) = v.get_mut("header") {
                *h = serde_json::from_str(&print::json(&r.header)).unwrap_or_default();
            }
            println!("{v}");
        }
        Format::Protobuf => print::protobuf(&r),
        Format::Fields => {
            fields_header(&r.header);
            for a in &r.alarms {
                println!("\"MemberID\" : {}", a.member_id);
                println!("\"AlarmType\" : {}", alarm_name(a.alarm));
                println!();
            }
        }
        Format::Table => return Err(super::unsupported(Format::Table)),
        Format::Simple => {
            for a in &r.alarms {
                println!("{}", alarm_text(a));
            }
        }
    }
    Ok(())
}

fn alarm_name(a: i32) -> &'static str {
    pb::AlarmType::try_from(a).map(|t| t.as_str_name()).unwrap_or("UNKNOWN")
}

/// An alarm as Go's `%+v` prints the proto message ("memberID:1 alarm:NOSPACE ").
pub fn alarm_text(a: &pb::AlarmMember) -> String {
    if a.alarm == 0 {
        format!("memberID:{} ", a.member_id)
    } else {
        format!("memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm))
    }
}

/// Defragments the page store of a member that is not running (`defrag --data-dir`). As
/// etcdctl, waits for a running member to let go of it, saying so after a second.
async fn defrag_data_dir(dir: &Path) -> Result<(), String> {
    let db = dir.join("member").join("snap").join("db");
    if !db.exists() {
        return Err(format!("open {}: no such file or directory", db.display()));
    }
    let mut said = false;
    let opened = loop {
        match rusted_engine::Db::open(&db, rusted_engine::DbOptions::default()) {
            Ok(d) => break d,
            Err(e) if e.to_string().contains("cannot lock") => {
                if !said {
                    eprintln!(
                        "waiting for etcd to close and release its lock on {}. To defrag a running etcd instance, omit --data-dir.",
                        print::go_quote(&db.display().to_string())
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    tokio::task::spawn_blocking(move || opened.defrag().map(|_| ()).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

/// Runs `defrag`.
pub async fn defrag(ctl: &Ctl, a: &DefragArgs) -> CtlResult {
    if !a.data_dir.is_empty() {
        if let Err(e) = defrag_data_dir(Path::new(&a.data_dir)).await {
            eprintln!("Failed to defragment etcd data[{}] ({e})", a.data_dir);
            return Err(CtlError::silent(super::EXIT_ERROR));
        }
        return Ok(());
    }
    let mut failed = false;
    for ep in super::endpoint::endpoints(ctl, a.cluster).await? {
        let r = async {
            let mut m = MaintenanceClient::new(ctl.dial_one(&ep).await?);
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
        return Err(CtlError::silent(super::EXIT_ERROR));
    }
    Ok(())
}

/// Runs `move-leader`: finds the leader among the endpoints and asks it to hand over.
pub async fn move_leader(ctl: &Ctl, args: &[String]) -> CtlResult {
    let [target] = args else {
        return Err(CtlError::args("move-leader command needs 1 argument"));
    };
    let target = u64::from_str_radix(target, 16)
        .map_err(|e| CtlError::args(super::go_parse_uint_error("ParseUint", target, &e)))?;
    let mut leader = None;
    for ep in &ctl.endpoints {
        let ch = ctl.dial_one(ep).await?;
        let st = ctl.timed(MaintenanceClient::new(ch.clone()).status(pb::StatusRequest {})).await?;
        let st = st.into_inner();
        if st.header.as_ref().is_some_and(|h| h.member_id == st.leader) {
            leader = Some((ch, st.leader));
            break;
        }
    }
    let Some((ch, leader_id)) = leader else {
        return Err(CtlError::args(format!(
            "no leader endpoint given at [{}]",
            ctl.endpoints.join(" ")
        )));
    };
    let mut m = MaintenanceClient::new(ch);
    let r = ctl.timed(m.move_leader(pb::MoveLeaderRequest { target_id: target })).await?;
    let r = r.into_inner();
    match ctl.write_out {
        Format::Json => println!("{}", print::json(&r)),
        Format::Protobuf => print::protobuf(&r),
        Format::Simple => println!("Leadership transferred from {leader_id:x} to {target:x}"),
        other => return Err(super::unsupported(other)),
    }
    Ok(())
}

/// Runs a `snapshot` command.
pub async fn snapshot(ctl: &Ctl, cmd: &SnapshotCommand) -> CtlResult {
    match cmd {
        SnapshotCommand::Save { args } => {
            let [path] = args.as_slice() else {
                return Err(CtlError::args("snapshot save expects one argument"));
            };
            save(ctl, path)
                .await
                .map_err(|e| CtlError { message: e.message, code: super::EXIT_INTERRUPTED })
        }
        SnapshotCommand::Status { args } => {
            let [path] = args.as_slice() else {
                return Err(CtlError::args("snapshot status requires exactly one argument"));
            };
            status(ctl, Path::new(path))
        }
        SnapshotCommand::Restore(a) => crate::restore::restore(a),
    }
}

/// A log line as etcdctl's production zap logger writes it (JSON on stderr).
pub(crate) fn log(msg: &str, fields: &[(&str, serde_json::Value)]) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut m = serde_json::Map::new();
    m.insert("level".into(), "info".into());
    m.insert("ts".into(), ts.into());
    m.insert("caller".into(), "rustedctl/snapshot".into());
    m.insert("msg".into(), msg.into());
    for (k, v) in fields {
        m.insert((*k).into(), v.clone());
    }
    eprintln!("{}", serde_json::Value::Object(m));
}

async fn save(ctl: &Ctl, path: &str) -> CtlResult {
    if ctl.endpoints.len() != 1 {
        return Err(CtlError::failed(format!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            ctl.endpoints.join(" ")
        )));
    }
    let ep = &ctl.endpoints[0];
    let ch = ctl.dial_one(ep).await?;
    let part = format!("{path}.part");
    // Removed on every way out, as etcdctl's deferred RemoveAll (after a rename it is gone).
    struct Part<'a>(&'a str);
    impl Drop for Part<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _guard = Part(&part);
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| CtlError::failed(format!("could not open {part} ({})", go_io_error(&e))))?
    };
    log("created temporary db file", &[("path", part.clone().into())]);
    let start = Instant::now();
    let mut m = MaintenanceClient::new(ch);
    // Without --command-timeout given, etcdctl puts no deadline on a snapshot.
    let timeout = ctl.command_timeout_flag;
    let copy = async {
        let mut stream = m.snapshot(pb::SnapshotRequest {}).await?.into_inner();
        log("fetching snapshot", &[("endpoint", ep.clone().into())]);
        let mut size = 0u64;
        while let Some(chunk) = stream.message().await? {
            f.write_all(&chunk.blob).map_err(|e| tonic::Status::unknown(go_io_error(&e)))?;
            size += chunk.blob.len() as u64;
        }
        Ok::<u64, tonic::Status>(size)
    };
    let size = match timeout {
        Some(t) => match tokio::time::timeout(t, copy).await {
            Ok(r) => r?,
            Err(_) => return Err(CtlError::failed("context deadline exceeded")),
        },
        None => copy.await?,
    };
    // The stream ends with the SHA-256 of what came before it, so a whole snapshot is
    // 32 bytes past a multiple of 512.
    if size % 512 != 32 {
        return Err(CtlError::failed(format!("sha256 checksum not found [bytes: {size}]")));
    }
    f.sync_all().map_err(|e| CtlError::failed(go_io_error(&e)))?;
    drop(f);
    log(
        "fetched snapshot",
        &[
            ("endpoint", ep.clone().into()),
            ("size", print::human_bytes(size).into()),
            ("took", start.elapsed().as_secs_f64().into()),
        ],
    );
    std::fs::rename(&part, path).map_err(|e| {
        CtlError::failed(format!("could not rename {part} to {path} ({})", go_io_error(&e)))
    })?;
    log("saved", &[("path", path.into())]);
    println!("Snapshot saved at {path}");
    Ok(())
}

/// An I/O error worded as Go's os package words it ("open x: no such file or directory").
fn go_io_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    // Rust appends " (os error N)"; Go does not, and starts with a lower-case letter.
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// What `snapshot status` reports (etcd's snapshot.Status).
#[derive(Debug, serde::Serialize, PartialEq, Eq)]
pub struct DbStatus {
    /// CRC-32C over every bucket name, key and value, in order.
    pub hash: u32,
    /// The highest main revision in the `key` bucket.
    pub revision: i64,
    /// Items in all buckets.
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    /// The database's logical size.
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// Reads a snapshot (a bbolt file) as etcd's snapshot status does.
pub fn db_status(path: &Path) -> Result<DbStatus, String> {
    std::fs::metadata(path).map_err(|e| format!("stat {}: {}", path.display(), go_io_error(&e)))?;
    let r = BoltReader::open(path).map_err(|e| e.to_string())?;
    let mut hash = 0u32;
    let mut revision = 0i64;
    let mut total_key = 0u64;
    // As etcd: each top-level bucket's name, then its items' keys and values (a nested
    // bucket's key with no value); what is inside nested buckets is not hashed.
    let problems = r
        .scan(|ev| match ev {
            BoltEvent::Bucket { depth: 1, name } => hash = crc32c::crc32c_append(hash, name),
            BoltEvent::Item(item) if item.depth == 1 => {
                hash = crc32c::crc32c_append(hash, item.key);
                hash = crc32c::crc32c_append(hash, item.value.unwrap_or_default());
                if item.bucket == b"key" {
                    if let Some(main) = item.key.get(..8) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(main);
                        revision = i64::from_be_bytes(b);
                    }
                }
                total_key += 1;
            }
            _ => {}
        })
        .map_err(|e| e.to_string())?;
    if let Some(e) = rusted_bbolt::read::integrity_error(&problems) {
        return Err(e);
    }
    Ok(DbStatus { hash, revision, total_key, total_size: r.size() })
}

fn status(ctl: &Ctl, path: &Path) -> CtlResult {
    let ds = db_status(path).map_err(CtlError::failed)?;
    match ctl.write_out {
        Format::Json => println!("{}", serde_json::to_string(&ds).unwrap_or_default()),
        Format::Fields => {
            println!("\"Hash\" : {}", ds.hash);
            println!("\"Revision\" : {}", ds.revision);
            println!("\"Keys\" : {}", ds.total_key);
            println!("\"Size\" : {}", ds.total_size);
        }
        Format::Table => {
            let row = status_row(&ds);
            print!("{}", print::table(&["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], &[row]));
        }
        Format::Protobuf => return Err(super::unsupported(Format::Protobuf)),
        Format::Simple => println!("{}", status_row(&ds).join(", ")),
    }
    Ok(())
}

fn status_row(ds: &DbStatus) -> Vec<String> {
    vec![
        format!("{:x}", ds.hash),
        ds.revision.to_string(),
        ds.total_key.to_string(),
        print::human_bytes(ds.total_size),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_a_snapshot_etcd_wrote() {
        // Saved with `etcdctl snapshot save` from etcd 3.4.23 (bbolt's own writer, no stored
        // freelist, inline buckets); etcdctl snapshot status printed these numbers for it.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/etcd-3.4.23-snapshot.db");
        let ds = db_status(&path).unwrap();
        assert_eq!(
            ds,
            DbStatus { hash: 3_011_113_706, revision: 55, total_key: 59, total_size: 28_672 }
        );
        assert_eq!(status_row(&ds), vec!["b379f2ea", "55", "59", "29 kB"]);
    }

    #[test]
    fn status_errors_are_etcds() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing.db");
        assert!(db_status(&missing).unwrap_err().ends_with("no such file or directory"));
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"junk\n").unwrap();
        assert_eq!(db_status(&junk).unwrap_err(), "invalid database");
    }
}
