//! Behaviour of append, read, truncate, release and reopen, on every backend.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing
mod common;

use common::*;
use rusted_wal::{HardState, IoMode, Record, Wal, WalError, WalOptions};

#[test]
fn append_read_reopen_on_every_backend() {
    for (io, direct, sync) in modes() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions { direct_io: direct, sync, ..small_opts(io) };
        {
            let (w, rep) = Wal::open(dir.path(), opts.clone()).unwrap();
            assert_eq!(rep.records, 0);
            assert_eq!((w.first_index(), w.last_index()), (0, 0));
            append_range(&w, 1, 400);
            w.append_sync(&[Record::HardState(HardState { term: 1, vote: 2, commit: 399 })])
                .unwrap();
            w.append_sync(&[Record::Metadata(b"cluster-7")]).unwrap();
            assert!(w.segment_count() > 3, "{io:?} crossed segments");
            assert_eq!(all(&w), (1..400).map(|i| entry(i, 1)).collect::<Vec<_>>());
            w.close().unwrap();
        }
        let (w, rep) = Wal::open(dir.path(), opts).unwrap();
        assert!(rep.torn_tail.is_none(), "{io:?}/{direct}: clean close leaves no torn tail");
        assert_eq!(all(&w), (1..400).map(|i| entry(i, 1)).collect::<Vec<_>>());
        assert_eq!(w.hard_state(), Some(HardState { term: 1, vote: 2, commit: 399 }));
        assert_eq!(w.metadata().as_deref(), Some(&b"cluster-7"[..]));
        assert_eq!(w.term(17).unwrap(), 1);
        // Appending continues after reopen.
        append_range(&w, 400, 420);
        assert_eq!(w.last_index(), 419);
        assert_eq!(
            w.entries(410, 415, u64::MAX).unwrap(),
            (410..415).map(|i| entry(i, 1)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn conflicts_truncate_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(IoMode::Auto);
    let (w, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    append_range(&w, 1, 11);
    // A raft conflict: new entries from index 6 with a higher term replace 6..=10.
    w.append_sync(&[Record::Entry { index: 6, term: 2, data: b"six" }]).unwrap();
    assert_eq!(w.last_index(), 6);
    assert_eq!(w.term(6).unwrap(), 2);
    w.truncate_suffix(4).unwrap().wait().unwrap();
    assert_eq!(w.last_index(), 4);
    // A snapshot beyond the log restarts it after the snapshot.
    w.append_sync(&[Record::Snapshot { index: 100, term: 3, conf_state: b"cs" }]).unwrap();
    assert_eq!((w.first_index(), w.last_index()), (101, 100));
    w.append_sync(&[Record::Entry { index: 101, term: 3, data: b"x" }]).unwrap();
    drop(w);
    let (w, _) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!((w.first_index(), w.last_index()), (101, 101));
    assert_eq!(w.snapshot().unwrap().index, 100);
    assert_eq!(w.entries(101, 102, 0).unwrap()[0].data, b"x");
}

#[test]
fn invalid_appends_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Pwrite)).unwrap();
    append_range(&w, 1, 4);
    let e = w.append(&[
        Record::Entry { index: 4, term: 1, data: b"ok" },
        Record::Entry { index: 6, term: 1, data: b"gap" },
    ]);
    assert!(matches!(e, Err(WalError::IndexGap { index: 6, .. })), "{e:?}");
    assert_eq!(w.last_index(), 3, "nothing of a refused batch was appended");
    let big = vec![0u8; 9 * 1024];
    let e = w.append(&[Record::Entry { index: 4, term: 1, data: &big }]);
    assert!(matches!(e, Err(WalError::RecordTooLarge { .. })), "{e:?}");
    assert!(matches!(
        w.append(&[Record::Entry { index: 0, term: 1, data: b"" }]),
        Err(WalError::IndexGap { .. })
    ));
    assert!(matches!(w.entries(0, 2, u64::MAX), Err(WalError::Compacted(0))));
    assert!(matches!(w.entries(2, 9, u64::MAX), Err(WalError::Unavailable(8))));
    // Still usable afterwards.
    append_range(&w, 4, 6);
    assert_eq!(w.last_index(), 5);
    w.close().unwrap();
    assert!(matches!(w.append(&[Record::Metadata(b"m")]), Err(WalError::Closed)));
}

