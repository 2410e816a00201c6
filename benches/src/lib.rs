//! Benchmarks and load tools for rusted: `wal-bench` now; engine, MVCC and server benches later.
#![forbid(unsafe_code)]
