//! Serving a listener: tonic's server over accepted connections, each read through the
//! `:authority` fix and written through the coalescing buffer.
#![forbid(unsafe_code)]

use tokio::sync::watch;

/// Serves `routes` on `listener` (TCP_NODELAY on every connection, writes coalesced per burst;
/// HTTP/1.1 too when `http1`) until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    http1: bool,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
) {
    use tokio_stream::StreamExt as _;
    let inc = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)).map(
        |conn| conn.map(|c| super::coalesce::Coalesce::new(super::authority::AuthorityFix::new(c))),
    );
    let r = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .accept_http1(http1)
        .add_routes(routes)
        .serve_with_incoming_shutdown(inc, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, server = what, "serving failed");
    }
}
