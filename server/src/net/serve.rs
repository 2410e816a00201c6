//! Serving a listener: tonic's server over accepted connections, each (after its TLS handshake,
//! on an https URL) read through the `:authority` fix and written through the coalescing
//! buffer.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::authority::AuthorityFix;
use super::coalesce::Coalesce;
use super::pings::Pings;
use super::tls::Acceptor;

/// A TLS handshake that takes longer than this is dropped (a slow or silent client must not
/// hold a task forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose handshake is done but that tonic has not taken yet.
const ACCEPTED_QUEUE: usize = 64;

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

/// Serves `routes` on `listener` (TCP_NODELAY on every connection, writes coalesced per burst;
/// TLS when `tls` is given; HTTP as `protocol` says) until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<Acceptor>>,
    routes: tonic::service::Routes,
    protocol: Protocol,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
) {
    use tokio_stream::StreamExt as _;
    let (interval, timeout) = protocol.keepalive.unzip();
    let min_time = protocol.ping_min_time;
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .accept_http1(protocol.http1)
        .max_concurrent_streams(protocol.streams)
        .http2_keepalive_interval(interval)
        .http2_keepalive_timeout(timeout)
        .add_routes(routes);
    let mut stop2 = stop.clone();
    let shutdown = async move {
        let _ = stop2.wait_for(|s| *s).await;
    };
    let r = match tls {
        None => {
            let inc = tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map(move |conn| {
                    conn.map(|c| Coalesce::new(AuthorityFix::new(Pings::new(c, min_time))))
                });
            server.serve_with_incoming_shutdown(inc, shutdown).await
        }
        Some(acceptor) => {
            let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = stop.wait_for(|s| *s) => return,
                        // tonic's server ended: nothing takes connections any more.
                        _ = tx.closed() => return,
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
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => {
                                let conn: std::io::Result<_> =
                                    Ok(Coalesce::new(AuthorityFix::new(Pings::new(s, min_time))));
                                let _ = tx.send(conn).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, server = what, "TLS handshake failed")
                            }
                            Err(_) => {
                                tracing::debug!(%peer, server = what, "TLS handshake timed out")
                            }
                        }
                    });
                }
            });
            server.serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown).await
        }
    };
    if let Err(e) = r {
        tracing::error!(error = %e, server = what, "serving failed");
    }
}
