//! etcd's v2 discovery (`--discovery URL`): the member registers `name=peerURL,...` under
//! its ID in the discovery service's v2 keys directory (the URL's path), waits until
//! `_config/size` members have registered, and bootstraps with the first `size` of them by
//! creation order. A member arriving after that is told the cluster is full.
//!
//! The protocol and its messages are etcd 3.4's: requests go to the URL's path with no
//! `/v2/keys` added (so `https://discovery.etcd.io/<token>` works); errors of the service
//! or the network are retried with backoff (2 s doubling to 256 s); a registration that
//! already exists is `discovery: found duplicate id`.
#![forbid(unsafe_code)]

use std::time::Duration;

use serde::Deserialize;

/// What can go wrong, with etcd's messages.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiscoveryError {
    /// Every seat is taken by members registered earlier.
    #[error("discovery: cluster is full")]
    FullCluster,
    /// This member's ID is registered already (a token reused after a failed bootstrap).
    #[error("discovery: found duplicate id")]
    DuplicateId,
    /// Two registrations give the same name.
    #[error("discovery: found duplicate name")]
    DuplicateName,
    /// `_config/size` is not a number.
    #[error("discovery: size key is bad")]
    BadSizeKey,
    /// The service did not answer with JSON.
    #[error("discovery: bad discovery endpoint")]
    BadEndpoint,
    /// The registrations do not make an initial cluster.
    #[error("discovery: invalid URL")]
    InvalidUrl,
    /// The discovery URL or proxy cannot be used.
    #[error("{0}")]
    Config(String),
    /// An error of the v2 API, as etcd's client prints it (`100: Key not found (/x) [5]`).
    #[error("{0}")]
    Service(String),
}

/// A v2 node as the service shows it.
#[derive(Debug, Clone, Deserialize)]
struct Node {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    nodes: Vec<Node>,
    #[serde(default, rename = "createdIndex")]
    created: u64,
    #[serde(default, rename = "modifiedIndex")]
    modified: u64,
}

#[derive(Debug, Deserialize)]
struct Answer {
    node: Option<Node>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "errorCode")]
    code: u32,
    #[serde(default)]
    message: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    index: u64,
}

/// One answer: a node and the service's index, a v2 error, or an unreachable service.
enum Reply {
    Node(Node, u64),
    Error(ErrorBody),
    /// Not JSON from a 2xx.
    NotJson,
    /// An empty 2xx body (a watch ended without an event: ask again).
    Empty,
    /// A transport error or a 5xx: retried.
    Unavailable(String),
    /// The request's deadline passed: not retried, as etcd's client.
    Deadline,
}

/// The longest backoff between retries (etcd: 2^8 s).
const MAX_BACKOFF_EXP: u32 = 8;
/// How long dialing the discovery service may take (etcd's).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// A request's timeout (etcd's client default); watches have none.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A discovery session for one member.
#[derive(Debug)]
pub struct Discovery {
    http: reqwest::Client,
    /// scheme://host[:port]
    endpoint: String,
    /// The directory: the discovery URL's path.
    cluster: String,
    /// The discovery URL's query, sent with every request.
    query: String,
    /// This member's ID, in hex (its key).
    id: String,
    retries: u32,
    url: String,
}

fn base(key: &str) -> &str {
    key.trim_end_matches('/').rsplit('/').next().unwrap_or(key)
}

/// The HTTP client discovery (and the v2 proxy) use: system-independent roots, `proxy`
/// when given (etcd ignores the *_PROXY variables here), `connect` to dial, and `read`
/// (when given) for each read.
pub fn http_client(
    proxy: &str,
    connect: Duration,
    read: Option<Duration>,
) -> Result<reqwest::Client, String> {
    let provider = rusted_proto::tls::provider();
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut b =
        reqwest::Client::builder().use_preconfigured_tls(tls).connect_timeout(connect).no_proxy();
    if let Some(t) = read {
        b = b.read_timeout(t);
    }
    if !proxy.is_empty() {
        let with_scheme =
            if proxy.starts_with("http") { proxy.to_string() } else { format!("http://{proxy}") };
        let p = reqwest::Proxy::all(&with_scheme)
            .map_err(|e| format!("invalid proxy address {proxy:?}: {e}"))?;
        tracing::info!(proxy = %with_scheme, "running proxy with discovery");
        b = b.proxy(p);
    }
    b.build().map_err(|e| e.to_string())
}

