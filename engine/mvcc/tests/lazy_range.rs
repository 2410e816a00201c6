//! A lazy range reads exactly what the whole range reads: after random puts, deletions,
//! flushes and compactions, every range request (keys, limit, keys_only, revision, sort and
//! filters, count_only) gives the same key-values, count, more and revision from
//! `Store::range_lazy` as from `Store::range`, and the shapes that must be read whole are.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

use proptest::prelude::*;
use rusted_mvcc::request::{
    DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, SortOrder, SortTarget,
};
use rusted_mvcc::{Applied, RangeOut, Store, StoreOptions};

#[derive(Debug, Clone)]
enum Op {
    Put(u16, usize),
    Delete(u16, u16),
    Flush,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0..400u16, 0..200usize).prop_map(|(k, n)| Op::Put(k, n)),
        3 => (0..400u16, 1..40u16).prop_map(|(k, n)| Op::Delete(k, n)),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
    ]
}

fn key(k: u16) -> Vec<u8> {
    format!("k{k:03}").into_bytes()
}

fn req() -> impl Strategy<Value = RangeRequest> {
    (
        (0..400u16, prop_oneof![Just(None), (1..400u16).prop_map(Some), Just(Some(u16::MAX))]),
        prop_oneof![Just(0i64), 1..300i64],
        any::<bool>(),
        prop_oneof![4 => Just(0i64), 1 => 1..40i64],
        prop_oneof![8 => Just(0u8), 1 => 1..5u8],
    )
        .prop_map(|((from, to), limit, keys_only, revision, shape)| {
            let range_end = match to {
                None => Vec::new(),
                Some(u16::MAX) => vec![0],
                Some(n) => key(from.saturating_add(n)),
            };
            let mut r = RangeRequest {
                key: key(from),
                range_end,
                limit,
                keys_only,
                revision,
                ..Default::default()
            };
            match shape {
                1 => r.sort_order = SortOrder::Descend,
                4 => r.sort_order = SortOrder::Ascend,
                2 => r.min_mod_revision = 3,
                3 => r.count_only = true,
                _ => {}
            }
            if shape == 1 {
                r.sort_target = SortTarget::Mod;
            }
            r
        })
}

fn materialize(out: RangeOut) -> (RangeResponse, bool) {
    match out {
        RangeOut::Full(r) => (r, false),
        RangeOut::Lazy(l) => {
            let mut kvs = Vec::new();
            let mut pos = rusted_mvcc::lazy_range::Position::default();
            // Small steps: every reading resumes from the last key given.
            let mut step = 0;
            loop {
                step += 1;
                let mut n = 0;
                let got = l
                    .next(&mut pos, |kv| {
                        kvs.push(kv.to_key_value());
                        n += 1;
                        n < 1 + step % 5
                    })
                    .unwrap();
                if got == 0 {
                    break;
                }
            }
            assert_eq!(kvs.len(), l.len());
            (RangeResponse { revision: l.revision, kvs, more: l.more, count: l.count }, true)
        }
    }
}

fn next_index(index: &mut u64) -> Applied {
    *index += 1;
    Applied { index: *index, term: 1 }
}

fn run(ops: Vec<Op>, reqs: Vec<(RangeRequest, usize)>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
    let mut index = 0;
    let mut at = || next_index(&mut index);
    for op in ops {
        match op {
            Op::Put(k, n) => {
                let put = PutRequest { key: key(k), value: vec![b'v'; n], ..Default::default() };
                s.put(at(), &put).unwrap();
            }
            Op::Delete(k, n) => {
                let del =
                    DeleteRangeRequest { key: key(k), range_end: key(k + n), ..Default::default() };
                s.delete_range(at(), &del).unwrap();
            }
            Op::Flush => s.flush().unwrap(),
            Op::Compact => {
                let rev = s.current_revision() / 2;
                if rev > s.compact_revision() {
                    s.compact(at(), rev).unwrap();
                }
            }
        }
    }
    for (r, min_keys) in reqs {
        let whole = s.range(&r);
        let lazy = s.range_lazy(&r, min_keys);
        match (whole, lazy) {
            (Ok(whole), Ok(lazy)) => {
                let (got, was_lazy) = materialize(lazy);
                assert_eq!(got, whole, "{r:?}");
                let key_order = r.sort_order == SortOrder::None
                    || (r.sort_order == SortOrder::Ascend && r.sort_target == SortTarget::Key);
                let plain = key_order
                    && r.sort_target == SortTarget::Key
                    && r.min_mod_revision == 0
                    && !r.count_only;
                if was_lazy {
                    assert!(plain && whole.kvs.len() >= min_keys, "{r:?} should be read whole");
                } else {
                    assert!(!plain || whole.kvs.len() < min_keys, "{r:?} should be lazy");
                }
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("{r:?}: range {a:?}, lazy {b:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn lazy_ranges_read_what_whole_ranges_read(
        ops in prop::collection::vec(op(), 1..400),
        reqs in prop::collection::vec((req(), prop_oneof![Just(0usize), 1..50usize]), 1..30),
    ) {
        run(ops, reqs);
    }
}

#[test]
fn a_compaction_past_the_answers_revision_fails_the_reading() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
    let mut index = 0;
    let mut at = || next_index(&mut index);
    for k in 0..300u16 {
        s.put(at(), &PutRequest { key: key(k), value: b"v".to_vec(), ..Default::default() })
            .unwrap();
    }
    let all = RangeRequest { key: key(0), range_end: vec![0], ..Default::default() };
    let RangeOut::Lazy(l) = s.range_lazy(&all, 1).unwrap() else { panic!("not lazy") };
    let mut pos = rusted_mvcc::lazy_range::Position::default();
    let mut n = 0;
    l.next(&mut pos, |_| {
        n += 1;
        n < 10
    })
    .unwrap();
    // A compaction up to the answer's revision keeps what it shows; one past it does not.
    s.compact(at(), l.revision).unwrap();
    l.next(&mut pos, |_| {
        n += 1;
        n < 20
    })
    .unwrap();
    s.put(at(), &PutRequest { key: key(5), value: b"w".to_vec(), ..Default::default() }).unwrap();
    s.compact(at(), l.revision + 1).unwrap();
    let e = l.next(&mut pos, |_| true).unwrap_err();
    assert!(matches!(e, rusted_mvcc::MvccError::Compacted { .. }), "{e:?}");
}
