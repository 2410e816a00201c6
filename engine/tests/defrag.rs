//! Online defrag against a model: edits committed before, during (from the copy's observer,
//! which would deadlock if defrag held the writer lock) and after a defrag — puts, deletes,
//! bucket creation and deletion, sequences, user fields, rolled-back transactions — leave the
//! store equal to a BTreeMap model, consistent, and smaller.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use rusted_engine::{Db, DbOptions, DefragObserver, WriteTx};

type Model = BTreeMap<Vec<u8>, (u64, BTreeMap<Vec<u8>, Vec<u8>>)>;

#[derive(Debug, Clone)]
enum Edit {
    Put { b: u8, k: u16, vlen: usize },
    Delete { b: u8, k: u16 },
    CreateBucket(u8),
    DeleteBucket(u8),
    NextSequence(u8),
    User(u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        30 => (0..4u8, 0..3000u16, prop_oneof![0..50usize, 0..700usize, 3000..6000usize])
            .prop_map(|(b, k, vlen)| Edit::Put { b, k, vlen }),
        10 => (0..4u8, 0..3000u16).prop_map(|(b, k)| Edit::Delete { b, k }),
        1 => (0..4u8).prop_map(Edit::CreateBucket),
        1 => (0..4u8).prop_map(Edit::DeleteBucket),
        2 => (0..4u8).prop_map(Edit::NextSequence),
        1 => any::<u64>().prop_map(Edit::User),
    ]
}

fn bucket(b: u8) -> Vec<u8> {
    format!("bucket{b}").into_bytes()
}

fn key(k: u16) -> Vec<u8> {
    format!("k{k:05}").into_bytes()
}

/// Applies `edits` as one transaction to the store and, when `commit`, to the model.
fn apply(db: &Db, model: &mut Model, user: &mut [u64; 2], edits: &[Edit], commit: bool) {
    let mut m = model.clone();
    let mut u = *user;
    let mut tx: WriteTx<'_> = db.begin_write().unwrap();
    for e in edits {
        match e {
            Edit::Put { b, k, vlen } => {
                let (name, v) = (bucket(*b), vec![(*k as u8) ^ (*vlen as u8); *vlen]);
                if let Some((_, kv)) = m.get_mut(&name) {
                    tx.put(&name, &key(*k), &v).unwrap();
                    kv.insert(key(*k), v);
                }
            }
            Edit::Delete { b, k } => {
                if let Some((_, kv)) = m.get_mut(&bucket(*b)) {
                    let found = tx.delete(&bucket(*b), &key(*k)).unwrap();
                    assert_eq!(found, kv.remove(&key(*k)).is_some());
                }
            }
            Edit::CreateBucket(b) => {
                if let std::collections::btree_map::Entry::Vacant(e) = m.entry(bucket(*b)) {
                    tx.create_bucket(&bucket(*b)).unwrap();
                    e.insert((0, BTreeMap::new()));
                }
            }
            Edit::DeleteBucket(b) => {
                if m.remove(&bucket(*b)).is_some() {
                    tx.delete_bucket(&bucket(*b)).unwrap();
                }
            }
            Edit::NextSequence(b) => {
                if let Some((seq, _)) = m.get_mut(&bucket(*b)) {
                    *seq += 1;
                    assert_eq!(tx.next_sequence(&bucket(*b)).unwrap(), *seq);
                }
            }
            Edit::User(x) => {
                u = [*x, x.rotate_left(7)];
                tx.set_user(u);
            }
        }
    }
    if commit {
        tx.commit_nosync().unwrap();
        *model = m;
        *user = u;
    }
}

