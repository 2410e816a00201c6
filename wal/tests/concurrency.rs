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

/// How an appender waits for its record to be durable.
#[derive(Clone, Copy)]
enum How {
    /// Through the writer thread: `wait()` on even records, `.await` on odd ones.
    WaitOrAwait,
    /// `append_deferred` + `write_pending` on the appender's own thread.
    Inline,
}

/// `threads` appenders of `per` records each; indexes are assigned under a lock (as raft
/// does), durability is awaited outside it. Returns the acknowledged (index, data), sorted.
fn append_concurrently(
    w: &Arc<Wal>,
    threads: usize,
    per: usize,
    how: fn(usize) -> How,
) -> Vec<(u64, Vec<u8>)> {
    let next = Arc::new(Mutex::new(1u64));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (w, next) = (w.clone(), next.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for k in 0..per {
                    let d = data_of(t, k);
                    let (idx, h) = {
                        let mut n = next.lock().unwrap();
                        let rec = [Record::Entry { index: *n, term: 1, data: &d }];
                        let h = match how(t) {
                            How::Inline => w.append_deferred(&rec).unwrap(),
                            How::WaitOrAwait => w.append(&rec).unwrap(),
                        };
                        *n += 1;
                        (*n - 1, h)
                    };
                    match how(t) {
                        How::Inline => {
                            w.write_pending().unwrap();
                            assert!(h.is_durable(), "write_pending returned before durable");
                        }
                        How::WaitOrAwait if k % 2 == 0 => h.wait().unwrap(),
                        How::WaitOrAwait => block_on(h).unwrap(),
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
    acked
}

/// Reopening `dir` yields exactly `acked`, in order.
fn assert_reopens_with(
    dir: &std::path::Path,
    opts: WalOptions,
    acked: &[(u64, Vec<u8>)],
    what: &str,
) {
    let (w, _) = Wal::open(dir, opts).unwrap();
    let got = all(&w);
    assert_eq!(got.len(), acked.len(), "{what}");
    for ((idx, d), e) in acked.iter().zip(&got) {
        assert_eq!((*idx, d), (e.index, &e.data), "{what}");
    }
}

#[test]
fn concurrent_appenders_all_acknowledged_records_survive_in_order() {
    for (io, direct, sync) in modes() {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            WalOptions { direct_io: direct, sync, segment_size: 256 * 1024, ..small_opts(io) };
        let (w, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        let w = Arc::new(w);
        let (threads, per) = (24, 120);
        let acked = append_concurrently(&w, threads, per, |_| How::WaitOrAwait);
        let stats = w.stats();
        assert_eq!(stats.records, (threads * per) as u64);
        assert!(stats.groups < stats.records, "{io:?}: no grouping at all ({stats:?})");
        drop(w);
        assert_reopens_with(dir.path(), opts, &acked, &format!("{io:?}/{direct}"));
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

/// Liveness of the wake-up fan-out: many threads, many groups, waits interleaved with spurious
/// unparks; every waiter must return. A hang fails through the watchdog instead of stalling.
#[test]
fn every_waiter_wakes_under_load_and_spurious_unparks() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) =
        Wal::open(dir.path(), WalOptions { segment_size: 1 << 20, ..small_opts(IoMode::Auto) })
            .unwrap();
    let w = Arc::new(w);
    let next = Arc::new(Mutex::new(1u64));
    let (tx, rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let (w, next) = (w.clone(), next.clone());
            std::thread::spawn(move || {
                for k in 0..150usize {
                    let d = data_of(t, k);
                    let h = {
                        let mut n = next.lock().unwrap();
                        let h =
                            w.append(&[Record::Entry { index: *n, term: 1, data: &d }]).unwrap();
                        *n += 1;
                        h
                    };
                    if k % 7 == 0 {
                        // A stale unpark token: the next park returns at once.
                        std::thread::current().unpark();
                    }
                    h.wait().unwrap();
                }
            })
        })
        .collect();
    let spare: Vec<std::thread::Thread> = threads.iter().map(|h| h.thread().clone()).collect();
    std::thread::spawn(move || {
        for h in threads {
            h.join().unwrap();
        }
        let _ = tx.send(());
    });
    // Meanwhile, unpark writers at random (spurious wake-ups).
    for i in 0..2000 {
        if rx.try_recv().is_ok() {
            return;
        }
        spare[i % spare.len()].unpark();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    rx.recv_timeout(std::time::Duration::from_secs(120)).expect("a waiter never woke up");
}

/// A caller that writes its own groups (append_deferred + write_pending) while other threads
/// append through the writer thread: every group is written once, in order, and everything
/// acknowledged survives a reopen.
#[test]
fn inline_writers_and_the_writer_thread_share_the_log() {
    for (io, direct, sync) in modes() {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            WalOptions { direct_io: direct, sync, segment_size: 64 * 1024, ..small_opts(io) };
        let (w, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        let w = Arc::new(w);
        // Threads 0 and 1 write inline; 2 and 3 use the writer thread.
        let acked =
            append_concurrently(&w, 4, 150, |t| if t < 2 { How::Inline } else { How::WaitOrAwait });
        assert_eq!(w.stats().records, 600);
        drop(w);
        assert_reopens_with(dir.path(), opts, &acked, &format!("{io:?}/{direct}"));
    }
}
