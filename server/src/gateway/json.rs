//! The JSON gateway: etcd's grpc-gateway paths (`POST /v3/...`) on the client port, in JSON as
//! etcd's gateway writes it (snake_case field names, 64-bit integers as strings, bytes as
//! base64, enums by name, zero values left out). Each path calls the same service method the
//! gRPC path does. Streams (watch, lease keep-alive, election observe) take a sequence of JSON
//! objects in the request body and answer one `{"result": ...}` object per line.
#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status};

use crate::api::auth::AuthService;
use crate::api::cluster::ClusterService;
use crate::api::ctx::Ctx;
use crate::api::election::ElectionService;
use crate::api::errors::{internal, message_too_large, ApiError};
use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::api::lock::LockService;
use crate::api::maintenance::MaintenanceService;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::auth_server::Auth;
use rusted_proto::etcdserverpb::cluster_server::Cluster;
use rusted_proto::etcdserverpb::kv_server::Kv;
use rusted_proto::etcdserverpb::lease_server::Lease;
use rusted_proto::etcdserverpb::maintenance_server::Maintenance;
use rusted_proto::v3electionpb::election_server::Election;
use rusted_proto::v3lockpb::lock_server::Lock;

/// Path prefixes served: etcd 3.4 serves its gateway under `/v3/` and, for older clients,
/// `/v3beta/`.
pub const PREFIXES: &[&str] = &["/v3", "/v3beta"];

/// Largest request body the gateway reads: room for base64 (4/3) and JSON around a request
/// of twice the gRPC limit, so the refusals of requests up to there name their exact size.
/// What is larger is refused unread, naming the body's declared size.
fn body_limit(ctx: &Ctx) -> usize {
    grpc_limit(ctx) * 4 + 64 * 1024
}

/// The gRPC server's limit on a request message: etcd's gateway hands requests to it, so one
/// past it is refused with grpc-go's ResourceExhausted (HTTP 429).
fn grpc_limit(ctx: &Ctx) -> usize {
    ctx.limits.max_request_bytes + crate::member::CLIENT_MESSAGE_OVERHEAD
}

/// The HTTP status grpc-gateway answers a gRPC code with.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway v1's error body (fields in the order etcd 3.4's gateway writes them).
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

/// grpc-gateway v1's error inside a stream.
#[derive(Serialize)]
struct StreamErrorBody<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}

/// A unary error as grpc-gateway v1 writes it: `{"error": msg, "code": n, "message": msg}`.
pub fn error_response(s: &Status) -> Response {
    let body = ErrorBody { error: s.message(), message: s.message(), code: s.code() as i32 };
    json_response(http_status(s.code()), &body)
}

/// Serializes `{"<field>": v}` followed by a newline, keeping `v`'s own field order.
fn wrapped_line<T: Serialize>(field: &str, v: &T) -> Vec<u8> {
    let mut b = format!("{{\"{field}\":").into_bytes();
    match serde_json::to_writer(&mut b, v) {
        Ok(()) => b.extend_from_slice(b"}\n"),
        Err(e) => {
            b = format!("{{\"error\":{{\"message\":{:?}}}}}\n", e.to_string()).into_bytes();
        }
    }
    b
}

/// An error inside a stream, as grpc-gateway v1 writes it (the last line, with no newline).
fn stream_error(s: &Status) -> Vec<u8> {
    let code = s.code();
    let http = http_status(code);
    let body = StreamErrorBody {
        grpc_code: code as i32,
        http_code: http.as_u16(),
        message: s.message(),
        http_status: http.canonical_reason().unwrap_or(""),
    };
    let mut line = wrapped_line("error", &body);
    line.pop();
    line
}

