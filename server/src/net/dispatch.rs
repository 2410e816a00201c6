//! The client port's front door: a gRPC call (content type `application/grpc…`) goes straight
//! to its service, chosen by the first segment of its path (an unknown one is answered
//! UNIMPLEMENTED here); everything else goes to the HTTP router (JSON gateway, /health,
//! /metrics, ...). Every gRPC call is counted (grpc_server_started_total and _handled_total, with
//! --metrics=extensive its handling time) with its bytes in and out.
//!
//! **Why not one axum router for all.** Routing each gRPC call through axum (a wildcard route
//! per service, whose captured parameters are stored in the request for every call) and a
//! `from_fn` middleware (which boxes the rest of the stack for every call) cost a loaded
//! leader more CPU than tonic's own server code (benches/RESULTS.md, session 7). Here it is
//! one string match and one boxed future.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response};
use tonic::server::NamedService;
use tower::{Service, ServiceExt};

use crate::api::auth::AuthService;
use crate::api::cluster::ClusterService;
use crate::api::election::ElectionService;
use crate::api::errors::ApiError;
use crate::api::health::HealthService;
use crate::api::kv::KvService;
use crate::api::lazy_range::LazyAnswer;
use crate::api::lease::LeaseService;
use crate::api::lock::LockService;
use crate::api::maintenance::MaintenanceService;
use crate::api::watch::WatchService;
use crate::metrics::Metrics;
use crate::net::counted::Counted;
use crate::net::unary::{self, KvCalls, KvUnary};
use rusted_proto::etcdserverpb::auth_server::AuthServer;
use rusted_proto::etcdserverpb::cluster_server::ClusterServer;
use rusted_proto::etcdserverpb::kv_server::KvServer;
use rusted_proto::etcdserverpb::lease_server::LeaseServer;
use rusted_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use rusted_proto::etcdserverpb::watch_server::WatchServer;
use rusted_proto::health::health_server::HealthServer;
use rusted_proto::v3electionpb::election_server::ElectionServer;
use rusted_proto::v3lockpb::lock_server::LockServer;

/// The gRPC services of the client port.
#[derive(Clone, Debug)]
pub struct GrpcServices {
    /// etcdserverpb.KV
    pub kv: KvServer<KvService>,
    /// etcdserverpb.Cluster
    pub cluster: ClusterServer<ClusterService>,
    /// etcdserverpb.Maintenance
    pub maintenance: MaintenanceServer<MaintenanceService>,
    /// etcdserverpb.Watch
    pub watch: WatchServer<WatchService>,
    /// etcdserverpb.Lease
    pub lease: LeaseServer<LeaseService>,
    /// etcdserverpb.Auth
    pub auth: AuthServer<AuthService>,
    /// grpc.health.v1.Health
    pub health: HealthServer<HealthService>,
    /// v3lockpb.Lock
    pub lock: LockServer<LockService>,
    /// v3electionpb.Election
    pub election: ElectionServer<ElectionService>,
    /// KV's unary methods, answered without tonic's generic path (`kv` takes the rest).
    pub kv_calls: KvCalls,
}

struct Inner {
    /// `None` on an HTTP-only listener (`--listen-client-http-urls`): gRPC is not served there.
    grpc: Option<GrpcServices>,
    http: axum::Router,
    metrics: Arc<Metrics>,
}

/// The client port's service (see the module documentation).
#[derive(Clone)]
pub struct ClientDispatch(Arc<Inner>);

impl std::fmt::Debug for ClientDispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientDispatch").field("grpc", &self.0.grpc).finish_non_exhaustive()
    }
}

impl ClientDispatch {
    /// gRPC `grpc` first, `http` for every other path.
    pub fn new(grpc: GrpcServices, http: axum::Router, metrics: Arc<Metrics>) -> Self {
        ClientDispatch(Arc::new(Inner { grpc: Some(grpc), http, metrics }))
    }

    /// `http` for every request, gRPC's content type too (an HTTP-only listener).
    pub fn http_only(http: axum::Router, metrics: Arc<Metrics>) -> Self {
        ClientDispatch(Arc::new(Inner { grpc: None, http, metrics }))
    }
}

// Header names made at compile time: a lookup by `&str` parses the name on every call.
const CLIENT_API_VERSION: header::HeaderName =
    header::HeaderName::from_static("client-api-version");
const GRPC_TIMEOUT: header::HeaderName = header::HeaderName::from_static("grpc-timeout");
pub(crate) const GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: header::HeaderName = header::HeaderName::from_static("grpc-message");

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;
type GrpcAnswer =
    Pin<Box<dyn Future<Output = Result<Response<tonic::body::Body>, Infallible>> + Send>>;

/// Calls a tonic service.
fn grpc_call<S, B>(mut svc: S, req: Request<B>) -> GrpcAnswer
where
    S: Service<
            Request<B>,
            Response = Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Send
        + 'static,
{
    Box::pin(svc.call(req))
}

