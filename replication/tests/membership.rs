//! Membership changes while writing: grow 1 → 3 (learner, then promote), remove a member,
//! replace a failed member as etcd's runtime-reconfiguration guide does.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{enc_put, Cluster};
use rusted_replication::{Bootstrap, ReplicationError};

const T: Duration = Duration::from_secs(20);

/// Writes unique keys through whoever leads until stopped; returns (acked keys).
fn background_writer(
    c: &Cluster,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<String>> {
    let replicas: Vec<_> = c.running().iter().map(|i| c.replica(*i).clone()).collect();
    let handle = c.rt.handle().clone();
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let Some(r) = replicas.iter().find(|r| r.is_leader()).or(replicas.first()) else {
                break;
            };
            let key = format!("bg-{n:05}");
            n += 1;
            if let Ok(Ok(_)) = handle.block_on(r.propose(&enc_put(key.as_bytes(), b"v"))) {
                acked.push(key);
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
        acked
    })
}

/// Retries a membership change while it is refused as "unhealthy cluster": etcd's strict
/// check wants every voter connected for 5 s, so a change right after another waits, as a
/// user's retry would.
fn when_healthy<R>(
    mut f: impl FnMut() -> rusted_replication::Result<R>,
) -> rusted_replication::Result<R> {
    let end = Instant::now() + T;
    loop {
        match f() {
            Err(ReplicationError::Unhealthy) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

fn promote_when_ready(c: &Cluster, leader: usize, id: u64) {
    let end = Instant::now() + T;
    loop {
        match c.rt.block_on(c.replica(leader).member_promote(id)) {
            Ok(list) => {
                assert!(list.iter().any(|m| m.id == id && !m.is_learner));
                return;
            }
            Err(ReplicationError::LearnerNotReady) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("promote failed: {e}"),
        }
    }
}

fn add_member(c: &mut Cluster, leader: usize, port: u16) -> usize {
    let url = format!("http://127.0.0.1:{port}");
    let (m, list) =
        when_healthy(|| c.rt.block_on(c.replica(leader).member_add(vec![url.clone()], true)))
            .unwrap();
    assert!(m.is_learner);
    assert!(list.iter().any(|x| x.id == m.id));
    let i = c.add_slot(m.id);
    let rec = c.replica(leader).cluster();
    c.start_with(i, Bootstrap::Existing(rec));
    i
}

#[test]
fn grow_one_to_three_while_writing_then_remove() {
    let mut c = Cluster::new(1, 3);
    assert_eq!(c.wait_leader(T), Some(0));
    c.publish(0);
    for i in 0..400 {
        c.put(0, &format!("pre-{i}"), "v").unwrap();
    }
    // A voter cannot be added while it would leave too few started members? One started
    // member may always add one.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let writer = background_writer(&c, stop.clone(), count.clone());

    let a = add_member(&mut c, 0, 22380);
    promote_when_ready(&c, 0, c.slots[a].id);
    c.publish(a);
    let l = c.wait_leader(T).unwrap();
    let b = add_member(&mut c, l, 32380);
    promote_when_ready(&c, l, c.slots[b].id);
    c.publish(b);
    assert_eq!(c.replica(0).members().len(), 3);
    assert!(c.replica(0).members().iter().all(|m| !m.is_learner));
    // The new members started from a snapshot (the log of a new cluster starts compacted).
    for i in [a, b] {
        assert!(c.replica(i).counters().snapshots_installed.load(Ordering::Relaxed) >= 1);
    }
    while count.load(Ordering::SeqCst) < 50 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let acked = writer.join().unwrap();

    // Remove the first member; the other two carry on. (The leader must have applied every
    // member's publish first, or strict reconfiguration refuses: wait for its view.)
    let l = c.wait_leader(T).unwrap();
    let end = Instant::now() + T;
    while !c.replica(l).members().iter().all(|m| m.is_started()) {
        assert!(Instant::now() < end, "the leader never saw every member publish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone = c.slots[0].id;
    let list = when_healthy(|| c.rt.block_on(c.replica(l).member_remove(gone))).unwrap();
    assert_eq!(list.len(), 2);
    c.kill(0);
    let l = c.wait_leader(T).expect("leader without member 0");
    c.put(l, "after-remove", "v").unwrap();
    c.converge(T).unwrap();
    let d = c.sm(a).dump();
    assert_eq!(c.sm(b).dump(), d);
    for k in &acked {
        assert_eq!(d.get(k.as_bytes()).map(|x| x.1), Some(1), "{k}");
    }
    assert_eq!(d.len(), 400 + acked.len() + 1);
    // A removed ID cannot come back.
    let r = c.rt.block_on(c.replica(l).member_remove(gone));
    assert!(
        matches!(r, Err(ReplicationError::MemberNotFound) | Err(ReplicationError::MemberRemoved)),
        "{r:?}"
    );
}

#[test]
fn replace_a_failed_member() {
    let mut c = Cluster::new(3, 4);
    let l = c.wait_leader(T).unwrap();
    for i in 0..3 {
        c.publish(i);
    }
    for i in 0..500 {
        c.put(l, &format!("k{i}"), "v").unwrap();
    }
    // A follower's disk dies.
    let dead = (l + 1) % 3;
    let dead_id = c.slots[dead].id;
    let dead_url = c.replica(dead).cluster().members[&dead_id].peer_urls.clone();
    c.kill(dead);
    std::fs::remove_dir_all(&c.slots[dead].dir).unwrap();
    c.rt.block_on(c.replica(l).member_remove(dead_id)).unwrap();
    // Same peer URL, new ID, started with --initial-cluster-state existing.
    let (m, _) =
        when_healthy(|| c.rt.block_on(c.replica(l).member_add(dead_url.clone(), false))).unwrap();
    assert_ne!(m.id, dead_id);
    let i = c.add_slot(m.id);
    let rec = c.replica(l).cluster();
    c.start_with(i, Bootstrap::Existing(rec));
    c.put(l, "after-replace", "v").unwrap();
    c.converge(T).unwrap();
    assert_eq!(c.sm(i).dump(), c.sm(l).dump());
    assert_eq!(c.sm(i).dump().len(), 501);
    // etcd's strict reconfiguration check: with the new member not started yet, another voter
    // would leave too few started members.
    let r = c.rt.block_on(c.replica(l).member_add(vec!["http://127.0.0.1:1".into()], false));
    assert!(matches!(r, Err(ReplicationError::NotEnoughStartedMembers)), "{r:?}");
    c.publish(i);
    c.converge(T).unwrap();
    // Duplicate adds are refused with etcd's errors.
    let url = c.replica(l).cluster().members[&m.id].peer_urls.clone();
    let r = when_healthy(|| c.rt.block_on(c.replica(l).member_add(url.clone(), false)));
    // (Within the same second the time-based ID repeats too: etcd checks the ID first.)
    assert!(
        matches!(r, Err(ReplicationError::PeerUrlExists) | Err(ReplicationError::MemberExists)),
        "{r:?}"
    );
}

#[test]
fn strict_reconfig_check_protects_the_active_quorum() {
    let c = Cluster::new(3, 7);
    let l = c.wait_leader(T).unwrap();
    for i in 0..3 {
        c.publish(i);
    }
    // The leader must have applied every member's publish (or the started-quorum check
    // answers first).
    let end = Instant::now() + T;
    while !c.replica(l).members().iter().all(|m| m.is_started()) {
        assert!(Instant::now() < end, "the leader never saw every member publish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let add = |url: &str| c.rt.block_on(c.replica(l).member_add(vec![url.to_string()], false));
    // Links count from now (however long the start took on a loaded machine).
    c.net.heal();
    // Links up for less than etcd's 5 s health interval: not yet.
    let r = add("http://127.0.0.1:1");
    assert!(matches!(r, Err(ReplicationError::Unhealthy)), "{r:?}");
    // One follower cut off: adding stays refused however long we wait.
    let cut = c.slots[(l + 1) % 3].id;
    let other = c.slots[(l + 2) % 3].id;
    let lid = c.slots[l].id;
    c.net.partition(&[vec![lid, other], vec![cut]]);
    std::thread::sleep(rusted_replication::config::HEALTH_INTERVAL + Duration::from_millis(300));
    let r = add("http://127.0.0.1:1");
    assert!(matches!(r, Err(ReplicationError::Unhealthy)), "{r:?}");
    // Removing the connected follower would leave one connected voter of two: refused.
    let r = c.rt.block_on(c.replica(l).member_remove(other));
    assert!(matches!(r, Err(ReplicationError::Unhealthy)), "{r:?}");
    // Removing the member that is down is safe.
    let list = c.rt.block_on(c.replica(l).member_remove(cut)).unwrap();
    assert_eq!(list.len(), 2);
}

#[test]
fn without_strict_reconfig_check_changes_are_not_held_back() {
    let mut c = Cluster::new(1, 8);
    c.strict_reconfig_check = false;
    c.kill(0);
    c.start(0);
    let l = c.wait_leader(T).unwrap();
    // Not started (never published) and just up: strict mode would refuse a second voter
    // when the only member is not started; without it the change goes through.
    let r = c.rt.block_on(c.replica(l).member_add(vec!["http://127.0.0.1:1".into()], false));
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn lagging_member_catches_up_by_snapshot() {
    let mut c = Cluster::new(3, 6);
    let l = c.wait_leader(T).unwrap();
    let lag = (l + 2) % 3;
    c.kill(lag);
    // Past snapshot_count (300) so the leader's log is compacted beyond what `lag` has.
    for i in 0..700 {
        c.put(l, &format!("k{i}"), "v").unwrap();
    }
    c.start(lag);
    c.put(l, "last", "v").unwrap();
    c.converge(T).unwrap();
    assert_eq!(c.sm(lag).dump(), c.sm(l).dump());
    assert!(c.replica(lag).counters().snapshots_installed.load(Ordering::Relaxed) >= 1);
    assert!(c.replica(l).counters().compactions.load(Ordering::Relaxed) >= 1);
}
