//! Property test against BTreeMap: random put / delete / commit / no-sync commit / rollback /
//! reopen over several buckets; after every commit the store equals the model, scans agree in
//! both directions, and the consistency check finds every page reachable or free exactly once.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

use std::collections::BTreeMap;

use proptest::prelude::*;
use rusted_engine::{Db, DbOptions};

const BUCKETS: [&[u8]; 3] = [b"key", b"meta", b"lease"];

#[derive(Debug, Clone)]
enum Op {
    Put { b: usize, k: u16, vlen: usize },
    Delete { b: usize, k: u16 },
    DeleteRange { b: usize, from: u16, n: u16 },
    Commit,
    CommitNoSync,
    Rollback,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0..3usize, 0..2000u16, prop_oneof![0..40usize, 0..600usize, 3000..9000usize])
            .prop_map(|(b, k, vlen)| Op::Put { b, k, vlen }),
        6 => (0..3usize, 0..2000u16).prop_map(|(b, k)| Op::Delete { b, k }),
        1 => (0..3usize, 0..2000u16, 0..300u16).prop_map(|(b, from, n)| Op::DeleteRange { b, from, n }),
        3 => Just(Op::Commit),
        2 => Just(Op::CommitNoSync),
        1 => Just(Op::Rollback),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u16) -> Vec<u8> {
    // Mixed lengths so page layouts vary.
    let mut v = format!("k{:05}", k).into_bytes();
    v.extend(std::iter::repeat_n(b'x', (k % 7) as usize * 5));
    v
}

fn val(k: u16, len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ (k as u8) ^ salt).collect()
}

type Model = Vec<BTreeMap<Vec<u8>, Vec<u8>>>;

fn verify(db: &Db, model: &Model) {
    let tx = db.begin_read().unwrap();
    for (bi, b) in BUCKETS.iter().enumerate() {
        let mut c = tx.cursor(b).unwrap();
        let mut got = Vec::new();
        let mut it = c.first().unwrap();
        while let Some((k, v)) = it {
            got.push((k.to_vec(), v.to_vec()));
            it = c.next().unwrap();
        }
        let want: Vec<_> = model[bi].iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(got.len(), want.len(), "bucket {bi} size");
        assert!(got == want, "bucket {bi} contents differ");
        // Backwards too.
        let mut back = Vec::new();
        let mut it = c.last().unwrap();
        while let Some((k, _)) = it {
            back.push(k.to_vec());
            it = c.prev().unwrap();
        }
        back.reverse();
        assert_eq!(back, want.iter().map(|e| e.0.clone()).collect::<Vec<_>>());
        // Point gets and seeks at a few keys.
        for k in (0..2000u16).step_by(97) {
            let kk = key(k);
            assert_eq!(tx.get(b, &kk).unwrap(), model[bi].get(&kk).map(|v| v.as_slice()));
            let s = c.seek(&kk).unwrap().map(|(k, _)| k.to_vec());
            assert_eq!(s, model[bi].range(kk.clone()..).next().map(|e| e.0.clone()));
        }
    }
    let report = db.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn run(ops: Vec<Op>, page_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = DbOptions { page_size, initial_mmap_size: 1 << 20, ..DbOptions::default() };
    {
        let db = Db::open(&path, opts.clone()).unwrap();
        let mut tx = db.begin_write().unwrap();
        for b in BUCKETS {
            tx.create_bucket(b).unwrap();
        }
        tx.commit().unwrap();
    }
    let mut committed: Model = vec![BTreeMap::new(); 3];
    // Each Reopen closes the store (dropping it syncs, so no-sync commits survive a clean
    // close) and opens it again.
    for session in ops.split(|o| matches!(o, Op::Reopen)) {
        let db = Db::open(&path, opts.clone()).unwrap();
        verify(&db, &committed);
        run_session(&db, session, &mut committed);
    }
    let db = Db::open(&path, opts).unwrap();
    verify(&db, &committed);
}

fn run_session(db: &Db, ops: &[Op], committed: &mut Model) {
    let mut pending = committed.clone();
    let mut tx = Some(db.begin_write().unwrap());
    let mut salt = 0u8;
    for op in ops {
        salt = salt.wrapping_add(1);
        match *op {
            Op::Put { b, k, vlen } => {
                let v = val(k, vlen, salt);
                tx.as_mut().unwrap().put(BUCKETS[b], &key(k), &v).unwrap();
                pending[b].insert(key(k), v);
            }
            Op::Delete { b, k } => {
                let found = tx.as_mut().unwrap().delete(BUCKETS[b], &key(k)).unwrap();
                assert_eq!(found, pending[b].remove(&key(k)).is_some());
            }
            Op::DeleteRange { b, from, n } => {
                for k in from..from.saturating_add(n) {
                    let found = tx.as_mut().unwrap().delete(BUCKETS[b], &key(k)).unwrap();
                    assert_eq!(found, pending[b].remove(&key(k)).is_some());
                }
            }
            Op::Commit | Op::CommitNoSync => {
                let t = tx.take().unwrap();
                if matches!(op, Op::Commit) {
                    t.commit().unwrap();
                } else {
                    t.commit_nosync().unwrap();
                }
                *committed = pending.clone();
                verify(db, committed);
                tx = Some(db.begin_write().unwrap());
            }
            Op::Rollback => {
                drop(tx.take());
                pending = committed.clone();
                tx = Some(db.begin_write().unwrap());
            }
            Op::Reopen => unreachable!("sessions are split at Reopen"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_btreemap(ops in prop::collection::vec(op(), 1..300), small in any::<bool>()) {
        run(ops, if small { 1024 } else { 4096 });
    }
}
