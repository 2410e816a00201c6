//! Crash and replay: a child process applies a deterministic stream of log entries (puts,
//! deletes, txns, compactions, lease grants and revokes) and is SIGKILLed at random moments.
//! After each kill the store reopens at some applied index; replaying the entries after it
//! (as the WAL would) must give exactly the state of a store that never crashed: equal
//! current revision and HashKV.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use rusted_mvcc::request::*;
use rusted_mvcc::{Applied, Store, StoreOptions};

const CHILD_ENV: &str = "RUSTED_MVCC_CRASH_CHILD";

fn opts() -> StoreOptions {
    StoreOptions {
        batch_interval: Duration::from_millis(3),
        batch_limit: 50,
        sync_every_flushes: 3,
        compaction_batch_limit: 20,
        compaction_sleep: Duration::from_millis(1),
        db: rusted_engine::DbOptions { initial_mmap_size: 1 << 24, ..Default::default() },
        ..StoreOptions::default()
    }
}

fn rng(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Applies log entry `i` (refusals are outcomes too, as in etcd).
fn apply(store: &Store, i: u64) {
    let at = Applied { index: i, term: 1 };
    let x = rng(i);
    let key = |n: u64| format!("k{:03}", n % 300).into_bytes();
    let r = match x % 20 {
        0 => store
            .delete_range(
                at,
                &DeleteRangeRequest {
                    key: key(x >> 8),
                    range_end: key((x >> 8) + 5),
                    prev_kv: false,
                },
            )
            .map(|_| ()),
        1 => store
            .txn(
                at,
                &TxnRequest {
                    compare: vec![Compare {
                        key: key(x >> 8),
                        target: CompareTarget::Version(0),
                        result: CompareResult::Greater,
                        range_end: vec![],
                    }],
                    success: vec![RequestOp::Put(PutRequest {
                        key: key(x >> 9),
                        value: vec![1; 10],
                        ..Default::default()
                    })],
                    failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                        key: key(x >> 10),
                        ..Default::default()
                    })],
                },
            )
            .map(|_| ()),
        2 if i % 7 == 0 => {
            let rev = store.current_revision() - 40;
            store.compact(at, rev).map(|_| ())
        }
        3 => store.lease_grant(at, (x >> 8) as i64 % 5 + 1, 600).map(|_| ()),
        4 => store.lease_revoke(at, (x >> 8) as i64 % 5 + 1).map(|_| ()),
        _ => {
            let lease = if x % 9 == 0 { (x >> 8) as i64 % 5 + 1 } else { 0 };
            store
                .put(
                    at,
                    &PutRequest {
                        key: key(x >> 8),
                        value: vec![(x >> 3) as u8; (x % 300) as usize],
                        lease,
                        ..Default::default()
                    },
                )
                .map(|_| ())
        }
    };
    if let Err(e) = r {
        // Refusals are fine (lease missing, compaction too old, ...); failures are not.
        assert!(
            !matches!(e, rusted_mvcc::MvccError::Engine(_) | rusted_mvcc::MvccError::Corrupt(_)),
            "entry {i}: {e}"
        );
    }
}

#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let store = Store::open(&path, opts()).unwrap();
    let mut i = store.applied().index;
    loop {
        i += 1;
        apply(&store, i);
    }
}

#[test]
fn killed_stores_replay_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash");
    let exe = std::env::current_exe().unwrap();
    let mut applied = Vec::new();
    for round in 0..8u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng(round) % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        let store = Store::open(&path, opts()).unwrap();
        applied.push(store.applied().index);
        store.close().unwrap();
    }
    eprintln!("applied index after each kill: {applied:?}");
    assert!(applied.windows(2).all(|w| w[0] <= w[1]), "applied index never goes back: {applied:?}");
    assert!(*applied.last().unwrap() > 0, "the child made progress: {applied:?}");

    // Replay the tail after the last reopen, and compare with a store that never crashed.
    let store = Store::open(&path, opts()).unwrap();
    let from = store.applied().index;
    let upto = from + 300;
    for i in from + 1..=upto {
        apply(&store, i);
    }
    let reference = Store::open(dir.path().join("reference"), opts()).unwrap();
    for i in 1..=upto {
        apply(&reference, i);
    }
    assert_eq!(store.current_revision(), reference.current_revision());
    assert_eq!(store.compact_revision(), reference.compact_revision());
    assert_eq!(
        store.hash_kv(0).unwrap(),
        reference.hash_kv(0).unwrap(),
        "applied indexes {applied:?}"
    );
    let sorted = |mut v: Vec<i64>| {
        v.sort_unstable();
        v
    };
    assert_eq!(sorted(store.leases()), sorted(reference.leases()));
}
