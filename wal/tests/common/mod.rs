//! Helpers shared by the WAL integration tests.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing
#![allow(dead_code)]

use std::path::Path;

use rusted_wal::{Entry, IoMode, Prealloc, Record, SyncStyle, Wal, WalOptions};

/// Small segments so tests cross many segment boundaries.
pub fn small_opts(io: IoMode) -> WalOptions {
    WalOptions {
        segment_size: 8 * 1024,
        io,
        prealloc: Prealloc::Fallocate,
        // Released segments go at once, so tests see releases with few segments.
        max_files: 1,
        ..WalOptions::default()
    }
}

/// Deterministic payload for entry `i`.
pub fn payload(i: u64) -> Vec<u8> {
    let len = 8 + (i * 7919 % 61) as usize;
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

pub fn entry(i: u64, term: u64) -> Entry {
    Entry { index: i, term, data: payload(i) }
}

/// Appends entries `from..to` (term 1), one append each, waiting for each.
pub fn append_range(w: &Wal, from: u64, to: u64) {
    for i in from..to {
        let p = payload(i);
        w.append_sync(&[Record::Entry { index: i, term: 1, data: &p }]).unwrap();
    }
}

/// All live entries.
pub fn all(w: &Wal) -> Vec<Entry> {
    let (f, l) = (w.first_index(), w.last_index());
    if f == 0 || l < f {
        return Vec::new();
    }
    w.entries(f, l + 1, u64::MAX).unwrap()
}

/// Copies every file of `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The segment files of a directory, in order.
pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Every write path this machine can run: backend × O_DIRECT × sync style.
pub fn modes() -> Vec<(IoMode, bool, SyncStyle)> {
    let mut ios = vec![IoMode::Pwrite];
    if rusted_wal::UringBackend::new(false).is_ok() {
        ios.push(IoMode::Uring);
    }
    let mut v = Vec::new();
    for io in ios {
        for direct in [false, true] {
            for sync in [SyncStyle::Dsync, SyncStyle::Fdatasync] {
                v.push((io, direct, sync));
            }
        }
    }
    v
}

/// A minimal executor for polling [`rusted_wal::Durable`] as a future.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
