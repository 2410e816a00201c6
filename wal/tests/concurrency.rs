//! Many appenders at once, threads and async tasks: every acknowledged record is present after
//! reopen, in order, and group commit actually groups.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing
mod common;

use std::sync::{Arc, Mutex};

use common::*;
use rusted_wal::{IoMode, Record, Wal, WalOptions};

fn data_of(thread: usize, k: usize) -> Vec<u8> {
    format!("thread {thread} record {k}").into_bytes()
}

#[test]
fn concurrent_appenders_all_acknowledged_records_survive_in_order() {
    for (io, direct, sync) in modes() {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            WalOptions { direct_io: direct, sync, segment_size: 256 * 1024, ..small_opts(io) };
        let (w, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        let w = Arc::new(w);
        // Indexes are assigned under a lock (as raft does); durability is awaited outside it.
        let next = Arc::new(Mutex::new(1u64));
        let threads = 24;
        let per = 120;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (w, next) = (w.clone(), next.clone());
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for k in 0..per {
                        let d = data_of(t, k);
                        let (idx, h) = {
                            let mut n = next.lock().unwrap();
                            let h = w
                                .append(&[Record::Entry { index: *n, term: 1, data: &d }])
                                .unwrap();
                            *n += 1;
                            (*n - 1, h)
                        };
                        if k % 2 == 0 {
                            h.wait().unwrap();
                        } else {
                            block_on(h).unwrap();
                        }
                        acked.push((idx, d));
                    }
                    acked
                })
            })
            .collect();
        let mut acked: Vec<(u64, Vec<u8>)> =
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        acked.sort();
        let stats = w.stats();
        assert_eq!(stats.records, (threads * per) as u64);
        assert!(stats.groups < stats.records, "{io:?}: no grouping at all ({stats:?})");
        drop(w);
        let (w, _) = Wal::open(dir.path(), opts).unwrap();
        let got = all(&w);
        assert_eq!(got.len(), threads * per);
        for ((idx, d), e) in acked.iter().zip(&got) {
            assert_eq!((*idx, d), (e.index, &e.data), "{io:?}/{direct}");
        }
    }
}

#[test]
fn backpressure_bounds_pending_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        WalOptions { max_pending_bytes: 4096, segment_size: 1 << 20, ..small_opts(IoMode::Auto) };
    let (w, _) = Wal::open(dir.path(), opts).unwrap();
    let big = vec![7u8; 3000];
    let hs: Vec<_> = (1..=50u64)
        .map(|i| w.append(&[Record::Entry { index: i, term: 1, data: &big }]).unwrap())
        .collect();
    for h in hs {
        h.wait().unwrap();
    }
    assert_eq!(w.last_index(), 50);
}
