//! rusted-mvcc: etcd's key-value state machine (revisions, range/put/delete/txn,
//! compaction, hashes, watch, leases) on rusted's page store (rusted-engine).
//!
//! **Main types.** [`Store`] (open, apply writes tagged with their log index, reads, compact,
//! hash, leases, watch streams), the request/response types in [`request`], [`WatchStream`],
//! [`Lessor`], [`MvccError`].
//!
//! **Invariants.**
//! - Revisions: one main revision per write txn that changes something (starting at 2; an
//!   empty store is at 1), sub revisions 0, 1, … per change; the current revision never
//!   decreases.
//! - Every applied revision is in the page store as of its newest commit or in the write
//!   buffer ([`pending`]); reads see every applied write.
//! - The applied index is committed in the same page-store transaction as the data it
//!   covers, so replaying the log after it is exact (an entry at or below it is refused).
//! - Each watcher gets every matching event exactly once, in revision order.
#![forbid(unsafe_code)]

mod apply;
mod background;
pub mod counters;
pub mod error;
pub mod export;
mod import;
pub mod key_index;
pub mod kv;
pub mod lazy_range;
pub mod lease;
mod maintenance;
pub mod pending;
pub mod request;
mod restore;
pub mod revision;
pub mod snapshot;
mod store;
pub mod tree_index;
mod txn_view;
pub mod watch;
mod watch_sync;

pub use apply::LeaseGrant;
pub use counters::{EventObserver, OpCounts, StoreEvent};
pub use error::MvccError;
pub use key_index::{IndexError, KeyIndex};
pub use kv::KeyValue;
pub use lazy_range::{KvRef, LazyRange, RangeOut, LAZY_MIN_KEYS};
pub use lease::{LeaseError, LeaseId, Lessor};
pub use maintenance::HashKv;
pub use revision::Revision;
pub use snapshot::{SnapshotInfo, StoreSlot, CLUSTER};
pub use store::{Applied, CommitObserver, FailureObserver, Store, StoreOptions};
pub use tree_index::TreeIndex;
pub use watch::{Event, WatchOptions, WatchReceiver, WatchResponse, WatchStats, WatchStream};
