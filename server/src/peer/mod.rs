//! The peer side of a member: the gRPC service other members send raft messages, snapshots
//! and forwarded requests to ([`service`]), and the transport raft sends through
//! ([`transport`]). A follower's forwarding of leader-only requests belongs to the client API
//! (`api::forward`).

pub mod service;
pub mod transport;
