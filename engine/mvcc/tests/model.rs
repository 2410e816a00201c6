//! Model test of the MVCC store: random puts, deletes, txns, compactions, ranges and restarts
//! against a plain model of etcd's semantics (the whole key space stored per revision), written
//! for this test. Every range result, revision, count and error must agree.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use rusted_mvcc::request::*;
use rusted_mvcc::{Applied, KeyValue, MvccError, Store, StoreOptions};

type Space = BTreeMap<Vec<u8>, KeyValue>;

/// etcd's semantics, the simple way: a full copy of the key space at every revision.
struct Model {
    states: BTreeMap<i64, Space>,
    rev: i64,
    compact: i64,
}

fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == key,
        [0] => k >= key,
        e => k >= key && k < e,
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Range(RangeResponse),
    Put(PutResponse),
    Delete(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(i64),
    Err(String),
}

fn err(e: MvccError) -> Outcome {
    Outcome::Err(e.to_string())
}

impl Model {
    fn new() -> Self {
        Model { states: BTreeMap::from([(1, Space::new())]), rev: 1, compact: -1 }
    }

    fn now(&self) -> &Space {
        &self.states[&self.rev]
    }

    fn at(&self, rev: i64) -> &Space {
        self.states.range(..=rev).next_back().unwrap().1
    }

