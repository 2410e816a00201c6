//! Larger loads, sequential density, overflow values, concurrency of readers with the writer,
//! remapping, defrag and damaged files.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusted_engine::{Db, DbOptions, EngineError};

fn opts() -> DbOptions {
    DbOptions { initial_mmap_size: 1 << 20, ..DbOptions::default() }
}

#[test]
fn bulk_random_and_sequential_loads() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"seq").unwrap();
    tx.create_bucket(b"rnd").unwrap();
    tx.commit().unwrap();
    let n = 200_000u64;
    let mut x = 88172645463325252u64;
    for batch in 0..(n / 1000) {
        let mut tx = db.begin_write().unwrap();
        for i in batch * 1000..(batch + 1) * 1000 {
            tx.put(b"seq", &i.to_be_bytes(), &[7u8; 100]).unwrap();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            tx.put(b"rnd", &x.to_be_bytes(), &[9u8; 100]).unwrap();
        }
        tx.commit_nosync().unwrap();
    }
    db.sync().unwrap();
    let report = db.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.keys, 2 * n);
    let tx = db.begin_read().unwrap();
    for i in (0..n).step_by(997) {
        assert_eq!(tx.get(b"seq", &i.to_be_bytes()).unwrap(), Some(&[7u8; 100][..]));
    }
    let mut c = tx.cursor(b"seq").unwrap();
    let (mut count, mut it) = (0u64, c.first().unwrap());
    while let Some((k, _)) = it {
        assert_eq!(k, count.to_be_bytes());
        count += 1;
        it = c.next().unwrap();
    }
    assert_eq!(count, n);
    // Sequential keys pack pages nearly full: 100-byte values + 8-byte keys + 12-byte elements
    // → ~34 per 4 KiB page, so ~5,900 leaves for 200k keys; random ones sit near half full.
    let s = db.stats();
    let pages_per_key = (s.pages - s.free_pages) as f64 / (2 * n) as f64;
    assert!(pages_per_key < 0.06, "{pages_per_key} pages per key");
}

#[test]
fn large_values_use_overflow_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Db::open(&path, opts()).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.create_bucket(b"b").unwrap();
        for i in 0..20u32 {
            tx.put(b"b", &i.to_be_bytes(), &vec![i as u8; 10_000 + i as usize * 1000]).unwrap();
        }
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        for i in (0..20u32).step_by(2) {
            tx.delete(b"b", &i.to_be_bytes()).unwrap();
        }
        tx.commit().unwrap();
        assert!(db.check().unwrap().problems.is_empty());
    }
    let db = Db::open(&path, opts()).unwrap();
    let tx = db.begin_read().unwrap();
    for i in 0..20u32 {
        let v = tx.get(b"b", &i.to_be_bytes()).unwrap();
        if i % 2 == 0 {
            assert!(v.is_none());
        } else {
            assert_eq!(v.unwrap(), vec![i as u8; 10_000 + i as usize * 1000].as_slice());
        }
    }
}

