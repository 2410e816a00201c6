//! Arbitrary bytes laid out as a WAL directory, then open and read everything: Ok or a clear
//! error, never a panic. The layout is documented in `rusted_wal::fuzz_harness`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // tmpfs when there is one: the harness writes and syncs files on every run.
    let base = std::path::Path::new("/dev/shm");
    let dir = if base.is_dir() { tempfile::tempdir_in(base) } else { tempfile::tempdir() };
    if let Ok(dir) = dir {
        rusted_wal::fuzz_harness::wal_recovery(data, dir.path());
    }
});
