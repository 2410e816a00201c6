//! `/v2/members` (list, add, remove, update, leader) and `/v2/machines`, as etcd 3.4 serves
//! them beside the v2 keys (the membership is the replication layer's); and the v2 routes.
#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rusted_replication::{Member, ReplicationError};
use serde_json::{json, Value};

use super::http::{cluster_header, go_escape, method_not_allowed};
use crate::api::ctx::Ctx;
use crate::api::errors::ApiError;

/// etcd's `httptypes.Member`.
fn member_json(m: &Member) -> Value {
    json!({
        "id": format!("{:x}", m.id),
        "name": m.name,
        "peerURLs": m.peer_urls,
        "clientURLs": m.client_urls,
    })
}

fn json_response(ctx: &Ctx, status: StatusCode, v: &Value) -> Response {
    let mut h = HeaderMap::new();
    cluster_header(ctx, &mut h);
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    (status, h, go_escape(&v.to_string()) + "\n").into_response()
}

/// etcd's `httptypes.HTTPError`: `{"message":...}` with a status (no newline after it).
pub(super) fn http_error(ctx: &Ctx, status: StatusCode, message: &str) -> Response {
    let mut h = HeaderMap::new();
    cluster_header(ctx, &mut h);
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    (status, h, go_escape(&json!({ "message": message }).to_string())).into_response()
}

