//! etcd 3.6's v3 discovery (`--discovery-token`, `--discovery-endpoints`): any etcd v3 API
//! (a rusted cluster, or etcd 3.4+) serves as the discovery service. The operator puts the
//! size under `/_etcd/registry/<token>/_config/size`; each member puts `name=peerURL,...`
//! under `/_etcd/registry/<token>/members/<id>` and watches that prefix until `size`
//! members are there; the first `size` by creation revision make the initial cluster.
#![forbid(unsafe_code)]

use std::time::Duration;

use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::watch_client::WatchClient;
use rusted_proto::keys::prefix_end;
use tonic::transport::Channel;

use crate::config::deferred::DeferredFlags;

/// The registry's root.
pub const REGISTRY: &str = "/_etcd/registry";

/// What can go wrong, with etcd's messages.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum V3Error {
    /// No size key under the token.
    #[error("discovery: size key not found")]
    SizeNotFound,
    /// The size is not a positive number.
    #[error("discovery: size key is bad")]
    BadSizeKey,
    /// Every seat is taken.
    #[error("discovery: cluster is full")]
    FullCluster,
    /// The registrations do not make an initial cluster.
    #[error("discovery: invalid peer URL")]
    InvalidUrl,
    /// The service cannot be reached or used.
    #[error("{0}")]
    Service(String),
}

/// One registration: key, value, creation revision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    key: String,
    value: String,
    created: i64,
}

/// A v3 discovery session for one member.
#[derive(Debug)]
pub struct V3Discovery {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    token: Option<tonic::metadata::AsciiMetadataValue>,
    size_key: String,
    prefix: String,
    self_key: String,
    timeout: Duration,
    retries: u32,
}

fn status_text(s: &tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
}

impl V3Discovery {
    /// Connects to the first reachable endpoint of `--discovery-endpoints`, as member `id`.
    pub async fn connect(d: &DeferredFlags, id: u64) -> Result<Self, V3Error> {
        let secure = !d.discovery_cert.is_empty()
            || !d.discovery_key.is_empty()
            || !d.discovery_cacert.is_empty()
            || !d.discovery_insecure_transport
            || d.discovery_insecure_skip_tls_verify;
        let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
        let tls = secure.then(|| rusted_proto::tls::ClientTls {
            ca_file: path(&d.discovery_cacert),
            cert_file: path(&d.discovery_cert),
            key_file: path(&d.discovery_key),
            skip_verify: d.discovery_insecure_skip_tls_verify,
        });
        let mut last = String::from("no endpoints");
        let mut channel = None;
        for ep in d.discovery_endpoints.split(',').map(str::trim) {
            let target = match rusted_proto::dial::target(ep, tls.as_ref()) {
                Ok(t) => t,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let target = target.with(|e| {
                e.connect_timeout(d.discovery_dial_timeout)
                    .http2_keep_alive_interval(d.discovery_keepalive_time)
                    .keep_alive_timeout(d.discovery_keepalive_timeout)
            });
            match tokio::time::timeout(d.discovery_dial_timeout, target.connect()).await {
                Ok(Ok(c)) => {
                    channel = Some(c);
                    break;
                }
                Ok(Err(e)) => last = format!("{ep}: {e}"),
                Err(_) => last = format!("{ep}: context deadline exceeded"),
            }
        }
        let ch = channel.ok_or(V3Error::Service(last))?;
        let mut token = None;
        if !d.discovery_user.is_empty() {
            let mut auth = pb::auth_client::AuthClient::new(ch.clone());
            let req = pb::AuthenticateRequest {
                name: d.discovery_user.clone(),
                password: d.discovery_password.clone(),
            };
            let r = auth.authenticate(req).await.map_err(|s| V3Error::Service(status_text(&s)))?;
            token = r.into_inner().token.parse().ok();
        }
        let base = format!("{REGISTRY}/{}", d.discovery_token);
        Ok(V3Discovery {
            kv: KvClient::new(ch.clone()),
            watch: WatchClient::new(ch),
            token,
            size_key: format!("{base}/_config/size"),
            prefix: format!("{base}/members"),
            self_key: format!("{base}/members/{id:x}"),
            timeout: d.discovery_request_timeout,
            retries: 0,
        })
    }

    fn req<T>(&self, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        r.set_timeout(self.timeout);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("token", t.clone());
        }
        r
    }

    async fn backoff(&mut self, step: &str, why: &str) {
        self.retries += 1;
        let wait = Duration::from_secs(1 << self.retries.min(8));
        tracing::warn!(reason = %why, backoff = ?wait, step, "retry connecting to discovery service");
        tokio::time::sleep(wait).await;
    }

