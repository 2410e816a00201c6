//! A member in this process whose WAL disk fails (the page store's failures are in
//! `member.rs`): a failed fdatasync stops the member with the cause, and a restart serves every
//! acknowledged write; a full disk (ENOSPC preallocating the next segment) raises the NOSPACE
//! alarm instead of crashing, refuses writes as etcd does under it, and recovers once space is
//! freed and the alarm disarmed. Needs no etcd: `cargo test -p rusted-server --test disk_faults`.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusted_proto::etcdserverpb::alarm_request::AlarmAction;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rusted_proto::etcdserverpb::{
    AlarmRequest, AlarmType, DeleteRangeRequest, PutRequest, RangeRequest,
};
use rusted_server::member::{Member, StartOptions};
use rusted_wal::{make_backend, FaultPlan, FaultyBackend, IoBackend, IoMode, SyncStyle};
use tonic::transport::Channel;

/// Linux's "No space left on device".
const ENOSPC: i32 = 28;

async fn kv(ip: &str) -> KvClient<Channel> {
    KvClient::connect(format!("http://{ip}:2379")).await.expect("connect")
}

fn put(k: &str) -> PutRequest {
    PutRequest { key: k.into(), value: vec![b'v'; 100], ..Default::default() }
}

/// Puts `k/00000`, `k/00001`, … until one is refused or `n` were acknowledged: how many were,
/// and the refusal.
async fn put_until_refused(c: &mut KvClient<Channel>, n: usize) -> (i64, Option<tonic::Status>) {
    for i in 0..n {
        if let Err(s) = c.put(put(&format!("k/{i:05}"))).await {
            return (i as i64, Some(s));
        }
    }
    (n as i64, None)
}

/// How many keys under `prefix` the member serves.
async fn count(c: &mut KvClient<Channel>, prefix: &str) -> i64 {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let req =
        RangeRequest { key: prefix.into(), range_end: end, count_only: true, ..Default::default() };
    c.range(req).await.unwrap().into_inner().count
}

async fn alarms(ip: &str) -> Vec<(u64, i32)> {
    let mut m = MaintenanceClient::connect(format!("http://{ip}:2379")).await.unwrap();
    let req = AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: 0 };
    let r = m.alarm(req).await.unwrap().into_inner();
    r.alarms.iter().map(|a| (a.member_id, a.alarm)).collect()
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wal_fsync_stops_the_member_and_a_restart_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.153";
    let plan = Arc::new(FaultPlan::default());
    let factory = {
        let plan = plan.clone();
        move || -> std::io::Result<Box<dyn IoBackend>> {
            Ok(Box::new(FaultyBackend::new(
                make_backend(IoMode::Auto, SyncStyle::Dsync)?,
                plan.clone(),
            )))
        }
    };
    let seam: rusted_server::member::WalSeam =
        Arc::new(move |o| o.backend_factory = Some(Arc::new(factory.clone())));
    let m = common::start_member(
        ip,
        dir.path(),
        StartOptions { wal: Some(seam), ..Default::default() },
        &[],
    )
    .await;
    let mut c = kv(ip).await;
    // The next few syncs succeed, then one fails, as a dying disk's would.
    let syncs = plan.syncs();
    plan.fail_sync_at.store(syncs + 20, Ordering::SeqCst);
    let (acked, refused) = put_until_refused(&mut c, 200).await;
    let refused = refused.expect("a write after the failed fsync was refused");
    assert!(acked > 0 && acked < 200, "acknowledged {acked}");
    let why = tokio::time::timeout(Duration::from_secs(10), m.ctx.replica.failed())
        .await
        .expect("the member did not stop");
    assert!(why.contains("injected"), "the cause names the disk failure: {why}");
    assert!(m.ctx.replica.is_stopped());
    assert!(c.put(put("after")).await.is_err(), "a failed member accepts writes ({refused:?})");
    m.stop().await;

    // A restart on a healthy disk serves every acknowledged write (and nothing it refused).
    let m = common::start_member(ip, dir.path(), StartOptions::default(), &[]).await;
    let mut c = kv(ip).await;
    let n = count(&mut c, "k/").await;
    assert!(n >= acked, "acknowledged writes lost: {n} < {acked}");
    assert!(n <= acked + 1, "more than the one write in flight appeared: {n} > {acked} + 1");
    assert_eq!(count(&mut c, "after").await, 0);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wal_disk_raises_nospace_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.154";
    let full = Arc::new(AtomicBool::new(false));
    let seam: rusted_server::member::WalSeam = {
        let full = full.clone();
        Arc::new(move |o| {
            // Small segments, so the test reaches a cut quickly.
            o.segment_size = 64 << 10;
            let full = full.clone();
            o.prealloc_hook = Some(Arc::new(move |_| {
                if full.load(Ordering::SeqCst) {
                    Err(std::io::Error::from_raw_os_error(ENOSPC))
                } else {
                    Ok(())
                }
            }));
        })
    };
    let m = common::start_member(
        ip,
        dir.path(),
        StartOptions { wal: Some(seam), ..Default::default() },
        &[],
    )
    .await;
    let mut c = kv(ip).await;
    c.put(put("before")).await.unwrap();

    full.store(true, Ordering::SeqCst);
    // Writes go on into the current segment and the one made before the disk filled; then the
    // next cannot be made.
    let (acked, refusal) = put_until_refused(&mut c, 5000).await;
    let refusal = refusal.expect("writes were refused once the disk was full");
    eprintln!("acknowledged {acked} writes after the disk filled");
    assert_eq!(refusal.code(), tonic::Code::ResourceExhausted, "{refusal:?}");
    assert_eq!(refusal.message(), "etcdserver: mvcc: database space exceeded");
    let me = m.ctx.replica.id();
    wait_until("the NOSPACE alarm is raised", async || {
        alarms(ip).await.contains(&(me, AlarmType::Nospace as i32))
    })
    .await;
    // Still a member that answers: reads, and deletes (which free space), as under etcd's alarm.
    assert!(!m.ctx.replica.is_stopped());
    assert_eq!(count(&mut c, "k/").await, acked);
    let del = DeleteRangeRequest { key: "before".into(), ..Default::default() };
    assert_eq!(c.delete_range(del).await.unwrap().into_inner().deleted, 1);
    let again = c.put(put("refused")).await.unwrap_err();
    assert_eq!(again.message(), "etcdserver: mvcc: database space exceeded");

    // Space is freed; the operator disarms the alarm, as with etcd; writes resume.
    full.store(false, Ordering::SeqCst);
    wait_until("the WAL makes its next segment", async || {
        m.ctx.replica.wal().space_error().is_none()
    })
    .await;
    let mut maint = MaintenanceClient::connect(format!("http://{ip}:2379")).await.unwrap();
    let disarm = AlarmRequest {
        action: AlarmAction::Deactivate as i32,
        member_id: me,
        alarm: AlarmType::Nospace as i32,
    };
    maint.alarm(disarm).await.unwrap();
    for i in 0..1000 {
        c.put(put(&format!("after/{i:04}"))).await.unwrap();
    }
    m.stop().await;

    let m: Member = common::start_member(ip, dir.path(), StartOptions::default(), &[]).await;
    let mut c = kv(ip).await;
    assert_eq!(count(&mut c, "k/").await, acked, "acknowledged writes survive the restart");
    assert_eq!(count(&mut c, "after/").await, 1000);
    assert_eq!(count(&mut c, "before").await, 0);
    m.stop().await;
}