impl Discovery {
    /// A session for member `id` on the discovery URL `url`.
    pub fn new(url: &str, proxy: &str, id: u64) -> Result<Self, DiscoveryError> {
        let bad = || DiscoveryError::Config(format!("invalid discovery URL {url:?}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        if host.is_empty() {
            return Err(bad());
        }
        let http = http_client(proxy, DIAL_TIMEOUT, None).map_err(DiscoveryError::Config)?;
        Ok(Discovery {
            http,
            endpoint: format!("{scheme}://{host}"),
            cluster: format!("/{}", path.trim_end_matches('/')),
            query: query.to_string(),
            id: format!("{id:x}"),
            retries: 0,
            url: url.to_string(),
        })
    }

    fn url_of(&self, path: &str, params: &str) -> String {
        let mut q = params.to_string();
        if !self.query.is_empty() {
            q = if q.is_empty() { self.query.clone() } else { format!("{}&{q}", self.query) };
        }
        let p = crate::v2::store::clean(path);
        if q.is_empty() {
            format!("{}{p}", self.endpoint)
        } else {
            format!("{}{p}?{q}", self.endpoint)
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = match req.send().await {
            Ok(r) => r,
            // etcd's client gives up when a request's deadline passes (no retry).
            Err(e) if e.is_timeout() => return Reply::Deadline,
            Err(e) => {
                return Reply::Unavailable(format!(
                    "client: etcd member {} failed: {e}",
                    self.endpoint
                ))
            }
        };
        let status = resp.status();
        let index = resp
            .headers()
            .get("x-etcd-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if status.is_server_error() {
            let why = if status.as_u16() == 500 || status.as_u16() == 503 {
                format!("client: etcd member {} has no leader", self.endpoint)
            } else {
                format!(
                    "client: etcd member {} returns server error [{}]",
                    self.endpoint,
                    status.canonical_reason().unwrap_or("")
                )
            };
            return Reply::Unavailable(why);
        }
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Reply::Unavailable(e.to_string()),
        };
        if status.is_success() {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Reply::Empty;
            }
            return match serde_json::from_slice::<Answer>(&body) {
                Ok(Answer { node: Some(n) }) => Reply::Node(n, index),
                _ => Reply::NotJson,
            };
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => Reply::Error(e),
            Err(_) => Reply::NotJson,
        }
    }

    async fn get(&self, path: &str, params: &str, timeout: bool) -> Reply {
        let mut req = self.http.get(self.url_of(path, params));
        if timeout {
            req = req.timeout(REQUEST_TIMEOUT);
        }
        self.send(req).await
    }

    async fn backoff(&mut self, step: &str, why: &str) {
        self.retries += 1;
        let wait = Duration::from_secs(1 << self.retries.min(MAX_BACKOFF_EXP));
        tracing::warn!(url = %self.url, reason = %why, backoff = ?wait, step, "retry connecting to discovery service");
        tokio::time::sleep(wait).await;
    }

    fn service_error(e: &ErrorBody) -> DiscoveryError {
        DiscoveryError::Service(format!("{}: {} ({}) [{}]", e.code, e.message, e.cause, e.index))
    }

