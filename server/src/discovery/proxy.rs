//! etcd 3.4's v2 proxy: what a member becomes when the discovery service says the cluster
//! is full and `--discovery-fallback=proxy` (etcd's default), or with `--proxy on|readonly`.
//! It forwards HTTP requests (the v2 API and the JSON gateway; not gRPC, as etcd's) to the
//! cluster's client URLs, which it learns from the members' peer URLs and refreshes every
//! `--proxy-refresh-interval`; the peer URLs are kept in `<data-dir>/proxy/cluster`, so a
//! restarted proxy needs neither the discovery service nor the flags.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::config::flags::urls;
use crate::config::ServerConfig;
use crate::member::StartError;

/// The cluster file: the members' peer URLs, as etcd writes it.
#[derive(Debug, Serialize, Deserialize)]
struct ClusterFile {
    #[serde(rename = "PeerURLs")]
    peer_urls: Vec<String>,
}

/// The upstreams and when each last failed.
#[derive(Debug, Default)]
struct Upstreams {
    client_urls: Vec<String>,
    failed: HashMap<String, Instant>,
}

#[derive(Clone)]
struct Proxy {
    up: Arc<Mutex<Upstreams>>,
    http: reqwest::Client,
    readonly: bool,
    failure_wait: Duration,
}

/// Is this data dir a proxy's (and not a member's)?
pub fn is_proxy_dir(cfg: &ServerConfig) -> bool {
    cfg.data_dir().join("proxy").is_dir() && !cfg.member_dir().join("identity.json").exists()
}

fn cluster_path(cfg: &ServerConfig) -> PathBuf {
    cfg.data_dir().join("proxy").join("cluster")
}

/// The peer URLs to start from: the cluster file, else the discovery service's cluster,
/// else `--initial-cluster`.
async fn initial_peers(cfg: &ServerConfig) -> Result<Vec<String>, StartError> {
    if let Ok(b) = std::fs::read(cluster_path(cfg)) {
        let f: ClusterFile = serde_json::from_slice(&b)
            .map_err(|e| format!("{}: {e}", cluster_path(cfg).display()))?;
        if !cfg.deferred.discovery.is_empty() {
            tracing::warn!(path = %cluster_path(cfg).display(), "discovery token ignored since the proxy has already been initialized; valid cluster file found");
        }
        return Ok(f.peer_urls);
    }
    let initial = if cfg.deferred.discovery.is_empty() {
        cfg.initial_cluster.clone()
    } else {
        let mut d = crate::discovery::v2::Discovery::new(
            &cfg.deferred.discovery,
            &cfg.deferred.discovery_proxy,
            0,
        )?;
        d.get_cluster().await?
    };
    let parsed = rusted_replication::membership::parse_initial_cluster(&initial)
        .map_err(|e| format!("error setting up initial cluster: {e}"))?;
    let mut peers: Vec<String> = parsed.into_iter().flat_map(|(_, u)| u).collect();
    peers.sort();
    Ok(peers)
}

