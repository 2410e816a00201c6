//! How every rusted client reaches an etcd endpoint (rustedctl, the load tools, a member's
//! peer transport and its forwarding to the leader): one place that reads the endpoint as
//! etcd's tools do and sets the connection options they share.

use tonic::transport::Endpoint;

/// `http://` in front of an endpoint given as `host:port` (etcd's tools accept both forms).
pub fn endpoint_url(e: &str) -> String {
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

/// An endpoint for `e` (`host:port` or a URL), with TCP_NODELAY: every request here is a
/// small message waiting for its answer.
pub fn endpoint(e: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(endpoint_url(e))?.tcp_nodelay(true))
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
}