#[test]
fn readers_see_a_stable_snapshot_while_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny initial map so the writer remaps while readers hold the old one.
    let db = Arc::new(
        Db::open(dir.path().join("db"), DbOptions { initial_mmap_size: 64 * 1024, ..opts() })
            .unwrap(),
    );
    {
        let mut tx = db.begin_write().unwrap();
        tx.create_bucket(b"b").unwrap();
        for i in 0..1000u32 {
            tx.put(b"b", &i.to_be_bytes(), &0u64.to_le_bytes()).unwrap();
        }
        tx.commit().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut views = 0;
                while !stop.load(Ordering::Relaxed) {
                    let tx = db.begin_read().unwrap();
                    // Every value in one view carries the same generation, and the count is fixed.
                    let sum = |tx: &rusted_engine::ReadTx| {
                        let mut c = tx.cursor(b"b").unwrap();
                        let (mut n, mut gens, mut it) =
                            (0, std::collections::BTreeSet::new(), c.first().unwrap());
                        while let Some((_, v)) = it {
                            n += 1;
                            gens.insert(v[..8].to_vec());
                            it = c.next().unwrap();
                        }
                        (n, gens)
                    };
                    let a = sum(&tx);
                    std::thread::yield_now();
                    let b = sum(&tx);
                    assert_eq!(a, b, "a view changed under its reader");
                    assert_eq!(a.1.len(), 1, "a view mixed two commits");
                    assert_eq!(a.0, 1000);
                    views += 1;
                }
                views
            })
        })
        .collect();
    for generation in 1..300u64 {
        let mut tx = db.begin_write().unwrap();
        for i in 0..1000u32 {
            // Growing values force new pages and remaps.
            let mut v = generation.to_le_bytes().to_vec();
            v.resize(8 + (generation as usize % 50) * 4, 1);
            tx.put(b"b", &i.to_be_bytes(), &v).unwrap();
        }
        if generation % 3 == 0 {
            tx.commit().unwrap();
        } else {
            tx.commit_nosync().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(db.check().unwrap().problems.is_empty());
}

#[test]
fn defrag_shrinks_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"b").unwrap();
    for i in 0..50_000u32 {
        tx.put(b"b", &i.to_be_bytes(), &[3u8; 200]).unwrap();
    }
    tx.set_user([42, 7]);
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in 0..50_000u32 {
        if i % 10 != 0 {
            tx.delete(b"b", &i.to_be_bytes()).unwrap();
        }
    }
    tx.commit().unwrap();
    let old_reader = db.begin_read().unwrap();
    let r = db.defrag().unwrap();
    assert!(r.after < r.before / 3, "{r:?}");
    // A reader from before the swap still reads the old file.
    assert_eq!(old_reader.get(b"b", &10u32.to_be_bytes()).unwrap(), Some(&[3u8; 200][..]));
    drop(old_reader);
    let tx = db.begin_read().unwrap();
    assert_eq!(tx.user(), [42, 7]);
    let mut n = 0;
    tx.scan(b"b", b"", b"", |k, _| {
        assert_eq!(u32::from_be_bytes(k.try_into().unwrap()) % 10, 0);
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 5000);
    drop(tx);
    assert!(db.check().unwrap().problems.is_empty());
    let mut tx = db.begin_write().unwrap();
    tx.put(b"b", b"after", b"defrag").unwrap();
    tx.commit().unwrap();
}

#[test]
fn damaged_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Db::open(&path, opts()).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.create_bucket(b"b").unwrap();
        for i in 0..5000u32 {
            tx.put(b"b", &i.to_be_bytes(), &[1u8; 64]).unwrap();
        }
        tx.commit().unwrap();
    }
    let good = std::fs::read(&path).unwrap();
    // Garbage and truncations (a zero-length file is a new store, as in bbolt).
    for bytes in [vec![0u8; 100], vec![0xAB; 20_000], good[..5000].to_vec()] {
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            matches!(Db::open(&path, opts()), Err(EngineError::BadFile { .. })),
            "{} bytes",
            bytes.len()
        );
    }
    // Both metas gone: a clear error.
    let mut b = good.clone();
    b[16..20].fill(0);
    b[4096 + 16..4096 + 20].fill(0);
    std::fs::write(&path, &b).unwrap();
    assert!(matches!(Db::open(&path, opts()), Err(EngineError::BadFile { .. })));
    // One meta damaged: the other is used.
    let mut b = good.clone();
    b[40] ^= 0xFF;
    std::fs::write(&path, &b).unwrap();
    assert!(Db::open(&path, opts()).is_ok());
    // Damage inside tree pages: reads give Corrupt errors, never panic.
    let pages = good.len() / 4096;
    for p in 2..pages.min(60) {
        let mut b = good.clone();
        for k in (p * 4096..(p + 1) * 4096).step_by(37) {
            b[k] = b[k].wrapping_add(0x5A);
        }
        std::fs::write(&path, &b).unwrap();
        if let Ok(db) = Db::open(&path, opts()) {
            if let Ok(tx) = db.begin_read() {
                let _ = tx.scan(b"b", b"", b"", |_, _| true);
                let _ = tx.get(b"b", &77u32.to_be_bytes());
            }
            let _ = db.check();
        }
    }
}

