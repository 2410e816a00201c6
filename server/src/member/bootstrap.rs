//! Who this member is and how it starts: a new cluster from the initial-* flags, or joining
//! an existing one (its record fetched from the other members' peer service). The answer is
//! kept in `member/identity.json` and wins over the flags on every later start, as etcd's
//! data dir does.
#![forbid(unsafe_code)]

use std::path::Path;

use rusted_replication::membership::{bootstrap_record, parse_initial_cluster, ClusterRecord};
use rusted_replication::Bootstrap;
use serde::{Deserialize, Serialize};

use super::StartError;
use crate::config::flags::urls;
use crate::config::ServerConfig;
use crate::peer::transport::fetch_cluster;
use rusted_proto::tls::ClientTls;

/// Who this member is, fixed at bootstrap (initial-* flags are ignored afterwards).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
}

fn read_identity(path: &Path) -> Result<Option<Identity>, StartError> {
    match std::fs::read(path) {
        Ok(b) => {
            Ok(Some(serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// Records who the member in `member_dir` is (a restore does, before its first start).
pub fn write_member_identity(
    member_dir: &Path,
    member_id: u64,
    cluster_id: u64,
) -> Result<(), StartError> {
    write_identity(&member_dir.join("identity.json"), Identity { member_id, cluster_id })
}

fn write_identity(path: &Path, id: Identity) -> Result<(), StartError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&id)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

/// Works out who this member is and how it starts.
pub(super) async fn bootstrap(
    cfg: &ServerConfig,
    peer_client: Option<&ClientTls>,
) -> Result<(Identity, Bootstrap), StartError> {
    let id_path = cfg.member_dir().join("identity.json");
    let initial = parse_initial_cluster(&cfg.initial_cluster)?;
    let my_urls = urls(&cfg.initial_advertise_peer_urls);
    let existing = read_identity(&id_path)?;
    let (ident, boot) = if cfg.initial_cluster_state == "existing" && existing.is_none() {
        let others: Vec<String> = initial
            .iter()
            .flat_map(|(_, u)| u.iter().cloned())
            .filter(|u| !my_urls.contains(u))
            .collect();
        let raw = fetch_cluster(&others, peer_client)
            .await
            .map_err(|e| format!("cannot fetch the cluster from its members: {e}"))?;
        let rec = ClusterRecord::decode(&raw)?;
        let me =
            rec.members.values().find(|m| m.peer_urls.iter().any(|u| my_urls.contains(u))).ok_or(
                "PeerURLs: no match found for existing member (add it with `member add` first)",
            )?;
        (Identity { member_id: me.id, cluster_id: rec.cluster_id }, Bootstrap::Existing(rec))
    } else {
        let rec = bootstrap_record(&initial, &cfg.initial_cluster_token)?;
        let me =
            rusted_replication::membership::member_id(&my_urls, &cfg.initial_cluster_token, None);
        if !rec.members.contains_key(&me) {
            return Err(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                cfg.name
            )
            .into());
        }
        (Identity { member_id: me, cluster_id: rec.cluster_id }, Bootstrap::New(rec))
    };
    match existing {
        Some(i) => Ok((i, boot)),
        None => {
            write_identity(&id_path, ident)?;
            Ok((ident, boot))
        }
    }
}
