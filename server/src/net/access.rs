//! etcd's access control of plain HTTP on a client URL (`--cors`, `--host-whitelist`): CORS
//! headers for allowed origins, OPTIONS preflights answered, and on a listener without TLS a
//! request whose Host is not whitelisted refused with 421 (DNS rebinding, CVE-2018-5702); then
//! unclean paths redirected as Go's ServeMux does (`clean_path`). gRPC calls never pass here
//! (see `dispatch`), as in etcd.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::flags::urls;

/// `--cors` and `--host-whitelist`, and whether the listener is TLS.
#[derive(Debug, Clone)]
pub struct Access {
    /// Allowed origins (`None`: any).
    origins: Option<HashSet<String>>,
    /// Allowed hosts (`None`: any).
    hosts: Option<HashSet<String>>,
    /// TLS listeners skip the host check (as etcd's).
    tls: bool,
}

/// An empty list or one holding `*` allows everything, as etcd's.
fn set(list: &str) -> Option<HashSet<String>> {
    let v: HashSet<String> = urls(list).into_iter().collect();
    (!v.is_empty() && !v.contains("*")).then_some(v)
}

/// etcd's check of a `--cors` entry: `*`, or a URL as etcd's URL lists take them — http,
/// https, unix or unixs, no path, and host:port for http and https.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let (scheme, rest) = origin.split_once("://").unwrap_or(("", origin));
    if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
        return Err(format!("URL scheme must be http, https, unix, or unixs: {origin}"));
    }
    let (hostport, path) = rest.split_once('/').map_or((rest, None), |(h, p)| (h, Some(p)));
    if path.is_some() {
        return Err(format!("URL must not contain a path: {origin}"));
    }
    if matches!(scheme, "unix" | "unixs") {
        return Ok(());
    }
    match split_host_port(hostport) {
        Some(_) => Ok(()),
        None => Err(format!("URL address does not have the form \"host:port\": {origin}")),
    }
}

/// Go's net.SplitHostPort, host part only: `host:port` or `[v6]:port`; `None` when the text
/// is not of that form (no port, too many colons, a bracket out of place).
fn split_host_port(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return after.strip_prefix(':').map(|_| host);
    }
    let (host, _port) = s.split_once(':')?;
    if s.matches(':').count() > 1 || host.contains(['[', ']']) {
        return None;
    }
    Some(host)
}

impl Access {
    /// From the flags, for a listener with or without TLS.
    pub fn new(cors: &str, host_whitelist: &str, tls: bool) -> Arc<Access> {
        Arc::new(Access { origins: set(cors), hosts: set(host_whitelist), tls })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.as_ref().is_none_or(|o| o.contains(origin))
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.tls || self.hosts.as_ref().is_none_or(|h| h.contains(host))
    }
}

/// The Host a request names, without its port (etcd's GetHostname: the whole Host when it
/// does not split as host:port).
fn hostname(req: &Request) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default();
    split_host_port(&host).map_or(host.clone(), str::to_string)
}

fn refusal(host: &str) -> Response {
    let body = format!(
        "\netcd received your request, but the Host header was unrecognized.\n\n\
         To fix this, choose one of the following options:\n\
         - Enable TLS, then any HTTPS request will be allowed.\n\
         - Add the hostname you want to use to the whitelist in settings.\n  \
         - e.g. etcd --host-whitelist {host:?}\n\n\
         This requirement has been added to help prevent \"DNS Rebinding\" attacks (CVE-2018-5702).\n\n"
    );
    let mut r = (StatusCode::MISDIRECTED_REQUEST, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

fn add_cors(resp: &mut Response, origin: HeaderValue) {
    // In the order Go writes headers (sorted), so the bytes match etcd's.
    let h = resp.headers_mut();
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert("access-control-allow-origin", origin);
}

/// The middleware of the client port's HTTP router.
pub async fn layer(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let host = hostname(&req);
    if !access.host_allowed(&host) {
        tracing::warn!(host = %host, "rejecting HTTP request to prevent DNS rebinding attacks");
        return refusal(&host);
    }
    let cors = if access.origins.is_none() {
        Some(HeaderValue::from_static("*"))
    } else {
        req.headers()
            .get(header::ORIGIN)
            .filter(|o| o.to_str().is_ok_and(|o| access.origin_allowed(o)))
            .cloned()
    };
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else if let Some(r) = super::clean_path::redirect(req.method(), req.uri()) {
        r
    } else {
        // axum lists the allowed methods; etcd's gateway does not (its v2 handlers do).
        let v2 = req.uri().path().starts_with("/v2/");
        let mut r = next.run(req).await;
        if !v2 {
            r.headers_mut().remove(header::ALLOW);
        }
        r
    };
    if let Some(origin) = cors {
        add_cors(&mut resp, origin);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_as_etcd_parses_them() {
        assert!(check_origin("*").is_ok());
        assert!(check_origin("http://example.com:8080").is_ok());
        assert!(check_origin("https://example.com").unwrap_err().contains("host:port"));
        assert!(check_origin("ftp://example.com:1").unwrap_err().contains("scheme"));
        assert!(check_origin("http://example.com:1/x").unwrap_err().contains("path"));
        assert!(check_origin("http://example.com:1/").unwrap_err().contains("path"));
        assert!(check_origin("unix://sock").is_ok());
    }

    #[test]
    fn lists_and_wildcards() {
        let a = Access::new("*", "*", false);
        assert!(a.origin_allowed("http://x:1") && a.host_allowed("evil.example"));
        let a = Access::new("http://a:1,http://b:2", "localhost,127.0.0.1", false);
        assert!(a.origin_allowed("http://b:2") && !a.origin_allowed("http://c:3"));
        assert!(a.host_allowed("localhost") && !a.host_allowed("evil.example"));
        let a = Access::new("", "", false);
        assert!(a.origin_allowed("anything") && a.host_allowed("anything"));
        let a = Access::new("*", "localhost", true);
        assert!(a.host_allowed("evil.example"), "TLS listeners are not host-checked");
    }

    #[test]
    fn hostnames_lose_their_port() {
        let req = |h: &str| {
            Request::builder().header(header::HOST, h).body(axum::body::Body::empty()).unwrap()
        };
        assert_eq!(hostname(&req("example.com:2379")), "example.com");
        assert_eq!(hostname(&req("example.com")), "example.com");
        assert_eq!(hostname(&req("[::1]:2379")), "::1");
        assert_eq!(hostname(&req("[::1]")), "[::1]");
        assert_eq!(hostname(&req("host:abc")), "host");
        assert_eq!(hostname(&req("a:b:c")), "a:b:c");
        assert_eq!(hostname(&req("127.0.0.1:2379")), "127.0.0.1");
    }
}
