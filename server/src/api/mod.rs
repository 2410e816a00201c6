//! The client-facing gRPC services, one file per etcd service, each thin as etcd's v3rpc:
//! validate the request ([`validate`]), check the caller may make it ([`authorize`]), call the
//! replica or the store, map the error once through [`errors`] (the one table from every
//! layer's errors to etcd's codes and messages).
//! [`ctx::Ctx`] is what every handler shares.

pub mod auth;
pub mod authorize;
pub mod cluster;
pub mod ctx;
pub mod election;
pub mod errors;
pub mod forward;
pub mod health;
pub mod idgen;
pub mod kv;
pub mod lazy_range;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod recipe;
pub mod stream;
pub mod validate;
pub mod watch;
