//! Online defrag in a `rusted` process on 127.0.0.191: writes keep landing while defrags run
//! back to back, the process is SIGKILLed at seeded random moments (so kills land in the
//! copy, the catch-up and the swap), and after every restart the store opens and holds every
//! acknowledged write.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rusted_proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
    StatusRequest,
};

const CLIENT: &str = "http://127.0.0.191:2379";
const PEER: &str = "http://127.0.0.191:2380";

/// The member's process, SIGKILLed when dropped (also when the test fails).
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, round: usize) -> Member {
    let log = std::fs::File::create(dir.join(format!("log-{round}"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rusted"))
        .args([
            "--name=d",
            &format!("--data-dir={}", dir.join("d").display()),
            &format!("--listen-client-urls={CLIENT}"),
            &format!("--advertise-client-urls={CLIENT}"),
            &format!("--listen-peer-urls={PEER}"),
            &format!("--initial-advertise-peer-urls={PEER}"),
            &format!("--initial-cluster=d={PEER}"),
        ])
        .env("RUST_LOG", "info,raft=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Member(child)
}

async fn wait_ready() {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut m) = MaintenanceClient::connect(CLIENT).await {
            if let Ok(st) = m.status(StatusRequest {}).await {
                let st = st.into_inner();
                if st.leader != 0 && st.header.is_some_and(|h| h.member_id == st.leader) {
                    return;
                }
            }
        }
        assert!(Instant::now() < end, "the member did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn put(key: String, size: usize) -> PutRequest {
    PutRequest { key: key.into_bytes(), value: vec![b'v'; size], ..Default::default() }
}

/// Every key in `acked` is served with its value, and no other `w` key exists.
async fn assert_all_there(acked: &[String], when: &str) {
    let mut kv = KvClient::connect(CLIENT).await.unwrap();
    let got = kv
        .range(RangeRequest { key: b"w".to_vec(), range_end: b"x".to_vec(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut have = std::collections::BTreeSet::new();
    for kv in got.kvs {
        assert_eq!(kv.value, vec![b'v'; 500], "{when}: value of {:?}", kv.key);
        have.insert(String::from_utf8(kv.key).unwrap());
    }
    let missing: Vec<&String> = acked.iter().filter(|k| !have.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "{when}: {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_defrags_under_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Some(start(dir.path(), 0));
    wait_ready().await;
    // ~20 MB of values, half deleted and compacted away: each defrag has real copying to do.
    let mut kv = KvClient::connect(CLIENT).await.unwrap();
    for i in 0..2000 {
        kv.put(put(format!("garbage-{i:05}"), 10_000)).await.unwrap();
    }
    let del = DeleteRangeRequest {
        key: b"garbage-00".to_vec(),
        range_end: b"garbage-01".to_vec(),
        ..Default::default()
    };
    let rev = kv.delete_range(del).await.unwrap().into_inner().header.unwrap().revision;
    kv.compact(CompactionRequest { revision: rev, physical: true }).await.unwrap();

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut seed = 0x0DEF_4A6Bu64;
    let mut defrags_done = 0;
    for round in 0..8 {
        if round > 0 {
            child = Some(start(dir.path(), round));
            wait_ready().await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut kv = KvClient::connect(CLIENT).await.unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{round}-{i:06}");
                    if kv.put(put(key.clone(), 500)).await.is_ok() {
                        acked.lock().unwrap().push(key);
                    }
                    i += 1;
                }
            })
        };
        let defragger = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut m = MaintenanceClient::connect(CLIENT).await.unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    match m.defragment(DefragmentRequest {}).await {
                        Ok(_) => n += 1,
                        Err(e) => eprintln!("defrag: {e}"),
                    }
                }
                n
            })
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(300 + seed % 1200)).await;
        // Writes stop; defrags go on. The live member serves every acknowledged write (what
        // a defrag replays is read back from the page store, not from the log), then dies.
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        let so_far = acked.lock().unwrap().clone();
        assert_all_there(&so_far, &format!("before kill {round}")).await;
        tokio::time::sleep(Duration::from_millis(seed % 100)).await;
        drop(child.take()); // SIGKILL
        defrags_done += defragger.await.unwrap();
    }

    let _last = start(dir.path(), 99);
    wait_ready().await;
    let mut kv = KvClient::connect(CLIENT).await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "only {} writes acknowledged", acked.len());
    assert_all_there(&acked, "after the last restart").await;
    let left = kv
        .range(RangeRequest {
            key: b"garbage-01".to_vec(),
            range_end: b"garbage-02".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(left, 1000, "the keys never deleted are all there");
    assert!(defrags_done > 0, "no defrag finished between kills");
    eprintln!("{} writes acknowledged over 8 kills, {defrags_done} defrags finished", acked.len());
}