/// Go's `json.Marshal` without a newline, as the stats handlers write.
pub(super) fn plain_json(v: &Value) -> Response {
    let mut r = (StatusCode::OK, go_escape(&v.to_string())).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

pub(super) fn members_sorted(ctx: &Ctx) -> Vec<Member> {
    let mut ms = ctx.replica.members();
    ms.sort_by_key(|m| m.id);
    ms
}

#[derive(serde::Deserialize)]
struct PeerUrls {
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
}

/// etcd's member request body: JSON only, with valid URLs.
fn peer_urls(ctx: &Ctx, headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, Box<Response>> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ctype = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if ctype != "application/json" {
        let msg = format!("Bad Content-Type {ctype}, accept application/json");
        return Err(Box::new(http_error(ctx, StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg)));
    }
    let r: PeerUrls = serde_json::from_slice(body)
        .map_err(|e| Box::new(http_error(ctx, StatusCode::BAD_REQUEST, &e.to_string())))?;
    let bad = |m: String| Box::new(http_error(ctx, StatusCode::BAD_REQUEST, &m));
    if r.peer_urls.is_empty() {
        return Err(bad("no valid URLs given".into()));
    }
    let mut urls = Vec::new();
    for u in r.peer_urls.iter().map(|u| u.trim()) {
        let Some((scheme, rest)) = u.split_once("://") else {
            return Err(bad(format!("URL scheme must be http, https, unix, or unixs: {u}")));
        };
        if !["http", "https", "unix", "unixs"].contains(&scheme) {
            return Err(bad(format!("URL scheme must be http, https, unix, or unixs: {u}")));
        }
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        if !host.contains(':') || host.ends_with(':') {
            return Err(bad(format!("URL address does not have the form \"host:port\": {u}")));
        }
        if !path.is_empty() {
            return Err(bad(format!("URL must not contain a path: {u}")));
        }
        urls.push(u.to_string());
    }
    urls.sort();
    Ok(urls)
}

fn member_error(ctx: &Ctx, e: ReplicationError, id: u64) -> Response {
    match e {
        ReplicationError::PeerUrlExists => {
            http_error(ctx, StatusCode::CONFLICT, "membership: peerURL exists")
        }
        ReplicationError::MemberNotFound => {
            http_error(ctx, StatusCode::NOT_FOUND, &format!("No such member: {id:x}"))
        }
        ReplicationError::MemberRemoved => {
            http_error(ctx, StatusCode::GONE, &format!("Member permanently removed: {id:x}"))
        }
        e => {
            let msg = tonic::Status::from(ApiError::from(e)).message().to_string();
            tracing::warn!(error = %msg, "v2 members request failed");
            http_error(ctx, StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// `/v2/members` and `/v2/members/...`.
pub async fn members(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if ![Method::GET, Method::POST, Method::DELETE, Method::PUT].contains(&method) {
        return method_not_allowed("GET,POST,DELETE,PUT");
    }
    let rest = uri.path().strip_prefix("/v2/members").unwrap_or("");
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let id_of = |s: &str| {
        let hex = !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| u64::from_str_radix(s, 16).ok()).flatten()
    };
    match method {
        Method::GET => match rest {
            "" => {
                let list: Vec<Value> = members_sorted(&ctx).iter().map(member_json).collect();
                json_response(&ctx, StatusCode::OK, &json!({ "members": list }))
            }
            "leader" => {
                let leader = ctx.replica.leader();
                match members_sorted(&ctx).iter().find(|m| m.id == leader) {
                    Some(m) => json_response(&ctx, StatusCode::OK, &member_json(m)),
                    None => http_error(&ctx, StatusCode::SERVICE_UNAVAILABLE, "During election"),
                }
            }
            _ => http_error(&ctx, StatusCode::NOT_FOUND, "Not found"),
        },
        Method::POST => {
            let urls = match peer_urls(&ctx, &headers, &body) {
                Ok(u) => u,
                Err(r) => return *r,
            };
            match ctx.replica.member_add(urls, false).await {
                Ok((m, _)) => json_response(&ctx, StatusCode::CREATED, &member_json(&m)),
                Err(e) => member_error(&ctx, e, 0),
            }
        }
        Method::DELETE if rest.is_empty() => {
            crate::gateway::http::go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
        }
        Method::DELETE => {
            let Some(id) = id_of(rest) else {
                return http_error(&ctx, StatusCode::NOT_FOUND, &format!("No such member: {rest}"));
            };
            match ctx.replica.member_remove(id).await {
                Ok(_) => no_content(&ctx),
                Err(e) => member_error(&ctx, e, id),
            }
        }
        _ => {
            let Some(id) = id_of(rest) else {
                return http_error(&ctx, StatusCode::NOT_FOUND, &format!("No such member: {rest}"));
            };
            let urls = match peer_urls(&ctx, &headers, &body) {
                Ok(u) => u,
                Err(r) => return *r,
            };
            match ctx.replica.member_update(id, urls).await {
                Ok(_) => no_content(&ctx),
                Err(e) => member_error(&ctx, e, id),
            }
        }
    }
}

fn no_content(ctx: &Ctx) -> Response {
    let mut h = HeaderMap::new();
    cluster_header(ctx, &mut h);
    (StatusCode::NO_CONTENT, h).into_response()
}

/// `/v2/machines`: the client URLs of every member, comma separated.
pub async fn machines(State(ctx): State<Arc<Ctx>>, method: Method) -> Response {
    if ![Method::GET, Method::HEAD].contains(&method) {
        return method_not_allowed("GET,HEAD");
    }
    let mut urls: Vec<String> =
        members_sorted(&ctx).into_iter().flat_map(|m| m.client_urls).collect();
    urls.sort();
    let h = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (h, urls.join(", ")).into_response()
}

/// The v2 routes (`--enable-v2`).
pub fn router(ctx: Arc<Ctx>) -> axum::Router {
    use axum::routing::any;
    axum::Router::new()
        .route("/v2/keys", any(super::http::keys))
        .route("/v2/keys/", any(super::http::keys))
        .route("/v2/keys/{*rest}", any(super::http::keys))
        .route("/v2/members", any(members))
        .route("/v2/members/", any(members))
        .route("/v2/members/{*rest}", any(members))
        .route("/v2/machines", any(machines))
        .route("/v2/stats/self", any(super::stats::stats_self))
        .route("/v2/stats/leader", any(super::stats::stats_leader))
        .route("/v2/stats/store", any(super::stats::stats_store))
        .with_state(ctx)
}
