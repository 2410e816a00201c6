//! The KV service: validate, call the layer below, map the error (etcd's v3rpc shape).
#![forbid(unsafe_code)]

use std::sync::Arc;

use rusted_mvcc::{RangeOut, LAZY_MIN_KEYS};
use tonic::{Request, Response, Status};

use crate::api::authorize;
use crate::api::ctx::{Ctx, Who};
use crate::api::errors::{internal, unexpected, ApiError, ApiResult};
use crate::api::lazy_range::{range_stream, LazyAnswer, RangeBody};
use crate::api::validate;
use crate::apply::convert;
use crate::apply::machine::ApplyOut;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::kv_server::Kv;
use rusted_proto::rustedpb::proposal::Request as P;

/// The KV service.
#[derive(Debug, Clone)]
pub struct KvService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

fn txn_readonly(t: &pb::TxnRequest) -> bool {
    use pb::request_op::Request as Q;
    fn ro(ops: &[pb::RequestOp]) -> bool {
        ops.iter().all(|o| match &o.request {
            Some(Q::RequestRange(_)) | None => true,
            Some(Q::RequestTxn(t)) => ro(&t.success) && ro(&t.failure),
            _ => false,
        })
    }
    ro(&t.success) && ro(&t.failure)
}

/// Range: linearizable unless `serializable`.
pub async fn range(ctx: &Ctx, who: &Who, r: &pb::RangeRequest) -> ApiResult<pb::RangeResponse> {
    validate::range(r)?;
    if !r.serializable {
        ctx.linearize().await?;
    }
    range_read(ctx, who, r)
}

/// The read of a Range, after its linearizable barrier: checked against the state read, and
/// refused if the auth store changed meanwhile (as etcd's doSerialize).
pub fn range_read(ctx: &Ctx, who: &Who, r: &pb::RangeRequest) -> ApiResult<pb::RangeResponse> {
    authorize::range(ctx, who, r)?;
    let out = ctx.store().range(&convert::range_in(r))?;
    authorize::unchanged(ctx, who)?;
    let rev = out.revision;
    Ok(pb::RangeResponse { header: ctx.header(rev), ..convert::range_out(out) })
}

/// [`range_read`] for a gRPC caller: an answer of many key-values comes back without them,
/// and with a [`LazyAnswer`] the dispatcher sends in their place (memory bounded by a chunk).
fn range_read_lazy(
    ctx: &Ctx,
    who: &Who,
    r: &pb::RangeRequest,
) -> Result<Response<pb::RangeResponse>, Status> {
    authorize::range(ctx, who, r)?;
    let out =
        ctx.store().range_lazy(&convert::range_in(r), LAZY_MIN_KEYS).map_err(ApiError::from)?;
    authorize::unchanged(ctx, who)?;
    match out {
        RangeOut::Full(out) => {
            let rev = out.revision;
            Ok(Response::new(pb::RangeResponse {
                header: ctx.header(rev),
                ..convert::range_out(out)
            }))
        }
        RangeOut::Lazy(lazy) => {
            let header = ctx.header(lazy.revision);
            let body = RangeBody::new(header, lazy)?;
            let mut resp = Response::new(pb::RangeResponse { header, ..Default::default() });
            resp.extensions_mut().insert(LazyAnswer::new(body));
            Ok(resp)
        }
    }
}

/// Put, through raft.
pub async fn put(ctx: &Ctx, who: &Who, r: pb::PutRequest) -> ApiResult<pb::PutResponse> {
    ctx.check_quota(convert::put_cost(&r))?;
    validate::put(&r)?;
    authorize::put(ctx, who, &r)?;
    match ctx.propose_for(who, P::Put(r)).await? {
        ApplyOut::Put(p) => {
            let rev = p.revision;
            Ok(pb::PutResponse { header: ctx.header(rev), ..convert::put_out(p) })
        }
        other => Err(unexpected(other)),
    }
}

/// DeleteRange, through raft.
pub async fn delete_range(
    ctx: &Ctx,
    who: &Who,
    r: pb::DeleteRangeRequest,
) -> ApiResult<pb::DeleteRangeResponse> {
    validate::delete_range(&r)?;
    authorize::delete_range(ctx, who, &r)?;
    match ctx.propose_for(who, P::DeleteRange(r)).await? {
        ApplyOut::Delete(d) => {
            let rev = d.revision;
            Ok(pb::DeleteRangeResponse { header: ctx.header(rev), ..convert::delete_out(d) })
        }
        other => Err(unexpected(other)),
    }
}

