//! Where replication meets storage: the replicated state machine ([`machine::EtcdMachine`])
//! decodes each committed raft entry and applies it to the MVCC store; [`convert`] maps wire
//! messages to the store's types; [`alarm`] is etcd's alarm store; [`etcd_backend`] writes the
//! store as etcd's backend file for snapshots, and [`etcd_read`] reads one back (restore).

pub mod alarm;
pub mod convert;
pub mod etcd_backend;
pub mod etcd_read;
pub mod machine;