    fn range_in(space: &Space, req: &RangeRequest, header: i64) -> RangeResponse {
        let all: Vec<KeyValue> = space
            .iter()
            .filter(|(k, _)| in_range(k, &req.key, &req.range_end))
            .map(|(_, v)| v.clone())
            .collect();
        let count = all.len() as i64;
        let mut kvs = all;
        // etcd: without sort or filters, only limit+1 keys are fetched (in key order)
        let fetch_all = req.sort_order != SortOrder::None;
        if !fetch_all && req.limit > 0 {
            kvs.truncate(req.limit as usize + 1);
        }
        // Sorts are stable here: ties keep key order.
        match (req.sort_target, req.sort_order) {
            (SortTarget::Version, SortOrder::Descend) => {
                kvs.sort_by_key(|kv| std::cmp::Reverse(kv.version))
            }
            (SortTarget::Version, _) => kvs.sort_by_key(|kv| kv.version),
            (SortTarget::Key, SortOrder::Descend) => kvs.reverse(),
            _ => {}
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.count_only {
            kvs.clear();
            more = false;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        RangeResponse { revision: header, kvs, more, count }
    }

    fn range(&self, req: &RangeRequest) -> Outcome {
        if req.revision > self.rev {
            return err(MvccError::FutureRevision);
        }
        let at = if req.revision <= 0 { self.rev } else { req.revision };
        if at < self.compact {
            return err(MvccError::Compacted { compact_revision: self.compact });
        }
        Outcome::Range(Self::range_in(self.at(at), req, self.rev))
    }

    /// Applies branch ops to `space` at revision `rev`; returns responses and whether anything
    /// changed.
    fn run_ops(
        &self,
        space: &mut Space,
        ops: &[RequestOp],
        begin: i64,
        changed: &mut bool,
    ) -> Vec<ResponseOp> {
        let rev = begin + 1;
        let mut out = Vec::new();
        for op in ops {
            let view = if *changed { rev } else { begin };
            out.push(match op {
                RequestOp::Range(r) if r.revision > 0 => {
                    ResponseOp::Range(Self::range_in(self.at(r.revision), r, view))
                }
                RequestOp::Range(r) => ResponseOp::Range(Self::range_in(space, r, view)),
                RequestOp::Put(p) => {
                    let prev = space.get(&p.key).cloned();
                    let kv = KeyValue {
                        key: p.key.clone(),
                        create_revision: prev.as_ref().map_or(rev, |x| x.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |x| x.version + 1),
                        value: p.value.clone(),
                        lease: 0,
                    };
                    space.insert(p.key.clone(), kv);
                    *changed = true;
                    ResponseOp::Put(PutResponse {
                        revision: rev,
                        prev_kv: if p.prev_kv { prev } else { None },
                    })
                }
                RequestOp::DeleteRange(d) => {
                    let keys: Vec<Vec<u8>> = space
                        .keys()
                        .filter(|k| in_range(k, &d.key, &d.range_end))
                        .cloned()
                        .collect();
                    let mut prev_kvs = Vec::new();
                    for k in &keys {
                        let p = space.remove(k).unwrap();
                        if d.prev_kv {
                            prev_kvs.push(p);
                        }
                    }
                    if !keys.is_empty() {
                        *changed = true;
                    }
                    ResponseOp::DeleteRange(DeleteRangeResponse {
                        revision: if *changed { rev } else { begin },
                        deleted: keys.len() as i64,
                        prev_kvs,
                    })
                }
                RequestOp::Txn(_) => unreachable!("no nested txns in this model"),
            });
        }
        out
    }

    fn commit(&mut self, space: Space, changed: bool) {
        if changed {
            self.rev += 1;
            self.states.insert(self.rev, space);
        }
    }

    fn txn(&mut self, t: &TxnRequest) -> Outcome {
        for ops in [&t.success, &t.failure] {
            let mut puts: Vec<&Vec<u8>> = Vec::new();
            for op in ops.iter() {
                if let RequestOp::Put(p) = op {
                    if puts.contains(&&p.key) {
                        return err(MvccError::DuplicateKey);
                    }
                    puts.push(&p.key);
                }
            }
            for op in ops.iter() {
                if let RequestOp::DeleteRange(d) = op {
                    if puts.iter().any(|k| in_range(k, &d.key, &d.range_end)) {
                        return err(MvccError::DuplicateKey);
                    }
                }
            }
        }
        let space = self.now();
        let ok = t.compare.iter().all(|c| {
            let kvs: Vec<&KeyValue> = space
                .iter()
                .filter(|(k, _)| in_range(k, &c.key, &c.range_end))
                .map(|(_, v)| v)
                .collect();
            if kvs.is_empty() {
                !matches!(c.target, CompareTarget::Value(_)) && c.holds(&KeyValue::default())
            } else {
                kvs.iter().all(|kv| c.holds(kv))
            }
        });
        let ops = if ok { &t.success } else { &t.failure };
        for op in ops {
            if let RequestOp::Range(r) = op {
                if r.revision > self.rev {
                    return err(MvccError::FutureRevision);
                }
                if r.revision != 0 && r.revision < self.compact {
                    return err(MvccError::Compacted { compact_revision: self.compact });
                }
            }
        }
        let mut space = space.clone();
        let mut changed = false;
        let responses = self.run_ops(&mut space, ops, self.rev, &mut changed);
        let begin = self.rev;
        self.commit(space, changed);
        Outcome::Txn(TxnResponse {
            revision: if changed { begin + 1 } else { begin },
            succeeded: ok,
            responses,
        })
    }

    /// A lone put or delete: a txn of that one op, answered as the op.
    fn single(&mut self, op: RequestOp) -> Outcome {
        match self.txn(&TxnRequest { compare: vec![], success: vec![op], failure: vec![] }) {
            Outcome::Txn(mut t) => match t.responses.pop() {
                Some(ResponseOp::Put(r)) => Outcome::Put(r),
                Some(ResponseOp::DeleteRange(r)) => Outcome::Delete(r),
                other => panic!("{other:?}"),
            },
            o => o,
        }
    }

    fn compact(&mut self, rev: i64) -> Outcome {
        if rev <= self.compact {
            return err(MvccError::Compacted { compact_revision: self.compact });
        }
        if rev > self.rev {
            return err(MvccError::FutureRevision);
        }
        self.compact = rev;
        Outcome::Compact(self.rev)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Range(RangeRequest),
    Compact(i64),
    Reopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (b'a'..b'f').prop_map(|c| vec![c]),
        (b'a'..b'f', b'a'..b'c').prop_map(|(a, b)| vec![a, b]),
    ]
}

fn end_for() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(vec![]), Just(vec![0]), key()]
}

fn put() -> impl Strategy<Value = PutRequest> {
    (key(), proptest::collection::vec(any::<u8>(), 0..3), any::<bool>())
        .prop_map(|(key, value, prev_kv)| PutRequest { key, value, prev_kv, ..Default::default() })
}

