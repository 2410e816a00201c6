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
    let my_urls = urls(&cfg.initial_advertise_peer_urls);
    let existing = read_identity(&id_path)?;
    let discovery = &cfg.deferred.discovery;
    if existing.is_some() && !discovery.is_empty() {
        tracing::warn!(
            discovery_url = %discovery,
            "discovery token is ignored since cluster already initialized; valid logs are found"
        );
    }
    let (ident, boot) = if existing.is_none() && !discovery.is_empty() {
        if cfg.initial_cluster_state == "existing" {
            return Err(
                "discovery URL should not be set when joining existing initial cluster".into()
            );
        }
        // The cluster token is the discovery URL itself (etcd's).
        let me = rusted_replication::membership::member_id(&my_urls, discovery, None);
        let contents = crate::discovery::v2::contents(&cfg.name, &my_urls);
        let cluster = join_discovery(cfg, me, &contents).await?;
        discovered(cfg, &cluster, discovery, me)?
    } else if existing.is_none()
        && !cfg.deferred.discovery_endpoints.is_empty()
        && cfg.initial_cluster_state == "existing"
    {
        // etcd 3.6 runs no v3 discovery to join: with no peers to ask, it fails so.
        return Err("cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs".into());
    } else if existing.is_none() && !cfg.deferred.discovery_endpoints.is_empty() {
        let token = &cfg.deferred.discovery_token;
        tracing::info!(discovery_token = %token, discovery_endpoints = %cfg.deferred.discovery_endpoints, "Bootstrapping cluster using v3 discovery.");
        let me = rusted_replication::membership::member_id(&my_urls, token, None);
        let contents = crate::discovery::v2::contents(&cfg.name, &my_urls);
        let joined = match crate::discovery::v3::V3Discovery::connect(&cfg.deferred, me).await {
            Ok(mut d) => d.join_cluster(&contents).await,
            Err(e) => Err(e),
        };
        let cluster = joined.map_err(|e| {
            let full = format!("failed to join discovery cluster ({e})");
            tracing::warn!(discovery_token = %token, error = %full, "failed to bootstrap; discovery token was already used");
            tracing::warn!("do not reuse discovery token; generate a new one to bootstrap a cluster");
            full
        })?;
        tracing::info!(cluster = %cluster, "discovery joined cluster successfully");
        discovered(cfg, &cluster, token, me)?
    } else if cfg.initial_cluster_state == "existing" && existing.is_none() {
        let initial = initial_cluster(cfg, &my_urls).await?;
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
        let initial = initial_cluster(cfg, &my_urls).await?;
        let rec = bootstrap_record(&initial, &cfg.initial_cluster_token)?;
        // This member's ID comes from its URLs in the initial cluster (SRV records give host
        // names where the advertised URLs may hold addresses: they resolve alike).
        let srv = !cfg.deferred.discovery_srv.is_empty();
        let mine = initial.iter().find(|(n, _)| srv && *n == cfg.name).map(|(_, u)| u.clone());
        let me = rusted_replication::membership::member_id(
            mine.as_deref().unwrap_or(&my_urls),
            &cfg.initial_cluster_token,
            None,
        );
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

/// A new cluster from the initial cluster a discovery service gave (`token`: the cluster
/// token it hashes member IDs with), which must hold this member (`me`).
fn discovered(
    cfg: &ServerConfig,
    cluster: &str,
    token: &str,
    me: u64,
) -> Result<(Identity, Bootstrap), StartError> {
    let rec = bootstrap_record(&parse_initial_cluster(cluster)?, token)?;
    if !rec.members.contains_key(&me) {
        return Err(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            cfg.name
        )
        .into());
    }
    Ok((Identity { member_id: me, cluster_id: rec.cluster_id }, Bootstrap::New(rec)))
}

/// A full cluster with `--discovery-fallback=proxy`: the member runs as etcd 3.4's v2 proxy.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FallBackToProxy(pub crate::discovery::v2::DiscoveryError);

/// Registers with the discovery service and waits for the cluster, logging etcd's advice
/// when the token cannot be used.
async fn join_discovery(cfg: &ServerConfig, me: u64, contents: &str) -> Result<String, StartError> {
    use crate::discovery::v2::{Discovery, DiscoveryError as E};
    let durl = &cfg.deferred.discovery;
    let joined = match Discovery::new(durl, &cfg.deferred.discovery_proxy, me) {
        Ok(mut d) => d.join_cluster(contents).await,
        Err(e) => Err(e),
    };
    let e = match joined {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let full = format!("failed to join discovery cluster ({e})");
    match &e {
        E::FullCluster if cfg.deferred.discovery_fallback == "proxy" => {
            tracing::warn!("discovery cluster is full, falling back to proxy");
            return Err(Box::new(FallBackToProxy(e)));
        }
        E::DuplicateId => {
            tracing::warn!(name = %cfg.name, discovery_token = %durl, error = %full, "member has been registered with discovery service");
            tracing::warn!(data_dir = %cfg.data_dir().display(), "but could not find valid cluster configuration");
            tracing::warn!("check data dir if previous bootstrap succeeded");
            tracing::warn!("or use a new discovery token if previous bootstrap failed");
        }
        E::DuplicateName => {
            tracing::warn!(discovery_token = %durl, error = %full, "member with duplicated name has already been registered");
            tracing::warn!("cURL the discovery token URL for details");
            tracing::warn!(
                "do not reuse discovery token; generate a new one to bootstrap a cluster"
            );
        }
        _ => {
            tracing::warn!(discovery_token = %durl, error = %full, "failed to bootstrap; discovery token was already used");
            tracing::warn!(
                "do not reuse discovery token; generate a new one to bootstrap a cluster"
            );
        }
    }
    Err(full.into())
}

/// The initial cluster: `--initial-cluster`, or what `--discovery-srv`'s records say (this
/// member's advertised URLs must be its records', as etcd checks).
async fn initial_cluster(
    cfg: &ServerConfig,
    my_urls: &[String],
) -> Result<Vec<(String, Vec<String>)>, StartError> {
    let domain = &cfg.deferred.discovery_srv;
    if domain.is_empty() {
        return Ok(parse_initial_cluster(&cfg.initial_cluster)?);
    }
    let srv = &cfg.deferred.discovery_srv_name;
    let joined = crate::discovery::srv::initial_cluster(domain, srv, &cfg.name, my_urls)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "failed to resolve during SRV discovery");
            format!("error setting up initial cluster: {e}")
        })?;
    let initial = parse_initial_cluster(&joined)?;
    let Some((_, mine)) = initial.iter().find(|(n, _)| *n == cfg.name) else {
        return Err(format!(
            "error setting up initial cluster: cannot find local etcd member {:?} in SRV records",
            cfg.name
        )
        .into());
    };
    crate::discovery::srv::advertise_matches(&cfg.name, mine, my_urls).await?;
    Ok(initial)
}
