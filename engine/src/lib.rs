//! rusted-engine: will hold the bbolt-modeled mmap B+tree page store and, on top of it, the MVCC
//! revision index, compaction, watch and lease state (issues 3 and 4). Not built yet.
#![forbid(unsafe_code)]
