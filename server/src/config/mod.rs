//! How a member is configured: etcd's flags and `ETCD_*` variables ([`flags`]) or etcd's YAML
//! `--config-file` ([`file`]).

pub mod file;
pub mod flags;
pub mod tls;

pub use flags::ServerConfig;
