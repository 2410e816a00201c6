//! rusted-wal: the write-ahead log, the one durability point of rusted.
//!
//! **What it is for.** The raft layer appends log entries, hard states and snapshot markers; a
//! record is durable — and may be acknowledged — once the handle returned by [`Wal::append`]
//! completes. After a crash, [`Wal::open`] replays the segments and hands back exactly a prefix
//! of what was appended, in order.
//!
//! **Main types.** [`Wal`] (open, append, read, truncate-suffix, release-prefix), [`Record`] (what
//! is appended), [`Entry`]/[`HardState`]/[`SnapshotMarker`] (what is read back), [`Durable`] (the
//! durability handle, blocking or async), [`WalOptions`], [`RecoveryReport`], and the narrow disk
//! interface [`IoBackend`] with its io_uring, pwrite and fault-injecting implementations.
//!
//! **On disk.** A directory of segment files ([`segment`] documents the header), each a sequence
//! of checksummed frames ([`frame`]) carrying records ([`record`]).
//!
//! **Invariants.**
//! - A [`Durable`] completes only after an fdatasync covering its bytes returned success. A
//!   failed write or fdatasync closes the log for good ([`WalError::Poisoned`]): no retry, since
//!   the kernel may have dropped the dirty pages (fsyncgate).
//! - Group commit: one writer — the writer thread, or a caller of [`Wal::write_pending`], never
//!   both at once — takes everything pending, writes it once per segment and syncs once. It
//!   never writes a byte of the next group before the current group's sync returned, and never
//!   writes a new segment before the previous one is synced.
//! - Entry indexes are contiguous: an entry is at most one past the last and not below the
//!   first; an entry at or below the last replaces the suffix from its index (raft conflict).
//! - Recovery never invents a record and never panics on any bytes: a torn last write group is
//!   dropped (and zeroed), damage to synced data is an error naming segment and offset unless
//!   the log is opened with `repair`.
//! - `unsafe` code lives only in [`sys`] (the io_uring ring).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod durable;
mod error;
pub mod frame;
pub mod fuzz_harness;
mod io;
mod options;
mod prealloc;
pub mod record;
mod recovery;
pub mod segment;
mod sys;
mod view;
mod wal;
mod writer;

pub use durable::Durable;
pub use error::{Result, WalError};
pub use io::{make_backend, FaultPlan, FaultyBackend, IoBackend, IoMode, PwriteBackend, SyncStyle};
pub use options::{
    BackendFactory, PreallocHook, StatsSnapshot, SyncObserver, WalOptions, DEFAULT_MAX_FILES,
    DEFAULT_MAX_RECORD_BYTES, DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE,
};
pub use record::{Entry, HardState, Record, SnapshotMarker};
pub use recovery::RecoveryReport;
pub use segment::Prealloc;
pub use sys::UringBackend;
pub use wal::{Inspection, Wal};
