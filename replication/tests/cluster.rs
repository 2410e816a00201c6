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
