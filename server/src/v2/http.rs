//! `/v2/keys` as etcd 3.4 serves it with `--enable-v2`: the request parsed as etcd's
//! `parseKeyRequest` (form values from the body, then the query), writes proposed through
//! raft, reads from this member's tree (`quorum=true`: after a read barrier), and
//! `wait=true` long polls (or `stream=true` streams) answered from the event history.
#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rusted_proto::rustedpb::proposal::Request as P;
use rusted_proto::rustedpb::V2Request;

use super::error::*;
use super::event::Event;
use crate::api::ctx::Ctx;
use crate::apply::machine::ApplyOut;

/// The path prefix of the keys API.
pub const KEYS_PREFIX: &str = "/v2/keys";

/// A parsed form: every name's values, body values first (Go's `Request.Form`).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of `name` ("" when absent).
    pub fn value(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// The first value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Go's `url.ParseQuery` of `s` appended (an invalid escape is an error, as Go's).
    pub fn parse(&mut self, s: &str) -> Result<(), String> {
        if s.contains(';') {
            return Err("invalid semicolon separator in query".into());
        }
        for pair in s.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            self.0.push((unescape(k)?, unescape(v)?));
        }
        Ok(())
    }
}

/// Go's `url.QueryUnescape`.
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let hex = hex.and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => out.push(v),
                    None => {
                        let bad: String = s[i..].chars().take(3).collect();
                        return Err(format!("invalid URL escape {bad:?}"));
                    }
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// etcd's `getBool`: false when absent, else Go's `strconv.ParseBool` of the first value
/// (an empty value is an error).
fn go_bool(f: &Form, name: &str) -> Result<bool, V2Error> {
    match f.get(name) {
        None | Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some(_) => Err(V2Error::new(INVALID_FIELD, format!("invalid value for {name:?}"), 0)),
    }
}

/// etcd's `getUint64`: 0 when absent, else decimal digits only.
fn go_u64(f: &Form, name: &str) -> Option<u64> {
    match f.get(name) {
        None => Some(0),
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v.parse().ok(),
        Some(_) => None,
    }
}

/// A keys request as parsed.
#[derive(Debug, Default)]
pub struct KeyRequest {
    /// What is proposed (or read).
    pub req: V2Request,
    /// `wait=true`.
    pub wait: bool,
    /// `waitIndex`.
    pub since: u64,
    /// `sorted=true`.
    pub sorted: bool,
    /// `quorum=true`.
    pub quorum: bool,
    /// `stream=true`.
    pub stream: bool,
    /// `noValueOnSuccess=true`.
    pub no_value_on_success: bool,
}

