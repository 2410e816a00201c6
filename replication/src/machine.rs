//! What the replication layer drives: the replicated state machine (the server implements it
//! over the MVCC store).
#![forbid(unsafe_code)]

use std::path::Path;

use crate::error::Result;

/// A deterministic state machine fed committed entries in index order, exactly once each.
///
/// Every method that takes an `index` records it as the applied index, atomically with its
/// effect; an entry whose index is at or below [`StateMachine::applied`] is never handed over
/// again. Nothing needs to be durable when a method returns: the WAL is the durability point,
/// and [`StateMachine::sync`] is called before the WAL releases entries.
pub trait StateMachine: Send + Sync + 'static {
    /// What a proposer gets back.
    type Output: Send + 'static;

    /// Index of the last entry applied (durable or not).
    fn applied(&self) -> u64;

    /// Applies a committed proposal. A refusal (a compare that failed, a lease not found, ...)
    /// is part of the output: every member refuses alike. `Err` means the state machine failed
    /// for good (its storage failed): the member stops rather than drift from the cluster.
    fn apply(&self, index: u64, term: u64, data: &[u8]) -> Result<Self::Output>;

    /// Advances the applied index over an entry with no effect (empty or rejected entries).
    fn apply_noop(&self, index: u64, term: u64) -> Result<()>;

    /// Stores the cluster record (opaque bytes) as of `index` (0 at bootstrap).
    fn apply_cluster(&self, index: u64, term: u64, record: &[u8]) -> Result<()>;

    /// The stored cluster record, if any.
    fn cluster(&self) -> Result<Option<Vec<u8>>>;

    /// Makes everything applied durable.
    fn sync(&self) -> Result<()>;

    /// Writes a consistent copy of the whole state to a new file at `path`; returns the applied
    /// index and term the copy holds, and the cluster record stored in it.
    fn write_snapshot(&self, path: &Path) -> Result<(u64, u64, Option<Vec<u8>>)>;

    /// Replaces the whole state with a snapshot file (which it may move into place).
    fn restore(&self, path: &Path) -> Result<()>;

    /// This member became leader (`true`) or stopped being leader. Runs on the raft thread:
    /// must be quick.
    fn on_leader_change(&self, _is_leader: bool) {}
}
