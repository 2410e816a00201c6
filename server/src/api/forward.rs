//! Forwarding to the leader: a follower sends the requests only the leader can answer (lease
//! renewals and time-to-live, learner promotion) to the leader's peer URL, as etcd does over
//! its peer HTTP API. One lazily connected channel per leader is cached.
#![forbid(unsafe_code)]

use std::sync::Mutex;

use rusted_proto::tls::ClientTls;
use rusted_replication::ReplicationError;
use tonic::transport::Channel;

use crate::api::errors::{ApiError, ApiResult};
use rusted_proto::rustedpb::peer_client::PeerClient;

/// A cached client to the current leader's peer service.
#[derive(Debug, Default)]
pub struct Forwarder {
    cached: Mutex<Option<(u64, String, PeerClient<Channel>)>>,
    /// TLS towards the peer URLs (`--peer-*` flags), if any.
    tls: Option<ClientTls>,
}

impl Forwarder {
    /// A forwarder that reaches peer URLs with `tls`.
    pub fn new(tls: Option<ClientTls>) -> Self {
        Forwarder { cached: Mutex::new(None), tls }
    }

    /// A client to member `leader` at one of `peer_urls`.
    pub fn client(&self, leader: u64, peer_urls: &[String]) -> ApiResult<PeerClient<Channel>> {
        if leader == 0 {
            return Err(ReplicationError::NoLeader.into());
        }
        let mut c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, url, client)) = c.as_ref() {
            if *id == leader && peer_urls.contains(url) {
                return Ok(client.clone());
            }
        }
        let url = peer_urls.first().ok_or(ApiError::Replication(ReplicationError::NoLeader))?;
        let target = rusted_proto::dial::target(url, self.tls.as_ref())
            .map_err(|e| ApiError::Invalid(format!("leader peer URL {url}: {e}")))?
            .with(|e| e.connect_timeout(crate::peer::transport::PEER_CONNECT_TIMEOUT));
        let client = PeerClient::new(target.connect_lazy());
        *c = Some((leader, url.clone(), client.clone()));
        Ok(client)
    }
}
