//! Serving a listener: hyper's HTTP/1 and HTTP/2 server over accepted connections, each (after
//! its TLS handshake, on an https URL) read through the `:authority` fix and written through
//! the coalescing buffer, and answered by one tower service.
//!
//! **Why not tonic's server.** tonic's `Server` puts its own layers (error recovery, connect
//! info in every request's extensions, a timeout layer) and an axum `Router` in front of the
//! service, and re-boxes each request and answer body on the way: about a dozen allocations and
//! several boxed futures per call (RESULTS.md, session 17). The services are the same tonic
//! services; only the connection handling is hyper's, set up as tonic sets it up.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::Service;

use super::authority::AuthorityFix;
use super::coalesce::Coalesce;
use super::pings::Pings;
use super::tls::Acceptor;

/// A TLS handshake that takes longer than this is dropped (a slow or silent client must not
/// hold a task forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a listener speaks HTTP.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protocol {
    /// HTTP/1.1 accepted too (the gateway, /health, /metrics).
    pub http1: bool,
    /// At most this many concurrent HTTP/2 streams per connection (`--max-concurrent-streams`).
    pub streams: Option<u32>,
    /// The server pings an idle connection after the first and closes it when a ping goes
    /// unanswered for the second (`--grpc-keepalive-interval`, `--grpc-keepalive-timeout`).
    pub keepalive: Option<(Duration, Duration)>,
    /// Clients pinging more often than this (with a stream open; every two hours without)
    /// get GOAWAY `too_many_pings` (`--grpc-keepalive-min-time`; see [`super::pings`]).
    pub ping_min_time: Option<Duration>,
}

/// The common name of the verified certificate a TLS client presented (its leaf), read once
/// per connection and put in the extensions of each of its requests.
#[derive(Debug, Clone)]
pub struct ClientCn(pub Arc<str>);

/// A connection's service: `inner`, with the client certificate's common name added to each
/// request.
#[derive(Clone)]
struct WithCn<S> {
    inner: S,
    cn: Option<ClientCn>,
}

impl<S: Service<Request<Incoming>>> Service<Request<Incoming>> for WithCn<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> S::Future {
        if let Some(c) = &self.cn {
            req.extensions_mut().insert(c.clone());
        }
        self.inner.call(req)
    }
}

/// A service that answers a listener's requests.
pub trait Answers:
    Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The answers' body.
    type Body: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static;
}

impl<S, B> Answers for S
where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
    B: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static,
{
    type Body = B;
}

/// Serves `svc` on `listener` (TCP_NODELAY on every connection, writes coalesced per burst;
/// TLS when `tls` is given; HTTP as `protocol` says) until `stop`; then stops accepting, asks
/// every connection to finish gracefully (HTTP/2 GOAWAY) and waits for them.
pub async fn serve<S: Answers>(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<Acceptor>>,
    svc: S,
    protocol: Protocol,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if !protocol.http1 {
        builder = builder.http2_only();
    }
    {
        let mut h2 = builder.http2();
        h2.timer(TokioTimer::new()).max_concurrent_streams(protocol.streams);
        if let Some((interval, timeout)) = protocol.keepalive {
            h2.keep_alive_interval(interval).keep_alive_timeout(timeout);
        }
    }
    // hyper enforces its HTTP/1 header read timeout only with a timer.
    builder.http1().timer(TokioTimer::new());
    // Each connection's task holds a receiver; `closed` says when every one has ended.
    let (gone_tx, gone_rx) = watch::channel(());
    let min_time = protocol.ping_min_time;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: wait, as Go's server does.
                tracing::warn!(error = %e, server = what, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (builder, svc, gone) = (builder.clone(), svc.clone(), gone_rx.clone());
        match &tls {
            None => {
                let io = Coalesce::new(AuthorityFix::new(Pings::new(tcp, min_time)));
                tokio::spawn(connection(io, builder, WithCn { inner: svc, cn: None }, gone));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let s = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, server = what, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, server = what, "TLS handshake timed out");
                            return;
                        }
                    };
                    let leaf = s.get_ref().1.peer_certificates().and_then(|c| c.first());
                    let cn = leaf
                        .and_then(super::tls::common_name)
                        .filter(|cn| !cn.is_empty())
                        .map(|cn| ClientCn(cn.into()));
                    let io = Coalesce::new(AuthorityFix::new(Pings::new(s, min_time)));
                    connection(io, builder, WithCn { inner: svc, cn }, gone).await
                });
            }
        }
    }
    // Closes the listening socket at once: new clients are refused, not left hanging.
    drop(listener);
    let _ = gone_tx.send(());
    drop(gone_rx);
    gone_tx.closed().await;
}

/// Serves one connection until it ends, or (once `gone` changes) until it has finished
/// gracefully.
async fn connection<IO, S: Answers>(
    io: IO,
    builder: auto::Builder<TokioExecutor>,
    svc: S,
    mut gone: watch::Receiver<()>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    let mut asked = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // Changed, or its sender dropped (the listener's task ended some other way).
            _ = gone.changed(), if !asked => {
                asked = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
