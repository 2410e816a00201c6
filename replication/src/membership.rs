//! Cluster membership: members, their IDs, and the cluster record the state machine stores.
//!
//! IDs are derived as etcd derives them, so a cluster bootstrapped with the same flags gets the
//! same IDs on every member and across restarts:
//! - member ID: the first 8 bytes (big-endian) of SHA-1 over the member's sorted peer URLs
//!   concatenated, then the cluster token, then — for a member added at runtime — the decimal
//!   Unix time of the add;
//! - cluster ID: the first 8 bytes (big-endian) of SHA-1 over the sorted member IDs, each as 8
//!   big-endian bytes.
//!
//! The cluster record (members, removed IDs, raft voters and learners) is JSON with a version
//! field; it is written to the state machine atomically with the applied index of the entry
//! that changed it, and travels inside snapshots.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::ConfState;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::error::{ReplicationError, Result};

/// Format version of the cluster record.
pub const CLUSTER_RECORD_VERSION: u32 = 1;

/// One member, as etcd's Member message shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member ID.
    pub id: u64,
    /// Name (empty until the member has started and published it).
    pub name: String,
    /// URLs peers reach it on.
    pub peer_urls: Vec<String>,
    /// URLs clients reach it on (empty until published).
    pub client_urls: Vec<String>,
    /// A non-voting member.
    pub is_learner: bool,
}

impl Member {
    /// Whether the member has started (published its name and client URLs), as etcd's
    /// IsStarted.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// Membership as of some applied index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClusterRecord {
    /// Format version ([`CLUSTER_RECORD_VERSION`]).
    pub version: u32,
    /// Cluster ID (fixed at bootstrap).
    pub cluster_id: u64,
    /// Members by ID.
    pub members: BTreeMap<u64, Member>,
    /// IDs removed from the cluster (never reused).
    pub removed: BTreeSet<u64>,
}

impl ClusterRecord {
    /// Encodes for the state machine.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes what [`ClusterRecord::encode`] wrote.
    pub fn decode(b: &[u8]) -> Result<ClusterRecord> {
        let r: ClusterRecord = serde_json::from_slice(b).map_err(|e| {
            ReplicationError::Corrupt { what: "cluster record", detail: e.to_string() }
        })?;
        if r.version != CLUSTER_RECORD_VERSION {
            return Err(ReplicationError::Corrupt {
                what: "cluster record",
                detail: format!(
                    "version {} (this build reads {CLUSTER_RECORD_VERSION})",
                    r.version
                ),
            });
        }
        Ok(r)
    }

    /// The raft membership this record describes.
    pub fn conf_state(&self) -> ConfState {
        let mut cs = ConfState::default();
        for m in self.members.values() {
            if m.is_learner {
                cs.learners.push(m.id);
            } else {
                cs.voters.push(m.id);
            }
        }
        cs
    }

    /// Members sorted by ID.
    pub fn list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    /// A member using any of `urls` as a peer URL, other than `except`.
    pub fn peer_url_taken(&self, urls: &[String], except: u64) -> bool {
        self.members
            .values()
            .any(|m| m.id != except && m.peer_urls.iter().any(|u| urls.contains(u)))
    }

    /// Voters in the record.
    pub fn voters(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| !m.is_learner)
    }
}

/// etcd's member ID: see the module docs. `added_at` is the Unix time of a runtime add.
pub fn member_id(peer_urls: &[String], token: &str, added_at: Option<i64>) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    for u in urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    if let Some(t) = added_at {
        h.update(t.to_string().as_bytes());
    }
    first_u64(&h.finalize())
}

/// etcd's cluster ID: see the module docs.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(d: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// Parses etcd's `--initial-cluster` value: `name=url,name=url,...` (a name may repeat to give
/// several URLs). Returns (name, urls) in first-seen order.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| {
            ReplicationError::Config(format!("--initial-cluster: {part:?} is not name=url"))
        })?;
        check_url(url)?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if out.is_empty() {
        return Err(ReplicationError::Config("--initial-cluster is empty".into()));
    }
    Ok(out)
}

/// Checks a URL is `http://host:port` or `https://host:port`.
pub fn check_url(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .or_else(|| url.strip_prefix("unix://"))
        .ok_or_else(|| {
            ReplicationError::Config(format!("URL scheme must be http, https or unix: {url}"))
        })?;
    if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
        return Err(ReplicationError::Config(format!("expected a URL without a path: {url}")));
    }
    Ok(())
}

/// Builds the record of a new cluster from `--initial-cluster` and `--initial-cluster-token`.
/// Members start unstarted (no name), as in etcd; each publishes its name once running.
pub fn bootstrap_record(initial: &[(String, Vec<String>)], token: &str) -> Result<ClusterRecord> {
    let mut rec = ClusterRecord { version: CLUSTER_RECORD_VERSION, ..Default::default() };
    for (name, urls) in initial {
        let id = member_id(urls, token, None);
        if rec.members.contains_key(&id) {
            return Err(ReplicationError::Config(format!(
                "--initial-cluster has duplicate member {name} (same peer URLs)"
            )));
        }
        rec.members.insert(
            id,
            Member {
                id,
                name: String::new(),
                peer_urls: urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            },
        );
    }
    let ids: Vec<u64> = rec.members.keys().copied().collect();
    rec.cluster_id = cluster_id(&ids);
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_order_independent() {
        let a = member_id(&["http://b:2380".into(), "http://a:2380".into()], "tok", None);
        let b = member_id(&["http://a:2380".into(), "http://b:2380".into()], "tok", None);
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://a:2380".into()], "tok", None));
        assert_ne!(a, member_id(&["http://a:2380".into(), "http://b:2380".into()], "tok", Some(1)));
        assert_eq!(cluster_id(&[3, 1, 2]), cluster_id(&[1, 2, 3]));
    }

    #[test]
    fn initial_cluster_parses_and_rejects() {
        let c = parse_initial_cluster("a=http://127.0.0.1:1,b=http://127.0.0.1:2,a=http://x:3")
            .expect("valid");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].1.len(), 2);
        assert!(parse_initial_cluster("a").is_err());
        assert!(parse_initial_cluster("a=ftp://x").is_err());
        assert!(parse_initial_cluster("").is_err());
        let rec = bootstrap_record(&c, "etcd-cluster").expect("record");
        assert_eq!(ClusterRecord::decode(&rec.encode()).expect("round trip"), rec);
        assert_eq!(rec.conf_state().voters.len(), 2);
    }
}
