//! The Lock service (etcd's v3lock): a lock is the key `<name>/<lease hex>` on the caller's
//! lease; the holder is the key with the lowest create revision under `<name>/`; a waiter
//! waits for every older key to go. Unlock deletes the key.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::ctx::{Creds, Ctx, Who};
use crate::api::errors::{ApiError, ApiResult};
use crate::api::kv;
use crate::api::recipe::{self, DeleteOnDrop};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::v3lockpb::lock_server::Lock;
use rusted_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

/// TTL of the lease a recipe grants when the caller gives none (etcd's session default).
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// The Lock service.
#[derive(Debug, Clone)]
pub struct LockService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

/// The caller's lease, or a new one with the session TTL when it gave none (as etcd's recipes
/// do; nobody keeps that one alive, so it lasts the TTL).
pub async fn session_lease(ctx: &Ctx, who: &Who, lease: i64) -> ApiResult<i64> {
    if lease != 0 {
        return Ok(lease);
    }
    crate::api::authorize::identity(ctx, who)?;
    use rusted_proto::rustedpb::proposal::Request as P;
    let req = pb::LeaseGrantRequest { ttl: DEFAULT_SESSION_TTL, id: ctx.ids.next_lease() };
    ctx.check_quota(crate::apply::convert::LEASE_OVERHEAD)?;
    match ctx.propose_for(who, P::LeaseGrant(req)).await? {
        crate::apply::machine::ApplyOut::LeaseGrant(g) => Ok(g.id),
        other => Err(crate::api::errors::unexpected(other)),
    }
}

/// Acquires `name` for `lease`: returns the key and the header of the revision it was
/// acquired at.
pub async fn lock(
    ctx: &Arc<Ctx>,
    caller: &Creds,
    name: &[u8],
    lease: i64,
) -> ApiResult<(Vec<u8>, Option<pb::ResponseHeader>)> {
    // The caller's token is read again for each step, as etcd's in-process client sends it
    // with each call.
    let lease = session_lease(ctx, &ctx.who_creds(caller).await?, lease).await?;
    let key = recipe::holder_key(name, lease);
    let (my_rev, _, header) = recipe::create_once(ctx, caller, &key, b"", lease).await?;
    let guard = DeleteOnDrop::new(ctx.clone(), caller, key.clone());
    let prefix = recipe::prefix(name);
    let (owner, _) = recipe::by_create(ctx, caller, &prefix, true, 0).await?;
    if owner.is_some_and(|o| o.create_revision == my_rev) {
        guard.disarm();
        return Ok((key, header));
    }
    let rev = recipe::wait_deletes(ctx, caller, &prefix, my_rev - 1).await?;
    // Our own key must still be there (the lease may have expired while we waited).
    let mine = recipe::get(ctx, caller, &key).await?;
    if mine.is_none_or(|kv| kv.create_revision != my_rev) {
        drop(guard);
        return Err(ApiError::Invalid("mutex: session is expired".into()));
    }
    guard.disarm();
    Ok((key, ctx.header(rev)))
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let caller = Creds::of(&req);
        let r = req.into_inner();
        let (key, header) =
            lock(&self.ctx, &caller, &r.name, r.lease).await.map_err(recipe::as_unknown)?;
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let who = self.ctx.who_of(&req).await.map_err(recipe::as_unknown)?;
        let key = req.into_inner().key;
        let resp =
            kv::delete_range(&self.ctx, &who, pb::DeleteRangeRequest { key, ..Default::default() })
                .await
                .map_err(recipe::as_unknown)?;
        Ok(Response::new(UnlockResponse { header: resp.header }))
    }
}