fn del() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), end_for(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn range(max_rev: i64) -> impl Strategy<Value = RangeRequest> {
    (key(), end_for(), 0i64..4, -1..max_rev, any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        |(key, range_end, limit, revision, count_only, keys_only, sort)| RangeRequest {
            key,
            range_end,
            limit,
            revision,
            count_only,
            keys_only,
            sort_order: match sort {
                0 => SortOrder::None,
                1 => SortOrder::Ascend,
                _ => SortOrder::Descend,
            },
            sort_target: if sort == 0 { SortTarget::Key } else { SortTarget::Version },
            ..Default::default()
        },
    )
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        (0i64..3).prop_map(CompareTarget::Version),
        (0i64..20).prop_map(CompareTarget::Mod),
        (0i64..20).prop_map(CompareTarget::Create),
        proptest::collection::vec(any::<u8>(), 0..2).prop_map(CompareTarget::Value),
    ];
    let result = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::NotEqual),
        Just(CompareResult::Greater),
        Just(CompareResult::Less)
    ];
    (result, target, key(), prop_oneof![Just(vec![]), key()])
        .prop_map(|(result, target, key, range_end)| Compare { result, target, key, range_end })
}

fn branch() -> impl Strategy<Value = Vec<RequestOp>> {
    proptest::collection::vec(
        prop_oneof![
            put().prop_map(RequestOp::Put),
            del().prop_map(RequestOp::DeleteRange),
            range(20).prop_map(RequestOp::Range),
        ],
        0..4,
    )
}

/// A branch of ranges only (a read-only txn's).
fn read_branch() -> impl Strategy<Value = Vec<RequestOp>> {
    proptest::collection::vec(range(20).prop_map(RequestOp::Range), 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => put().prop_map(Op::Put),
        2 => del().prop_map(Op::Delete),
        3 => (proptest::collection::vec(compare(), 0..3), branch(), branch())
            .prop_map(|(compare, success, failure)| Op::Txn(TxnRequest { compare, success, failure })),
        2 => (proptest::collection::vec(compare(), 0..3), read_branch(), read_branch())
            .prop_map(|(compare, success, failure)| Op::Txn(TxnRequest { compare, success, failure })),
        4 => range(40).prop_map(Op::Range),
        1 => (0i64..40).prop_map(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn outcome<T>(r: Result<T, MvccError>, f: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(x) => f(x),
        Err(e) => err(e),
    }
}

fn opts() -> StoreOptions {
    StoreOptions { batch_limit: 7, ..StoreOptions::default() }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut store = Store::open(&path, opts()).unwrap();
    let mut m = Model::new();
    let mut index = 0u64;
    for (i, op) in ops.into_iter().enumerate() {
        index += 1;
        let at = Applied { index, term: 1 };
        let (got, want) = match &op {
            Op::Put(p) => {
                (outcome(store.put(at, p), Outcome::Put), m.single(RequestOp::Put(p.clone())))
            }
            Op::Delete(d) => (
                outcome(store.delete_range(at, d), Outcome::Delete),
                m.single(RequestOp::DeleteRange(d.clone())),
            ),
            Op::Txn(t) => {
                // A read-only txn answers the same from the lock-free read path.
                let read = (!t.has_writes()).then(|| outcome(store.txn_read(t), Outcome::Txn));
                let want = m.txn(t);
                if let Some(read) = read {
                    assert_eq!(read, want, "op {i}: txn_read of {op:?}");
                }
                (outcome(store.txn(at, t), Outcome::Txn), want)
            }
            Op::Range(r) => {
                index -= 1;
                (outcome(store.range(r), Outcome::Range), m.range(r))
            }
            Op::Compact(rev) => {
                (outcome(store.compact(at, *rev), Outcome::Compact), m.compact(*rev))
            }
            Op::Reopen => {
                index -= 1;
                store.close().unwrap();
                drop(store);
                store = Store::open(&path, opts()).unwrap();
                assert_eq!(store.applied().index, index, "applied index survives a restart");
                (Outcome::Compact(store.current_revision()), Outcome::Compact(m.rev))
            }
        };
        assert_eq!(got, want, "op {i}: {op:?}");
        assert_eq!(store.current_revision(), m.rev);
    }
    // Every revision that is still readable reads as the model's.
    for rev in m.compact.max(1)..=m.rev {
        let req =
            RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..Default::default() };
        assert_eq!(
            outcome(store.range(&req), Outcome::Range),
            m.range(&req),
            "full range at {rev}"
        );
    }
    // HashKV does not depend on how far physical compaction got.
    let before = store.hash_kv(0).unwrap();
    assert!(store.wait_compacted(m.compact, std::time::Duration::from_secs(30)));
    assert_eq!(store.hash_kv(0).unwrap(), before);
    for rev in m.compact.max(1)..=m.rev {
        let req =
            RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..Default::default() };
        assert_eq!(
            outcome(store.range(&req), Outcome::Range),
            m.range(&req),
            "after compaction, at {rev}"
        );
    }
    store.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