#[test]
fn second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _a = Db::open(&path, opts()).unwrap();
    assert!(matches!(Db::open(&path, opts()), Err(EngineError::BadFile { .. })));
}

#[test]
fn bad_arguments_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    assert!(matches!(tx.put(b"nope", b"k", b"v"), Err(EngineError::BucketNotFound(_))));
    tx.create_bucket(b"b").unwrap();
    assert!(matches!(tx.create_bucket(b"b"), Err(EngineError::BucketExists(_))));
    assert!(matches!(tx.put(b"b", b"", b"v"), Err(EngineError::InvalidArgument(_))));
    assert!(matches!(tx.put(b"b", &vec![1u8; 40_000], b"v"), Err(EngineError::InvalidArgument(_))));
    assert!(matches!(
        Db::open(dir.path().join("x"), DbOptions { page_size: 1000, ..opts() }),
        Err(EngineError::InvalidOption(_))
    ));
}

#[test]
fn keys_larger_than_half_a_page_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let key = |i: u32| {
        let mut k = i.to_be_bytes().to_vec();
        k.resize(10_000 + (i as usize % 3) * 5000, b'k');
        k
    };
    {
        let db = Db::open(&path, DbOptions { page_size: 4096, ..opts() }).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.create_bucket(b"b").unwrap();
        for i in 0..300u32 {
            tx.put(b"b", &key(i), &i.to_le_bytes()).unwrap();
        }
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        for i in (0..300u32).step_by(2) {
            assert!(tx.delete(b"b", &key(i)).unwrap());
        }
        tx.commit().unwrap();
        let r = db.check().unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }
    let db = Db::open(&path, opts()).unwrap();
    let tx = db.begin_read().unwrap();
    for i in 0..300u32 {
        let got = tx.get(b"b", &key(i)).unwrap();
        assert_eq!(got.is_some(), i % 2 == 1, "key {i}");
    }
}

#[test]
fn prev_after_running_off_the_end_gives_the_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"b").unwrap();
    for i in 0..1000u32 {
        tx.put(b"b", &i.to_be_bytes(), b"v").unwrap();
    }
    tx.commit().unwrap();
    let tx = db.begin_read().unwrap();
    let mut c = tx.cursor(b"b").unwrap();
    assert!(c.seek(&5000u32.to_be_bytes()).unwrap().is_none());
    assert_eq!(c.prev().unwrap().unwrap().0, 999u32.to_be_bytes());
    assert_eq!(c.prev().unwrap().unwrap().0, 998u32.to_be_bytes());
    c.last().unwrap();
    assert!(c.next().unwrap().is_none());
    assert_eq!(c.prev().unwrap().unwrap().0, 999u32.to_be_bytes());
    assert_eq!(c.seek_back(&5000u32.to_be_bytes()).unwrap().unwrap().0, 999u32.to_be_bytes());
}

#[test]
fn a_truncated_file_is_an_error_not_a_fallback_to_older_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Db::open(&path, opts()).unwrap();
        for round in 0..5u32 {
            let mut tx = db.begin_write().unwrap();
            tx.create_bucket_if_missing(b"b").unwrap();
            for i in 0..3000u32 {
                tx.put(b"b", &(round * 3000 + i).to_be_bytes(), &[1u8; 100]).unwrap();
            }
            tx.commit().unwrap();
        }
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let e = Db::open(&path, opts()).unwrap_err();
    assert!(matches!(e, EngineError::BadFile { .. }), "{e}");
}