/// The client's deadline (`grpc-timeout`: at most 8 digits and a unit, as gRPC over HTTP/2
/// says); a malformed one is ignored, as grpc-go and tonic ignore it.
fn grpc_timeout(v: &http::HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?;
    let (digits, unit) = s.split_at(s.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// tonic refuses a request over the decoding limit with OUT_OF_RANGE and words of its own;
/// grpc-go (etcd) with RESOURCE_EXHAUSTED "grpc: received message larger than max (N vs. M)",
/// which clients match on. Rewritten here for answers refused up front (unary calls); a
/// streamed request's refusal travels in trailers and keeps tonic's words.
fn as_grpc_go_size_refusal<B>(resp: &mut Response<B>) {
    let h = resp.headers();
    if h.get(GRPC_STATUS).is_none_or(|v| v.as_bytes() != b"11") {
        return;
    }
    let Some(msg) = h.get(GRPC_MESSAGE) else { return };
    let msg = percent_encoding::percent_decode(msg.as_bytes()).decode_utf8_lossy();
    let Some(found) = msg.strip_prefix("Error, decoded message length too large: found ") else {
        return;
    };
    let number = |s: &str| s.split(' ').next().and_then(|n| n.parse::<u64>().ok());
    let (Some(len), Some(limit)) =
        (number(found), found.split("the limit is: ").nth(1).and_then(number))
    else {
        return;
    };
    let refusal = crate::api::errors::message_too_large(len as usize, limit as usize);
    if let Ok(v) = axum::http::HeaderValue::from_str(refusal.message()) {
        let h = resp.headers_mut();
        h.insert(GRPC_STATUS, axum::http::HeaderValue::from_static("8"));
        h.insert(GRPC_MESSAGE, v);
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl<B> Service<Request<B>> for ClientDispatch
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError> + Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every service below is always ready (tonic's and axum's are).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Answer {
        let g = match &self.0.grpc {
            // As etcd, which tells gRPC from HTTP by content type: CORS, preflights and the
            // gateway are the HTTP router's, whatever the path.
            Some(g) if is_grpc(&req) => g,
            _ => return Box::pin(self.0.http.clone().oneshot(req.map(Body::new))),
        };
        // Shares the request's bytes (no copy).
        let uri = req.uri().clone();
        let path = uri.path();
        let metrics = self.0.metrics.clone();
        let version = req.headers().get(CLIENT_API_VERSION).and_then(|v| v.to_str().ok());
        let calls = metrics.grpc.started(path, version);
        let deadline = req.headers().get(GRPC_TIMEOUT).and_then(grpc_timeout);
        let started = std::time::Instant::now();
        let received = metrics.grpc.client_received.clone();
        let msgs_in = calls.msgs_in.clone();
        let req = req.map(|b| Counted::new(b, received).with_messages(msgs_in));
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let kv_unary = KvUnary::of(path).filter(|_| unary::uncompressed(&req));
        let answer: GrpcAnswer = match (kv_unary, service) {
            (Some(method), _) => {
                let calls = g.kv_calls.clone();
                Box::pin(async move { Ok(calls.call(method, req).await) })
            }
            (_, KvServer::<KvService>::NAME) => grpc_call(g.kv.clone(), req),
            (_, WatchServer::<WatchService>::NAME) => grpc_call(g.watch.clone(), req),
            (_, LeaseServer::<LeaseService>::NAME) => grpc_call(g.lease.clone(), req),
            (_, ClusterServer::<ClusterService>::NAME) => grpc_call(g.cluster.clone(), req),
            (_, MaintenanceServer::<MaintenanceService>::NAME) => {
                grpc_call(g.maintenance.clone(), req)
            }
            (_, AuthServer::<AuthService>::NAME) => grpc_call(g.auth.clone(), req),
            (_, HealthServer::<HealthService>::NAME) => grpc_call(g.health.clone(), req),
            (_, LockServer::<LockService>::NAME) => grpc_call(g.lock.clone(), req),
            (_, ElectionServer::<ElectionService>::NAME) => grpc_call(g.election.clone(), req),
            // As any gRPC server answers a method it does not have.
            _ => {
                let status: tonic::Status = ApiError::UnknownMethod(path.to_string()).into();
                Box::pin(std::future::ready(Ok(status.into_http::<tonic::body::Body>())))
            }
        };
        Box::pin(async move {
            let mut resp = match deadline {
                None => answer.await?,
                // As grpc-go: the call ends with the client's deadline.
                Some(d) => match tokio::time::timeout(d, answer).await {
                    Ok(r) => r?,
                    Err(_) => tonic::Status::deadline_exceeded("context deadline exceeded")
                        .into_http::<tonic::body::Body>(),
                },
            };
            // A big Range answer is encoded while it is sent (api::lazy_range).
            if let Some(lazy) = resp.extensions_mut().remove::<LazyAnswer>().and_then(|l| l.take())
            {
                resp = resp.map(|_| tonic::body::Body::new(lazy));
            }
            let took = started.elapsed();
            if kv_unary.is_none() {
                // net/unary.rs words its refusals as grpc-go already.
                as_grpc_go_size_refusal(&mut resp);
            }
            // A code sent in the trailers of a streamed answer is not seen here; such calls
            // count as OK unless they failed up front (tonic answers unary errors that way).
            let code = resp
                .headers()
                .get(GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            calls.handled(code, took);
            let sent = metrics.grpc.client_sent.clone();
            Ok(resp.map(|b| Body::new(Counted::new(b, sent).with_messages(calls.msgs_out))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_says() {
        let t = |s: &str| grpc_timeout(&http::HeaderValue::from_str(s).expect("header"));
        assert_eq!(t("5S"), Some(Duration::from_secs(5)));
        assert_eq!(t("4999999u"), Some(Duration::from_micros(4_999_999)));
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("10m"), Some(Duration::from_millis(10)));
        assert_eq!(t("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(t("99999999S"), Some(Duration::from_secs(99_999_999)));
        // Malformed: ignored (no deadline), as grpc-go and tonic do.
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "5 S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }
}
