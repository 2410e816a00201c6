//! rusted-server: the etcd v3 API over gRPC, the peer transport, and the `rusted` binary.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod config;
pub mod convert;
pub mod ctx;
pub mod errors;
pub mod kv;
pub mod machine;
pub mod maintenance;
pub mod peer;
pub mod proto;
pub mod server;
