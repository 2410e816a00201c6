//! rusted-server: the etcd v3 API over gRPC, the peer transport, and the `rusted` binary.
#![forbid(unsafe_code)]

pub mod convert;
pub mod errors;
pub mod machine;
pub mod peer;
pub mod proto;
pub mod cluster;
pub mod config;
pub mod ctx;
pub mod kv;
pub mod maintenance;
pub mod server;
