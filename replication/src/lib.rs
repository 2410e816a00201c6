//! rusted-replication: every write goes propose → WAL → replicate → commit → apply, through
//! tikv's raft-rs, for one member and for clusters alike.
//!
//! **What it is for.** The server hands [`Replica::propose`] an encoded request and gets the
//! state machine's answer once the entry is committed and applied; reads ask
//! [`Replica::read_index`] for a linearizable barrier (ReadIndex, batched: one round serves
//! every read waiting at that moment) or read locally. Membership changes (`member add`,
//! promote, remove, update) and leader transfer go through the same log. The engine knows
//! nothing of raft: it is reached through the [`StateMachine`] trait.
//!
//! **Main types.** [`Replica`] (the handle), [`ReplicaConfig`] / [`Bootstrap`], [`StateMachine`],
//! [`Transport`] / [`Mailbox`] / [`SnapDir`] (the network edge), [`sim::SimNet`] (an in-process
//! network with injected faults), [`LogStore`] (raft's storage on the WAL), [`membership`]
//! (etcd's member and cluster IDs, the cluster record), [`ReplicationError`].
//!
//! **Threads.** raft (owns the `RawNode`; handles inputs, ticks and Readies, and is woken by
//! the WAL writer when a group it waits for is durable, then sends messages that had to wait
//! and reports persistence), apply (committed entries into the state machine, answers
//! proposers), snapshot (writes state machine snapshots for followers).
//!
//! **Invariants.**
//! - An entry is acknowledged only after it is applied, and applied only after it is committed
//!   — which, for this member's own log, means after the WAL group holding it was fsynced.
//! - Each entry reaches the state machine once: entries at or below its applied index are
//!   skipped, after a restart too.
//! - The log is compacted only below what the state machine has synced, keeping
//!   `catchup_entries` for slow followers; a new cluster starts with its log compacted at
//!   index 1, so members added later always start from a snapshot.
//! - Membership is stored by the state machine atomically with the applied index of the
//!   change (so restarts and snapshots carry the membership that matches their index).
#![forbid(unsafe_code)]

mod apply;
pub mod config;
pub mod error;
mod force;
mod heartbeat;
mod linger;
mod logger;
pub mod machine;
pub mod membership;
mod node;
mod replica;
mod shared;
pub mod sim;
mod snapshot;
pub mod status;
pub mod storage;
pub mod transport;

pub use config::{Bootstrap, ReplicaConfig};
pub use error::{ReplicationError, Result};
pub use machine::StateMachine;
pub use membership::{ClusterRecord, Member};
pub use raft::eraftpb::Message as RaftMessage;
pub use replica::{proposal_buf, Replica, ReplicaStatus, BOOTSTRAP_INDEX};
pub use shared::Counters;
pub use storage::LogStore;
pub use transport::{Inbox, Mailbox, SnapDir, Transport};
