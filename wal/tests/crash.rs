//! Crash simulation: damage the bytes of the last records in every way a crash or a disk can,
//! and check that recovery yields exactly a prefix of the acknowledged records — the records
//! before the damage — or, when the damage is in data that was synced before the last write
//! group, an error naming the segment and the damaged record's offset.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing
mod common;

use std::path::{Path, PathBuf};

use common::*;
use rusted_wal::frame::{decode_frame, Frame};
use rusted_wal::segment::HEADER_LEN;
use rusted_wal::{Entry, IoMode, Record, Wal, WalError, WalOptions};

/// Where one acknowledged record sits.
#[derive(Debug, Clone, Copy)]
struct Placed {
    start: usize,
    end: usize,
    /// Index of the write group (one append call) it belonged to.
    group: usize,
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    seg: PathBuf,
    bytes: Vec<u8>,
    placed: Vec<Placed>,
    entries: Vec<Entry>,
}

/// 60 entries in groups of 1–3 records, each group acknowledged before the next, all in one
/// segment (the last).
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let opts = WalOptions { segment_size: 64 * 1024, io: IoMode::Pwrite, ..WalOptions::default() };
    let mut sizes = Vec::new();
    {
        let (w, _) = Wal::open(&dir, opts).unwrap();
        let mut i = 1u64;
        let mut g = 0;
        while i <= 60 {
            let n = (g % 3 + 1).min(61 - i as usize);
            let datas: Vec<Vec<u8>> = (i..i + n as u64).map(payload).collect();
            let recs: Vec<Record<'_>> = datas
                .iter()
                .enumerate()
                .map(|(k, d)| Record::Entry { index: i + k as u64, term: 1, data: d })
                .collect();
            w.append_sync(&recs).unwrap();
            sizes.push(n);
            i += n as u64;
            g += 1;
        }
        w.close().unwrap();
    }
    let seg = segments(&dir).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let mut placed = Vec::new();
    let mut off = HEADER_LEN;
    for (group, n) in sizes.iter().enumerate() {
        for _ in 0..*n {
            let Frame::Record { next, .. } = decode_frame(&bytes, off, u32::MAX) else { panic!() };
            placed.push(Placed { start: off, end: next, group });
            off = next;
        }
    }
    let entries = (1..=60).map(|i| entry(i, 1)).collect();
    Fixture { _tmp: tmp, dir, seg, bytes, placed, entries }
}

impl Fixture {
    /// The byte range covering the last `n` records.
    fn last_records(&self, n: usize) -> std::ops::Range<usize> {
        self.placed[self.placed.len() - n].start..self.placed[self.placed.len() - 1].end
    }

    /// Writes `bytes` as the segment of a fresh copy of the log; returns the copy's dir.
    fn damaged(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let d = self.dir.parent().unwrap().join(name);
        let _ = std::fs::remove_dir_all(&d);
        copy_dir(&self.dir, &d);
        std::fs::write(d.join(self.seg.file_name().unwrap()), bytes).unwrap();
        d
    }