fn json_response<T: Serialize + ?Sized>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) if status == StatusCode::OK => (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                // grpc-gateway passes the gRPC response's content type on as metadata.
                (header::HeaderName::from_static("grpc-metadata-content-type"), "application/grpc"),
            ],
            b,
        )
            .into_response(),
        Ok(b) => (status, [(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => error_response(&internal(e).into()),
    }
}

/// A request body the gateway cannot read (InvalidArgument with Go's wording, as etcd's).
fn invalid(m: impl Into<String>) -> Status {
    ApiError::Invalid(m.into()).into()
}

/// Decodes a request body as etcd's gateway does: its first JSON value (anything after it is
/// ignored), which must be an object; empty or `null` is the default request. Syntax errors
/// are worded as Go's; field errors come from our JSON mapping.
pub fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    match crate::gateway::gojson::first_value(body).map_err(invalid)? {
        crate::gateway::gojson::Top::Empty | crate::gateway::gojson::Top::Null => Ok(T::default()),
        crate::gateway::gojson::Top::Object(end) => {
            serde_json::from_slice(&body[..end]).map_err(|e| invalid(e.to_string()))
        }
    }
}

/// The gRPC metadata grpc-gateway makes of HTTP headers, for the token: `Authorization`
/// becomes `authorization`, `Grpc-Metadata-Token` becomes `token`.
pub fn metadata(headers: &HeaderMap) -> tonic::metadata::MetadataMap {
    let mut md = tonic::metadata::MetadataMap::new();
    let copy = |from: &str, to: &'static str, md: &mut tonic::metadata::MetadataMap| {
        if let Some(v) = headers.get(from).and_then(|v| v.to_str().ok()) {
            if let Ok(v) = v.parse() {
                md.insert(to, v);
            }
        }
    };
    copy("authorization", "authorization", &mut md);
    copy("grpc-metadata-token", "token", &mut md);
    md
}

/// A gRPC request carrying the HTTP request's token.
fn grpc_request<T>(headers: &HeaderMap, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    *r.metadata_mut() = metadata(headers);
    r
}

/// Runs one unary RPC from a JSON body, refusing requests past the gRPC limit as etcd's
/// gateway gets them refused.
async fn unary<Req, Resp, F, Fut>(ctx: &Ctx, headers: HeaderMap, body: Body, call: F) -> Response
where
    Req: DeserializeOwned + Default + prost::Message,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let limit = grpc_limit(ctx);
    let body = match axum::body::to_bytes(body, body_limit(ctx)).await {
        Ok(b) => b,
        Err(_) => {
            // Not read to its end: the size the client declared stands for the message's.
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                .unwrap_or(body_limit(ctx) + 1);
            return error_response(&message_too_large(declared, limit));
        }
    };
    let req = match decode::<Req>(&body) {
        Ok(r) => r,
        Err(s) => return error_response(&s),
    };
    let len = req.encoded_len();
    if len > limit {
        return error_response(&message_too_large(len, limit));
    }
    match call(grpc_request(&headers, req)).await {
        Ok(r) => json_response(StatusCode::OK, r.get_ref()),
        Err(s) => error_response(&s),
    }
}

