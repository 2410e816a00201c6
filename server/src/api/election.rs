//! The Election service (etcd's v3election): a candidate's key is `<name>/<lease hex>` with
//! its proposal as the value; the leader is the key with the lowest create revision. Campaign
//! waits until every older candidate is gone; Proclaim and Resign act only while the caller's
//! key still has the create revision it was elected with; Observe streams each leader value.
#![forbid(unsafe_code)]

use std::sync::Arc;

use rusted_mvcc::WatchOptions;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::api::ctx::{Creds, Ctx};
use crate::api::errors::{ApiError, ApiResult};
use crate::api::lock::session_lease;
use crate::api::recipe::{self, DeleteOnDrop};
use rusted_proto::v3electionpb::election_server::Election;
use rusted_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

/// The Election service.
#[derive(Debug, Clone)]
pub struct ElectionService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

fn leader_key(l: Option<LeaderKey>) -> Result<LeaderKey, Status> {
    l.ok_or_else(|| ApiError::MissingLeaderKey.into())
}

type ObserveStream = crate::api::stream::Out<LeaderResponse>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let ctx = &self.ctx;
        // The caller's token is read again for each step (see lock).
        let caller = &Creds::of(&req);
        let who = ctx.who_creds(caller).await.map_err(recipe::as_unknown)?;
        let r = req.into_inner();
        let lease = session_lease(ctx, &who, r.lease).await.map_err(recipe::as_unknown)?;
        let key = recipe::holder_key(&r.name, lease);
        let (rev, existing, header) = recipe::create_once(ctx, caller, &key, &r.value, lease)
            .await
            .map_err(recipe::as_unknown)?;
        let guard = DeleteOnDrop::new(ctx.clone(), caller, key.clone());
        if existing.is_some_and(|kv| kv.value != r.value) {
            let (ok, _) = recipe::put_if_created_at(ctx, caller, &key, rev, &r.value, lease)
                .await
                .map_err(recipe::as_unknown)?;
            if !ok {
                return Err(ApiError::ElectionNotLeader.into());
            }
        }
        recipe::wait_deletes(ctx, caller, &recipe::prefix(&r.name), rev - 1)
            .await
            .map_err(recipe::as_unknown)?;
        guard.disarm();
        Ok(Response::new(CampaignResponse {
            header,
            leader: Some(LeaderKey { name: r.name, key, rev, lease }),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let caller = Creds::of(&req);
        let r = req.into_inner();
        let l = leader_key(r.leader)?;
        let (ok, header) =
            recipe::put_if_created_at(&self.ctx, &caller, &l.key, l.rev, &r.value, l.lease)
                .await
                .map_err(recipe::as_unknown)?;
        if !ok {
            return Err(ApiError::ElectionNotLeader.into());
        }
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let caller = Creds::of(&req);
        let name = req.into_inner().name;
        let (kv, rev) = recipe::by_create(&self.ctx, &caller, &recipe::prefix(&name), true, 0)
            .await
            .map_err(recipe::as_unknown)?;
        match kv {
            Some(kv) => {
                Ok(Response::new(LeaderResponse { header: self.ctx.header(rev), kv: Some(kv) }))
            }
            None => Err(ApiError::ElectionNoLeader.into()),
        }
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let caller = Creds::of(&req);
        let name = req.into_inner().name;
        let (tx, rx) = mpsc::channel(16);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = observe(&ctx, &caller, &name, &tx).await {
                let _ = tx.send(Err(recipe::as_unknown(e))).await;
            }
        });
        crate::api::stream::after_first(rx).await
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let caller = Creds::of(&req);
        let l = leader_key(req.into_inner().leader)?;
        let (_, header) = recipe::delete_if_created_at(&self.ctx, &caller, &l.key, l.rev)
            .await
            .map_err(recipe::as_unknown)?;
        Ok(Response::new(ResignResponse { header }))
    }
}

/// Streams the leader's key-value: the current one (or the first candidate to appear), each
/// proclaimed value, and again after each leader change, until the client goes away.
async fn observe(
    ctx: &Arc<Ctx>,
    caller: &Creds,
    name: &[u8],
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> ApiResult<()> {
    let prefix = recipe::prefix(name);
    loop {
        let (first, rev) = recipe::by_create(ctx, caller, &prefix, true, 0).await?;
        let (leader, at) = match first {
            Some(kv) => (kv, rev),
            None => match next_put(ctx, &prefix, rev, tx).await? {
                Next::Put(kv) => {
                    let at = kv.mod_revision;
                    (kv, at)
                }
                Next::Again => continue,
                Next::Gone => return Ok(()),
            },
        };
        let key = leader.key.clone();
        let resp = LeaderResponse { header: ctx.header(at), kv: Some(leader) };
        if tx.send(Ok(resp)).await.is_err() {
            return Ok(());
        }
        // Follow this leader's key until it is deleted.
        let store = ctx.store();
        let (mut ws, mut rx) = store.watch_stream(16);
        let opts = WatchOptions { key: key.clone(), start_revision: at + 1, ..Default::default() };
        ws.watch(0, opts).map_err(crate::api::errors::internal)?;
        let mut check = tokio::time::interval(recipe::STORE_CHECK_INTERVAL);
        'follow: loop {
            tokio::select! {
                _ = check.tick() => {
                    if !Arc::ptr_eq(&store, &ctx.store()) {
                        break 'follow;
                    }
                }
                r = rx.recv() => {
                    let Some(r) = r else { return Ok(()) };
                    if r.compact_revision != 0 {
                        break 'follow;
                    }
                    for ev in r.events {
                        if ev.deleted {
                            break 'follow;
                        }
                        let resp = LeaderResponse {
                            header: ctx.header(r.revision),
                            kv: Some(crate::apply::convert::kv_out(ev.kv)),
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

/// What waiting for a first candidate gave.
enum Next {
    /// The first key put.
    Put(rusted_proto::mvccpb::KeyValue),
    /// The store was replaced (or its history compacted): read again.
    Again,
    /// The client went away.
    Gone,
}

/// The first key put under `prefix` from revision `from` on.
async fn next_put(
    ctx: &Ctx,
    prefix: &[u8],
    from: i64,
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> ApiResult<Next> {
    let store = ctx.store();
    let (mut ws, mut rx) = store.watch_stream(16);
    let opts = WatchOptions {
        key: prefix.to_vec(),
        range_end: rusted_proto::keys::prefix_end(prefix),
        start_revision: from,
        no_delete: true,
        ..Default::default()
    };
    ws.watch(0, opts).map_err(crate::api::errors::internal)?;
    let mut check = tokio::time::interval(recipe::STORE_CHECK_INTERVAL);
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) if r.compact_revision != 0 => return Ok(Next::Again),
                Some(r) => {
                    if let Some(ev) = r.events.into_iter().next() {
                        return Ok(Next::Put(crate::apply::convert::kv_out(ev.kv)));
                    }
                }
                None => return Ok(Next::Gone),
            },
            _ = check.tick() => {
                if !Arc::ptr_eq(&store, &ctx.store()) {
                    return Ok(Next::Again);
                }
            }
            _ = tx.closed() => return Ok(Next::Gone),
        }
    }
}
