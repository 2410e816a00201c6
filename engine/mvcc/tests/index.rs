//! Model-based property test of the revision index: random puts, deletes, multi-change
//! transactions and compactions against a plain list of events per key. Every question asked
//! at a revision ≥ the compacted one gets the model's answer.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

use std::collections::BTreeMap;

use proptest::prelude::*;
use rusted_mvcc::key_index::Visible;
use rusted_mvcc::{IndexError, Revision, TreeIndex};

#[derive(Debug, Clone)]
enum Op {
    /// One transaction: (key, delete?) changes, each with its own sub revision.
    Txn(Vec<(u8, bool)>),
    Compact(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Each key at most once per transaction: etcd refuses a txn that touches a key twice
        // ("duplicate key given in txn request").
        8 => prop::collection::btree_map(0..6u8, prop::bool::weighted(0.3), 1..4)
            .prop_map(|m| Op::Txn(m.into_iter().collect())),
        1 => any::<u8>().prop_map(Op::Compact),
    ]
}

/// Per key: every change (revision, deletion?) in order.
type Model = BTreeMap<u8, Vec<(Revision, bool)>>;

fn model_get(events: &[(Revision, bool)], at: i64) -> Option<Visible> {
    let upto: Vec<_> = events.iter().filter(|(r, _)| r.main <= at).collect();
    let &&(modified, deleted) = upto.last()?;
    if deleted {
        return None;
    }
    // The generation started after the last deletion before `modified`.
    let start = upto.iter().rposition(|(_, d)| *d).map_or(0, |p| p + 1);
    let created = upto[start].0;
    let version = (upto.len() - start) as i64;
    Some(Visible { modified, created, version })
}

fn live(events: &[(Revision, bool)]) -> bool {
    events.last().is_some_and(|(_, d)| !d)
}

fn key(k: u8) -> Vec<u8> {
    vec![b'k', b'0' + k]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_event_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut t = TreeIndex::new();
        let mut m: Model = BTreeMap::new();
        let mut main = 1i64;
        let mut compacted = 0i64;
        for op in ops {
            match op {
                Op::Txn(changes) => {
                    main += 1;
                    let mut sub = 0;
                    for (k, del) in changes {
                        let rev = Revision::new(main, sub);
                        let ev = m.entry(k).or_default();
                        if del {
                            let r = t.tombstone(&key(k), rev);
                            if live(ev) {
                                prop_assert!(r.is_ok());
                                ev.push((rev, true));
                                sub += 1;
                            } else {
                                prop_assert_eq!(r, Err(IndexError::RevisionNotFound));
                            }
                        } else {
                            t.put(&key(k), rev).unwrap();
                            ev.push((rev, false));
                            sub += 1;
                        }
                    }
                }
                Op::Compact(x) => {
                    let at = (x as i64 % main.max(1)).max(compacted);
                    let av = t.compact(at);
                    compacted = at;
                    // What is kept: for each key, its last change at or before the cut, unless
                    // the key's generation ended (deleted) before the cut.
                    for (k, ev) in &m {
                        let last = ev.iter().rfind(|(r, _)| r.main <= at);
                        if let Some(&(r, del)) = last {
                            let deleted_before = del && r.main < at;
                            prop_assert_eq!(av.contains(&r), !deleted_before, "key {} rev {:?}", k, r);
                        }
                    }
                }
            }
            // Every question at or after the compacted revision.
            for at in compacted..=main + 1 {
                for k in 0..6u8 {
                    let want = m.get(&k).and_then(|ev| model_get(ev, at));
                    let got = t.get(&key(k), at).ok();
                    prop_assert_eq!(got, want, "key {} at {}", k, at);
                }
                let (rows, total) = t.range(b"k", &[0], at, 2);
                let live_at: Vec<u8> = (0..6u8).filter(|k| m.get(k).and_then(|ev| model_get(ev, at)).is_some()).collect();
                prop_assert_eq!(total, live_at.len());
                let got_keys: Vec<Vec<u8>> = rows.iter().map(|(k, _)| k.to_vec()).collect();
                let want_keys: Vec<Vec<u8>> = live_at.iter().take(2).map(|&k| key(k)).collect();
                prop_assert_eq!(got_keys, want_keys);
            }
            // A restart: rebuild from what the `key` bucket holds — the revisions compaction
            // kept plus everything after it — in revision order, each put with the create
            // revision and version its stored value carries.
            let mut stored: Vec<(Revision, u8, bool)> = Vec::new();
            // (Compacting again at the same revision changes nothing and names what was kept.)
            let last_compact_kept = t.clone().compact(compacted);
            for (k, ev) in &m {
                for &(r, del) in ev {
                    if r.main > compacted || last_compact_kept.contains(&r) {
                        stored.push((r, *k, del));
                    }
                }
            }
            stored.sort();
            let mut rebuilt = TreeIndex::new();
            for (r, k, del) in stored {
                let (created, version) = if del {
                    (Revision::default(), 0)
                } else {
                    let v = model_get(&m[&k], r.main).unwrap();
                    (v.created, v.version)
                };
                rebuilt.restore(&key(k), r, del, created, version).unwrap();
            }
            for at in compacted..=main + 1 {
                for k in 0..6u8 {
                    prop_assert_eq!(rebuilt.get(&key(k), at).ok(), t.get(&key(k), at).ok(), "rebuilt: key {} at {}", k, at);
                }
            }
            // What a watcher from any revision after the compaction replays.
            for from in compacted + 1..=main + 1 {
                let got: Vec<(Revision, Vec<u8>)> =
                    t.range_since(b"k", &[0], from).into_iter().map(|(r, k)| (r, k.to_vec())).collect();
                let mut want: Vec<(Revision, Vec<u8>)> = Vec::new();
                for (k, ev) in &m {
                    let mut per_key: Vec<Revision> = Vec::new();
                    for &(r, _) in ev.iter().filter(|(r, _)| r.main >= from) {
                        match per_key.last_mut() {
                            Some(l) if l.main == r.main => *l = r,
                            _ => per_key.push(r),
                        }
                    }
                    want.extend(per_key.into_iter().map(|r| (r, key(*k))));
                }
                want.sort();
                prop_assert_eq!(got, want, "since {}", from);
            }
        }
    }
}
