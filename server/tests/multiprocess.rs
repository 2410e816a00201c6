//! Three `rusted` processes on 127.0.0.1 under write load: SIGKILL the leader, a new one is
//! elected, and every acknowledged write is present on every member after the old leader
//! returns from its data dir.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusted_server::proto::etcdserverpb::kv_client::KvClient;
use rusted_server::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rusted_server::proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};

struct Proc {
    name: String,
    client: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) {
        let log = std::fs::File::create(format!("{}.log", self.args[3])).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rusted"))
            .args(&self.args)
            .env("RUST_LOG", "info,raft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cluster(dir: &std::path::Path, base: u16) -> Vec<Proc> {
    let names = ["m0", "m1", "m2"];
    let peer = |i: usize| format!("http://127.0.0.1:{}", base + 10 + i as u16);
    let initial: Vec<String> = (0..3).map(|i| format!("{}={}", names[i], peer(i))).collect();
    (0..3)
        .map(|i| {
            let client = format!("http://127.0.0.1:{}", base + i as u16);
            let data = dir.join(names[i]);
            Proc {
                name: names[i].into(),
                client: client.clone(),
                args: vec![
                    "--name".into(),
                    names[i].into(),
                    "--data-dir".into(),
                    data.display().to_string(),
                    "--listen-client-urls".into(),
                    client.clone(),
                    "--advertise-client-urls".into(),
                    client,
                    "--listen-peer-urls".into(),
                    peer(i),
                    "--initial-advertise-peer-urls".into(),
                    peer(i),
                    "--initial-cluster".into(),
                    initial.join(","),
                    "--initial-cluster-token".into(),
                    "mp-test".into(),
                    "--heartbeat-interval".into(),
                    "50".into(),
                    "--election-timeout".into(),
                    "500".into(),
                ],
                child: None,
            }
        })
        .collect()
}

async fn leader_of(procs: &[Proc]) -> Option<(usize, u64)> {
    for (i, p) in procs.iter().enumerate() {
        if p.child.is_none() {
            continue;
        }
        let Ok(mut c) = MaintenanceClient::connect(p.client.clone()).await else { continue };
        let Ok(st) = c.status(StatusRequest {}).await else { continue };
        let st = st.into_inner();
        let me = st.header.map(|h| h.member_id).unwrap_or(0);
        if st.leader != 0 && st.leader == me {
            return Some((i, me));
        }
    }
    None
}

async fn wait_leader(procs: &[Proc], within: Duration) -> (usize, u64) {
    let end = Instant::now() + within;
    loop {
        if let Some(l) = leader_of(procs).await {
            return l;
        }
        assert!(Instant::now() < end, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes keys `prefix-N` through all running members concurrently until `stop`; returns the
/// acknowledged ones.
async fn writer(urls: Vec<String>, prefix: String, n: usize) -> Vec<String> {
    let mut acked = Vec::new();
    let mut clients = Vec::new();
    for u in &urls {
        if let Ok(c) = KvClient::connect(u.clone()).await {
            clients.push(c);
        }
    }
    for k in 0..n {
        if clients.is_empty() {
            break;
        }
        let key = format!("{prefix}-{k:05}");
        let n_clients = clients.len();
        let c = &mut clients[k % n_clients];
        let req = PutRequest {
            key: key.clone().into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), c.put(req)).await {
            acked.push(key);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_leader_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut procs = cluster(dir.path(), 24790);
    for p in procs.iter_mut() {
        p.start();
    }
    let (l, _) = wait_leader(&procs, Duration::from_secs(20)).await;
    let urls: Vec<String> = procs.iter().map(|p| p.client.clone()).collect();
    let load: Vec<_> =
        (0..8).map(|w| tokio::spawn(writer(urls.clone(), format!("w{w}"), 400))).collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    procs[l].kill();
    let (l2, _) = wait_leader(&procs, Duration::from_secs(20)).await;
    assert_ne!(l2, l, "{} was killed", procs[l].name);
    let mut acked = Vec::new();
    for h in load {
        acked.extend(h.await.unwrap());
    }
    assert!(acked.len() > 1000, "only {} writes acknowledged", acked.len());
    procs[l].start();
    // One more write through the new leader, then every member must hold every acked key.
    let mut kv = KvClient::connect(procs[l2].client.clone()).await.unwrap();
    kv.put(PutRequest { key: b"final".to_vec(), value: b"v".to_vec(), ..Default::default() })
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    for p in &procs {
        loop {
            let got = async {
                let mut c = KvClient::connect(p.client.clone()).await.ok()?;
                let r = c
                    .range(RangeRequest {
                        key: vec![0],
                        range_end: vec![0],
                        serializable: true,
                        keys_only: true,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                Some(
                    r.kvs
                        .into_iter()
                        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                        .collect::<std::collections::HashSet<_>>(),
                )
            }
            .await;
            if let Some(keys) = got {
                if keys.contains("final") {
                    let lost: Vec<_> = acked.iter().filter(|k| !keys.contains(*k)).collect();
                    assert!(
                        lost.is_empty(),
                        "{} lost {} acknowledged writes, e.g. {:?}",
                        p.name,
                        lost.len(),
                        lost.first()
                    );
                    break;
                }
            }
            assert!(Instant::now() < end, "{} did not catch up", p.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "acknowledged {} writes; leader {} killed, {} took over",
        acked.len(),
        procs[l].name,
        procs[l2].name
    );
}