#[test]
fn release_prefix_drops_whole_segments_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(IoMode::Auto);
    let (w, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    w.append_sync(&[Record::HardState(HardState { term: 4, vote: 1, commit: 0 })]).unwrap();
    append_range(&w, 1, 1000);
    let before = segments(dir.path()).len();
    let n = w.release_prefix(700).unwrap();
    assert!(n > 0 && n < before, "released {n} of {before}");
    assert_eq!(segments(dir.path()).len(), before - n);
    let first = w.first_index();
    assert!(first > 1 && first <= 701, "first {first}");
    assert_eq!(all(&w), (first..1000).map(|i| entry(i, 1)).collect::<Vec<_>>());
    assert!(matches!(w.entries(1, 2, 10), Err(WalError::Compacted(1))));
    drop(w);
    let (w, _) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(w.first_index(), first);
    assert_eq!(
        w.hard_state(),
        Some(HardState { term: 4, vote: 1, commit: 0 }),
        "restated in every segment"
    );
    assert_eq!(all(&w).len() as u64, 1000 - first);
}

#[test]
fn released_segments_stay_up_to_max_files() {
    for max_files in [0usize, 1, 3, 5] {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions { max_files, ..small_opts(IoMode::Pwrite) };
        let (w, _) = Wal::open(dir.path(), opts).unwrap();
        append_range(&w, 1, 1000);
        let before = segments(dir.path()).len();
        assert!(before > 6, "{before} segments");
        w.release_prefix(999).unwrap();
        let after = segments(dir.path()).len();
        match max_files {
            0 => assert_eq!(after, before, "0 keeps every segment"),
            n => assert_eq!(after, n.max(1), "released down to {n} of {before}"),
        }
        // What is kept stays readable, and a restart sees the same log.
        let first = w.first_index();
        assert_eq!(all(&w).len() as u64, 1000 - first);
        drop(w);
        let (w, _) =
            Wal::open(dir.path(), WalOptions { max_files, ..small_opts(IoMode::Pwrite) }).unwrap();
        assert_eq!(w.first_index(), first);
    }
}

#[test]
fn max_bytes_limits_reads_but_returns_one() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Auto)).unwrap();
    append_range(&w, 1, 50);
    assert_eq!(w.entries(1, 50, 0).unwrap().len(), 1);
    let some = w.entries(1, 50, 100).unwrap();
    assert!(some.len() > 1 && some.len() < 49);
}

#[test]
fn durable_is_a_future_too() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Auto)).unwrap();
    let hs = [Record::Entry { index: 1, term: 1, data: b"a" }];
    let d = w.append(&hs).unwrap();
    block_on(d).unwrap();
    assert_eq!(w.last_index(), 1);
    block_on(w.flush().unwrap()).unwrap();
}

#[test]
fn bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions { segment_size: 100, ..WalOptions::default() };
    assert!(matches!(Wal::open(dir.path(), o), Err(WalError::InvalidOption(_))));
}

#[test]
fn empty_appends_complete_even_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Auto)).unwrap();
    w.append(&[]).unwrap().wait().unwrap();
    append_range(&w, 1, 3);
    w.append(&[]).unwrap().wait().unwrap();
    w.close().unwrap();
    // Closed: the empty append either errors or completes; it never hangs.
    if let Ok(h) = w.append(&[]) {
        h.wait().unwrap();
    }
}

#[test]
fn appends_below_a_released_prefix_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Pwrite)).unwrap();
    append_range(&w, 1, 400);
    assert!(w.release_prefix(300).unwrap() > 0);
    let first = w.first_index();
    assert!(first > 1);
    let e = w.append(&[Record::Entry { index: first - 1, term: 2, data: b"x" }]);
    assert!(matches!(e, Err(WalError::IndexGap { .. })), "{e:?}");
    let e = w.truncate_suffix(first - 2);
    assert!(e.is_err(), "truncating below the released prefix is refused");
    // The log is still healthy.
    append_range(&w, 400, 410);
    drop(w);
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Pwrite)).unwrap();
    assert_eq!(w.last_index(), 409);
}

/// A segment whose (intact) header says another format version is refused, naming it.
#[test]
fn a_segment_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(IoMode::Auto);
    {
        let (w, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        append_range(&w, 1, 10);
        w.close().unwrap();
    }
    let seg = segments(dir.path()).into_iter().next().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    let sum = crc32fast::hash(&b[..60]);
    b[60..64].copy_from_slice(&sum.to_le_bytes());
    std::fs::write(&seg, b).unwrap();
    let e = Wal::open(dir.path(), opts).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("unsupported format version 2"), "{e}");
}