/// Txn: a read-only one is a linearizable read served locally (as etcd); others go through
/// raft.
pub async fn txn(ctx: &Ctx, who: &Who, t: pb::TxnRequest) -> ApiResult<pb::TxnResponse> {
    // A read-only txn costs nothing, so it always passes the quota.
    ctx.check_quota(convert::txn_cost(&t))?;
    validate::txn(&t, ctx.limits.max_txn_ops)?;
    if txn_readonly(&t) {
        ctx.linearize().await?;
        return txn_read(ctx, who, &t);
    }
    authorize::txn(ctx, who, &t)?;
    match ctx.propose_for(who, P::Txn(t)).await? {
        ApplyOut::Txn(out) => {
            let rev = out.revision;
            Ok(pb::TxnResponse { header: ctx.header(rev), ..convert::txn_out(out) })
        }
        other => Err(unexpected(other)),
    }
}

/// A read-only txn after its linearizable barrier (see [`range_read`]): read from the store's
/// current view, without the writer's lock.
fn txn_read(ctx: &Ctx, who: &Who, t: &pb::TxnRequest) -> ApiResult<pb::TxnResponse> {
    authorize::txn(ctx, who, t)?;
    let out = ctx.store().txn_read(&convert::txn_in(t))?;
    authorize::unchanged(ctx, who)?;
    let rev = out.revision;
    Ok(pb::TxnResponse { header: ctx.header(rev), ..convert::txn_out(out) })
}

/// Compaction, through raft; with `physical`, waits until the old revisions are gone.
pub async fn compact(
    ctx: &Ctx,
    who: &Who,
    c: pb::CompactionRequest,
) -> ApiResult<pb::CompactionResponse> {
    authorize::admin(ctx, who)?;
    let (rev, physical) = (c.revision, c.physical);
    match ctx.propose_for(who, P::Compaction(c)).await? {
        ApplyOut::Compact(_) => {
            if physical {
                let store = ctx.store();
                let wait = ctx.request_timeout();
                tokio::task::spawn_blocking(move || store.wait_compacted(rev, wait))
                    .await
                    .map_err(internal)?;
            }
            Ok(pb::CompactionResponse { header: ctx.header_now() })
        }
        other => Err(unexpected(other)),
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        // As etcd: the barrier first, then who is asking, then the check and the read.
        let r = req.get_ref();
        validate::range(r)?;
        if !r.serializable {
            self.ctx.linearize().await?;
        }
        let who = self.ctx.who_of(&req).await?;
        range_read_lazy(&self.ctx, &who, r)
    }

    type RangeStreamStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<pb::RangeStreamResponse, Status>> + Send>,
    >;

    async fn range_stream(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let r = req.get_ref();
        validate::range_stream(r)?;
        if !r.serializable {
            self.ctx.linearize().await?;
        }
        let who = self.ctx.who_of(&req).await?;
        let ctx = &self.ctx;
        authorize::range(ctx, &who, r)?;
        let mut q = convert::range_in(r);
        // No sort is key order, whatever the target (etcd's stream does not sort either).
        if q.sort_order == rusted_mvcc::request::SortOrder::None {
            q.sort_target = rusted_mvcc::request::SortTarget::Key;
        }
        let out = ctx.store().range_lazy(&q, 0).map_err(ApiError::from)?;
        authorize::unchanged(ctx, &who)?;
        let rev = match &out {
            RangeOut::Full(r) => r.revision,
            RangeOut::Lazy(l) => l.revision,
        };
        Ok(Response::new(Box::pin(range_stream(ctx.header(rev), out))))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        Ok(Response::new(put(&self.ctx, &who, req.into_inner()).await?))
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        Ok(Response::new(delete_range(&self.ctx, &who, req.into_inner()).await?))
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let t = req.get_ref();
        if txn_readonly(t) {
            validate::txn(t, self.ctx.limits.max_txn_ops)?;
            self.ctx.linearize().await?;
            let who = self.ctx.who_of(&req).await?;
            return Ok(Response::new(txn_read(&self.ctx, &who, t)?));
        }
        let who = self.ctx.who_of(&req).await?;
        Ok(Response::new(txn(&self.ctx, &who, req.into_inner()).await?))
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        Ok(Response::new(compact(&self.ctx, &who, req.into_inner()).await?))
    }
}
