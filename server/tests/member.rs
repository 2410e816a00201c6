//! A member in this process, driven over its gRPC port: what it does with an invalid request
//! (refused before any raft round) and with a page store whose disk fails (it stops, with the
//! cause, instead of answering from a state it can no longer make durable). Needs no etcd, no
//! python: `cargo test -p rusted-server --test member`.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

mod common;

use std::time::Duration;

use clap::Parser;
use rusted_engine::io::{FaultyIo, PageFaults};
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::lease_client::LeaseClient;
use rusted_proto::etcdserverpb::{
    request_op, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use rusted_server::config::ServerConfig;
use rusted_server::member::{Member, StartOptions};
use tonic::transport::Channel;

/// Starts a single member on `ip` (ports 2379/2380) with data in `dir`.
async fn start(ip: &str, dir: &std::path::Path, opts: StartOptions) -> Member {
    start_with_flags(ip, dir, opts, &[]).await
}

/// [`start`] with more flags.
async fn start_with_flags(
    ip: &str,
    dir: &std::path::Path,
    opts: StartOptions,
    extra: &[&str],
) -> Member {
    common::start_member(ip, dir, opts, extra).await
}

async fn kv(ip: &str) -> KvClient<Channel> {
    KvClient::connect(format!("http://{ip}:2379")).await.expect("connect")
}

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest { key: k.into(), value: v.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_before_any_proposal() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.61";
    let m = start(ip, dir.path(), StartOptions::default()).await;
    let mut c = kv(ip).await;
    let mut leases = LeaseClient::connect(format!("http://{ip}:2379")).await.unwrap();
    let before = m.ctx.replica.status().committed;

    let txn_op =
        |k: &str| RequestOp { request: Some(request_op::Request::RequestPut(put(k, "v"))) };
    let refusals: Vec<(tonic::Status, &str)> = vec![
        (c.put(put("", "v")).await.unwrap_err(), "etcdserver: key is not provided"),
        (
            c.put(PutRequest { ignore_value: true, ..put("k", "v") }).await.unwrap_err(),
            "etcdserver: value is provided",
        ),
        (
            c.put(PutRequest { ignore_lease: true, lease: 7, ..put("k", "") }).await.unwrap_err(),
            "etcdserver: lease is provided",
        ),
        (
            c.delete_range(DeleteRangeRequest::default()).await.unwrap_err(),
            "etcdserver: key is not provided",
        ),
        (c.range(RangeRequest::default()).await.unwrap_err(), "etcdserver: key is not provided"),
        (
            c.txn(TxnRequest { success: vec![txn_op("a"), txn_op("a")], ..Default::default() })
                .await
                .unwrap_err(),
            "etcdserver: duplicate key given in txn request",
        ),
        (
            c.txn(TxnRequest {
                success: (0..129).map(|i| txn_op(&format!("k{i}"))).collect(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
            "etcdserver: too many operations in txn request",
        ),
        (
            c.put(put("big", &"x".repeat(2 << 20))).await.unwrap_err(),
            // Over --max-request-bytes: refused by the gRPC limit as in etcd.
            "",
        ),
        (
            leases.lease_revoke(LeaseRevokeRequest { id: 0 }).await.unwrap_err(),
            "etcdserver: requested lease not found",
        ),
    ];
    for (status, want) in &refusals {
        if !want.is_empty() {
            assert_eq!(status.message(), *want, "{status:?}");
        }
        assert_ne!(status.code(), tonic::Code::Ok);
    }
    assert_eq!(m.ctx.replica.status().committed, before, "an invalid request made a proposal");
    // The same member proposes a valid one.
    c.put(put("k", "v")).await.unwrap();
    assert!(m.ctx.replica.status().committed > before);
    m.stop().await;
}

/// One HTTP/1.1 request; the status code and body.
async fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_client_http_urls_split_grpc_from_http() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.68";
    let http_url = format!("--listen-client-http-urls=http://{ip}:2382");
    let m = start_with_flags(ip, dir.path(), StartOptions::default(), &[&http_url]).await;
    let mut c = kv(ip).await;
    c.put(put("k", "v")).await.unwrap();
    let http_port = format!("{ip}:2382");
    let (code, body) = http(&http_port, "GET", "/health", "").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(&http_port, "POST", "/v3/kv/range", r#"{"key":"aw=="}"#).await;
    assert!(code == 200 && body.contains(r#""count":"1""#), "{code} {body}");
    // The gRPC URL serves no HTTP any more (etcd drops such a connection; rusted answers 404).
    let (code, _) = http(&format!("{ip}:2379"), "GET", "/health", "").await;
    assert_eq!(code, 404);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_defragmenting_with_the_flag() {
    use rusted_proto::health::health_client::HealthClient;
    use rusted_proto::health::HealthCheckRequest;
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.69";
    let flag = ["--experimental-stop-grpc-service-on-defrag"];
    let m = start_with_flags(ip, dir.path(), StartOptions::default(), &flag).await;
    let mut h = HealthClient::connect(format!("http://{ip}:2379")).await.unwrap();
    let status = |h: &mut HealthClient<Channel>| {
        let mut h = h.clone();
        async move { h.check(HealthCheckRequest::default()).await.unwrap().into_inner().status }
    };
    assert_eq!(status(&mut h).await, 1, "SERVING");
    // As while a defragmentation runs (a real one is too quick to catch).
    m.ctx.defragmenting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(status(&mut h).await, 2, "NOT_SERVING");
    m.ctx.defragmenting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(status(&mut h).await, 1);
    // A real one leaves it serving.
    let mut mt = rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient::connect(
        format!("http://{ip}:2379"),
    )
    .await
    .unwrap();
    mt.defragment(rusted_proto::etcdserverpb::DefragmentRequest {}).await.unwrap();
    assert_eq!(status(&mut h).await, 1);
    assert_eq!(m.ctx.defragmenting.load(std::sync::atomic::Ordering::SeqCst), 0);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_defrag_threshold_shrinks_the_store_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.70";
    let m = start(ip, dir.path(), StartOptions::default()).await;
    let mut c = kv(ip).await;
    let big = "x".repeat(8 << 10);
    for i in 0..1500 {
        c.put(put(&format!("k{i}"), &big)).await.unwrap();
    }
    let r = c
        .delete_range(rusted_proto::etcdserverpb::DeleteRangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rev = r.header.unwrap().revision;
    c.compact(rusted_proto::etcdserverpb::CompactionRequest { revision: rev, physical: true })
        .await
        .unwrap();
    m.ctx.store().flush().unwrap();
    let size = |m: &Member| m.ctx.store().db().stats().file_size;
    let before = size(&m);
    m.stop().await;
    // A threshold above what is free: nothing happens.
    let m = start_with_flags(
        ip,
        dir.path(),
        StartOptions::default(),
        &["--experimental-bootstrap-defrag-threshold-megabytes=100000"],
    )
    .await;
    assert_eq!(size(&m), before);
    m.stop().await;
    let m = start_with_flags(
        ip,
        dir.path(),
        StartOptions::default(),
        &["--experimental-bootstrap-defrag-threshold-megabytes=1"],
    )
    .await;
    let after = size(&m);
    assert!(after * 2 < before, "{before} -> {after} bytes");
    let mut c = kv(ip).await;
    c.put(put("after", "v")).await.unwrap();
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_no_fsync_never_syncs_the_page_store() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.67";
    // Every fdatasync of the store fails: without syncing, nothing notices.
    let faults = PageFaults::fail_sync_from(1);
    let opts = StartOptions {
        page_io: std::sync::Arc::new(FaultyIo::new(faults.clone())),
        ..Default::default()
    };
    let m = start_with_flags(ip, dir.path(), opts, &["--unsafe-no-fsync"]).await;
    let mut c = kv(ip).await;
    for i in 0..300 {
        c.put(put(&format!("k{i}"), "v")).await.unwrap();
    }
    // Past the store's batch interval: its commits have run (unsynced).
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.put(put("last", "v")).await.unwrap();
    assert_eq!(faults.injected.load(std::sync::atomic::Ordering::SeqCst), 0, "no sync was tried");
    assert!(!m.ctx.replica.is_stopped());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_page_store_stops_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.62";
    let faults = std::sync::Arc::new(PageFaults::default());
    let opts = StartOptions {
        page_io: std::sync::Arc::new(FaultyIo::new(faults.clone())),
        ..Default::default()
    };
    let m = start(ip, dir.path(), opts).await;
    let mut c = kv(ip).await;
    c.put(put("before", "1")).await.unwrap();

    // From now on every page write and fdatasync of the store fails, as on a dead disk.
    faults.fail_now();
    let failed = tokio::spawn({
        let ctx = m.ctx.clone();
        async move {
            tokio::select! {
                why = ctx.replica.failed() => why,
                why = ctx.machine.failed() => why,
            }
        }
    });
    let mut answered_after = 0;
    for i in 0..200 {
        if failed.is_finished() {
            break;
        }
        if c.put(put(&format!("k{i}"), "v")).await.is_ok() {
            answered_after += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let why = tokio::time::timeout(Duration::from_secs(10), failed)
        .await
        .expect("the member did not stop")
        .unwrap();
    assert!(why.contains("injected"), "the cause names the disk failure: {why}");
    assert!(faults.injected.load(std::sync::atomic::Ordering::SeqCst) > 0);
    // Stopped: no write is accepted any more. (Writes applied before the flush failed were in
    // the WAL: acknowledged writes are durable there.)
    for _ in 0..50 {
        if m.ctx.replica.is_stopped() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = c.put(put("after", "1")).await;
    assert!(r.is_err(), "a failed member still accepts writes");
    assert!(answered_after < 200);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_progress_comes_at_the_configured_interval() {
    use rusted_proto::etcdserverpb::watch_client::WatchClient;
    use rusted_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.64";
    let flags = ["--experimental-watch-progress-notify-interval=300ms"];
    let m = start_with_flags(ip, dir.path(), StartOptions::default(), &flags).await;
    let mut w = WatchClient::connect(format!("http://{ip}:2379")).await.unwrap();
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"idle".to_vec(),
            progress_notify: true,
            ..Default::default()
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(create).await.unwrap();
    let mut stream =
        w.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created);
    // With etcd's default (10 minutes) nothing would come within this wait.
    let progress = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("no progress notification")
        .unwrap()
        .unwrap();
    assert!(progress.events.is_empty() && !progress.created && !progress.canceled);
    assert!(progress.header.is_some_and(|h| h.revision >= 1));
    drop(tx);
    m.stop().await;
}

/// `--experimental-initial-corrupt-check`: a member restarted with it compares its hash with
/// its peer's over the peer service and, the data being the same, starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_corrupt_check_passes_on_consistent_members() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = ("127.0.0.65", "127.0.0.66");
    let cluster = format!("--initial-cluster=m1=http://{a}:2380,m2=http://{b}:2380");
    let cfg = |ip: &str, name: &str, check: bool| {
        ServerConfig::parse_from([
            "rusted".to_string(),
            format!("--name={name}"),
            format!("--data-dir={}", dir.path().join(name).display()),
            format!("--listen-client-urls=http://{ip}:2379"),
            format!("--advertise-client-urls=http://{ip}:2379"),
            format!("--listen-peer-urls=http://{ip}:2380"),
            format!("--initial-advertise-peer-urls=http://{ip}:2380"),
            cluster.clone(),
            format!("--experimental-initial-corrupt-check={check}"),
        ])
    };
    let m1 = Member::start(cfg(a, "m1", false)).await.unwrap();
    let m2 = Member::start(cfg(b, "m2", false)).await.unwrap();
    let mut c = None;
    for _ in 0..200 {
        if let Ok(mut k) = KvClient::connect(format!("http://{a}:2379")).await {
            if k.put(put("k0", "v")).await.is_ok() {
                c = Some(k);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = c.expect("the cluster serves");
    for i in 1..20 {
        c.put(put(&format!("k{i}"), "v")).await.unwrap();
    }
    let target = m1.ctx.replica.status().committed;
    for _ in 0..200 {
        if m2.ctx.replica.status().applied >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    m2.stop().await;
    let m2 = Member::start(cfg(b, "m2", true)).await.expect("a consistent member passes the check");
    let mut c2 = None;
    for _ in 0..200 {
        if let Ok(mut k) = KvClient::connect(format!("http://{b}:2379")).await {
            if k.range(RangeRequest { key: b"k19".to_vec(), ..Default::default() }).await.is_ok() {
                c2 = Some(k);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c2.is_some(), "the checked member serves clients");
    m2.stop().await;
    m1.stop().await;
}

/// `--grpc-keepalive-interval` / `-timeout`: the server pings an idle HTTP/2 connection and
/// closes one whose client never answers; with the defaults (2 h) it does neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_keepalive_ping_closes_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A client that says hello in HTTP/2 (preface, empty SETTINGS) and then never reads: it
    // answers no ping. Returns the bytes the server sent before closing, if it closed in `wait`.
    async fn silent_client(addr: &str, wait: Duration) -> Option<Vec<u8>> {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.expect("hello");
        tokio::time::sleep(wait).await;
        let mut got = Vec::new();
        match tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut got)).await {
            Ok(Ok(_)) => Some(got),
            _ => None,
        }
    }
    // HTTP/2 frames' types in a byte stream (9-byte headers).
    fn frame_types(mut b: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        while b.len() >= 9 {
            let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
            types.push(b[3]);
            b = &b[(9 + len).min(b.len())..];
        }
        types
    }
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--grpc-keepalive-interval=500ms", "--grpc-keepalive-timeout=500ms"];
    let m = start_with_flags("127.0.0.71", dir.path(), StartOptions::default(), &flags).await;
    let sent = silent_client("127.0.0.71:2379", Duration::from_secs(3)).await;
    let sent = sent.expect("the server kept a connection whose pings went unanswered");
    let types = frame_types(&sent);
    assert!(types.contains(&6), "no PING frame: {types:?}");
    assert!(types.contains(&7), "no GOAWAY frame: {types:?}");
    m.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let m = start_with_flags("127.0.0.72", dir.path(), StartOptions::default(), &[]).await;
    let kept = silent_client("127.0.0.72:2379", Duration::from_secs(2)).await;
    assert!(kept.is_none(), "closed with the default keepalive: {kept:?}");
    m.stop().await;
}

/// A GET on the client port: status code and body.
async fn http_get(ip: &str, path: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(format!("{ip}:2379")).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        // One pass over the chunks: size line, data, CRLF.
        let (mut plain, mut rest) = (Vec::new(), &body[..]);
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        body = plain;
    }
    (code, body)
}

/// /debug/vars as etcd's (raft.status among its keys); with --enable-pprof a CPU profile that
/// pprof's format decodes, heap figures, and Go's other profiles refused; without the flag no
/// profiling endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_vars_and_pprof_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let m =
        start_with_flags("127.0.0.73", dir.path(), StartOptions::default(), &["--enable-pprof"])
            .await;
    let (code, body) = http_get("127.0.0.73", "/debug/vars").await;
    assert_eq!(code, 200);
    let vars: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(vars["raft.status"]["raftState"], "StateLeader", "{vars}");
    assert!(vars["raft.status"]["commit"].as_u64().unwrap() > 0);
    assert!(vars["file_descriptor_limit"].as_u64().unwrap() > 0);
    assert!(vars["cmdline"].is_array());
    let (code, body) = http_get("127.0.0.73", "/debug/pprof/profile?seconds=1").await;
    assert_eq!(code, 200);
    use pprof::protos::Message;
    let profile = pprof::protos::Profile::decode(&body[..]).unwrap();
    let cpu = profile.string_table.iter().position(|s| s == "cpu").unwrap() as i64;
    assert!(profile.sample_type.iter().any(|t| t.ty == cpu), "a CPU profile");
    let (code, body) = http_get("127.0.0.73", "/debug/pprof/heap").await;
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("VmRSS "));
    assert_eq!(http_get("127.0.0.73", "/debug/pprof/goroutine").await.0, 404);
    m.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let m = start("127.0.0.74", dir.path(), StartOptions::default()).await;
    assert_eq!(http_get("127.0.0.74", "/debug/vars").await.0, 200, "served without the flag too");
    assert_eq!(http_get("127.0.0.74", "/debug/pprof/profile?seconds=1").await.0, 404);
    m.stop().await;
}

/// A lease storm: 3,000 leases granted together expire together; every one is revoked and
/// its key deleted (revokes of a tick go out together, at etcd's revoke rate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expiring_together_are_all_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.158";
    let m = start(ip, dir.path(), StartOptions::default()).await;
    let mut leases = LeaseClient::connect(format!("http://{ip}:2379")).await.unwrap();
    let mut c = kv(ip).await;
    for i in 0..3000 {
        let id =
            leases.lease_grant(LeaseGrantRequest { ttl: 15, id: 0 }).await.unwrap().into_inner().id;
        let p = PutRequest { lease: id, ..put(&format!("storm/{i:04}"), "v") };
        c.put(p).await.unwrap();
    }
    let count = |c: &mut KvClient<Channel>| {
        let req = RangeRequest {
            key: b"storm/".to_vec(),
            range_end: b"storm0".to_vec(),
            count_only: true,
            ..Default::default()
        };
        let mut c = c.clone();
        async move { c.range(req).await.unwrap().into_inner().count }
    };
    assert!(count(&mut c).await > 0, "granting outlasted the TTL");
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while count(&mut c).await > 0 {
        assert!(std::time::Instant::now() < deadline, "leases left unrevoked");
        c.put(put("during", "x")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    m.stop().await;
}

/// A raft stream addressed to another member ID (a removed member whose peer URL this member
/// took over) or coming from a removed member is refused with etcd's words, and the member
/// keeps serving: a heartbeat meant for the old ID would otherwise be taken as this member's,
/// with a commit index past the end of its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_streams_for_another_or_from_a_removed_member_are_refused() {
    use protobuf::Message as _;
    use rusted_proto::etcdserverpb::cluster_client::ClusterClient;
    use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use rusted_proto::etcdserverpb::{MemberAddRequest, MemberRemoveRequest, StatusRequest};
    use rusted_proto::rustedpb::peer_client::PeerClient;
    use rusted_proto::rustedpb::RaftBatch;

    let dir = tempfile::tempdir().unwrap();
    let m = start("127.0.0.36", dir.path(), StartOptions::default()).await;
    let client = "http://127.0.0.36:2379";
    let mut maint = MaintenanceClient::connect(client).await.unwrap();
    let me = maint.status(StatusRequest {}).await.unwrap().into_inner().header.unwrap().member_id;
    let mut cl = ClusterClient::connect(client).await.unwrap();
    // A learner (the quorum stays this member alone), removed at once.
    let urls = vec!["http://127.0.0.37:2380".to_string()];
    let add = MemberAddRequest { peer_ur_ls: urls, is_learner: true };
    let gone = cl.member_add(add).await.unwrap().into_inner().member.unwrap().id;
    cl.member_remove(MemberRemoveRequest { id: gone }).await.unwrap();

    // A heartbeat of a later term whose commit index is far past this member's log.
    let heartbeat = |from: u64, to: u64| {
        let mut h = raft::eraftpb::Message::default();
        h.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        (h.from, h.to, h.term, h.commit) = (from, to, 1_000, 1_000_000);
        h.write_to_bytes().unwrap().into()
    };
    let batch = |from: u64, to: u64, msg_to: u64| RaftBatch {
        messages: vec![heartbeat(from, msg_to)],
        from,
        to,
        cluster_id: 0,
    };
    let stranger = me ^ 0x5a5a;
    let cases = [
        // For another ID, on the batch.
        (batch(stranger, gone, gone), "to field mismatch"),
        // Addressed to this member, with a message inside for another.
        (batch(stranger, me, gone), "to field mismatch"),
        // From the removed member.
        (batch(gone, me, me), "removed member"),
    ];
    let mut peer = PeerClient::connect("http://127.0.0.36:2380").await.unwrap();
    for (b, words) in cases {
        let s = peer.send(tokio_stream::iter(vec![b])).await.expect_err("a refused stream");
        assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");
        assert_eq!(s.message(), words);
    }
    // Still the leader of its term, still serving writes.
    let mut c = kv("127.0.0.36").await;
    c.put(put("after", "refusals")).await.expect("a put after the refused streams");
    let st = maint.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(st.leader, me);
    m.stop().await;
}
