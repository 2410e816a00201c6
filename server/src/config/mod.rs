//! How a member is configured: etcd's flags and `ETCD_*` variables ([`flags`], with the
//! `--experimental-*` ones in [`experimental`], TLS in [`tls`], and those whose features are
//! not built yet in [`deferred`]), read as Go reads a command line ([`argv`]), or etcd's YAML
//! `--config-file` ([`file`]).

pub mod argv;
pub mod deferred;
pub mod experimental;
pub mod file;
pub mod flags;
pub mod tls;

pub use flags::ServerConfig;
