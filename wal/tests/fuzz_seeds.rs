//! Runs the `wal_recovery` fuzz harness over real logs and mutations of them (the same inputs
//! the fuzz/ seed corpus holds), so the harness is exercised by the default suite.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing
mod common;

use common::*;
use rusted_wal::fuzz_harness::{pack, wal_recovery};
use rusted_wal::{HardState, IoMode, Record, Wal, WalOptions};

/// Real segment files of a small log that crossed segments, with every record kind.
pub fn real_segments() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions { segment_size: 8 * 1024, ..small_opts(IoMode::Pwrite) };
    let (w, _) = Wal::open(dir.path(), opts).unwrap();
    w.append_sync(&[Record::HardState(HardState { term: 2, vote: 1, commit: 3 })]).unwrap();
    w.append_sync(&[Record::Metadata(b"meta")]).unwrap();
    append_range(&w, 1, 120);
    w.append_sync(&[Record::Entry { index: 100, term: 2, data: b"conflict" }]).unwrap();
    w.truncate_suffix(90).unwrap().wait().unwrap();
    w.append_sync(&[Record::Snapshot { index: 80, term: 1, conf_state: b"cs" }]).unwrap();
    drop(w);
    segments(dir.path())
        .iter()
        .map(|p| {
            let b = std::fs::read(p).unwrap();
            // Trim the zero tail so the input stays small.
            let end = b.iter().rposition(|&x| x != 0).map_or(0, |e| e + 1);
            b[..end].to_vec()
        })
        .collect()
}

#[test]
fn harness_survives_real_and_mutated_logs() {
    let segs = real_segments();
    let mut seed = 42u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..400u64 {
        let mut files = segs.clone();
        for _ in 0..(round % 6) {
            let f = (rnd() % files.len() as u64) as usize;
            if files[f].is_empty() {
                continue;
            }
            let at = (rnd() % files[f].len() as u64) as usize;
            match rnd() % 3 {
                0 => files[f][at] ^= 1 << (rnd() % 8),
                1 => files[f].truncate(at),
                _ => files[f][at] = rnd() as u8,
            }
        }
        let input = pack((round % 8) as u8, &files);
        let dir = tempfile::tempdir().unwrap();
        wal_recovery(&input, dir.path());
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
        wal_recovery(&input, tmp.path());
        n += 1;
    }
    assert!(n > 0, "the regression inputs are in the repository");
}

#[test]
fn indexes_beyond_the_maximum_are_refused_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(dir.path(), small_opts(IoMode::Pwrite)).unwrap();
    let e = w.append(&[Record::Entry { index: u64::MAX, term: 1, data: b"" }]);
    assert!(matches!(e, Err(rusted_wal::WalError::IndexTooLarge(_))), "{e:?}");
    let e = w.append(&[Record::Snapshot { index: u64::MAX, term: 1, conf_state: b"" }]);
    assert!(matches!(e, Err(rusted_wal::WalError::IndexTooLarge(_))), "{e:?}");
}

/// Writes the seed corpus for `cargo fuzz run wal_recovery` (run with `--ignored`).
#[test]
#[ignore]
fn write_fuzz_seed_corpus() {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wal_recovery");
    std::fs::create_dir_all(&out).unwrap();
    let segs = real_segments();
    for flags in 0..8u8 {
        std::fs::write(out.join(format!("real-{flags}")), pack(flags, &segs)).unwrap();
        std::fs::write(out.join(format!("last-{flags}")), pack(flags, &segs[segs.len() - 1..]))
            .unwrap();
    }
}
