//! `rusted` processes on 127.0.0.1:
//! - three under write load: SIGKILL the leader, a new one is elected, and every acknowledged
//!   write is present on every member after the old leader returns from its data dir;
//! - three: a follower paused while it is removed stops by itself once resumed, and a new
//!   member joins on its peer URL;
//! - three: a follower forwards lease renewals and time-to-live to the leader and serves
//!   watches of writes made through the leader; `/v2/stats/self` counts the appends;
//! - one with a tiny space quota: NOSPACE is raised, survives a SIGKILL and restart, and is
//!   cleared by delete, compaction, defrag and disarm;
//! - one configured by `--config-file` (other flags ignored) with periodic auto-compaction;
//! - one logging etcd's JSON lines to stderr and a file;
//! - three whose `/metrics` carry every metric etcd's mixin reads, after writes and a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rusted_proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};

struct Proc {
    name: String,
    client: String,
    args: Vec<String>,
    /// Where its log goes.
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
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
                log: dir.join(format!("{}.log", names[i])),
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

/// A client of member `url` for the given generated client type.
async fn lease_client(
    url: &str,
) -> rusted_proto::etcdserverpb::lease_client::LeaseClient<tonic::transport::Channel> {
    rusted_proto::etcdserverpb::lease_client::LeaseClient::connect(url.to_string()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_lease_requests_and_serve_watches() {
    use rusted_proto::etcdserverpb::watch_client::WatchClient;
    use rusted_proto::etcdserverpb::{
        watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest,
        WatchCreateRequest, WatchRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut procs = cluster(dir.path(), 24890);
    for p in procs.iter_mut() {
        p.args.push("--enable-v2".into());
        p.start();
    }
    let (l, leader) = wait_leader(&procs, Duration::from_secs(20)).await;
    let f = (l + 1) % 3;
    let follower = procs[f].client.clone();

    // A watch on the follower sees a write made through the leader.
    let mut w = WatchClient::connect(follower.clone()).await.unwrap();
    let (wtx, wrx) = tokio::sync::mpsc::channel(4);
    let create = WatchCreateRequest { key: b"fw".to_vec(), ..Default::default() };
    wtx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    })
    .await
    .unwrap();
    let mut events =
        w.watch(tokio_stream::wrappers::ReceiverStream::new(wrx)).await.unwrap().into_inner();
    let created = events.message().await.unwrap().unwrap();
    assert!(created.created);

    // Leases granted, renewed and inspected through the follower.
    let mut lc = lease_client(&follower).await;
    let g = lc.lease_grant(LeaseGrantRequest { ttl: 30, id: 0 }).await.unwrap().into_inner();
    assert!(g.id > 0 && g.ttl == 30, "{g:?}");
    let mut kv = KvClient::connect(procs[l].client.clone()).await.unwrap();
    kv.put(PutRequest {
        key: b"fw".to_vec(),
        value: b"1".to_vec(),
        lease: g.id,
        ..Default::default()
    })
    .await
    .unwrap();
    let ev = events.message().await.unwrap().unwrap();
    assert_eq!(ev.events.len(), 1);
    assert_eq!(ev.events[0].kv.as_ref().unwrap().lease, g.id);

    let (ktx, krx) = tokio::sync::mpsc::channel(4);
    // Sent before the call: as grpc-go's, the server's headers come with its first answer.
    ktx.send(LeaseKeepAliveRequest { id: g.id }).await.unwrap();
    let mut ka = lc
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(krx))
        .await
        .unwrap()
        .into_inner();
    let r = ka.message().await.unwrap().unwrap();
    assert_eq!((r.id, r.ttl), (g.id, 30), "renewed through the follower");
    ktx.send(LeaseKeepAliveRequest { id: 12345 }).await.unwrap();
    let r = ka.message().await.unwrap().unwrap();
    assert_eq!((r.id, r.ttl), (12345, 0), "an unknown lease answers TTL 0");

    let t = lc
        .lease_time_to_live(LeaseTimeToLiveRequest { id: g.id, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.granted_ttl, 30);
    assert!(t.ttl > 0 && t.ttl <= 30, "{t:?}");
    assert_eq!(t.keys, vec![b"fw".to_vec()]);
    let t = lc
        .lease_time_to_live(LeaseTimeToLiveRequest { id: 999, keys: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.ttl, -1);
    let header = t.header.unwrap();
    assert_ne!(header.member_id, 0);

    // etcd's /v2/stats/self: the appends the leader sent and the follower received.
    let stats = |i: usize| {
        let url = procs[i].client.clone();
        async move {
            let body = common::http_get(&url, "/v2/stats/self").await;
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    let s = stats(l).await;
    assert_eq!(s["state"], "StateLeader", "{s}");
    assert!(s["sendAppendRequestCnt"].as_u64().unwrap() > 0, "{s}");
    let s = stats(f).await;
    assert_eq!(s["state"], "StateFollower", "{s}");
    assert!(s["recvAppendRequestCnt"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["sendAppendRequestCnt"], 0, "{s}");
    assert_eq!(s["leaderInfo"]["leader"], format!("{leader:x}"), "{s}");
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    let want = ["name", "id", "state", "startTime", "leaderInfo", "recvAppendRequestCnt"];
    assert_eq!(keys[..6], want, "etcd's field order: {s}");
    // Then the receive rates while appends flow (etcd's omitempty), then the send count.
    let rest: Vec<&str> = keys[6..].iter().copied().filter(|k| !k.starts_with("recv")).collect();
    assert_eq!(rest, ["sendAppendRequestCnt"], "{s}");
}

/// etcd's member replacement with a twist: the member is paused (SIGSTOP) when it is removed,
/// so it never applies its removal; resumed, its peers refuse it as removed and it stops by
/// itself, exit 0, as etcd's. A new member then joins on the same peer URL at once (the others'
/// links to the old ID may still be redialing it) and catches up without taking anything meant
/// for the old ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_stops_and_a_new_one_takes_its_url() {
    use rusted_proto::etcdserverpb::cluster_client::ClusterClient;
    use rusted_proto::etcdserverpb::{MemberAddRequest, MemberRemoveRequest};
    let signal = |p: &Proc, sig: &str| {
        let pid = p.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    let dir = tempfile::tempdir().unwrap();
    let mut procs = cluster(dir.path(), 25390);
    for p in procs.iter_mut() {
        p.start();
    }
    let (l, _) = wait_leader(&procs, Duration::from_secs(20)).await;
    let leader = procs[l].client.clone();
    let mut kv = KvClient::connect(leader.clone()).await.unwrap();
    for i in 0..20 {
        let req =
            PutRequest { key: format!("k{i}").into(), value: b"v".to_vec(), ..Default::default() };
        kv.put(req).await.unwrap();
    }
    let f = (l + 1) % 3;
    let mut st = MaintenanceClient::connect(procs[f].client.clone()).await.unwrap();
    let old = st.status(StatusRequest {}).await.unwrap().into_inner().header.unwrap().member_id;

    signal(&procs[f], "-STOP");
    let mut cl = ClusterClient::connect(leader.clone()).await.unwrap();
    // The strict reconfiguration check wants the others connected for 5 s.
    let end = Instant::now() + Duration::from_secs(20);
    while let Err(e) = cl.member_remove(MemberRemoveRequest { id: old }).await {
        assert!(Instant::now() < end, "member remove: {e:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    signal(&procs[f], "-CONT");
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = procs[f].child.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the removed member is still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    procs[f].child = None;
    assert!(status.success(), "the removed member exited with {status}");
    let log = std::fs::read_to_string(&procs[f].log).unwrap();
    assert!(log.contains("the member has been permanently removed from the cluster"), "{log}");

    let peer = procs[f].args
        [procs[f].args.iter().position(|a| a == "--listen-peer-urls").unwrap() + 1]
        .clone();
    let add = MemberAddRequest { peer_ur_ls: vec![peer], is_learner: false };
    let new = cl.member_add(add).await.unwrap().into_inner().member.unwrap().id;
    std::fs::remove_dir_all(dir.path().join(&procs[f].name)).unwrap();
    procs[f].args.extend(["--initial-cluster-state".into(), "existing".into()]);
    procs[f].start();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let got = async {
            let mut c = KvClient::connect(procs[f].client.clone()).await.ok()?;
            let r = RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                serializable: true,
                count_only: true,
                ..Default::default()
            };
            Some(c.range(r).await.ok()?.into_inner().count)
        };
        if got.await == Some(20) {
            break;
        }
        assert!(Instant::now() < end, "the new member did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut st = MaintenanceClient::connect(procs[f].client.clone()).await.unwrap();
    let me = st.status(StatusRequest {}).await.unwrap().into_inner().header.unwrap().member_id;
    assert_eq!(me, new, "the new member runs under the added ID");
    let mut kv = KvClient::connect(procs[f].client.clone()).await.unwrap();
    let req = PutRequest { key: b"after".to_vec(), value: b"v".to_vec(), ..Default::default() };
    kv.put(req).await.expect("a write through the new member");
    assert!(
        procs[f].child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the new member stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_quota_raises_nospace_which_survives_restart_until_disarmed() {
    use rusted_proto::etcdserverpb::{
        alarm_request::AlarmAction, AlarmRequest, AlarmType, CompactionRequest, DefragmentRequest,
        DeleteRangeRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let client = "http://127.0.0.1:24990".to_string();
    let peer = "http://127.0.0.1:24991".to_string();
    let mut p = Proc {
        name: "q".into(),
        client: client.clone(),
        args: vec![
            "--name".into(),
            "q".into(),
            "--data-dir".into(),
            dir.path().join("q").display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client.clone(),
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            format!("q={peer}"),
            "--quota-backend-bytes".into(),
            "400000".into(),
        ],
        log: dir.path().join("q.log"),
        child: None,
    };
    p.start();
    let procs = std::slice::from_ref(&p);
    wait_leader(procs, Duration::from_secs(20)).await;
    let mut kv = KvClient::connect(client.clone()).await.unwrap();
    let value = vec![b'x'; 4000];
    let mut refused = None;
    for i in 0..2000 {
        let req = PutRequest {
            key: format!("k{i:05}").into_bytes(),
            value: value.clone(),
            ..Default::default()
        };
        if let Err(s) = kv.put(req).await {
            refused = Some((i, s));
            break;
        }
    }
    let (n, s) = refused.expect("the quota never refused a put");
    assert!(n > 10, "refused after only {n} puts");
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    assert_eq!(s.message(), "etcdserver: mvcc: database space exceeded");

    let alarm_list = |c: String| async move {
        let mut m = MaintenanceClient::connect(c).await.unwrap();
        let get = AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: 0 };
        m.alarm(get).await.unwrap().into_inner().alarms
    };
    // The alarm is raised through raft: wait for it to be applied.
    let end = Instant::now() + Duration::from_secs(10);
    while alarm_list(client.clone()).await.is_empty() {
        assert!(Instant::now() < end, "NOSPACE was never raised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alarms = alarm_list(client.clone()).await;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].alarm, AlarmType::Nospace as i32);
    let small = PutRequest { key: b"tiny".to_vec(), value: b"1".to_vec(), ..Default::default() };
    assert_eq!(kv.put(small.clone()).await.unwrap_err().code(), tonic::Code::ResourceExhausted);

    // It is stored: still raised after a restart.
    p.kill();
    p.start();
    let procs = std::slice::from_ref(&p);
    wait_leader(procs, Duration::from_secs(20)).await;
    assert_eq!(alarm_list(client.clone()).await.len(), 1, "the alarm survives a restart");
    let mut m = MaintenanceClient::connect(client.clone()).await.unwrap();
    let st = m.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(st.errors.len(), 1);
    assert!(st.errors[0].ends_with("alarm:NOSPACE "), "{:?}", st.errors);

    // Deletes, compaction and defrag still work; after a disarm writes are accepted again.
    let mut kv = KvClient::connect(client.clone()).await.unwrap();
    let del = DeleteRangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
    let rev = kv.delete_range(del).await.unwrap().into_inner().header.unwrap().revision;
    kv.compact(CompactionRequest { revision: rev, physical: true }).await.unwrap();
    m.defragment(DefragmentRequest {}).await.unwrap();
    let nospace = AlarmType::Nospace as i32;
    let disarm = AlarmRequest {
        action: AlarmAction::Deactivate as i32,
        member_id: alarms[0].member_id,
        alarm: nospace,
    };
    let cleared = m.alarm(disarm).await.unwrap().into_inner().alarms;
    assert_eq!(cleared.len(), 1);
    assert!(alarm_list(client.clone()).await.is_empty());
    kv.put(small).await.expect("writes are accepted after the disarm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_and_periodic_auto_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let client = "http://127.0.0.1:25090".to_string();
    let peer = "http://127.0.0.1:25091".to_string();
    let data = dir.path().join("cf");
    let yaml = dir.path().join("rusted.yml");
    std::fs::write(
        &yaml,
        format!(
            "name: from-file\ndata-dir: {}\nlisten-client-urls: {client}\n\
             advertise-client-urls: {client}\nlisten-peer-urls: {peer}\n\
             initial-advertise-peer-urls: {peer}\ninitial-cluster: from-file={peer}\n\
             auto-compaction-mode: periodic\nauto-compaction-retention: 2s\n\
             enable-v2: false\n",
            data.display()
        ),
    )
    .unwrap();
    // The flags after --config-file must be ignored, as etcd ignores them.
    let mut p = Proc {
        name: "cf".into(),
        client: client.clone(),
        args: vec![
            "--config-file".into(),
            yaml.display().to_string(),
            "--name".into(),
            "ignored".into(),
        ],
        log: dir.path().join("cf.log"),
        child: None,
    };
    p.start();
    let procs = std::slice::from_ref(&p);
    wait_leader(procs, Duration::from_secs(20)).await;
    let mut cl = rusted_proto::etcdserverpb::cluster_client::ClusterClient::connect(client.clone())
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let ms = cl
            .member_list(rusted_proto::etcdserverpb::MemberListRequest { linearizable: false })
            .await
            .unwrap()
            .into_inner()
            .members;
        if ms.len() == 1 && ms[0].name == "from-file" {
            break;
        }
        assert!(Instant::now() < end, "the name from the file was not published: {ms:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut kv = KvClient::connect(client.clone()).await.unwrap();
    for i in 0..20 {
        let req = PutRequest {
            key: format!("a{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        kv.put(req).await.unwrap();
    }
    // Within a few retentions the leader compacts to what was current a retention earlier.
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let old = RangeRequest { key: b"a0".to_vec(), revision: 2, ..Default::default() };
        match kv.range(old).await {
            Err(s) if s.message() == "etcdserver: mvcc: required revision has been compacted" => {
                break
            }
            Ok(_) => {}
            Err(s) => panic!("unexpected error {s}"),
        }
        assert!(Instant::now() < end, "no auto compaction happened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Logs are etcd's JSON lines (level, ts, caller, msg first) on every `--log-outputs` target,
/// the same lines on stderr (a pipe here) and in the file; no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_etcd_json_lines_on_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("member.log");
    let (client, peer) = ("http://127.0.0.1:25190", "http://127.0.0.1:25191");
    let stderr = dir.path().join("stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_rusted"))
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args(["--listen-client-urls", client, "--advertise-client-urls", client])
        .args(["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
        .args(["--initial-cluster", &format!("default={peer}")])
        .args(["--log-outputs", &format!("stderr,{}", file.display())])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut proc = Proc {
        name: "default".into(),
        client: client.into(),
        args: vec![],
        log: stderr.clone(),
        child: Some(child),
    };
    let t0 = Instant::now();
    loop {
        let read = async {
            let mut kv = KvClient::connect(proc.client.clone()).await.ok()?;
            kv.range(RangeRequest { key: b"k".to_vec(), ..Default::default() }).await.ok()
        };
        if read.await.is_some() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{} not serving", proc.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = proc.child.as_ref().unwrap().id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = proc.child.take().unwrap().wait().unwrap();
    assert!(status.success(), "{status}");
    let on_stderr = std::fs::read_to_string(&stderr).unwrap();
    let in_file = std::fs::read_to_string(&file).unwrap();
    assert_eq!(on_stderr, in_file, "the outputs differ");
    assert!(!on_stderr.contains('\u{1b}'), "colour codes in the log");
    let mut msgs = Vec::new();
    for line in on_stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["level", "ts", "caller", "msg"] {
            assert!(keys.contains(&k), "{k} missing: {line}");
        }
        assert!(line.starts_with("{\"level\":"), "{line}");
        assert!(
            ["debug", "info", "warn", "error"].contains(&v["level"].as_str().unwrap()),
            "{line}"
        );
        msgs.push(v["msg"].as_str().unwrap().to_owned());
    }
    assert!(msgs.iter().any(|m| m.contains("ready to serve client requests")), "{msgs:?}");
}

/// The series of `name` in a Prometheus text page: each one's label names.
fn series<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{') || r.starts_with(' ')))
        .collect()
}

/// Every metric etcd's mixin (contrib/mixin: its alerts and dashboard) reads is exported by
/// each member of a cluster that took writes and saw a member restart, with the labels the
/// mixin's queries group by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_etcds_mixin_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let mut procs = cluster(dir.path(), 25290);
    for p in procs.iter_mut() {
        p.args.push("--metrics=extensive".into());
        p.start();
    }
    let (l, _) = wait_leader(&procs, Duration::from_secs(20)).await;
    let urls: Vec<String> = procs.iter().map(|p| p.client.clone()).collect();
    assert!(!writer(urls.clone(), "m".into(), 50).await.is_empty());
    // A follower goes down and comes back: the others fail to send to it meanwhile.
    let f = (l + 1) % 3;
    procs[f].kill();
    assert!(!writer(vec![urls[l].clone()], "n".into(), 30).await.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    procs[f].start();
    let t0 = Instant::now();
    while KvClient::connect(urls[f].clone()).await.is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "restarted member not serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!writer(urls.clone(), "o".into(), 30).await.is_empty());
    // Round trips are probed every 4 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let want: &[(&str, &[&str])] = &[
        ("grpc_server_handled_total", &["grpc_type", "grpc_code", "grpc_service", "grpc_method"]),
        ("grpc_server_started_total", &["grpc_type", "grpc_service", "grpc_method"]),
        (
            "grpc_server_handling_seconds_bucket",
            &["grpc_type", "grpc_service", "grpc_method", "le"],
        ),
        ("etcd_server_has_leader", &[]),
        ("etcd_server_leader_changes_seen_total", &[]),
        ("etcd_server_proposals_failed_total", &[]),
        ("etcd_server_proposals_pending", &[]),
        ("etcd_server_proposals_committed_total", &[]),
        ("etcd_server_proposals_applied_total", &[]),
        ("etcd_server_quota_backend_bytes", &[]),
        ("etcd_mvcc_db_total_size_in_bytes", &[]),
        ("etcd_disk_wal_fsync_duration_seconds_bucket", &["le"]),
        ("etcd_disk_backend_commit_duration_seconds_bucket", &["le"]),
        ("process_resident_memory_bytes", &[]),
        ("etcd_network_client_grpc_sent_bytes_total", &[]),
        ("etcd_network_client_grpc_received_bytes_total", &[]),
        ("etcd_network_peer_sent_bytes_total", &["To"]),
        ("etcd_network_peer_received_bytes_total", &["From"]),
        ("etcd_network_peer_round_trip_time_seconds_bucket", &["To", "le"]),
        ("etcd_server_is_learner", &[]),
        ("etcd_network_active_peers", &["Local", "Remote"]),
        ("etcd_mvcc_put_total", &[]),
        ("etcd_mvcc_range_total", &[]),
        ("etcd_mvcc_txn_total", &[]),
        ("etcd_mvcc_delete_total", &[]),
    ];
    for (i, p) in procs.iter().enumerate() {
        let page = common::http_get(&p.client, "/metrics").await;
        for (name, labels) in want {
            let s = series(&page, name);
            assert!(!s.is_empty(), "member {i}: {name} missing");
            for label in *labels {
                assert!(
                    s.iter().any(|l| l.contains(&format!("{label}=\""))),
                    "member {i}: {name} without label {label}: {s:?}"
                );
            }
        }
    }
    // The "members down" alert: the members that stayed up failed to send to the one that
    // was down.
    let mut seen = 0;
    for (i, p) in procs.iter().enumerate() {
        if i == f {
            continue;
        }
        let page = common::http_get(&p.client, "/metrics").await;
        seen += series(&page, "etcd_network_peer_sent_failures_total").len();
    }
    assert!(seen > 0, "no send failures counted towards the member that was down");
}
