//! What a running member does on its own: publish its name and client URLs once, raise the
//! NOSPACE alarm when its WAL's disk is full, and, while leading, expire leases (at etcd's
//! revoke rate) and checkpoint them (etcd's lessor loop). Auto-compaction is in
//! [`super::autocompact`].
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use rusted_mvcc::lease::{DEFAULT_LEASE_REVOKE_RATE, LESSOR_TICK, MAX_LEASE_CHECKPOINT_BATCH_SIZE};
use rusted_proto::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest};
use rusted_proto::rustedpb::proposal::Request as P;
use tokio::sync::watch;

use crate::api::ctx::Ctx;

/// Leases revoked per lessor tick at most: etcd's revoke rate (per second) over its ticks.
const REVOKES_PER_TICK: usize = DEFAULT_LEASE_REVOKE_RATE * LESSOR_TICK.as_millis() as usize / 1000;
/// Lease checkpoints proposed per lessor tick at most. rusted proposes one checkpoint per
/// entry (the store records one per index); a tick proposes up to one etcd batch's worth.
const CHECKPOINTS_PER_TICK: usize = MAX_LEASE_CHECKPOINT_BATCH_SIZE;
/// How long a failed publish waits before it tries again.
pub const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// etcd's publish: the member's name and client URLs go through raft once it runs; then the
/// member is ready (`ready` is set), and serves clients, as etcd's does after its publish.
pub(super) async fn publish(
    ctx: Arc<Ctx>,
    name: String,
    client_urls: Vec<String>,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    // Published on every start, even when the record already holds these values (as etcd):
    // a restarted member cut off from its cluster does not become ready.
    loop {
        match ctx.replica.publish(&name, client_urls.clone()).await {
            Ok(_) => {
                tracing::info!(
                    name,
                    "published local member to cluster; ready to serve client requests"
                );
                ready.send_replace(true);
                return;
            }
            Err(e) => tracing::debug!(error = %e, "publish, retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PUBLISH_RETRY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// How often a leader whose v2 store has TTL keys proposes a SYNC (etcd: 500 ms).
pub const V2_SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// etcd's v2 SYNC: while leading, and while some v2 key has a TTL, propose the leader's
/// clock; applying it expires the keys due by then on every member alike.
pub(super) async fn v2_sync(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(V2_SYNC_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !ctx.replica.is_leader() || !ctx.machine.v2.lock().tree.has_ttl_keys() {
            continue;
        }
        let req = rusted_proto::rustedpb::V2Request {
            method: "SYNC".into(),
            time: crate::v2::now_nanos(),
            ..Default::default()
        };
        if let Err(e) = ctx.propose(P::V2(req)).await {
            tracing::debug!(error = %e, "v2 sync failed");
        }
    }
}

/// Lease expiry and checkpoints, run only while leading (etcd's lessor loop).
pub(super) async fn leader_duties(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LESSOR_TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Every member forgets the simple tokens unused for their TTL, and raises NOSPACE for
        // itself when its WAL's disk is full (the current segment still has room for that).
        ctx.auth().expire_tokens();
        if let Some(why) = ctx.replica.wal().space_error() {
            if !ctx.machine.nospace() {
                tracing::error!(error = %why, "wal disk full; raising the NOSPACE alarm");
                ctx.raise_nospace();
            }
        }
        if !ctx.replica.is_leader() {
            continue;
        }
        let store = ctx.store();
        // A tick's revokes are proposed together (etcd revokes each in its own goroutine):
        // they share raft rounds and WAL syncs, so a lease storm drains at the revoke rate
        // instead of one round trip per lease.
        let revokes = store.expired_leases(REVOKES_PER_TICK).into_iter().map(|id| {
            let ctx = &ctx;
            async move { (id, ctx.propose(P::LeaseRevoke(LeaseRevokeRequest { id })).await) }
        });
        for (id, r) in futures_util::future::join_all(revokes).await {
            match r {
                Ok(_) => ctx.metrics.store.leases_expired.inc(),
                Err(e) => tracing::debug!(lease = id, error = %e, "lease expiry revoke failed"),
            }
        }
        for (id, remaining_ttl) in store.due_lease_checkpoints(CHECKPOINTS_PER_TICK) {
            let req =
                LeaseCheckpointRequest { checkpoints: vec![LeaseCheckpoint { id, remaining_ttl }] };
            if let Err(e) = ctx.propose(P::LeaseCheckpoint(req)).await {
                tracing::debug!(lease = id, error = %e, "lease checkpoint failed");
            }
        }
    }
}
