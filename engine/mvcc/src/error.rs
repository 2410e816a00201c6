//! Errors of the MVCC store. The server maps each to etcd's gRPC code and message once, at the
//! API edge; the messages here are etcd's where etcd has one (without the "etcdserver: " prefix
//! the rpctypes layer adds).
#![forbid(unsafe_code)]

use crate::key_index::IndexError;
use crate::kv::KvDecodeError;
use crate::lease::LeaseError;
use rusted_engine::EngineError;

/// Everything the MVCC store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// The revision asked for was compacted away.
    #[error("mvcc: required revision has been compacted")]
    Compacted {
        /// The store's compacted revision.
        compact_revision: i64,
    },
    /// The revision asked for is after the current one.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A request without a key.
    #[error("key is not provided")]
    EmptyKey,
    /// A put with ignore_value or ignore_lease of a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    /// ignore_value set together with a value.
    #[error("value is provided")]
    ValueProvided,
    /// ignore_lease set together with a lease.
    #[error("lease is provided")]
    LeaseProvided,
    /// A txn that writes one key twice, or puts a key that it also deletes.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A lease refusal (not found, exists, TTL too large, ...).
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A write refused while the space-quota (NOSPACE) alarm is raised.
    #[error("mvcc: database space exceeded")]
    NoSpace,
    /// The entry was applied already (its index is not after the store's applied index).
    #[error("mvcc: entry {index} already applied (applied index {applied})")]
    AlreadyApplied {
        /// The entry's index.
        index: u64,
        /// The store's applied index.
        applied: u64,
    },
    /// The page store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Stored data contradicts itself (a revision the index names is missing, a value does
    /// not decode, ...).
    #[error("mvcc: corrupt store: {0}")]
    Corrupt(String),
    /// The store failed for good earlier (a background flush or sync failed).
    #[error("mvcc: store failed: {0}")]
    Failed(String),
    /// The store was closed.
    #[error("mvcc: store closed")]
    Closed,
}

impl From<KvDecodeError> for MvccError {
    fn from(e: KvDecodeError) -> Self {
        MvccError::Corrupt(e.to_string())
    }
}

impl From<IndexError> for MvccError {
    fn from(e: IndexError) -> Self {
        MvccError::Corrupt(e.to_string())
    }
}

/// Result alias.
pub type Result<T, E = MvccError> = std::result::Result<T, E>;
