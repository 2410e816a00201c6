//! What sits between a TCP connection and the services: the client port's front door
//! ([`dispatch`]: gRPC by path, everything else to the HTTP router), the `:authority` fix for
//! etcd 3.4 clients ([`authority`]), and per-burst write coalescing ([`coalesce`]).

pub mod authority;
pub mod coalesce;
pub mod dispatch;
pub mod serve;
