//! rusted-server: an etcd member. The etcd v3 API over gRPC and its JSON gateway on the client
//! port, the raft peer service on the peer port, and the `rusted` binary.
//!
//! **Where a put travels.** A connection is accepted in [`member`] and read through [`net`]
//! (the front door picks the gRPC service by path); [`api::kv`] validates the request and
//! [`api::ctx::Ctx::propose`] hands it to the replica (rusted-replication: WAL, raft, commit);
//! once committed, [`apply::machine`] applies it to the MVCC store (rusted-mvcc, on the page
//! store of rusted-engine) and the result travels back as the response.
//!
//! **Main types.** [`member::Member`] (start, stop), [`config::ServerConfig`], [`api::ctx::Ctx`]
//! (what handlers share), [`apply::machine::EtcdMachine`] (the state machine),
//! [`api::errors::ApiError`] (the one error table), [`auth::Auth`] (users, roles, tokens and
//! the permission checks every handler makes).
//!
//! **Invariants.**
//! - A write is answered only after it is committed by raft and applied; the answer is what
//!   applying it produced.
//! - Every client-facing error goes through [`api::errors`] once, as etcd's code and message.
//! - A member whose state machine cannot apply a committed entry stops; it never keeps
//!   answering from a state that drifts from the cluster's.
#![forbid(unsafe_code)]

/// The version rusted reports (the etcd API level it serves).
pub const SERVER_VERSION: &str = "3.5.0";
/// The cluster version reported with it.
pub const CLUSTER_VERSION: &str = "3.5.0";

pub mod api;
pub mod apply;
pub mod auth;
pub mod config;
pub mod discovery;
pub mod gateway;
pub mod logging;
pub mod member;
pub mod metrics;
pub mod net;
pub mod peer;
pub mod restore;
pub mod v2;
