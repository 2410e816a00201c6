//! Arbitrary bytes as the page file: open and walk every bucket. Ok or Err, never a panic.
//! The harness is `rusted_engine::fuzz_harness::pagefile_open`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = std::path::Path::new("/dev/shm");
    let dir = if base.is_dir() { tempfile::tempdir_in(base) } else { tempfile::tempdir() };
    if let Ok(dir) = dir {
        rusted_engine::fuzz_harness::pagefile_open(data, dir.path());
    }
});
