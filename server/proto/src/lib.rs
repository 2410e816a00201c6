//! rusted-proto: etcd's v3 wire surface, shared by the server, `rustedctl` and the load tools
//! (none of which needs the others to speak it).
//!
//! **What it is for.** The protobuf messages and gRPC stubs of etcd's API (etcdserverpb, mvccpb,
//! authpb, v3lockpb, v3electionpb, grpc.health.v1) and of rusted's own peer service and raft
//! entry format (rustedpb), generated at build time by protox (no system `protoc`), with serde
//! impls in grpc-gateway's JSON mapping for the JSON gateway; the gRPC [`codec`] every stub
//! uses; and the small helpers every etcd client and server needs alike: key ranges
//! ([`keys`]), Go's duration syntax ([`duration`]), dialing an endpoint ([`dial`]) and the
//! TLS material both sides read ([`tls`]).
//!
//! **Main types.** The generated modules below; [`codec::Codec1K`]; [`keys::prefix_end`];
//! [`duration::parse_go_duration`].
//!
//! **Invariants.** The `.proto` files beside this crate are etcd 3.5's, field numbers and names
//! unchanged, so any etcd client reads what rusted writes; rusted's own messages live only in
//! `rustedpb`.
#![forbid(unsafe_code)]

pub mod codec;
pub mod dial;
pub mod duration;
pub mod keys;
pub mod tls;

/// etcd's mvccpb (KeyValue, Event).
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}
/// etcd's authpb.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}
/// etcd's etcdserverpb (KV, Watch, Lease, Cluster, Maintenance, Auth).
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}
/// etcd's v3lockpb.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}
/// etcd's v3electionpb.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}
/// grpc.health.v1.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
/// rusted's own peer transport and raft entry format.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod rustedpb {
    tonic::include_proto!("rustedpb");
}