    /// etcd's `checkCluster`: the size, the registrations (by creation order) and the
    /// directory's index; `FullCluster` (with the first `size`) when this member has no seat.
    async fn check_cluster(
        &mut self,
    ) -> Result<(Vec<Node>, usize, u64), (DiscoveryError, Vec<Node>)> {
        let params = "quorum=false&recursive=false&sorted=false";
        loop {
            let size_key = format!("{}/_config/size", self.cluster);
            let size = match self.get(&size_key, params, true).await {
                Reply::Node(n, _) => n.value,
                Reply::Error(e) => return Err((Self::service_error(&e), vec![])),
                Reply::NotJson | Reply::Empty => return Err((DiscoveryError::BadEndpoint, vec![])),
                Reply::Deadline => return Err((deadline(), vec![])),
                Reply::Unavailable(why) => {
                    tracing::warn!(url = %self.url, path = %size_key, err = %why, "failed to get from discovery server");
                    self.backoff("cluster status check", &why).await;
                    continue;
                }
            };
            let size: usize =
                size.trim().parse().map_err(|_| (DiscoveryError::BadSizeKey, vec![]))?;
            let (dir, index) = match self.get(&self.cluster.clone(), params, true).await {
                Reply::Node(n, i) => (n, i),
                Reply::Error(e) => return Err((Self::service_error(&e), vec![])),
                Reply::NotJson | Reply::Empty => return Err((DiscoveryError::BadEndpoint, vec![])),
                Reply::Deadline => return Err((deadline(), vec![])),
                Reply::Unavailable(why) => {
                    self.backoff("cluster status check", &why).await;
                    continue;
                }
            };
            let mut nodes: Vec<Node> =
                dir.nodes.into_iter().filter(|n| base(&n.key) != "_config").collect();
            nodes.sort_by_key(|n| n.created);
            for (i, n) in nodes.iter().enumerate() {
                if base(&n.key) == self.id {
                    break;
                }
                if i + 1 >= size {
                    nodes.truncate(size);
                    return Err((DiscoveryError::FullCluster, nodes));
                }
            }
            return Ok((nodes, size, index));
        }
    }

    /// Registers this member (`contents`: its `name=url` pairs) and waits until every seat
    /// is taken; returns the initial cluster (`name=url,...`).
    pub async fn join_cluster(&mut self, contents: &str) -> Result<String, DiscoveryError> {
        self.check_cluster().await.map_err(|(e, _)| e)?;
        self.create_self(contents).await?;
        let (nodes, size, index) = self.check_cluster().await.map_err(|(e, _)| e)?;
        let all = self.wait_nodes(nodes, size, index).await?;
        nodes_to_cluster(&all, size)
    }

    /// The cluster the service describes, without registering (etcd's `GetCluster`, for a
    /// proxy): the first `size` registrations, once there are that many.
    pub async fn get_cluster(&mut self) -> Result<String, DiscoveryError> {
        match self.check_cluster().await {
            Err((DiscoveryError::FullCluster, nodes)) => {
                let size = nodes.len();
                nodes_to_cluster(&nodes, size)
            }
            Err((e, _)) => Err(e),
            Ok((nodes, size, index)) => {
                let all = self.wait_nodes(nodes, size, index).await?;
                nodes_to_cluster(&all, size)
            }
        }
    }

    async fn create_self(&mut self, contents: &str) -> Result<(), DiscoveryError> {
        let key = format!("{}/{}", self.cluster, self.id);
        let body = format!("value={}", form_escape(contents));
        let req = self
            .http
            .put(self.url_of(&key, "prevExist=false"))
            .header("content-type", "application/x-www-form-urlencoded")
            .timeout(REQUEST_TIMEOUT)
            .body(body);
        let created = match self.send(req).await {
            Reply::Node(n, _) => n.created,
            Reply::Error(e) if e.code == crate::v2::error::NODE_EXIST => {
                return Err(DiscoveryError::DuplicateId)
            }
            Reply::Error(e) => return Err(Self::service_error(&e)),
            Reply::NotJson | Reply::Empty => return Err(DiscoveryError::BadEndpoint),
            Reply::Deadline => return Err(deadline()),
            Reply::Unavailable(why) => return Err(DiscoveryError::Service(why)),
        };
        // Wait until the registration is visible on the server (etcd does the same).
        let params = format!("recursive=false&wait=true&waitIndex={created}");
        loop {
            match self.get(&key, &params, false).await {
                Reply::Empty => continue,
                Reply::Unavailable(why) => self.backoff("registration check", &why).await,
                _ => return Ok(()),
            }
        }
    }

    async fn wait_nodes(
        &mut self,
        nodes: Vec<Node>,
        size: usize,
        index: u64,
    ) -> Result<Vec<Node>, DiscoveryError> {
        let (mut nodes, mut size, mut index) = (nodes, size, index);
        // A failed watch starts over from a fresh look at the cluster, as etcd's.
        loop {
            match self.wait_nodes_once(nodes, size, index).await? {
                Some(all) => return Ok(all),
                None => (nodes, size, index) = self.check_cluster().await.map_err(|(e, _)| e)?,
            }
        }
    }

