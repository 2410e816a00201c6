//! Benchmarks and load tools for rusted: `rusted-bench` (etcd's benchmark tool over the v3 API,
//! in [`load`]), `wal-bench`, and the criterion suites of the WAL, engine and MVCC.
#![forbid(unsafe_code)]

pub mod load;
