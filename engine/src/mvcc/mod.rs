//! The MVCC layer's building blocks (issue 4, in progress): revisions and their on-disk key
//! encoding, and the in-memory revision index with etcd's semantics. The store itself (the
//! `key`/`meta` buckets, txn, compaction, watch, leases) is not built yet.
#![forbid(unsafe_code)]

pub mod key_index;
pub mod revision;
pub mod tree_index;

pub use key_index::{IndexError, KeyIndex};
pub use revision::Revision;
pub use tree_index::TreeIndex;
