//! Injected faults: a failed fdatasync or a torn write closes the log (no retry-and-pretend),
//! every waiter of the failed group gets the error, and reopening yields a prefix that contains
//! every acknowledged record. Each case is replayable from its seed.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing
mod common;

use std::sync::Arc;

use common::*;
use rusted_wal::{
    make_backend, FaultPlan, FaultyBackend, IoBackend, IoMode, Record, Wal, WalError, WalOptions,
};

fn faulty_opts(plan: Arc<FaultPlan>, io: IoMode) -> WalOptions {
    let factory = move || -> std::io::Result<Box<dyn IoBackend>> {
        Ok(Box::new(FaultyBackend::new(
            make_backend(io, rusted_wal::SyncStyle::Dsync)?,
            plan.clone(),
        )))
    };
    WalOptions { backend_factory: Some(Arc::new(factory)), ..small_opts(io) }
}

/// Appends until the log fails; returns the acknowledged indexes.
fn drive(w: &Wal, count: u64) -> (Vec<u64>, Option<WalError>) {
    let mut acked = Vec::new();
    for i in 1..=count {
        let p = payload(i);
        let r = w.append(&[Record::Entry { index: i, term: 1, data: &p }]).and_then(|h| h.wait());
        match r {
            Ok(()) => acked.push(i),
            Err(e) => return (acked, Some(e)),
        }
    }
    (acked, None)
}

#[test]
fn failed_fsync_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.fail_sync_at.store(5, std::sync::atomic::Ordering::Relaxed);
    let (w, _) = Wal::open(dir.path(), faulty_opts(plan.clone(), IoMode::Auto)).unwrap();
    let (acked, err) = drive(&w, 20);
    assert_eq!(acked, vec![1, 2, 3, 4]);
    assert!(matches!(err, Some(WalError::Poisoned(_))), "{err:?}");
    // Closed for good: no retry.
    assert!(matches!(w.append(&[Record::Metadata(b"x")]), Err(WalError::Poisoned(_))));
    assert!(w.close().is_err());
    drop(w);
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Auto)).unwrap();
    let got = all(&w);
    assert!(got.len() >= 4 && got.len() <= 5, "got {}", got.len());
    assert_eq!(got, (1..=got.len() as u64).map(|i| entry(i, 1)).collect::<Vec<_>>());
}

#[test]
fn seeded_faults_never_lose_acknowledged_records() {
    for seed in 0..60u64 {
        let io = if seed % 2 == 0 { IoMode::Pwrite } else { IoMode::Auto };
        let dir = tempfile::tempdir().unwrap();
        let plan = Arc::new(FaultPlan::from_seed(seed, 150));
        let (w, _) = Wal::open(dir.path(), faulty_opts(plan, io)).unwrap();
        let (acked, _err) = drive(&w, 200);
        drop(w);
        let (w, _) = Wal::open(dir.path(), small_opts(io))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
        let got = all(&w);
        assert!(got.len() >= acked.len(), "seed {seed}: lost acknowledged records");
        assert_eq!(
            got,
            (1..=got.len() as u64).map(|i| entry(i, 1)).collect::<Vec<_>>(),
            "seed {seed}"
        );
    }
}

/// A failed fsync in a group the caller writes itself poisons the log the same way.
#[test]
fn failed_fsync_in_an_inline_write_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.fail_sync_at.store(3, std::sync::atomic::Ordering::Relaxed);
    let (w, _) = Wal::open(dir.path(), faulty_opts(plan, IoMode::Auto)).unwrap();
    let mut acked = Vec::new();
    let mut err = None;
    for i in 1..=10u64 {
        let p = payload(i);
        let r = w
            .append_deferred(&[Record::Entry { index: i, term: 1, data: &p }])
            .and_then(|h| w.write_pending().map(|()| h))
            .and_then(|h| h.wait());
        match r {
            Ok(()) => acked.push(i),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(acked, vec![1, 2]);
    assert!(matches!(err, Some(WalError::Poisoned(_))), "{err:?}");
    assert!(matches!(w.append_deferred(&[Record::Metadata(b"x")]), Err(WalError::Poisoned(_))));
    assert!(w.write_pending().is_err());
    drop(w);
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Auto)).unwrap();
    let got = all(&w);
    assert!(got.len() >= 2 && got.len() <= 3, "got {}", got.len());
}

/// A disk that is full whenever `full` is set: preallocating a segment fails with ENOSPC.
fn full_disk_opts(full: Arc<std::sync::atomic::AtomicBool>) -> WalOptions {
    let hook = move |_: &std::path::Path| {
        if full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            Ok(())
        }
    };
    WalOptions { prealloc_hook: Some(Arc::new(hook)), ..small_opts(IoMode::Auto) }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_full_disk_is_reported_before_the_current_segment_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (w, _) = Wal::open(dir.path(), full_disk_opts(full.clone())).unwrap();
    wait_for("the full disk is reported", || w.space_error().is_some());
    let why = w.space_error().unwrap();
    assert!(why.contains("No space left on device"), "{why}");
    // The current segment still takes records; the cut that needs a new one fails the log.
    let (acked, err) = drive(&w, 1000);
    assert!(!acked.is_empty(), "the current segment's room was used");
    let err = err.expect("the log fails once the segment is full");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(matches!(w.append(&[Record::Metadata(b"x")]), Err(WalError::Poisoned(_))));
    drop(w);
    full.store(false, std::sync::atomic::Ordering::SeqCst);
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Auto)).unwrap();
    let got = all(&w);
    assert!(got.len() >= acked.len(), "acknowledged records lost: {} < {}", got.len(), acked.len());
    assert_eq!(got[..acked.len()], acked.iter().map(|&i| entry(i, 1)).collect::<Vec<_>>()[..]);
}

#[test]
fn space_freed_in_time_lets_the_log_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (w, _) = Wal::open(dir.path(), full_disk_opts(full.clone())).unwrap();
    wait_for("the full disk is reported", || w.space_error().is_some());
    full.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for("the report clears once a segment is made", || w.space_error().is_none());
    let (acked, err) = drive(&w, 400);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(acked.len(), 400);
    assert!(w.segment_count() > 2, "the log moved through several segments");
}
