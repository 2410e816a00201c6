//! `snapshot restore`: a new member's data dir from a backend snapshot written by etcd 3.4/3.5
//! or by rusted (a bbolt file, with or without the SHA-256 trailer `snapshot save` appends).
//! As etcd's restore: the snapshot's hash is checked (unless told not to), its keys with their
//! revisions, its leases (their expiry restarts when a leader takes them), users, roles and
//! alarms are kept; membership is replaced by the one `--initial-cluster` describes, with the
//! cluster and member IDs that flags and token give, and the applied index starts over. The
//! member then starts with the same flags as a new cluster's member does; restoring one
//! snapshot with the same flags on every machine gives members that agree.
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use rusted_mvcc::{Applied, Store};
use rusted_replication::membership::{bootstrap_record, member_id, parse_initial_cluster};
use sha2::{Digest, Sha256};

use crate::apply::alarm::ALARM_KEY;
use crate::auth::AUTH_KEY;

/// What to restore, and as which member (etcdctl 3.4's flags).
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// The member's name.
    pub name: String,
    /// The new cluster's members, `name=peerURL,...`.
    pub initial_cluster: String,
    /// The new cluster's token.
    pub initial_cluster_token: String,
    /// This member's peer URLs (comma-separated).
    pub initial_advertise_peer_urls: String,
    /// The data dir to create (must not exist).
    pub data_dir: PathBuf,
    /// Where the WAL goes (default: `<data-dir>/member/wal`).
    pub wal_dir: Option<PathBuf>,
    /// Restore a file without a hash trailer (a copy of a member's `member/snap/db`).
    pub skip_hash_check: bool,
}

/// What a restore made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The new cluster's ID.
    pub cluster_id: u64,
    /// This member's ID.
    pub member_id: u64,
    /// Every member's ID and peer URLs.
    pub members: Vec<(u64, Vec<String>)>,
    /// The restored store's revision.
    pub revision: i64,
    /// Revisions restored.
    pub revisions: usize,
    /// The WAL directory.
    pub wal_dir: PathBuf,
    /// The snapshot (page store) directory.
    pub snap_dir: PathBuf,
}

/// Go's spelling of a byte slice (`[1 2 3]`), as etcd's hash mismatch error prints them.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(u8::to_string).collect();
    format!("[{}]", parts.join(" "))
}

/// Checks the SHA-256 trailer of a snapshot file (etcd: a file whose size is 32 past a
/// multiple of 512 has one).
fn check_hash(path: &Path, skip: bool) -> Result<(), String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("open {}: {}", path.display(), go_io(&e)))?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let has_hash = size % 512 == 32;
    if !has_hash {
        return if skip {
            Ok(())
        } else {
            Err("snapshot missing hash but --skip-hash-check=false".into())
        };
    }
    if skip {
        return Ok(());
    }
    let mut h = Sha256::new();
    let mut left = size - 32;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        f.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    let mut want = [0u8; 32];
    f.read_exact(&mut want).map_err(|e| e.to_string())?;
    let got = h.finalize();
    if got[..] != want[..] {
        return Err(format!("expected sha256 {}, got {}", go_bytes(&want), go_bytes(&got)));
    }
    Ok(())
}

/// Go's wording of common file errors.
fn go_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Builds the data dir; on failure nothing half-made is left behind.
pub fn restore(o: &RestoreOptions) -> Result<RestoreReport, String> {
    if o.data_dir.exists() {
        return Err(format!("data-dir {:?} exists", o.data_dir.display().to_string()));
    }
    let wal_dir = o.wal_dir.clone().unwrap_or_else(|| o.data_dir.join("member").join("wal"));
    if wal_dir.exists() {
        return Err(format!("wal-dir {:?} exists", wal_dir.display().to_string()));
    }
    check_hash(&o.snapshot, o.skip_hash_check)?;
    let initial = parse_initial_cluster(&o.initial_cluster).map_err(|e| e.to_string())?;
    let rec = bootstrap_record(&initial, &o.initial_cluster_token).map_err(|e| e.to_string())?;
    let my_urls: Vec<String> = o
        .initial_advertise_peer_urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    let me = member_id(&my_urls, &o.initial_cluster_token, None);
    if !rec.members.contains_key(&me) {
        return Err(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            o.name
        ));
    }
    let backend = crate::apply::etcd_read::read(&o.snapshot)?;
    let mut contents = backend.store;
    contents.applied = Applied {
        index: rusted_replication::BOOTSTRAP_INDEX,
        term: rusted_replication::BOOTSTRAP_INDEX,
    };
    let revision =
        contents.revisions.last().map_or(1, |r| r.rev.main).max(contents.scheduled_compact);
    let revisions = contents.revisions.len();
    let snap_dir = o.data_dir.join("member").join("snap");
    let made = (|| -> Result<(), String> {
        std::fs::create_dir_all(&snap_dir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&wal_dir).map_err(|e| e.to_string())?;
        let blobs = [
            (rusted_mvcc::CLUSTER, rec.encode()),
            (AUTH_KEY, backend.auth.encode()),
            (ALARM_KEY, backend.alarms.encode()),
        ];
        Store::import(&snap_dir.join("db"), &Default::default(), &contents, &blobs)
            .map_err(|e| e.to_string())?;
        crate::member::bootstrap::write_member_identity(
            &o.data_dir.join("member"),
            me,
            rec.cluster_id,
        )
        .map_err(|e| e.to_string())
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&o.data_dir);
        if o.wal_dir.is_some() {
            let _ = std::fs::remove_dir_all(&wal_dir);
        }
        return Err(e);
    }
    Ok(RestoreReport {
        cluster_id: rec.cluster_id,
        member_id: me,
        members: rec.members.values().map(|m| (m.id, m.peer_urls.clone())).collect(),
        revision,
        revisions,
        wal_dir,
        snap_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_slices_print_as_go_prints_them() {
        assert_eq!(go_bytes(&[0, 1, 255]), "[0 1 255]");
        assert_eq!(go_bytes(&[]), "[]");
    }
}
