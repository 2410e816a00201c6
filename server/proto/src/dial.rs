//! How every rusted client reaches an etcd endpoint (rustedctl, the load tools, a member's
//! peer transport and its forwarding to the leader): one place that reads the endpoint as
//! etcd's tools do, sets the connection options they share, and speaks TLS when asked to
//! (an `https://` endpoint, or TLS settings given).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::tls::{ClientTls, TlsError};

/// Why an endpoint cannot be dialed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Not an endpoint.
    #[error("bad endpoint {0}: {1}")]
    Endpoint(String, String),
    /// The TLS settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// `http://` in front of an endpoint given as `host:port` (etcd's tools accept both forms).
pub fn endpoint_url(e: &str) -> String {
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

/// An endpoint for `e` (`host:port` or a URL), with TCP_NODELAY: every request here is a
/// small message waiting for its answer. Plain TCP; see [`target`] for TLS.
pub fn endpoint(e: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(endpoint_url(e))?.tcp_nodelay(true))
}

/// An endpoint and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint (its options may be set before connecting).
    pub endpoint: Endpoint,
    tls: Option<TlsTarget>,
}

#[derive(Debug, Clone)]
struct TlsTarget {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    addr: String,
}

/// How to reach `e`: over TLS when `e` is an `https://` URL, or a bare `host:port` with `tls`
/// given (as etcd's clients read it); an `http://` URL is plain TCP whatever `tls` says (a
/// member's peer URLs may mix both).
pub fn target(e: &str, tls: Option<&ClientTls>) -> Result<Target, DialError> {
    let url = endpoint_url(e);
    let bad = |m: &dyn std::fmt::Display| DialError::Endpoint(e.to_string(), m.to_string());
    let uri: Uri = url.parse().map_err(|x| bad(&x))?;
    let bare = !e.contains("://");
    let secure = uri.scheme_str() == Some("https") || (bare && tls.is_some());
    if !secure {
        return Ok(Target { endpoint: endpoint(e).map_err(|x| bad(&x))?, tls: None });
    }
    let host = uri.host().ok_or_else(|| bad(&"no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(unbracketed.to_string()).map_err(|x| bad(&x))?;
    let config = Arc::new(tls.cloned().unwrap_or_default().config()?);
    // tonic is given the plain form of the address: the TLS is ours, in the connector.
    let plain = format!("http://{host}:{port}");
    let endpoint = Endpoint::from_shared(plain).map_err(|x| bad(&x))?.tcp_nodelay(true);
    let addr = format!("{host}:{port}");
    Ok(Target { endpoint, tls: Some(TlsTarget { config, name, addr }) })
}

type TlsIo = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TlsIo>> + Send>>;

impl TlsTarget {
    fn connector(
        self,
    ) -> impl tower::Service<Uri, Response = TlsIo, Error = std::io::Error, Future = Connecting> + Clone
    {
        tower::service_fn(move |_: Uri| -> Connecting {
            let t = self.clone();
            Box::pin(async move {
                let tcp = tokio::net::TcpStream::connect(&t.addr).await?;
                tcp.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(t.config).connect(t.name, tcp).await?;
                Ok(TokioIo::new(tls))
            })
        })
    }
}

impl Target {
    /// Sets the endpoint's options (timeouts, ...).
    pub fn with(mut self, f: impl FnOnce(Endpoint) -> Endpoint) -> Self {
        self.endpoint = f(self.endpoint);
        self
    }

    /// Connects now.
    pub async fn connect(self) -> Result<Channel, tonic::transport::Error> {
        match self.tls {
            Some(t) => self.endpoint.connect_with_connector(t.connector()).await,
            None => self.endpoint.connect().await,
        }
    }

    /// A channel that connects on first use.
    pub fn connect_lazy(self) -> Channel {
        match self.tls {
            Some(t) => self.endpoint.connect_with_connector_lazy(t.connector()),
            None => self.endpoint.connect_lazy(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_etcds_tools_read_them() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("http://a:1"), "http://a:1");
        assert_eq!(endpoint_url("https://a:1"), "https://a:1");
        assert!(endpoint("127.0.0.1:2379").is_ok());
        assert!(endpoint("http://bad host").is_err());
    }

    #[test]
    fn tls_when_https_or_asked() {
        assert!(target("127.0.0.1:2379", None).unwrap().tls.is_none());
        let t = target("https://127.0.0.1:2379", None).unwrap();
        assert_eq!(t.tls.as_ref().unwrap().addr, "127.0.0.1:2379");
        assert_eq!(t.endpoint.uri().scheme_str(), Some("http"));
        let skip = ClientTls { skip_verify: true, ..Default::default() };
        assert!(target("localhost:2379", Some(&skip)).unwrap().tls.is_some());
        assert!(
            target("http://localhost:2380", Some(&skip)).unwrap().tls.is_none(),
            "http stays plain"
        );
        assert_eq!(target("https://[::1]:2379", None).unwrap().tls.unwrap().addr, "[::1]:2379");
        let half = ClientTls { cert_file: Some("c.pem".into()), ..Default::default() };
        assert!(matches!(
            target("a:1", Some(&half)),
            Err(DialError::Tls(_)) | Err(DialError::Endpoint(..))
        ));
    }
}
