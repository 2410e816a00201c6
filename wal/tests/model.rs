//! Property test against a Vec model: random append / conflict / truncate-suffix /
//! release-prefix / snapshot / hard-state / reopen sequences.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing
mod common;

use common::*;
use proptest::prelude::*;
use rusted_wal::{Entry, HardState, IoMode, Record, Wal};

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` entries after the last, in one or several appends.
    Append {
        n: u64,
        split: bool,
        size: usize,
    },
    /// Rewrite from `back` entries before the end with a new term (raft conflict).
    Conflict {
        back: u64,
        n: u64,
    },
    TruncateSuffix {
        back: u64,
    },
    ReleasePrefix {
        frac: u8,
    },
    /// A marker `ahead` past the last entry (negative: inside the live entries).
    Snapshot {
        ahead: i64,
    },
    HardState {
        commit: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..40, any::<bool>(), 0usize..300).prop_map(|(n, split, size)| Op::Append { n, split, size }),
        2 => (0u64..10, 1u64..5).prop_map(|(back, n)| Op::Conflict { back, n }),
        1 => (0u64..10).prop_map(|back| Op::TruncateSuffix { back }),
        1 => any::<u8>().prop_map(|frac| Op::ReleasePrefix { frac }),
        2 => (-8i64..3).prop_map(|ahead| Op::Snapshot { ahead }),
        1 => any::<u64>().prop_map(|commit| Op::HardState { commit }),
        1 => Just(Op::Reopen),
    ]
}

/// The model: live entries from `first`, and the latest hard state.
#[derive(Debug, Default)]
struct Model {
    first: u64,
    entries: Vec<Entry>,
    hard: Option<HardState>,
    term: u64,
}

impl Model {
    fn next(&self) -> u64 {
        if self.first == 0 {
            1
        } else {
            self.first + self.entries.len() as u64
        }
    }
}

fn data(i: u64, term: u64, size: usize) -> Vec<u8> {
    (0..size).map(|k| (i as usize ^ k ^ term as usize) as u8).collect()
}

fn run(ops: Vec<Op>, io: IoMode) {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(io);
    let mut w = Wal::open(dir.path(), opts.clone()).unwrap().0;
    let mut m = Model { term: 1, ..Model::default() };
    for op in ops {
        match op {
            Op::Append { n, split, size } => {
                let start = m.next();
                let es: Vec<Entry> = (start..start + n)
                    .map(|i| Entry { index: i, term: m.term, data: data(i, m.term, size) })
                    .collect();
                let recs: Vec<Record<'_>> = es
                    .iter()
                    .map(|e| Record::Entry { index: e.index, term: e.term, data: &e.data })
                    .collect();
                if split {
                    let hs: Vec<_> = recs.chunks(3).map(|c| w.append(c).unwrap()).collect();
                    for h in hs {
                        h.wait().unwrap();
                    }
                } else {
                    w.append_sync(&recs).unwrap();
                }
                if m.first == 0 {
                    m.first = start;
                }
                m.entries.extend(es);
            }
            Op::Conflict { back, n } => {
                if m.entries.is_empty() {
                    continue;
                }
                let back = back.min(m.entries.len() as u64 - 1);
                let from = m.next() - 1 - back;
                m.term += 1;
                let es: Vec<Entry> = (from..from + n)
                    .map(|i| Entry { index: i, term: m.term, data: data(i, m.term, 20) })
                    .collect();
                let recs: Vec<Record<'_>> = es
                    .iter()
                    .map(|e| Record::Entry { index: e.index, term: e.term, data: &e.data })
                    .collect();
                w.append_sync(&recs).unwrap();
                m.entries.truncate((from - m.first) as usize);
                m.entries.extend(es);
            }
            Op::TruncateSuffix { back } => {
                if m.entries.is_empty() {
                    continue;
                }
                let back = back.min(m.entries.len() as u64);
                let after = m.next() - 1 - back;
                w.truncate_suffix(after).unwrap().wait().unwrap();
                m.entries.truncate((after + 1 - m.first) as usize);
            }
            Op::ReleasePrefix { frac } => {
                if m.entries.is_empty() {
                    continue;
                }
                let upto = m.first + (m.entries.len() as u64 * frac as u64 / 256);
                w.release_prefix(upto).unwrap();
                // Whole segments only: anything from the model's first to upto+1 may be the new first.
                let f = w.first_index();
                assert!(
                    f >= m.first && f <= upto + 1,
                    "first {f} after release to {upto} (model first {})",
                    m.first
                );
                m.entries.drain(..(f - m.first) as usize);
                m.first = f;
            }
            Op::Snapshot { ahead } => {
                let idx = (m.next() as i64 - 1 + ahead).max(0) as u64;
                w.append_sync(&[Record::Snapshot {
                    index: idx,
                    term: m.term,
                    conf_state: b"voters",
                }])
                .unwrap();
                if idx + 1 >= m.next() {
                    m.entries.clear();
                    m.first = idx + 1;
                } else if idx >= m.first {
                    // The entries it covers are compacted; the rest stay live.
                    m.entries.drain(..(idx + 1 - m.first) as usize);
                    m.first = idx + 1;
                }
            }
            Op::HardState { commit } => {
                let hs = HardState { term: m.term, vote: 1, commit };
                w.append_sync(&[Record::HardState(hs)]).unwrap();
                m.hard = Some(hs);
            }
            Op::Reopen => {
                drop(w);
                w = Wal::open(dir.path(), opts.clone()).unwrap_or_else(|e| panic!("reopen: {e}")).0;
            }
        }
        // Compare everything after every op.
        if m.first != 0 {
            assert_eq!(w.first_index(), m.first);
            assert_eq!(w.last_index(), m.next() - 1);
        }
        assert_eq!(all(&w), m.entries);
        assert_eq!(w.hard_state(), m.hard);
    }
    drop(w);
    let (w, rep) = Wal::open(dir.path(), opts).unwrap_or_else(|e| panic!("reopen: {e}"));
    assert!(rep.torn_tail.is_none() && rep.repaired.is_none());
    assert_eq!(all(&w), m.entries);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn wal_matches_vec_model(ops in prop::collection::vec(op(), 1..40), uring in any::<bool>()) {
        run(ops, if uring { IoMode::Auto } else { IoMode::Pwrite });
    }
}