    /// Checks the outcome of opening a log whose bytes changed in `[first_change, damage_end)`.
    fn check(&self, dir: &Path, first_change: Option<usize>, damage_end: usize, what: &str) {
        let Some(c) = first_change else {
            let got = Wal::inspect(dir, u32::MAX).unwrap();
            assert_eq!(got.entries, self.entries, "{what}: unchanged bytes");
            return;
        };
        // The damaged record is the one containing the first changed byte (none: damage past the
        // records, in the zeroed tail).
        let hit = self.placed.iter().position(|p| c < p.end);
        let before = hit.unwrap_or(self.placed.len());
        // Provably synced: the first record of a later write group survives intact after the
        // damage (the writer never writes a group before the previous one is synced, and a
        // group's first frame sits at the offset its `batch` field names).
        let in_synced_group = hit.is_some_and(|h| {
            let g = self.placed[h].group;
            self.placed.iter().enumerate().any(|(i, p)| {
                let group_start = i == 0 || self.placed[i - 1].group != p.group;
                group_start && p.start >= damage_end && p.group > g
            })
        });
        match Wal::inspect(dir, u32::MAX) {
            Ok(got) => {
                assert!(!in_synced_group, "{what}: damage in a synced group was accepted");
                assert_eq!(got.entries, self.entries[..before], "{what}: not the exact prefix");
            }
            Err(WalError::Corrupt { path, offset, .. }) => {
                assert!(in_synced_group, "{what}: torn tail reported as corruption at {offset}");
                assert_eq!(offset as usize, self.placed[before].start, "{what}: wrong offset");
                assert!(path.ends_with(self.seg.file_name().unwrap()), "{what}: wrong segment");
            }
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
    }
}

#[test]
fn truncation_at_every_offset_yields_the_written_prefix() {
    let f = fixture();
    let range = f.last_records(8);
    for t in range.start..=range.end {
        let d = f.damaged("trunc", &f.bytes[..t]);
        let got = Wal::inspect(&d, u32::MAX).unwrap();
        let whole = f.placed.iter().filter(|p| p.end <= t).count();
        assert_eq!(got.entries, f.entries[..whole], "truncated at {t}");
        if t % 5 == 0 {
            // Reopen for writing, continue the log, and reopen again: the dropped tail must never
            // come back, and the new records must follow the prefix.
            let opts = WalOptions { segment_size: 64 * 1024, ..WalOptions::default() };
            let (w, _) = Wal::open(&d, opts.clone()).unwrap();
            let next = whole as u64 + 1;
            append_range(&w, next, next + 3);
            drop(w);
            let (w, _) = Wal::open(&d, opts).unwrap();
            let mut want = f.entries[..whole].to_vec();
            want.extend((next..next + 3).map(|i| entry(i, 1)));
            assert_eq!(all(&w), want, "continued after truncation at {t}");
        }
    }
}

#[test]
fn bit_flips_in_the_last_records_are_a_prefix_or_a_named_error() {
    let f = fixture();
    let range = f.last_records(8);
    // Also a few bytes past the records, in the zeroed remainder of the segment.
    for pos in range.start..range.end + 40 {
        let mut b = f.bytes.clone();
        b[pos] ^= 1 << (pos % 8);
        let d = f.damaged("flip", &b);
        f.check(&d, Some(pos), pos + 1, &format!("bit flip at {pos}"));
        if pos % 3 == 0 {
            // With repair the log always opens, holding the records before the damage.
            let opts =
                WalOptions { segment_size: 64 * 1024, repair: true, ..WalOptions::default() };
            let (w, _) = Wal::open(&d, opts).unwrap();
            let before = f.placed.iter().position(|p| pos < p.end).unwrap_or(f.placed.len());
            assert_eq!(all(&w), f.entries[..before], "repaired after flip at {pos}");
        }
    }
}

#[test]
fn zero_filled_ranges_are_a_prefix_or_a_named_error() {
    let f = fixture();
    let range = f.last_records(8);
    for start in range.start..range.end {
        for len in [1usize, 4, 13, 47, 512] {
            let mut b = f.bytes.clone();
            let end = (start + len).min(b.len());
            let first_change = (start..end).find(|&k| b[k] != 0);
            b[start..end].fill(0);
            let d = f.damaged("zero", &b);
            f.check(&d, first_change, end, &format!("zeros at {start}+{len}"));
        }
    }
}

#[test]
fn damage_in_an_older_segment_is_an_error_unless_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = small_opts(IoMode::Pwrite);
    {
        let (w, _) = Wal::open(tmp.path(), opts.clone()).unwrap();
        append_range(&w, 1, 300);
    }
    let segs = segments(tmp.path());
    assert!(segs.len() >= 3);
    let mut b = std::fs::read(&segs[1]).unwrap();
    b[HEADER_LEN + 40] ^= 0x10;
    std::fs::write(&segs[1], &b).unwrap();
    let e = Wal::open(tmp.path(), opts.clone()).unwrap_err();
    let WalError::Corrupt { path, offset, .. } = e else { panic!("{e}") };
    assert_eq!(path, segs[1]);
    assert!(offset as usize <= HEADER_LEN + 40);
    let (w, rep) = Wal::open(tmp.path(), WalOptions { repair: true, ..opts }).unwrap();
    let (_, _, dropped, whole) = rep.repaired.expect("repair reported");
    assert!(dropped > 0 && whole >= 1, "dropped {dropped} bytes, {whole} segments");
    let got = all(&w);
    assert!(!got.is_empty() && got.len() < 299);
    assert_eq!(got, (1..=got.len() as u64).map(|i| entry(i, 1)).collect::<Vec<_>>());
    // A missing middle segment is named too.
    drop(w);
    append_range(
        &Wal::open(tmp.path(), small_opts(IoMode::Pwrite)).unwrap().0,
        got.len() as u64 + 1,
        400,
    );
    let segs = segments(tmp.path());
    std::fs::remove_file(&segs[1]).unwrap();
    assert!(matches!(
        Wal::open(tmp.path(), small_opts(IoMode::Pwrite)),
        Err(WalError::MissingSegment { .. })
    ));
}

#[test]
fn garbage_files_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "0000000000000000-0000000000000000.wal";
    let mut seed = 0x1234_5678_9abc_def0u64;
    for round in 0..300 {
        let len = (round * 37) % 3000;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let d = tmp.path().join(format!("g{round}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), &bytes).unwrap();
        let _ = Wal::inspect(&d, 1 << 20);
        let _ = Wal::open(
            &d,
            WalOptions { repair: round % 2 == 0, segment_size: 8192, ..WalOptions::default() },
        );
    }
}
