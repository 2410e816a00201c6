//! What sits between a TCP connection and the services: the client port's front door
//! ([`dispatch`]: gRPC by path, everything else to the HTTP router), the `:authority` fix for
//! etcd 3.4 clients ([`authority`]), `--cors` and `--host-whitelist` ([`access`]), Go's redirect
//! of unclean HTTP paths ([`clean_path`]), per-burst write coalescing ([`coalesce`]),
//! grpc-go's ping policy ([`pings`]), byte counts ([`counted`]), TLS ([`tls`]), KV's unary calls
//! answered without tonic's generic path ([`unary`]),
//! and the accept loop that puts them together ([`serve`]).

pub mod access;
pub mod authority;
pub mod clean_path;
pub mod coalesce;
pub mod counted;
pub mod dispatch;
pub mod pings;
pub mod serve;
pub mod tls;
pub mod unary;
