//! How a new member finds its cluster when no static `--initial-cluster` is given: etcd's
//! v2 discovery service ([`v2`], `--discovery`), DNS SRV records ([`srv`],
//! `--discovery-srv`), and, when the service says the cluster is full and
//! `--discovery-fallback=proxy`, the v2 proxy ([`proxy`]) etcd 3.4 runs instead.
#![forbid(unsafe_code)]

pub mod proxy;
pub mod srv;
pub mod v2;
pub mod v3;
