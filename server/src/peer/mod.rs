//! The peer side of a member: the gRPC service other members send raft messages, snapshots and
//! forwarded requests to ([`service`]), the transport raft sends through ([`transport`]), and the client
//! a follower uses to forward leader-only requests ([`forward`]).

pub mod forward;
pub mod service;
pub mod transport;
