//! `snapshot restore`, as etcdctl 3.4's: a new member's data dir from a snapshot file, built
//! offline by rusted-server's restore (no server is contacted). Its log lines go to stderr as
//! etcdctl's do; errors exit 1.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::{CtlError, CtlResult};

/// etcdctl 3.4's `snapshot restore` flags.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file.
    pub args: Vec<String>,
    /// Path to the data directory
    #[arg(long = "data-dir", default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long = "wal-dir", default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long = "initial-cluster", default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long = "initial-advertise-peer-urls", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long = "name", default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long = "skip-hash-check", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub skip_hash_check: bool,
}

/// Runs `snapshot restore`.
pub fn restore(a: &RestoreArgs) -> CtlResult {
    let [path] = a.args.as_slice() else {
        return Err(CtlError::args("snapshot restore requires exactly one argument"));
    };
    // rusted's default data dir for a member of this name (etcd's is `<name>.etcd`).
    let data_dir = if a.data_dir.is_empty() {
        PathBuf::from(format!("{}.rusted", a.name))
    } else {
        PathBuf::from(&a.data_dir)
    };
    if data_dir.exists() {
        return Err(CtlError::failed(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        )));
    }
    let wal_dir = (!a.wal_dir.is_empty()).then(|| PathBuf::from(&a.wal_dir));
    let shown_wal = wal_dir.clone().unwrap_or_else(|| data_dir.join("member").join("wal"));
    let snap_dir = data_dir.join("member").join("snap");
    let dirs: [(&str, serde_json::Value); 4] = [
        ("path", json!(path)),
        ("wal-dir", json!(shown_wal.display().to_string())),
        ("data-dir", json!(data_dir.display().to_string())),
        ("snap-dir", json!(snap_dir.display().to_string())),
    ];
    crate::maintenance::log("restoring snapshot", &dirs);
    let report = rusted_server::restore::restore(&rusted_server::restore::RestoreOptions {
        snapshot: PathBuf::from(path),
        name: a.name.clone(),
        initial_cluster: a.initial_cluster.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        initial_advertise_peer_urls: a.initial_advertise_peer_urls.clone(),
        data_dir: data_dir.clone(),
        wal_dir,
        skip_hash_check: a.skip_hash_check,
    })
    .map_err(CtlError::failed)?;
    for (id, urls) in &report.members {
        crate::maintenance::log(
            "added member",
            &[
                ("cluster-id", json!(format!("{:x}", report.cluster_id))),
                ("local-member-id", json!("0")),
                ("added-peer-id", json!(format!("{id:x}"))),
                ("added-peer-peer-urls", json!(urls)),
            ],
        );
    }
    crate::maintenance::log("restored snapshot", &dirs);
    Ok(())
}