    /// One watch for the missing registrations; `None` when the service became unavailable.
    async fn wait_nodes_once(
        &mut self,
        nodes: Vec<Node>,
        size: usize,
        index: u64,
    ) -> Result<Option<Vec<Node>>, DiscoveryError> {
        let mut all: Vec<Node> = nodes.into_iter().take(size).collect();
        for n in &all {
            if base(&n.key) == self.id {
                tracing::info!(self = %n.value, "found self from discovery server");
            } else {
                tracing::info!(peer = %n.value, "found peer from discovery server");
            }
        }
        let mut next = index.wrapping_add(1);
        while all.len() < size {
            tracing::info!(
                found_peers = all.len(),
                needed_peers = size - all.len(),
                "found peers from discovery server; waiting for more"
            );
            let params = format!("recursive=true&wait=true&waitIndex={next}");
            match self.get(&self.cluster.clone(), &params, false).await {
                Reply::Node(n, _) => {
                    next = n.modified.wrapping_add(1);
                    tracing::info!(peer = %n.value, "found peer from discovery server");
                    all.push(n);
                }
                Reply::Empty => {}
                Reply::Error(e) => return Err(Self::service_error(&e)),
                Reply::NotJson => return Err(DiscoveryError::BadEndpoint),
                Reply::Deadline => return Err(deadline()),
                Reply::Unavailable(why) => {
                    self.backoff("waiting for other nodes", &why).await;
                    return Ok(None);
                }
            }
        }
        tracing::info!(found_peers = all.len(), "found all needed peers from discovery server");
        Ok(Some(all))
    }
}

/// Go's error for a passed deadline.
fn deadline() -> DiscoveryError {
    DiscoveryError::Service("context deadline exceeded".into())
}

/// `application/x-www-form-urlencoded` of a value (unreserved bytes kept).
fn form_escape(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    utf8_percent_encode(s, FORM).to_string()
}

/// etcd's `nodesToCluster`: the registrations' values joined, which must name `size`
/// distinct members.
fn nodes_to_cluster(nodes: &[Node], size: usize) -> Result<String, DiscoveryError> {
    let us = nodes.iter().map(|n| n.value.as_str()).collect::<Vec<_>>().join(",");
    let parsed = rusted_replication::membership::parse_initial_cluster(&us)
        .map_err(|_| DiscoveryError::InvalidUrl)?;
    let mut names: Vec<&str> = parsed.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() != size {
        return Err(DiscoveryError::DuplicateName);
    }
    Ok(us)
}

/// etcd's registration value: this member's `name=url` pairs, sorted, comma separated.
pub fn contents(name: &str, peer_urls: &[String]) -> String {
    let mut pairs: Vec<String> = peer_urls.iter().map(|u| format!("{name}={u}")).collect();
    pairs.sort();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(key: &str, value: &str, created: u64) -> Node {
        Node { key: key.into(), value: value.into(), nodes: vec![], created, modified: created }
    }

    #[test]
    fn urls_and_values_as_etcd() {
        let d =
            Discovery::new("http://127.0.0.1:2379/v2/keys/discovery/tok?x=1", "", 0xab).unwrap();
        assert_eq!(d.cluster, "/v2/keys/discovery/tok");
        assert_eq!(
            d.url_of("/v2/keys/discovery/tok/_config/size", "quorum=false"),
            "http://127.0.0.1:2379/v2/keys/discovery/tok/_config/size?x=1&quorum=false"
        );
        assert_eq!(d.id, "ab");
        assert!(Discovery::new("ftp://x/y", "", 1).is_err());
        assert_eq!(
            contents("n", &["http://b:2".into(), "http://a:1".into()]),
            "n=http://a:1,n=http://b:2"
        );
        assert_eq!(form_escape("n=http://a:1,m"), "n%3Dhttp%3A%2F%2Fa%3A1%2Cm");
    }

    #[test]
    fn cluster_from_registrations() {
        let ns = [node("/d/1", "a=http://a:2380", 5), node("/d/2", "b=http://b:2380", 6)];
        assert_eq!(nodes_to_cluster(&ns, 2).unwrap(), "a=http://a:2380,b=http://b:2380");
        assert_eq!(nodes_to_cluster(&ns, 3), Err(DiscoveryError::DuplicateName));
        let dup = [node("/d/1", "a=http://a:2380", 5), node("/d/2", "a=http://b:2380", 6)];
        assert_eq!(nodes_to_cluster(&dup, 2), Err(DiscoveryError::DuplicateName));
    }
}