/// The JSON objects of a streamed request body, one request each, as they arrive.
fn json_requests<T>(body: Body, limit: usize) -> impl Stream<Item = Result<T, Status>> + Unpin
where
    T: DeserializeOwned + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut data = body.into_data_stream();
        let mut buf: Vec<u8> = Vec::new();
        // Scan again only when a chunk could have completed a value (it holds a `}` or the
        // end of `null`), so a body trickling in byte by byte is not rescanned per byte.
        let mut complete = false;
        let mut ended = false;
        loop {
            // Decode every complete value in the buffer.
            let mut used = 0;
            while complete {
                let rest = &buf[used..];
                match crate::gateway::gojson::first_value(rest) {
                    Ok(crate::gateway::gojson::Top::Empty) => {
                        used = buf.len();
                        complete = false;
                    }
                    Err(e) if e == "unexpected EOF" => complete = false,
                    Err(e) => {
                        let _ = tx.send(Err(invalid(e))).await;
                        return;
                    }
                    Ok(top) => {
                        let end = match top {
                            crate::gateway::gojson::Top::Object(end) => end,
                            _ => rest.len() - rest.trim_ascii_start().len() + 4,
                        };
                        let v = match top {
                            crate::gateway::gojson::Top::Object(_) => {
                                serde_json::from_slice(&rest[..end])
                                    .map_err(|e| invalid(e.to_string()))
                            }
                            _ => serde_json::from_slice(b"{}").map_err(|e| invalid(e.to_string())),
                        };
                        used += end;
                        let failed = v.is_err();
                        if tx.send(v).await.is_err() || failed {
                            return;
                        }
                    }
                }
            }
            buf.drain(..used);
            match data.next().await {
                Some(Ok(chunk)) => {
                    complete = chunk.iter().any(|&b| b == b'}' || b == b'l');
                    buf.extend_from_slice(&chunk);
                    if buf.len() > limit {
                        let msg = "request body too large";
                        let _ = tx.send(Err(invalid(msg))).await;
                        return;
                    }
                }
                Some(Err(_)) => return,
                None if ended || buf.iter().all(u8::is_ascii_whitespace) => {
                    if !buf.iter().all(u8::is_ascii_whitespace) {
                        let _ = tx.send(Err(invalid("unexpected EOF"))).await;
                    }
                    return;
                }
                // The body ended: whatever is left is scanned once more.
                None => {
                    ended = true;
                    complete = true;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

type Requests<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// grpc-gateway's handling of a streamed request body: the first message is read before the
/// call starts, and a bad one is answered as a failed call (code Unknown, HTTP 500); a bad
/// later message just ends the client's side of the stream.
async fn first_then_rest<T, S>(mut input: S) -> Result<Requests<T>, Response>
where
    T: Send + 'static,
    S: Stream<Item = Result<T, Status>> + Send + Unpin + 'static,
{
    let first = match input.next().await {
        Some(Ok(v)) => Some(Ok(v)),
        Some(Err(e)) => return Err(error_response(&Status::new(Code::Unknown, e.message()))),
        None => None,
    };
    let rest = input.take_while(Result::is_ok);
    Ok(Box::pin(tokio_stream::iter(first).chain(rest)))
}

/// A streamed answer: `{"result": ...}` per message, an error object if one ends it. A stream
/// that fails before its first message answers with the error's HTTP status.
async fn stream_response<T: Serialize + Send + 'static>(
    mut rx: mpsc::Receiver<Result<T, Status>>,
) -> Response {
    let first = rx.recv().await;
    let status = match &first {
        Some(Err(s)) => http_status(s.code()),
        _ => StatusCode::OK,
    };
    let head = tokio_stream::iter(first);
    let lines = head.chain(ReceiverStream::new(rx)).map(|item| {
        let line = match item {
            Ok(v) => wrapped_line("result", &v),
            Err(s) => stream_error(&s),
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    (status, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(lines)).into_response()
}

/// Every service the gateway calls.
#[derive(Debug, Clone)]
struct Services {
    ctx: Arc<Ctx>,
    kv: KvService,
    lease: LeaseService,
    cluster: ClusterService,
    maintenance: MaintenanceService,
    auth: AuthService,
    lock: LockService,
    election: ElectionService,
}

/// One `POST` route per unary RPC: `route!(router, "path", service, method)`.
macro_rules! unary_routes {
    ($router:ident, $s:ident, $( $path:literal => $svc:ident . $method:ident ),* $(,)?) => {
        $(
            for p in PREFIXES {
                let s = $s.clone();
                $router = $router.route(
                    &format!("{p}{}", $path),
                    post(move |headers: HeaderMap, body: Body| {
                        let s = s.clone();
                        async move {
                            let call = |r| async move { s.$svc.$method(r).await };
                            unary(&s.ctx.clone(), headers, body, call).await
                        }
                    })
                    .options(preflight),
                );
            }
        )*
    };
}

/// The gateway's routes.
pub fn router(ctx: Arc<Ctx>) -> Router {
    let s = Services {
        kv: KvService { ctx: ctx.clone() },
        lease: LeaseService { ctx: ctx.clone() },
        cluster: ClusterService { ctx: ctx.clone() },
        maintenance: MaintenanceService { ctx: ctx.clone() },
        auth: AuthService { ctx: ctx.clone() },
        lock: LockService { ctx: ctx.clone() },
        election: ElectionService { ctx: ctx.clone() },
        ctx,
    };
    let mut r = Router::new();
    unary_routes!(r, s,
        "/kv/range" => kv.range,
        "/kv/put" => kv.put,
        "/kv/deleterange" => kv.delete_range,
        "/kv/txn" => kv.txn,
        "/kv/compaction" => kv.compact,
        "/lease/grant" => lease.lease_grant,
        "/lease/revoke" => lease.lease_revoke,
        "/kv/lease/revoke" => lease.lease_revoke,
        "/lease/timetolive" => lease.lease_time_to_live,
        "/kv/lease/timetolive" => lease.lease_time_to_live,
        "/lease/leases" => lease.lease_leases,
        "/kv/lease/leases" => lease.lease_leases,
        "/cluster/member/add" => cluster.member_add,
        "/cluster/member/remove" => cluster.member_remove,
        "/cluster/member/update" => cluster.member_update,
        "/cluster/member/list" => cluster.member_list,
        "/cluster/member/promote" => cluster.member_promote,
        "/maintenance/alarm" => maintenance.alarm,
        "/maintenance/status" => maintenance.status,
        "/maintenance/defragment" => maintenance.defragment,
        "/maintenance/hash" => maintenance.hash,
        "/maintenance/hashkv" => maintenance.hash_kv,
        "/maintenance/downgrade" => maintenance.downgrade,
        "/maintenance/transfer-leadership" => maintenance.move_leader,
        "/auth/enable" => auth.auth_enable,
        "/auth/disable" => auth.auth_disable,
        "/auth/status" => auth.auth_status,
        "/auth/authenticate" => auth.authenticate,
        "/auth/user/add" => auth.user_add,
        "/auth/user/get" => auth.user_get,
        "/auth/user/list" => auth.user_list,
        "/auth/user/delete" => auth.user_delete,
        "/auth/user/changepw" => auth.user_change_password,
        "/auth/user/grant" => auth.user_grant_role,
        "/auth/user/revoke" => auth.user_revoke_role,
        "/auth/role/add" => auth.role_add,
        "/auth/role/get" => auth.role_get,
        "/auth/role/list" => auth.role_list,
        "/auth/role/delete" => auth.role_delete,
        "/auth/role/grant" => auth.role_grant_permission,
        "/auth/role/revoke" => auth.role_revoke_permission,
        "/lock/lock" => lock.lock,
        "/lock/unlock" => lock.unlock,
        "/election/campaign" => election.campaign,
        "/election/proclaim" => election.proclaim,
        "/election/leader" => election.leader,
        "/election/resign" => election.resign,
    );
    for p in PREFIXES {
        r = r.route(&format!("{p}/watch"), bidi_route(s.ctx.clone(), 64, crate::api::watch::serve));
        r = r.route(
            &format!("{p}/lease/keepalive"),
            bidi_route(s.ctx.clone(), 16, |ctx, md, input, tx| {
                crate::api::lease::keep_alive(ctx, md, input, tx)
            }),
        );
        let st = s.clone();
        r = r.route(
            &format!("{p}/maintenance/snapshot"),
            post(move |headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move {
                    let req = match decode::<pb::SnapshotRequest>(&body) {
                        Ok(r) => r,
                        Err(e) => return error_response(&e),
                    };
                    match st.maintenance.snapshot(grpc_request(&headers, req)).await {
                        Ok(stream) => forward_stream(stream.into_inner()).await,
                        Err(e) => error_response(&e),
                    }
                }
            })
            .options(preflight),
        );
        let st = s.clone();
        r = r.route(
            &format!("{p}/election/observe"),
            post(move |headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move {
                    let req = match decode::<rusted_proto::v3electionpb::LeaderRequest>(&body) {
                        Ok(r) => r,
                        Err(e) => return error_response(&e),
                    };
                    match st.election.observe(grpc_request(&headers, req)).await {
                        Ok(stream) => forward_stream(stream.into_inner()).await,
                        Err(e) => error_response(&e),
                    }
                }
            })
            .options(preflight),
        );
    }
    let limit = body_limit(&s.ctx);
    r.layer(axum::extract::DefaultBodyLimit::max(limit))
}

/// An unknown path (gRPC calls never come here, see `dispatch`): `Not Found` under the
/// gateway's prefixes (its own answer), Go's mux text elsewhere.
pub async fn not_found(req: axum::extract::Request) -> Response {
    let uri = req.uri();
    let body = if PREFIXES.iter().any(|p| uri.path().starts_with(&format!("{p}/"))) {
        "Not Found\n"
    } else {
        "404 page not found\n"
    };
    super::http::go_error(StatusCode::NOT_FOUND, body)
}

/// A CORS preflight (etcd answers OPTIONS on any path with 200; the CORS headers are added
/// to every answer by the HTTP layer).
async fn preflight() -> StatusCode {
    StatusCode::OK
}

/// A known path with a method other than POST.
pub async fn method_not_allowed() -> Response {
    super::http::go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// A bidirectional stream over HTTP: the body's JSON requests feed `serve`, whose answers go
/// back one line each (`buffer` of them queued).
fn bidi_route<Req, Resp, F, Fut>(
    ctx: Arc<Ctx>,
    buffer: usize,
    serve: F,
) -> axum::routing::MethodRouter
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(
            Arc<Ctx>,
            crate::api::ctx::Creds,
            Requests<Req>,
            mpsc::Sender<Result<Resp, Status>>,
        ) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    post(move |headers: HeaderMap, body: Body| async move {
        let limit = body_limit(&ctx);
        let input = match first_then_rest(json_requests(body, limit)).await {
            Ok(input) => input,
            Err(resp) => return resp,
        };
        let (tx, rx) = mpsc::channel(buffer);
        let creds = crate::api::ctx::Creds { md: metadata(&headers), cn: None };
        tokio::spawn(serve(ctx.clone(), creds, input, tx));
        stream_response(rx).await
    })
    .options(preflight)
}

/// A server stream from a service method, answered line by line.
async fn forward_stream<T, S>(mut s: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(item) = s.next().await {
            let end = item.is_err();
            if tx.send(item).await.is_err() || end {
                return;
            }
        }
    });
    stream_response(rx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_in_bytes(text: &'static str) -> Body {
        let chunks = text.as_bytes().iter().map(|b| Ok::<_, std::io::Error>(Bytes::from(vec![*b])));
        Body::from_stream(tokio_stream::iter(chunks.collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn streamed_requests_arrive_one_by_one_however_the_body_is_cut() {
        let body = body_in_bytes(
            " {\"create_request\":{\"key\":\"YQ==\"}}\n{\"progress_request\":{}} null ",
        );
        let got: Vec<_> = json_requests::<pb::WatchRequest>(body, 1 << 20).collect().await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(Result::is_ok));
        let body = body_in_bytes("{\"create_request\":{}} {\"cancel");
        let got: Vec<_> = json_requests::<pb::WatchRequest>(body, 1 << 20).collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap_err().message(), "unexpected EOF");
        let body = body_in_bytes("[1]");
        let got: Vec<_> = json_requests::<pb::WatchRequest>(body, 1 << 20).collect().await;
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap_err().message().contains("cannot unmarshal array"));
    }

    #[test]
    fn json_shapes_follow_the_gateway() {
        let r =
            pb::PutRequest { key: b"foo".to_vec(), value: b"bar".to_vec(), ..Default::default() };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"key":"Zm9v","value":"YmFy"}"#);
        let h = pb::ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 0 };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"cluster_id":"1","member_id":"2","revision":"3"}"#
        );
        let q: pb::RangeRequest =
            decode(br#"{"key":"Zm9v","range_end":"Zm9w","limit":"10","sort_order":"DESCEND"}"#)
                .unwrap();
        assert_eq!((q.limit, q.sort_order), (10, 2));
        let q: pb::RangeRequest = decode(br#"{"key":"Zm9v","limit":10}"#).unwrap();
        assert_eq!(q.limit, 10);
        assert!(decode::<pb::RangeRequest>(b"{bad").is_err());
        assert!(decode::<pb::RangeRequest>(b"").is_ok());
    }
}