#[derive(Deserialize)]
struct EtcdMember {
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

/// The members (peer URLs, client URLs) as one of `peers` tells them: rusted's peer service,
/// or etcd's `GET /members` on its peer port.
async fn members(
    peers: &[String],
    http: &reqwest::Client,
    tls: Option<&rusted_proto::tls::ClientTls>,
) -> Option<(Vec<String>, Vec<String>)> {
    if let Ok(raw) = crate::peer::transport::fetch_cluster(peers, tls).await {
        if let Ok(rec) = rusted_replication::membership::ClusterRecord::decode(&raw) {
            let ms = rec.members.values();
            let p = ms.clone().flat_map(|m| m.peer_urls.clone()).collect();
            return Some((p, ms.flat_map(|m| m.client_urls.clone()).collect()));
        }
    }
    for u in peers {
        let url = format!("{}/members", u.trim_end_matches('/'));
        let Ok(r) = http.get(&url).timeout(Duration::from_secs(10)).send().await else { continue };
        let Ok(b) = r.bytes().await else { continue };
        let Ok(list) = serde_json::from_slice::<Vec<EtcdMember>>(&b) else { continue };
        let p = list.iter().flat_map(|m| m.peer_urls.clone()).collect();
        return Some((p, list.into_iter().flat_map(|m| m.client_urls).collect()));
    }
    None
}

fn save_cluster(cfg: &ServerConfig, peers: &[String]) -> std::io::Result<()> {
    let path = cluster_path(cfg);
    let tmp = path.with_extension("bak");
    let body = serde_json::to_vec(&ClusterFile { peer_urls: peers.to_vec() })?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Runs the proxy until `stop` resolves.
pub async fn run(
    cfg: ServerConfig,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), StartError> {
    tracing::info!("v2 API proxy starting");
    std::fs::create_dir_all(cfg.data_dir().join("proxy"))?;
    let mut peers = initial_peers(&cfg).await?;
    let d = &cfg.deferred;
    let read = (d.proxy_read_timeout > 0).then(|| Duration::from_millis(d.proxy_read_timeout));
    let http =
        crate::discovery::v2::http_client("", Duration::from_millis(d.proxy_dial_timeout), read)?;
    let proxy = Proxy {
        up: Arc::default(),
        http: http.clone(),
        readonly: d.proxy == "readonly",
        failure_wait: Duration::from_millis(d.proxy_failure_wait),
    };
    let mut servers = Vec::new();
    for u in urls(&cfg.listen_client_urls) {
        if u.starts_with("https://") {
            return Err(format!("the v2 proxy serves http only (listen URL {u})").into());
        }
        let addr = u.trim_start_matches("http://").trim_end_matches('/').to_string();
        let l =
            tokio::net::TcpListener::bind(&addr).await.map_err(|e| format!("listen {u}: {e}"))?;
        let app = axum::Router::new()
            .route("/v2/config/local/proxy", axum::routing::any(config_handler))
            .fallback(forward)
            .with_state(proxy.clone())
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        servers.push(tokio::spawn(async move { axum::serve(l, app).await }));
        tracing::info!(address = %u, "proxy listening for client requests");
    }
    let tls =
        cfg.tls.peer_client(cfg.tls.peer(&cfg.data_dir(), &urls(&cfg.listen_peer_urls))?.as_ref());
    let refresh = Duration::from_millis(d.proxy_refresh_interval.max(1));
    let refresher = async {
        loop {
            let found = members(&peers, &http, tls.as_ref()).await;
            let wait = match found {
                Some((p, mut c)) if !c.is_empty() => {
                    c.sort();
                    let mut up = proxy.up.lock().unwrap_or_else(|p| p.into_inner());
                    if up.client_urls != c {
                        tracing::info!(endpoints = ?c, "proxy endpoints updated");
                    }
                    up.client_urls = c;
                    drop(up);
                    if !p.is_empty() {
                        peers = p;
                        if let Err(e) = save_cluster(&cfg, &peers) {
                            tracing::warn!(error = %e, "cannot save the proxy's cluster file");
                        }
                    }
                    refresh
                }
                _ => Duration::from_secs(1),
            };
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        _ = refresher => {}
        _ = stop => {}
    }
    for s in servers {
        s.abort();
    }
    Ok(())
}

fn http_error(status: StatusCode, msg: &str) -> Response {
    let body = serde_json::json!({ "message": msg }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn config_handler(State(p): State<Proxy>, method: Method) -> Response {
    if method != Method::GET {
        return crate::v2::http::method_not_allowed("GET");
    }
    let eps = p.up.lock().unwrap_or_else(|p| p.into_inner()).client_urls.clone();
    (serde_json::json!({ "endpoints": eps }).to_string() + "\n").into_response()
}

/// Hop-by-hop headers, never forwarded.
const SINGLE_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

async fn forward(
    State(p): State<Proxy>,
    ConnectInfo(from): ConnectInfo<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if p.readonly && method != Method::GET {
        return StatusCode::NOT_IMPLEMENTED.into_response();
    }
    let eps: Vec<String> = {
        let up = p.up.lock().unwrap_or_else(|p| p.into_inner());
        up.client_urls
            .iter()
            .filter(|u| up.failed.get(*u).is_none_or(|t| t.elapsed() >= p.failure_wait))
            .cloned()
            .collect()
    };
    if eps.is_empty() {
        return http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "httpproxy: zero endpoints currently available",
        );
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    for ep in &eps {
        let mut req = p.http.request(method.clone(), format!("{}{path}", ep.trim_end_matches('/')));
        for (k, v) in &headers {
            if !SINGLE_HOP.contains(&k.as_str()) && k != header::HOST {
                req = req.header(k, v);
            }
        }
        let fwd = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {}", from.ip()),
            None => from.ip().to_string(),
        };
        req = req.header("x-forwarded-for", fwd).body(body.clone());
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(endpoint = %ep, error = %e, "proxy: upstream failed");
                p.up.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .failed
                    .insert(ep.clone(), Instant::now());
                continue;
            }
        };
        let mut out = Response::builder().status(res.status().as_u16());
        for (k, v) in res.headers() {
            if !SINGLE_HOP.contains(&k.as_str()) {
                if let Ok(name) = HeaderName::from_bytes(k.as_str().as_bytes()) {
                    out = out.header(name, v.as_bytes());
                }
            }
        }
        return out.body(Body::from_stream(res.bytes_stream())).unwrap_or_else(|_| {
            http_error(StatusCode::BAD_GATEWAY, "httpproxy: bad upstream response")
        });
    }
    let msg = format!("httpproxy: unable to get response from {} endpoint(s)", eps.len());
    http_error(StatusCode::BAD_GATEWAY, &msg)
}
