//! Runs the `pagefile_open` fuzz harness over real files and mutations of them, and writes the
//! seed corpus for `cargo fuzz run pagefile_open` (the ignored test).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

use rusted_engine::fuzz_harness::pagefile_open;
use rusted_engine::{Db, DbOptions};

fn real_file(page_size: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db =
            Db::open(&path, DbOptions { page_size, initial_mmap_size: 0, ..DbOptions::default() })
                .unwrap();
        let mut tx = db.begin_write().unwrap();
        for b in [&b"key"[..], b"meta", b"lease"] {
            tx.create_bucket(b).unwrap();
        }
        for i in 0..300u32 {
            tx.put(b"key", &i.to_be_bytes(), &vec![i as u8; (i % 50) as usize]).unwrap();
        }
        tx.put(b"meta", b"big", &[5u8; 3000]).unwrap();
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        for i in (0..300u32).step_by(3) {
            tx.delete(b"key", &i.to_be_bytes()).unwrap();
        }
        tx.commit().unwrap();
    }
    let b = std::fs::read(&path).unwrap();
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |e| e + 1);
    b[..end.div_ceil(page_size) * page_size].to_vec()
}

#[test]
fn harness_survives_real_and_mutated_files() {
    let base = real_file(1024);
    let mut seed = 7u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut b = base.clone();
        for _ in 0..(1 + round % 8) {
            let at = (rnd() % b.len() as u64) as usize;
            match rnd() % 3 {
                0 => b[at] ^= 1 << (rnd() % 8),
                1 => b[at] = rnd() as u8,
                _ => b.truncate(at.max(1)),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        pagefile_open(&b, dir.path());
    }
}

/// Inputs that once crashed the fuzz target (kept in `tests/fuzz_regressions/`).
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let input = std::fs::read(e.unwrap().path()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        pagefile_open(&input, tmp.path());
        n += 1;
    }
    assert!(n > 0, "the regression inputs are in the repository");
}

#[test]
#[ignore]
fn write_fuzz_seed_corpus() {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/pagefile_open");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("real-1024"), real_file(1024)).unwrap();
    std::fs::write(out.join("real-4096"), real_file(4096)).unwrap();
}
