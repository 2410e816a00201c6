//! rusted-server: will hold the etcd v3 API (tonic gRPC and the JSON gateway on one port) and the
//! `rusted` and `rustedctl` binaries (issues 6 and 7). Not built yet.
#![forbid(unsafe_code)]
