//! A real partition, made with iptables: three `rusted` processes, each under its own uid, on
//! 127.0.0.155–157; the leader's peer traffic (port 2380) is dropped both ways while its
//! clients still reach it. Its peer links must notice the black hole (the keepalive of
//! `--raft-read-timeout`: `etcd_network_active_peers` falls to 0 while TCP alone would keep the
//! dead streams "up"), the others elect a leader and take writes, and once healed the old
//! leader's links come back and writes through it succeed, with every write on every member.
//! No timing is asserted beyond generous deadlines (`benches/partition_heal.py` measures).
//!
//! Needs iptables and setpriv (`.ci/run` installs iptables) and root, or sudo without a
//! password (then both run through `sudo -n`); with neither it says so and does nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rusted_proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};

const IPS: [&str; 3] = ["127.0.0.155", "127.0.0.156", "127.0.0.157"];
const UID0: u32 = 42155;

/// How privileged commands are run here: directly as root, else through `sudo -n`; None when
/// neither works.
fn privileged() -> Option<Vec<&'static str>> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return Some(vec![]);
    }
    let sudo = Command::new("sudo").args(["-n", "true"]).status().ok()?;
    sudo.success().then(|| vec!["sudo", "-n"])
}

/// `program`, run as `privileged()` says.
fn command(prefix: &[&str], program: &str) -> Command {
    match prefix.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
    }
}

/// The iptables rules cutting member `i` off its peers; removed on drop.
struct Cut {
    prefix: Vec<&'static str>,
    rules: Vec<Vec<String>>,
}

impl Cut {
    fn new(prefix: &[&'static str], i: usize) -> Cut {
        let uid = (UID0 + i as u32).to_string();
        let owner = |port_side: &str| -> Vec<String> {
            [
                "OUTPUT",
                "-m",
                "owner",
                "--uid-owner",
                &uid,
                "-p",
                "tcp",
                port_side,
                "2380",
                "-j",
                "DROP",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let inbound: Vec<String> =
            ["OUTPUT", "-d", IPS[i], "-p", "tcp", "--dport", "2380", "-j", "DROP"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let cut = Cut {
            prefix: prefix.to_vec(),
            rules: vec![owner("--dport"), owner("--sport"), inbound],
        };
        for r in &cut.rules {
            let ok = command(prefix, "iptables").arg("-w").arg("-A").args(r).status();
            assert!(
                ok.is_ok_and(|s| s.success()),
                "iptables -A {r:?} failed: this test needs root and iptables (.ci/run installs it)"
            );
        }
        cut
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for r in &self.rules {
            let _ = command(&self.prefix, "iptables").arg("-w").arg("-D").args(r).status();
        }
    }
}

struct Members {
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(prefix: &[&str]) -> Members {
    let dir = tempfile::tempdir().unwrap();
    // Each member writes its data as its own uid.
    let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(dir.path(), perms).unwrap();
    let cluster: Vec<String> =
        IPS.iter().enumerate().map(|(i, ip)| format!("p{i}=http://{ip}:2380")).collect();
    let children = IPS
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let uid = UID0 + i as u32;
            let log = std::fs::File::create(dir.path().join(format!("p{i}.log"))).unwrap();
            command(prefix, "setpriv")
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                    "--",
                ])
                .arg(env!("CARGO_BIN_EXE_rusted"))
                .args(["--name", &format!("p{i}"), "--data-dir"])
                .arg(dir.path().join(format!("p{i}")))
                .args(["--listen-client-urls", &format!("http://{ip}:2379")])
                .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
                .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
                .args(["--initial-advertise-peer-urls", &format!("http://{ip}:2380")])
                .args(["--initial-cluster", &cluster.join(","), "--raft-read-timeout", "2s"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("setpriv and the rusted binary")
        })
        .collect();
    Members { children, dir }
}

/// Which member leads, by the members' own status (only among `among`).
async fn leader(among: &[usize]) -> Option<usize> {
    for &i in among {
        let Ok(mut c) = MaintenanceClient::connect(format!("http://{}:2379", IPS[i])).await else {
            continue;
        };
        let Ok(st) = c.status(StatusRequest {}).await else { continue };
        let st = st.into_inner();
        if st.leader != 0 && Some(st.leader) == st.header.map(|h| h.member_id) {
            return Some(i);
        }
    }
    None
}

async fn wait_for<T>(what: &str, within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "{what} (waited {within:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A put through member `i`, given at most a second.
async fn put(i: usize, key: &str) -> bool {
    let attempt = async {
        let mut c = KvClient::connect(format!("http://{}:2379", IPS[i])).await.ok()?;
        let req = PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() };
        c.put(req).await.ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), attempt).await, Ok(Some(_)))
}

/// The values of member `i`'s `etcd_network_active_peers` series (1: a link is up).
async fn active_peers(i: usize) -> Vec<f64> {
    let page = common::http_get(&format!("http://{}:2379", IPS[i]), "/metrics").await;
    page.lines()
        .filter(|l| l.starts_with("etcd_network_active_peers{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_notices_and_rejoins_when_healed() {
    let Some(prefix) = privileged() else {
        eprintln!(
            "SKIPPED: a_partitioned_leader_notices_and_rejoins_when_healed needs root or sudo -n"
        );
        return;
    };
    let members = start(&prefix);
    let all = [0, 1, 2];
    let old = wait_for("a leader", Duration::from_secs(30), async || leader(&all).await).await;
    wait_for("links up", Duration::from_secs(10), async || {
        (active_peers(old).await == [1.0, 1.0]).then_some(())
    })
    .await;
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    assert!(put(old, "before").await);

    let cut = Cut::new(&prefix, old);
    // The old leader's links go down although no TCP connection was closed: the keepalive saw
    // its pings unanswered.
    wait_for("the cut-off member marks its peer links down", Duration::from_secs(20), async || {
        (active_peers(old).await == [0.0, 0.0]).then_some(())
    })
    .await;
    let new = wait_for("the others elect a leader", Duration::from_secs(20), async || {
        leader(&others).await
    })
    .await;
    assert_ne!(new, old);
    wait_for("the majority takes writes", Duration::from_secs(10), async || {
        put(others[0], "during").await.then_some(())
    })
    .await;
    assert!(!put(old, "cut-off").await, "a member cut off from its peers took a write");

    drop(cut);
    wait_for("a write through the old leader once healed", Duration::from_secs(30), async || {
        put(old, "after").await.then_some(())
    })
    .await;
    wait_for("its links are back", Duration::from_secs(10), async || {
        (active_peers(old).await == [1.0, 1.0]).then_some(())
    })
    .await;
    // etcd's pair of log lines for a link that went down and came back.
    let log = std::fs::read_to_string(members.dir.path().join(format!("p{old}.log"))).unwrap();
    for line in ["lost TCP streaming connection with remote peer", "established TCP streaming"] {
        assert!(log.contains(line), "no {line:?} in the cut-off member's log");
    }
    for i in all {
        let mut c = KvClient::connect(format!("http://{}:2379", IPS[i])).await.unwrap();
        for key in ["before", "during", "after"] {
            let req = RangeRequest { key: key.into(), serializable: false, ..Default::default() };
            let n = c.range(req).await.unwrap().into_inner().count;
            assert_eq!(n, 1, "member {i} lacks {key}");
        }
    }
}