    /// etcd's `add`: a registration under the prefix, with a value, not seen before.
    fn add(
        cls: &mut Vec<Peer>,
        prefix: &str,
        key: &[u8],
        value: &[u8],
        created: i64,
    ) -> Result<(), &'static str> {
        let key = String::from_utf8_lossy(key).trim().to_string();
        let value = String::from_utf8_lossy(value).trim().to_string();
        if !key.starts_with(prefix) {
            return Err("invalid peer registry key");
        }
        if !value.contains('=') {
            return Err("invalid peer info returned from discovery service");
        }
        if cls.iter().any(|p| p.key == key) {
            return Err("found duplicate peer from discovery service");
        }
        cls.push(Peer { key, value, created });
        cls.sort_by_key(|p| p.created);
        Ok(())
    }

    async fn check_cluster(&mut self) -> Result<(Vec<Peer>, usize, i64), V3Error> {
        loop {
            let r = self
                .req(pb::RangeRequest { key: self.size_key.clone().into(), ..Default::default() });
            let size = match self.kv.range(r).await {
                Ok(r) => {
                    let Some(kv) = r.into_inner().kvs.into_iter().next() else {
                        return Err(V3Error::SizeNotFound);
                    };
                    match String::from_utf8_lossy(&kv.value).trim().parse::<i64>() {
                        Ok(n) if n > 0 => n as usize,
                        _ => return Err(V3Error::BadSizeKey),
                    }
                }
                Err(s) => {
                    tracing::warn!(error = %status_text(&s), "failed to get cluster size from discovery service");
                    self.backoff("cluster status check", &status_text(&s)).await;
                    continue;
                }
            };
            let r = self.req(pb::RangeRequest {
                key: self.prefix.clone().into(),
                range_end: prefix_end(self.prefix.as_bytes()),
                ..Default::default()
            });
            let resp = match self.kv.range(r).await {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    tracing::warn!(error = %status_text(&s), "failed to get cluster members from discovery service");
                    self.backoff("cluster status check", &status_text(&s)).await;
                    continue;
                }
            };
            let rev = resp.header.map_or(0, |h| h.revision);
            let mut cls = Vec::new();
            for kv in resp.kvs {
                match Self::add(&mut cls, &self.prefix, &kv.key, &kv.value, kv.create_revision) {
                    Ok(()) => {
                        tracing::info!(peer = %String::from_utf8_lossy(&kv.value), "found peer from discovery service")
                    }
                    Err(why) => {
                        tracing::warn!(key = %String::from_utf8_lossy(&kv.key), why, "discovery: bad registration ignored")
                    }
                }
            }
            self.retries = 0;
            for (i, p) in cls.iter().enumerate() {
                if p.key == self.self_key {
                    break;
                }
                if i + 1 >= size {
                    return Err(V3Error::FullCluster);
                }
            }
            return Ok((cls, size, rev));
        }
    }

    async fn register_self(&mut self, contents: &str) {
        loop {
            let r = self.req(pb::PutRequest {
                key: self.self_key.clone().into(),
                value: contents.as_bytes().to_vec(),
                ..Default::default()
            });
            match self.kv.put(r).await {
                Ok(_) => {
                    self.retries = 0;
                    tracing::info!("register member itself successfully");
                    return;
                }
                Err(s) => {
                    tracing::warn!(error = %status_text(&s), "failed to register members itself to the discovery service");
                    self.backoff("register member itself", &status_text(&s)).await;
                }
            }
        }
    }

    async fn wait_peers(&mut self, cls: &mut Vec<Peer>, size: usize, rev: i64) {
        tracing::info!(
            cluster_size = size,
            found_peers = cls.len(),
            "waiting for peers from discovery service"
        );
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: self.prefix.clone().into(),
                    range_end: prefix_end(self.prefix.as_bytes()),
                    start_revision: rev.saturating_add(1),
                    ..Default::default()
                },
            )),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(create).await;
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Some(t) = &self.token {
            req.metadata_mut().insert("token", t.clone());
        }
        let Ok(stream) = self.watch.watch(req).await else { return };
        let mut stream = stream.into_inner();
        while cls.len() < size {
            let Ok(Some(resp)) = stream.message().await else { return };
            for ev in resp.events {
                if let Some(kv) = ev.kv {
                    if Self::add(cls, &self.prefix, &kv.key, &kv.value, kv.create_revision).is_ok()
                    {
                        tracing::info!(peer = %String::from_utf8_lossy(&kv.value), "found peer from discovery service");
                    }
                }
            }
        }
        drop(tx);
        tracing::info!(found_peers = cls.len(), "found all needed peers from discovery service");
    }

    /// Registers this member (`contents`: its `name=url` pairs) and waits for the cluster;
    /// returns the initial cluster (`name=url,...`).
    pub async fn join_cluster(&mut self, contents: &str) -> Result<String, V3Error> {
        self.check_cluster().await?;
        self.register_self(contents).await;
        let (mut cls, size, rev) = self.check_cluster().await?;
        while cls.len() < size {
            self.wait_peers(&mut cls, size, rev).await;
            if cls.len() < size {
                self.backoff("waiting for other nodes", "watch ended").await;
            }
        }
        let us = cls.iter().take(size).map(|p| p.value.as_str()).collect::<Vec<_>>().join(",");
        rusted_replication::membership::parse_initial_cluster(&us)
            .map_err(|_| V3Error::InvalidUrl)?;
        Ok(us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_as_etcd_adds_them() {
        let mut cls = Vec::new();
        let p = "/_etcd/registry/t/members";
        assert!(V3Discovery::add(
            &mut cls,
            p,
            b"/_etcd/registry/t/members/2",
            b"b=http://b:2380",
            9
        )
        .is_ok());
        assert!(V3Discovery::add(
            &mut cls,
            p,
            b"/_etcd/registry/t/members/1",
            b"a=http://a:2380 ",
            5
        )
        .is_ok());
        assert_eq!(cls[0].value, "a=http://a:2380", "sorted by creation, trimmed");
        assert_eq!(
            V3Discovery::add(&mut cls, p, b"/_etcd/registry/t/members/1", b"a=x", 5),
            Err("found duplicate peer from discovery service")
        );
        assert_eq!(
            V3Discovery::add(&mut cls, p, b"/other", b"a=x", 5),
            Err("invalid peer registry key")
        );
        assert_eq!(
            V3Discovery::add(&mut cls, p, b"/_etcd/registry/t/members/3", b"", 7),
            Err("invalid peer info returned from discovery service")
        );
    }
}
