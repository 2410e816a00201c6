//! `--experimental-initial-corrupt-check`: before a starting member serves clients, it hashes
//! its key-value history at its current revision and asks every other member for its hash at
//! that revision (over the peer service). A peer with the same compacted revision but another
//! hash means this member's data differs from the cluster's: the start fails, as etcd's.
//! Peers that cannot answer (down, slow, compacted past the revision, behind it) are logged
//! and skipped, as etcd skips them.
#![forbid(unsafe_code)]

use std::time::Duration;

use rusted_proto::etcdserverpb::HashKvRequest;
use rusted_proto::rustedpb::peer_client::PeerClient;
use rusted_proto::tls::ClientTls;

use super::StartError;
use crate::api::ctx::Ctx;
use crate::peer::transport::dial_peer;

/// How long one peer may take to answer.
pub const PEER_HASH_TIMEOUT: Duration = Duration::from_secs(5);

/// Compares this member's hash with its peers'; an error means data inconsistency.
pub async fn initial_check(ctx: &Ctx, tls: Option<&ClientTls>) -> Result<(), StartError> {
    let me = ctx.replica.id();
    tracing::info!(id = %format!("{me:x}"), "starting initial corruption check");
    let local = crate::api::maintenance::hash_kv(ctx, 0)
        .await
        .map_err(|e| format!("{me:x} failed to fetch hash ({e})"))?;
    let mut mismatch = 0;
    for m in ctx.replica.cluster().members.values().filter(|m| m.id != me) {
        let Some(url) = m.peer_urls.first() else { continue };
        let ask = async {
            let ch = dial_peer(url, tls).await?;
            let req = HashKvRequest { revision: local.hash_revision };
            PeerClient::new(ch)
                .hash_kv(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(PEER_HASH_TIMEOUT, ask).await {
            Ok(Ok(peer)) if peer.hash != local.hash => {
                if peer.compact_revision == local.compact_revision {
                    tracing::warn!(peer = %format!("{:x}", m.id), local_hash = local.hash, remote_hash = peer.hash, revision = local.hash_revision, "found different hash values from remote peer");
                    mismatch += 1;
                } else {
                    tracing::warn!(peer = %format!("{:x}", m.id), local_compact = local.compact_revision, remote_compact = peer.compact_revision, "found different compact revision values from remote peer");
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(peer = %format!("{:x}", m.id), error = %e, "cannot fetch hash from remote peer")
            }
            Err(_) => {
                tracing::warn!(peer = %format!("{:x}", m.id), "cannot fetch hash from slow remote peer")
            }
        }
    }
    if mismatch > 0 {
        return Err(format!("{me:x} found data inconsistency with peers").into());
    }
    tracing::info!(id = %format!("{me:x}"), "initial corruption checking passed; no corruption");
    Ok(())
}