#[test]
fn commits_report_their_phases_and_open_readers_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let phases = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let p2 = phases.clone();
    let mut o = opts();
    o.on_commit = rusted_engine::PhaseObserver(Some(std::sync::Arc::new(move |p| {
        p2.lock().unwrap().push(p)
    })));
    let db = Db::open(dir.path().join("db"), o).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"b").unwrap();
    tx.put(b"b", b"k", b"v").unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.put(b"b", b"k2", b"v").unwrap();
    tx.commit_nosync().unwrap();
    assert_eq!(phases.lock().unwrap().len(), 2, "one report per commit");
    assert_eq!(db.stats().open_read_txs, 0);
    let r1 = db.begin_read().unwrap();
    let r2 = db.begin_read().unwrap();
    assert_eq!(db.stats().open_read_txs, 2);
    drop(r1);
    assert_eq!(db.stats().open_read_txs, 1);
    drop(r2);
    assert_eq!(db.stats().open_read_txs, 0);
}

/// A file whose (intact) meta says another format version is refused, naming the version,
/// and never read through its other meta (an older state).
#[test]
fn a_file_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Db::open(&path, opts()).unwrap();
        for i in 0..3u8 {
            let mut tx = db.begin_write().unwrap();
            tx.create_bucket_if_missing(b"b").unwrap();
            tx.put(b"b", &[i], b"v").unwrap();
            tx.commit().unwrap();
        }
    }
    let original = std::fs::read(&path).unwrap();
    // Restamp one meta page (at `offset`) as version 2, with a valid checksum.
    let restamp = |offset: usize| {
        let mut b = original.clone();
        b[offset + 20..offset + 24].copy_from_slice(&2u32.to_le_bytes());
        let sum = crc32fast::hash(&b[offset + 16..offset + 80]);
        b[offset + 80..offset + 84].copy_from_slice(&sum.to_le_bytes());
        std::fs::write(&path, b).unwrap();
    };
    for offset in [0, 4096] {
        restamp(offset);
        let e = Db::open(&path, opts()).unwrap_err().to_string();
        assert!(e.contains("format version 2") && e.contains("reads version 1"), "{e}");
    }
    std::fs::write(&path, &original).unwrap();
    assert!(Db::open(&path, opts()).is_ok());
}

#[test]
fn each_reader_sees_the_buckets_of_its_own_snapshot() {
    // Bucket roots are read once per snapshot and shared by its readers: a later commit that
    // moves a root, creates or deletes a bucket must not show through to older readers.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.create_bucket(b"a").unwrap();
    tx.create_bucket(b"gone").unwrap();
    tx.put(b"a", b"k", b"1").unwrap();
    tx.put(b"gone", b"k", b"g").unwrap();
    tx.commit().unwrap();
    let old = db.begin_read().unwrap();
    let old_too = db.begin_read().unwrap();
    assert_eq!(old.get(b"a", b"k").unwrap(), Some(&b"1"[..]));

    let mut tx = db.begin_write().unwrap();
    for i in 0..2000u32 {
        // Enough to split the root: bucket a's root page changes.
        tx.put(b"a", &i.to_be_bytes(), &[5u8; 64]).unwrap();
    }
    tx.put(b"a", b"k", b"2").unwrap();
    tx.delete_bucket(b"gone").unwrap();
    tx.create_bucket(b"new").unwrap();
    tx.put(b"new", b"k", b"n").unwrap();
    tx.commit().unwrap();
    let now = db.begin_read().unwrap();

    for r in [&old, &old_too] {
        assert_eq!(r.get(b"a", b"k").unwrap(), Some(&b"1"[..]));
        assert_eq!(r.get(b"a", &7u32.to_be_bytes()).unwrap(), None);
        assert_eq!(r.get(b"gone", b"k").unwrap(), Some(&b"g"[..]));
        assert!(matches!(r.get(b"new", b"k"), Err(EngineError::BucketNotFound(_))));
    }
    assert_eq!(now.get(b"a", b"k").unwrap(), Some(&b"2"[..]));
    assert_eq!(now.get(b"a", &7u32.to_be_bytes()).unwrap(), Some(&[5u8; 64][..]));
    assert!(matches!(now.get(b"gone", b"k"), Err(EngineError::BucketNotFound(_))));
    assert_eq!(now.get(b"new", b"k").unwrap(), Some(&b"n"[..]));
    assert_eq!(now.buckets().unwrap(), vec![b"a".to_vec(), b"new".to_vec()]);
}
