//! Clusters of 3 and 5 under dropped, duplicated, delayed and reordered messages, partitions,
//! and members killed and restarted from their data dirs. Checks: no acknowledged write lost,
//! none applied twice, every member's HashKV equal at the end.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{enc_put, Cluster};
use rusted_replication::sim::{Faults, SplitMix};

const T: Duration = Duration::from_secs(20);

/// Writes `count` unique keys concurrently through member `via`; returns the acknowledged ones.
fn write_batch(c: &Cluster, via: usize, round: usize, count: usize) -> Vec<String> {
    let r = c.replica(via).clone();
    c.rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for k in 0..count {
            let r = r.clone();
            let key = format!("r{round:03}-m{via}-{k:03}");
            set.spawn(async move {
                let out = r.propose(&enc_put(key.as_bytes(), b"v")).await;
                (key, matches!(out, Ok(Ok(_))))
            });
        }
        let mut acked = Vec::new();
        while let Some(j) = set.join_next().await {
            if let Ok((k, true)) = j {
                acked.push(k);
            }
        }
        acked
    })
}

fn chaos(n: usize, seed: u64, rounds: usize) {
    let mut c = Cluster::new(n, seed);
    c.wait_leader(T).expect("first leader");
    let mut rng = SplitMix(seed);
    c.net.set_faults(Faults { drop: 0.05, duplicate: 0.05, max_delay: Duration::from_millis(4) });
    let mut acked = Vec::new();
    let mut down: Vec<usize> = Vec::new();
    let tolerate = (n - 1) / 2;
    for round in 0..rounds {
        match rng.below(4) {
            0 if down.len() < tolerate => {
                // Kill the leader half the time, else a random member.
                let run = c.running();
                let l = run.iter().copied().find(|i| c.replica(*i).is_leader());
                let v =
                    if rng.below(2) == 0 { l.unwrap_or(run[0]) } else { run[rng.below(run.len())] };
                c.kill(v);
                down.push(v);
            }
            1 if !down.is_empty() => {
                let v = down.remove(rng.below(down.len()));
                c.start(v);
            }
            2 => {
                // Cut one member off, write, then heal.
                let ids: Vec<u64> = c.slots.iter().map(|s| s.id).collect();
                let lone = ids[rng.below(n)];
                let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != lone).collect();
                c.net.partition(&[vec![lone], rest]);
            }
            _ => c.net.heal(),
        }
        let run = c.running();
        let via = run[rng.below(run.len())];
        acked.extend(write_batch(&c, via, round, 30));
    }
    c.net.heal();
    c.net.set_faults(Faults::default());
    for v in down.drain(..) {
        c.start(v);
    }
    let l = c.wait_leader(T).expect("leader at the end");
    // One more write so the final state is committed everywhere.
    c.put(l, "final", "v").unwrap();
    c.converge(T).expect("members converge");
    assert!(acked.len() > rounds * 5, "too few writes succeeded: {}", acked.len());
    let dump = c.sm(0).dump();
    for k in &acked {
        match dump.get(k.as_bytes()) {
            None => panic!("acknowledged write {k} lost"),
            Some((_, version)) => assert_eq!(*version, 1, "{k} applied more than once"),
        }
    }
    assert!(dump.values().all(|(_, v)| *v == 1), "some write applied twice");
    let h0 = c.sm(0).store().hash_kv(0).unwrap();
    for i in 1..n {
        assert_eq!(c.sm(i).dump(), dump, "member {i} differs");
        let h = c.sm(i).store().hash_kv(0).unwrap();
        assert_eq!((h.hash, h.revision), (h0.hash, h0.revision), "member {i} HashKV differs");
    }
    let sent: u64 = c
        .running()
        .iter()
        .map(|i| c.replica(*i).counters().snapshots_sent.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let held: u64 = c
        .running()
        .iter()
        .map(|i| c.replica(*i).counters().batches_held.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    eprintln!(
        "seed {seed}: {} acked writes, revision {}, leader changes {}, snapshots sent {sent}, \
         batches held {held}, net {:?}",
        acked.len(),
        h0.revision,
        c.running().iter().map(|i| c.replica(*i).status().leader_changes).max().unwrap_or(0),
        c.net.counts()
    );
}

#[test]
fn three_members_under_faults() {
    let seed = std::env::var("RUSTED_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(11);
    chaos(3, seed, 16);
}

#[test]
fn five_members_under_faults() {
    let seed = std::env::var("RUSTED_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(23);
    chaos(5, seed, 16);
}

#[test]
fn partitioned_minority_cannot_commit() {
    let c = Cluster::new(5, 5);
    let l = c.wait_leader(T).expect("leader");
    c.put(l, "before", "v").unwrap();
    let ids: Vec<u64> = c.slots.iter().map(|s| s.id).collect();
    let other = (l + 1) % 5;
    let minority = vec![ids[l], ids[other]];
    let majority: Vec<u64> = ids.iter().copied().filter(|i| !minority.contains(i)).collect();
    c.net.partition(&[minority, majority]);
    // The old leader cannot commit: check_quorum makes it step down, the write fails.
    let r = c.put(l, "minority", "v");
    assert!(r.is_err(), "a minority committed: {r:?}");
    // The majority elects a leader and commits.
    let maj: Vec<usize> = (0..5).filter(|i| *i != l && *i != other).collect();
    let mut ok = false;
    for _ in 0..50 {
        if let Some(m) = maj.iter().copied().find(|i| c.replica(*i).is_leader()) {
            ok = c.put(m, "majority", "v").is_ok();
            if ok {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "the majority side could not commit");
    c.net.heal();
    let l2 = c.wait_leader(T).expect("leader after heal");
    c.put(l2, "healed", "v").unwrap();
    c.converge(T).expect("converge");
    for i in 0..5 {
        let d = c.sm(i).dump();
        assert!(d.contains_key(b"majority".as_slice()));
        assert!(!d.contains_key(b"minority".as_slice()), "member {i} has the minority write");
    }
}

#[test]
fn leadership_moves_on_request() {
    let c = Cluster::new(3, 9);
    let l = c.wait_leader(T).expect("leader");
    let to = (l + 1) % 3;
    let target = c.slots[to].id;
    c.rt.block_on(c.replica(l).transfer_leader(target)).unwrap();
    assert_eq!(c.wait_leader(T), Some(to));
    c.put(to, "k", "v").unwrap();
    // A follower's linearizable read sees the write.
    let f = (to + 1) % 3;
    let idx = c.rt.block_on(c.replica(f).read_index()).unwrap();
    assert!(c.replica(f).applied() >= idx);
    assert!(c.sm(f).dump().contains_key(b"k".as_slice()));
    let _ = Arc::strong_count(c.replica(f));
}