fn assert_matches(db: &Db, model: &Model, user: [u64; 2]) {
    let tx = db.begin_read().unwrap();
    assert_eq!(tx.user(), user);
    let names: Vec<Vec<u8>> = model.keys().cloned().collect();
    assert_eq!(tx.buckets().unwrap(), names);
    for (name, (seq, kv)) in model {
        assert_eq!(tx.sequence(name).unwrap(), *seq, "sequence of {name:?}");
        let mut got = BTreeMap::new();
        tx.scan(name, b"", b"", |k, v| {
            got.insert(k.to_vec(), v.to_vec());
            true
        })
        .unwrap();
        assert!(&got == kv, "bucket {:?} differs from the model", String::from_utf8_lossy(name));
    }
    drop(tx);
    let report = db.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Transactions the observer commits during the copy: (edits, commit or roll back).
type During = Arc<Mutex<Vec<(Vec<Edit>, bool)>>>;

fn run(
    before: Vec<Vec<Edit>>,
    during: Vec<(Vec<Edit>, bool)>,
    after: Vec<Vec<Edit>>,
    limit: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let model = Arc::new(Mutex::new((Model::new(), [0u64; 2])));
    let queued: During = Arc::new(Mutex::new(during));
    let observer = {
        let (model, queued) = (model.clone(), queued.clone());
        DefragObserver(Some(Arc::new(move |db: &Db| {
            let mut g = model.lock().unwrap();
            let (m, u) = &mut *g;
            for (edits, commit) in queued.lock().unwrap().drain(..) {
                apply(db, m, u, &edits, commit);
            }
        })))
    };
    let opts = DbOptions {
        initial_mmap_size: 1 << 20,
        defrag_delta_limit: limit,
        on_defrag_copied: observer,
        ..DbOptions::default()
    };
    let db = Db::open(&path, opts.clone()).unwrap();
    {
        let mut g = model.lock().unwrap();
        let (m, u) = &mut *g;
        for b in 0..3u8 {
            apply(&db, m, u, &[Edit::CreateBucket(b)], true);
        }
        for edits in &before {
            apply(&db, m, u, edits, true);
        }
    }
    db.sync().unwrap();
    let r = db.defrag().unwrap();
    assert!(queued.lock().unwrap().is_empty(), "the observer ran");
    let g = model.lock().unwrap();
    let (mut m, mut u) = g.clone();
    drop(g);
    assert_matches(&db, &m, u);
    for edits in &after {
        apply(&db, &mut m, &mut u, edits, true);
    }
    db.sync().unwrap();
    assert_matches(&db, &m, u);
    drop(db);
    let db = Db::open(&path, opts).unwrap();
    assert_matches(&db, &m, u);
    assert!(!dir.path().join("db.defrag-tmp").exists());
    let _ = r;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn defrag_with_writes_during_the_copy_matches_the_model(
        before in prop::collection::vec(prop::collection::vec(edit(), 1..60), 0..30),
        during in prop::collection::vec((prop::collection::vec(edit(), 1..60), prop::bool::weighted(0.85)), 0..30),
        after in prop::collection::vec(prop::collection::vec(edit(), 1..40), 0..5),
        tiny_limit in prop::bool::weighted(0.2),
    ) {
        run(before, during, after, if tiny_limit { 4096 } else { 512 << 20 });
    }
}

/// Enough writes during the copy for several catch-up rounds, then the report says so.
#[test]
fn a_large_delta_is_replayed_and_reported() {
    let many: Vec<(Vec<Edit>, bool)> = (0..300u16)
        .map(|i| ((0..40u16).map(|j| Edit::Put { b: 1, k: i * 7 + j, vlen: 100 }).collect(), true))
        .collect();
    run(vec![vec![Edit::Put { b: 0, k: 1, vlen: 10 }]], many, vec![], 512 << 20);
}

#[test]
fn the_report_counts_replayed_edits_and_a_stop_the_world_fallback() {
    for (limit, stopped) in [(512 << 20, false), (1024, true)] {
        let dir = tempfile::tempdir().unwrap();
        let observer = DefragObserver(Some(Arc::new(|db: &Db| {
            let mut tx = db.begin_write().unwrap();
            for i in 0..100u32 {
                tx.put(b"b", &i.to_be_bytes(), &[7u8; 64]).unwrap();
            }
            tx.commit().unwrap();
        })));
        let opts = DbOptions {
            defrag_delta_limit: limit,
            on_defrag_copied: observer,
            initial_mmap_size: 1 << 20,
            ..DbOptions::default()
        };
        let db = Db::open(dir.path().join("db"), opts).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.create_bucket(b"b").unwrap();
        for i in 0..20_000u32 {
            tx.put(b"b", &i.to_be_bytes(), &[1u8; 100]).unwrap();
        }
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        for i in 1000..20_000u32 {
            tx.delete(b"b", &i.to_be_bytes()).unwrap();
        }
        tx.commit().unwrap();
        let r = db.defrag().unwrap();
        assert_eq!(r.stopped_the_world, stopped, "{r:?}");
        assert_eq!(r.replayed, if stopped { 0 } else { 100 }, "{r:?}");
        assert!(r.after < r.before, "{r:?}");
        let tx = db.begin_read().unwrap();
        assert_eq!(tx.get(b"b", &5u32.to_be_bytes()).unwrap(), Some(&[7u8; 64][..]));
        assert_eq!(tx.get(b"b", &500u32.to_be_bytes()).unwrap(), Some(&[1u8; 100][..]));
        assert_eq!(tx.get(b"b", &5000u32.to_be_bytes()).unwrap(), None);
    }
}