/// etcd's `parseKeyRequest`: checks in etcd's order, with its codes and causes; `now` is the
/// clock a TTL counts from.
pub fn parse(method: &Method, path: &str, form: &Form, now: i64) -> Result<KeyRequest, V2Error> {
    let err = |code, cause: &str| V2Error::new(code, cause, 0);
    let key =
        path.strip_prefix(KEYS_PREFIX).ok_or_else(|| err(INVALID_FORM, "incorrect key prefix"))?;
    let prev_index = go_u64(form, "prevIndex")
        .ok_or_else(|| err(INDEX_NAN, r#"invalid value for "prevIndex""#))?;
    let since = go_u64(form, "waitIndex")
        .ok_or_else(|| err(INDEX_NAN, r#"invalid value for "waitIndex""#))?;
    let recursive = go_bool(form, "recursive")?;
    let sorted = go_bool(form, "sorted")?;
    let wait = go_bool(form, "wait")?;
    let dir = go_bool(form, "dir")?;
    let quorum = go_bool(form, "quorum")?;
    let stream = go_bool(form, "stream")?;
    if wait && method != Method::GET {
        return Err(err(INVALID_FIELD, r#""wait" can only be used with GET requests"#));
    }
    let prev_value = form.value("prevValue").to_string();
    if form.get("prevValue").is_some() && prev_value.is_empty() {
        return Err(err(PREV_VALUE_REQUIRED, r#""prevValue" cannot be empty"#));
    }
    let no_value_on_success = go_bool(form, "noValueOnSuccess")?;
    let ttl = match form.value("ttl") {
        "" => None,
        v if v.bytes().all(|b| b.is_ascii_digit()) => {
            Some(v.parse::<u64>().map_err(|_| err(TTL_NAN, r#"invalid value for "ttl""#))?)
        }
        _ => return Err(err(TTL_NAN, r#"invalid value for "ttl""#)),
    };
    let prev_exist = match form.get("prevExist") {
        None => None,
        Some(_) => Some(
            go_bool(form, "prevExist")
                .map_err(|_| err(INVALID_FIELD, "invalid value for prevExist"))?,
        ),
    };
    let mut refresh = false;
    if form.get("refresh").is_some() {
        refresh = go_bool(form, "refresh")
            .map_err(|_| err(INVALID_FIELD, "invalid value for refresh"))?;
        if refresh {
            if !form.value("value").is_empty() {
                return Err(err(REFRESH_VALUE, "A value was provided on a refresh"));
            }
            if ttl.is_none() {
                return Err(err(REFRESH_TTL_REQUIRED, "No TTL value set"));
            }
        }
    }
    let expiration = ttl.map_or(0, |t| {
        let secs = i64::try_from(t).unwrap_or(i64::MAX);
        now.saturating_add(secs.saturating_mul(1_000_000_000))
    });
    let path = super::store::clean(key);
    super::store::check_key(&path)?;
    Ok(KeyRequest {
        req: V2Request {
            method: method.as_str().to_string(),
            path,
            val: form.value("value").to_string(),
            dir,
            prev_value,
            prev_index,
            prev_exist,
            expiration,
            recursive,
            refresh,
            time: 0,
        },
        wait,
        since,
        sorted,
        quorum,
        stream,
        no_value_on_success,
    })
}

/// Go's JSON encoder escapes these inside strings; the bytes are otherwise serde_json's.
pub fn go_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn json_headers(h: &mut HeaderMap, etcd_index: u64) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("x-etcd-index", HeaderValue::from(etcd_index));
}

fn raft_headers(ctx: &Ctx, h: &mut HeaderMap) {
    h.insert("x-raft-index", HeaderValue::from(ctx.replica.committed()));
    h.insert("x-raft-term", HeaderValue::from(ctx.replica.term()));
}

/// A v2 error as etcd writes it.
pub fn error_response(ctx: &Ctx, e: &V2Error) -> Response {
    let mut h = HeaderMap::new();
    cluster_header(ctx, &mut h);
    json_headers(&mut h, e.index);
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, h, go_escape(&e.to_json()) + "\n").into_response()
}

/// `X-Etcd-Cluster-ID`.
pub fn cluster_header(ctx: &Ctx, h: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", ctx.replica.cluster_id())) {
        h.insert("x-etcd-cluster-id", v);
    }
}

/// Go's `http.Error` for a method a handler does not take.
pub fn method_not_allowed(allow: &str) -> Response {
    let mut r =
        crate::gateway::http::go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    // Allow first: Go writes headers sorted.
    let rest = std::mem::take(r.headers_mut());
    if let Ok(v) = HeaderValue::from_str(allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r.headers_mut().extend(rest);
    r
}

fn event_response(ctx: &Ctx, e: Event, no_value: bool, head: bool) -> Response {
    let mut h = HeaderMap::new();
    cluster_header(ctx, &mut h);
    json_headers(&mut h, e.etcd_index);
    raft_headers(ctx, &mut h);
    let status = if e.is_created() { StatusCode::CREATED } else { StatusCode::OK };
    let body = if no_value && matches!(e.action, "set" | "compareAndSwap" | "create" | "update") {
        format!("{{\"action\":\"{}\"}}\n", e.action)
    } else {
        go_escape(&e.to_json()) + "\n"
    };
    if head {
        return (status, h).into_response();
    }
    (status, h, body).into_response()
}

/// The keys handler: every method lands here; etcd's checks run in etcd's order.
pub async fn keys(
    axum::extract::State(ctx): axum::extract::State<Arc<Ctx>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if ![Method::HEAD, Method::GET, Method::PUT, Method::POST, Method::DELETE].contains(&method) {
        return method_not_allowed("HEAD,GET,PUT,POST,DELETE");
    }
    let now = super::now_nanos();
    let path = match percent_encoding::percent_decode_str(uri.path()).decode_utf8() {
        Ok(p) => p.into_owned(),
        Err(_) => uri.path().to_string(),
    };
    let mut form = Form::default();
    let is_form =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| {
            t.split(';').next().unwrap_or("").trim() == "application/x-www-form-urlencoded"
        });
    let mut parsed = Ok(());
    if is_form && [Method::PUT, Method::POST].contains(&method) {
        parsed = form.parse(&String::from_utf8_lossy(&body));
    }
    let parsed = parsed.and_then(|()| form.parse(uri.query().unwrap_or("")));
    if let Err(cause) = parsed {
        return error_response(&ctx, &V2Error::new(INVALID_FORM, cause, 0));
    }
    let kr = match parse(&method, &path, &form, now) {
        Ok(k) => k,
        Err(e) => return error_response(&ctx, &e),
    };
    let v2 = &ctx.machine.v2;
    let head = method == Method::HEAD;
    if method == Method::GET || head {
        // etcd turns a quorum GET into a QGET through raft, ignoring `wait`.
        if kr.wait && !head && !kr.quorum {
            return watch(ctx.clone(), kr).await;
        }
        if kr.quorum && !head {
            if let Err(e) = ctx.linearize().await {
                return raft_error(&ctx, e);
            }
        }
        return match v2.get(&kr.req.path, kr.req.recursive, kr.sorted) {
            Ok(e) => event_response(&ctx, e, false, head),
            Err(e) => error_response(&ctx, &e),
        };
    }
    match ctx.propose(P::V2(kr.req)).await {
        Ok(ApplyOut::V2(Some(Ok(e)))) => event_response(&ctx, e, kr.no_value_on_success, false),
        Ok(ApplyOut::V2(Some(Err(e)))) => error_response(&ctx, &e),
        Ok(other) => raft_error(&ctx, crate::api::errors::unexpected(other)),
        Err(e) => raft_error(&ctx, e),
    }
}

fn raft_error(ctx: &Ctx, e: crate::api::errors::ApiError) -> Response {
    let msg = tonic::Status::from(e).message().to_string();
    error_response(ctx, &V2Error::new(RAFT_INTERNAL, msg, 0))
}

/// `wait=true`: headers at once (X-Etcd-Index: the index the watch began at), then the first
/// event the watch is told of; with `stream=true`, every event until the client leaves.
async fn watch(ctx: Arc<Ctx>, kr: KeyRequest) -> Response {
    let v2 = &ctx.machine.v2;
    let start = v2.index();
    let since = if kr.since == 0 { start + 1 } else { kr.since };
    // An outdated index is refused before any header is sent, as etcd's.
    if let Err(mut e) = v2.lock().history.scan(&kr.req.path, kr.req.recursive, since, false) {
        e.index = start;
        return error_response(&ctx, &e);
    }
    let mut h = HeaderMap::new();
    cluster_header(&ctx, &mut h);
    json_headers(&mut h, start);
    raft_headers(&ctx, &mut h);
    let (key, recursive, stream) = (kr.req.path, kr.req.recursive, kr.stream);
    let events = futures_util::stream::unfold(Some((since, false)), move |next| {
        let ctx = ctx.clone();
        let key = key.clone();
        async move {
            let (since, begun) = next?;
            let e = match ctx.machine.v2.wait(&key, recursive, since, begun).await {
                Ok(e) => e,
                Err(_) => return None,
            };
            let line = Bytes::from(go_escape(&e.to_json()) + "\n");
            let next = stream.then_some((e.index().saturating_add(1), true));
            Some((Ok::<_, std::io::Error>(line), next))
        }
    });
    (StatusCode::OK, h, Body::from_stream(events)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(s: &str) -> Form {
        let mut f = Form::default();
        f.parse(s).unwrap();
        f
    }

    #[test]
    fn parses_as_etcd() {
        let k = parse(&Method::PUT, "/v2/keys/a/../b", &form("value=x&ttl=5&prevExist=false"), 1)
            .unwrap();
        assert_eq!(k.req.path, "/b");
        assert_eq!(k.req.expiration, 5_000_000_001);
        assert_eq!(k.req.prev_exist, Some(false));
        let e = |s: &str, m: Method| parse(&m, "/v2/keys/a", &form(s), 0).unwrap_err();
        assert_eq!(
            (e("ttl=x", Method::PUT).code, e("ttl=x", Method::PUT).cause),
            (202, r#"invalid value for "ttl""#.into())
        );
        assert_eq!(
            e("wait=true", Method::PUT).cause,
            r#""wait" can only be used with GET requests"#
        );
        assert_eq!(e("prevValue=", Method::PUT).code, 201);
        assert_eq!(e("refresh=true", Method::PUT).code, 212);
        assert_eq!(e("refresh=true&ttl=3&value=v", Method::PUT).code, 211);
        assert_eq!(e("recursive=maybe", Method::GET).cause, r#"invalid value for "recursive""#);
        assert_eq!(e("prevIndex=-1", Method::PUT).code, 203);
        assert_eq!(e("recursive", Method::GET).code, 209, "an empty bool is an error");
        assert_eq!(e("waitIndex=", Method::GET).code, 203);
        assert!(parse(&Method::PUT, "/v2/keys/a", &form("ttl="), 0).unwrap().req.expiration == 0);
        let mut f = Form::default();
        assert_eq!(f.parse("a=%zz").unwrap_err(), r#"invalid URL escape "%zz""#);
        assert_eq!(f.parse("a=%+1").unwrap_err(), r#"invalid URL escape "%+1""#);
        assert_eq!(f.parse("a=1;b=2").unwrap_err(), "invalid semicolon separator in query");
        assert_eq!(e("ttl=+5", Method::PUT).code, 202);
        let deep = format!("/v2/keys{}", "/a".repeat(super::super::store::MAX_KEY_DEPTH + 1));
        assert_eq!(parse(&Method::PUT, &deep, &form(""), 0).unwrap_err().code, 209);
    }

    #[test]
    fn escapes_as_go() {
        assert_eq!(go_escape(r#"{"v":"<a&b>"}"#), r#"{"v":"\u003ca\u0026b\u003e"}"#);
    }
}
