//! rusted-server: the etcd v3 API over gRPC, the peer transport, and the `rusted` binary.
#![forbid(unsafe_code)]

pub mod alarm;
pub mod auth;
pub mod authority;
pub mod autocompact;
pub mod cluster;
pub mod coalesce;
pub mod codec;
pub mod config;
pub mod config_file;
pub mod convert;
pub mod ctl;
pub mod ctx;
pub mod dispatch;
pub mod election;
pub mod errors;
pub mod etcd_backend;
pub mod forward;
pub mod gateway;
pub mod gojson;
pub mod health;
pub mod http;
pub mod idgen;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod machine;
pub mod maintenance;
pub mod metrics;
pub mod peer;
pub mod proto;
pub mod recipe;
pub mod server;
pub mod watch;
