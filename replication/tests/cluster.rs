//! In-process clusters over the simulated network.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Cluster;

const T: Duration = Duration::from_secs(10);

#[test]
fn single_member_commits_and_restarts() {
    let mut c = Cluster::new(1, 1);
    assert_eq!(c.wait_leader(T), Some(0));
    let mut last = 0;
    for i in 0..50 {
        last = c.put(0, &format!("k{i}"), "v").unwrap();
    }
    assert_eq!(last, 51, "first write is revision 2");
    // A sole voter applies on its raft thread (no hand-off to the apply thread and back).
    let on: Vec<String> = c.sm(0).applied_on.lock().unwrap().iter().cloned().collect();
    assert_eq!(on, ["raft"], "threads that applied puts");
    let applied = c.replica(0).applied();
    c.kill(0);
    c.start(0);
    assert_eq!(c.wait_leader(T), Some(0));
    assert!(c.replica(0).applied() >= applied);
    assert_eq!(c.put(0, "after", "restart").unwrap(), 52);
    assert_eq!(c.sm(0).dump().len(), 51);
}

#[test]
fn three_members_replicate_and_survive_leader_loss() {
    let mut c = Cluster::new(3, 2);
    let l = c.wait_leader(T).expect("a leader");
    for i in 0..100 {
        c.put(l, &format!("k{i}"), "v").unwrap();
    }
    // With followers, the leader's raft thread goes on while the apply thread applies.
    let on: Vec<String> = c.sm(l).applied_on.lock().unwrap().iter().cloned().collect();
    assert_eq!(on, ["apply"], "threads that applied puts on the leader");
    let follower = (l + 1) % 3;
    // A follower's proposals are forwarded to the leader.
    c.put(follower, "via-follower", "v").unwrap();
    let idx = c.converge(T).expect("members converge");
    c.kill(l);
    let l2 = c.wait_leader(T).expect("a new leader");
    assert_ne!(l2, l);
    c.put(l2, "after", "failover").unwrap();
    c.start(l);
    let end = c.converge(T).expect("converge after restart");
    assert!(end > idx);
    let d0 = c.sm(0).dump();
    for i in 1..3 {
        assert_eq!(c.sm(i).dump(), d0);
    }
    assert_eq!(d0.len(), 102);
}

/// Many writers in a closed loop on a 3-member leader: its rounds grow past the linger
/// threshold, so it holds small batches for more proposals (the `linger` module). Every
/// acknowledged write is applied once on every member.
#[test]
fn a_loaded_leader_holds_small_batches_and_loses_nothing() {
    use std::sync::atomic::Ordering;
    let c = Cluster::new(3, 3);
    let (writers, each) = (64usize, 20usize);
    let held = |c: &Cluster| -> u64 {
        (0..3).map(|i| c.replica(i).counters().batches_held.load(Ordering::Relaxed)).sum()
    };
    let mut acked: Vec<String> = Vec::new();
    // Waves until a leader has held a batch at least once (the first wave nearly always
    // does; the bound only keeps a very slow machine from looping forever). A leader change
    // under load may fail some writes: only acknowledged ones are checked.
    for wave in 0..5 {
        let l = c.wait_leader(T).expect("a leader");
        acked.extend(write_concurrently(&c, l, &format!("w{wave}"), writers, each));
        if held(&c) > 0 {
            break;
        }
    }
    assert!(held(&c) > 0, "a leader under load never held a batch");
    assert!(acked.len() >= writers * each / 2, "too few writes succeeded: {}", acked.len());
    assert_applied_once_everywhere(&c, &acked);
}

/// Writers on both followers of a 3-member cluster: their forwarded proposals join the
/// leader's own batches (not stepped one message at a time), and every acknowledged write is
/// applied once on every member.
#[test]
fn forwarded_proposals_join_the_leaders_batches_and_lose_nothing() {
    use std::sync::atomic::Ordering;
    let c = Cluster::new(3, 5);
    let (writers, each) = (16usize, 20usize);
    let l = c.wait_leader(T).expect("a leader");
    let followers: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let mut acked: Vec<String> = Vec::new();
    for &f in &followers {
        acked.extend(write_concurrently(&c, f, &format!("f{f}"), writers, each));
    }
    let batched: u64 =
        (0..3).map(|i| c.replica(i).counters().forwarded_batched.load(Ordering::Relaxed)).sum();
    assert!(batched > 0, "no forwarded proposal joined a leader's batch");
    assert!(acked.len() >= followers.len() * writers * each / 2, "too few writes: {}", acked.len());
    assert_applied_once_everywhere(&c, &acked);
}

/// `writers` concurrent writers, each putting `each` keys named `{prefix}-{writer}-{i}` through
/// member `i`'s replica; returns the keys whose writes were acknowledged.
fn write_concurrently(
    c: &Cluster,
    i: usize,
    prefix: &str,
    writers: usize,
    each: usize,
) -> Vec<String> {
    let r = c.replica(i).clone();
    let prefix = prefix.to_string();
    c.rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for w in 0..writers {
            let (r, prefix) = (r.clone(), prefix.clone());
            set.spawn(async move {
                let mut ok = Vec::new();
                for i in 0..each {
                    let key = format!("{prefix}-{w:02}-{i:02}");
                    let put = common::enc_put(key.as_bytes(), b"v");
                    if matches!(r.propose(&put).await, Ok(Ok(_))) {
                        ok.push(key);
                    }
                }
                ok
            });
        }
        let mut ok = Vec::new();
        while let Some(j) = set.join_next().await {
            ok.extend(j.unwrap());
        }
        ok
    })
}

/// Every acknowledged key is applied once, on every member alike.
fn assert_applied_once_everywhere(c: &Cluster, acked: &[String]) {
    let l = c.wait_leader(T).expect("a leader");
    c.put(l, "final", "v").unwrap();
    c.converge(T).expect("members converge");
    let d0 = c.sm(0).dump();
    for k in acked {
        assert!(d0.contains_key(k.as_bytes()), "acknowledged write {k} lost");
    }
    assert!(d0.values().all(|(_, version)| *version == 1), "a write applied twice");
    for i in 1..3 {
        assert_eq!(c.sm(i).dump(), d0, "member {i} differs");
    }
}
