//! rusted-engine: the storage engine under the MVCC layer.
//!
//! **What it is for.** A single-file, copy-on-write B+tree page store modeled on bbolt (the
//! backend etcd uses): named buckets of sorted keys, one writer at a time, any number of readers
//! each seeing a consistent snapshot, zero-copy reads from a read-only memory map, writes through
//! `pwrite`. The MVCC store (rusted-mvcc, in `mvcc/` beside this crate) sits on top of it;
//! bbolt's own file format, for etcd's snapshots, is rusted-bbolt (`bbolt/`).
//!
//! **Main types.** [`Db`] (open, transactions, sync, online [`defrag`], check), [`ReadTx`], [`WriteTx`],
//! [`Cursor`], [`DbOptions`], [`EngineError`].
//!
//! **On disk.** Pages of a fixed size: two meta pages ([`meta`]), branch and leaf pages
//! ([`page`]), freelist pages ([`freelist`]); format version 1.
//!
//! **Invariants.**
//! - A page reachable from any open transaction's meta, or from the durable meta, is never
//!   written (freed pages stay pending until neither can see them).
//! - A meta is written only after the pages it references are durable, into the slot not
//!   holding the durable meta; open takes the newest valid meta whose pages fit in the file.
//! - Every read of a page is bounds-checked: damage is an [`EngineError::Corrupt`], never a panic
//!   or an out-of-bounds access.
//! - `unsafe` code lives only in [`mmap`] (the mapping).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cursor;
mod db;
pub mod defrag;
mod error;
pub mod freelist;
pub mod fuzz_harness;
pub mod io;
pub mod meta;
mod mmap;
pub mod node;
pub mod page;
mod tree;
mod tx;

pub use cursor::Cursor;
pub use db::{CheckReport, CommitPhases, Db, DbOptions, PhaseObserver, Stats};
pub use defrag::{DefragObserver, DefragReport};
pub use error::{EngineError, IoContext, Result};
pub use tree::Pages;
pub use tx::{Bucket, ReadTx, WriteTx, MAX_KEY_SIZE, MAX_VALUE_SIZE};
