//! The generated protobuf and gRPC code (tonic/prost, compiled by build.rs with protox).
#![allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]

/// etcd's mvccpb (KeyValue, Event).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}
/// etcd's authpb.
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}
/// etcd's etcdserverpb (KV, Watch, Lease, Cluster, Maintenance, Auth).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}
/// etcd's v3lockpb.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}
/// etcd's v3electionpb.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}
/// grpc.health.v1.
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
/// rusted's own peer transport and raft entry format.
pub mod rustedpb {
    tonic::include_proto!("rustedpb");
}
