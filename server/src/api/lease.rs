//! The Lease service. Grants and revokes go through raft; renewals and time-to-live are
//! answered by the leader (a follower forwards them, as etcd does); the list is local.
#![forbid(unsafe_code)]

use std::sync::Arc;

use rusted_mvcc::{LeaseError, MvccError};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::api::authorize;
use crate::api::ctx::{Creds, Ctx};
use crate::api::errors::{unexpected, ApiError, ApiResult};
use crate::api::validate;
use crate::apply::machine::ApplyOut;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::lease_server::Lease;
use rusted_proto::rustedpb::proposal::Request as P;

/// The Lease service.
#[derive(Debug, Clone)]
pub struct LeaseService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

/// Is this 'no such lease' (answered as TTL 0 or -1 rather than as an error)?
pub fn not_found(e: &ApiError) -> bool {
    matches!(e, ApiError::Mvcc(MvccError::Lease(LeaseError::NotFound | LeaseError::Expired)))
}

/// Pause between attempts to forward a renewal to the leader.
pub const FORWARD_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Renews lease `id` here, as the leader: clears a checkpointed remaining TTL through raft
/// first, as etcd does. `Ok(None)` means this member is not (or no longer) the leader.
pub async fn renew_local(ctx: &Ctx, id: i64) -> ApiResult<Option<i64>> {
    if !ctx.replica.is_leader() {
        return Ok(None);
    }
    let store = ctx.store();
    if store.lease_needs_checkpoint_clear(id) {
        let cp = pb::LeaseCheckpoint { id, remaining_ttl: 0 };
        ctx.propose(P::LeaseCheckpoint(pb::LeaseCheckpointRequest { checkpoints: vec![cp] }))
            .await?;
    }
    match ctx.store().lease_renew(id) {
        Ok(ttl) => Ok(Some(ttl)),
        Err(MvccError::Lease(LeaseError::NotPrimary)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A keep-alive answer: the granted TTL, or 0 for a lease that does not exist (etcd answers
/// that with TTL 0, not an error). Forwarded to the leader from a follower.
pub async fn renew(ctx: &Ctx, id: i64) -> Result<i64, Status> {
    let deadline = tokio::time::Instant::now() + ctx.request_timeout();
    loop {
        match renew_local(ctx, id).await {
            Ok(Some(ttl)) => return Ok(ttl),
            Ok(None) => {}
            Err(e) if not_found(&e) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        // A follower (or a leader that just stepped down): ask the leader, again and again
        // until the request timeout, as etcd does, since leadership may be moving.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(ApiError::Replication(rusted_replication::ReplicationError::Timeout).into());
        }
        let attempt = async {
            let mut c = ctx.leader_client()?;
            let r = c.lease_renew(pb::LeaseKeepAliveRequest { id }).await?;
            Ok::<_, Status>(r.into_inner().ttl)
        };
        match tokio::time::timeout(left, attempt).await {
            Ok(Ok(ttl)) => return Ok(ttl),
            Ok(Err(e)) => {
                tracing::debug!(lease = id, error = %e, "forwarded renewal failed, retrying")
            }
            Err(_) => {}
        }
        tokio::time::sleep(FORWARD_RETRY).await;
    }
}

/// Time-to-live as the leader knows it (`Ok(None)` when this member is not the leader).
/// A missing lease is answered with TTL -1, as etcd does.
pub fn time_to_live_local(
    ctx: &Ctx,
    r: &pb::LeaseTimeToLiveRequest,
) -> ApiResult<Option<pb::LeaseTimeToLiveResponse>> {
    if !ctx.replica.is_leader() {
        return Ok(None);
    }
    let store = ctx.store();
    match store.lease_time_to_live(r.id) {
        Ok(t) => Ok(Some(pb::LeaseTimeToLiveResponse {
            header: ctx.header(store.current_revision()),
            id: t.id,
            ttl: t.ttl,
            granted_ttl: t.granted_ttl,
            keys: if r.keys { t.keys } else { Vec::new() },
        })),
        Err(MvccError::Lease(LeaseError::NotPrimary)) => Ok(None),
        Err(MvccError::Lease(LeaseError::NotFound | LeaseError::Expired)) => {
            Ok(Some(pb::LeaseTimeToLiveResponse {
                header: ctx.header(store.current_revision()),
                id: r.id,
                ttl: -1,
                ..Default::default()
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Serves one keep-alive stream: each request renews its lease and is answered in order. A
/// failure other than "no such lease" ends the stream with that error, as etcd's does; so does
/// the client going away.
pub async fn keep_alive<S>(
    ctx: Arc<Ctx>,
    creds: Creds,
    mut input: S,
    tx: tokio::sync::mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
) where
    S: Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>> + Unpin,
{
    while let Some(req) = input.next().await {
        let r = match req {
            Ok(r) => r,
            Err(_) => return,
        };
        let header = ctx.header_now();
        // The stream's token is read again for each renewal, as etcd reads it.
        let allowed = match ctx.who_creds(&creds).await {
            Ok(who) => authorize::identity(&ctx, &who)
                .and_then(|()| authorize::lease_keys(&ctx, &who, r.id, true)),
            Err(e) => Err(e),
        }
        .map_err(Status::from);
        let resp = match allowed {
            Ok(()) => renew(&ctx, r.id).await.map(|ttl| pb::LeaseKeepAliveResponse {
                header,
                id: r.id,
                ttl,
            }),
            Err(e) => Err(e),
        };
        let failed = resp.is_err();
        if tx.send(resp).await.is_err() || failed {
            return;
        }
    }
}

type KeepAliveStream = crate::api::stream::Out<pb::LeaseKeepAliveResponse>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        let mut r = req.into_inner();
        if r.id == 0 {
            r.id = self.ctx.ids.next_lease();
        }
        self.ctx.check_quota(crate::apply::convert::LEASE_OVERHEAD)?;
        authorize::identity(&self.ctx, &who)?;
        match self.ctx.propose_for(&who, P::LeaseGrant(r)).await? {
            ApplyOut::LeaseGrant(g) => Ok(Response::new(pb::LeaseGrantResponse {
                header: self.ctx.header_now(),
                id: g.id,
                ttl: g.ttl,
                error: String::new(),
            })),
            other => Err(unexpected(other).into()),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        validate::lease_id(req.get_ref().id)?;
        authorize::identity(&self.ctx, &who)?;
        authorize::lease_keys(&self.ctx, &who, req.get_ref().id, true)?;
        match self.ctx.propose_for(&who, P::LeaseRevoke(req.into_inner())).await? {
            ApplyOut::LeaseRevoke(rev) => {
                Ok(Response::new(pb::LeaseRevokeResponse { header: self.ctx.header(rev) }))
            }
            other => Err(unexpected(other).into()),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let creds = Creds::of(&req);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(keep_alive(self.ctx.clone(), creds, req.into_inner(), tx));
        crate::api::stream::after_first(rx).await
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        authorize::identity(&self.ctx, &who)?;
        if r.keys {
            authorize::lease_keys(&self.ctx, &who, r.id, false)?;
        }
        if let Some(resp) = time_to_live_local(&self.ctx, &r)? {
            return Ok(Response::new(resp));
        }
        let mut c = self.ctx.leader_client()?;
        match tokio::time::timeout(self.ctx.request_timeout(), c.lease_time_to_live(r)).await {
            Ok(resp) => {
                let mut resp = resp?.into_inner();
                // The header is this member's, as etcd's forwarded answers are.
                let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
                resp.header = self.ctx.header(rev);
                Ok(Response::new(resp))
            }
            Err(_) => {
                Err(ApiError::Replication(rusted_replication::ReplicationError::Timeout).into())
            }
        }
    }

    async fn lease_leases(
        &self,
        req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        let ids = self.ctx.store().leases();
        authorize::leases(&self.ctx, &who, &ids)?;
        let leases = ids.into_iter().map(|id| pb::LeaseStatus { id }).collect();
        Ok(Response::new(pb::LeaseLeasesResponse { header: self.ctx.header_now(), leases }))
    }
}
