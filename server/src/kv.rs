//! The KV service: validate, call the layer below, map the error (etcd's v3rpc shape).
#![forbid(unsafe_code)]

use std::sync::Arc;

use rusted_engine::mvcc::Applied;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::ctx::Ctx;
use crate::errors::ApiError;
use crate::machine::ApplyOut;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::rustedpb::proposal::Request as P;

/// The KV service.
#[derive(Debug, Clone)]
pub struct KvService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

fn unexpected(out: ApplyOut) -> Status {
    Status::internal(format!("unexpected apply result {out:?}"))
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

impl KvService {
    fn check_txn(&self, t: &pb::TxnRequest) -> Result<(), ApiError> {
        let max = self.ctx.limits.max_txn_ops;
        if t.compare.len() > max || t.success.len() > max || t.failure.len() > max {
            return Err(ApiError::TooManyOps);
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let r = req.into_inner();
        if !r.serializable {
            self.ctx.linearize().await?;
        }
        let out = self.ctx.store().range(&convert::range_in(&r)).map_err(ApiError::from)?;
        let rev = out.revision;
        Ok(Response::new(pb::RangeResponse {
            header: self.ctx.header(rev),
            ..convert::range_out(out)
        }))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = req.into_inner();
        match self.ctx.propose(P::Put(r)).await? {
            ApplyOut::Put(p) => {
                let rev = p.revision;
                Ok(Response::new(pb::PutResponse {
                    header: self.ctx.header(rev),
                    ..convert::put_out(p)
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let r = req.into_inner();
        match self.ctx.propose(P::DeleteRange(r)).await? {
            ApplyOut::Delete(d) => {
                let rev = d.revision;
                Ok(Response::new(pb::DeleteRangeResponse {
                    header: self.ctx.header(rev),
                    ..convert::delete_out(d)
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let t = req.into_inner();
        self.check_txn(&t)?;
        if txn_readonly(&t) {
            // As etcd: a read-only txn is a linearizable read served locally.
            self.ctx.linearize().await?;
            let out = self
                .ctx
                .store()
                .txn(Applied::default(), &convert::txn_in(&t))
                .map_err(ApiError::from)?;
            let rev = out.revision;
            return Ok(Response::new(pb::TxnResponse {
                header: self.ctx.header(rev),
                ..convert::txn_out(out)
            }));
        }
        match self.ctx.propose(P::Txn(t)).await? {
            ApplyOut::Txn(out) => {
                let rev = out.revision;
                Ok(Response::new(pb::TxnResponse {
                    header: self.ctx.header(rev),
                    ..convert::txn_out(out)
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let c = req.into_inner();
        let (rev, physical) = (c.revision, c.physical);
        match self.ctx.propose(P::Compaction(c)).await? {
            ApplyOut::Compact(_) => {
                if physical {
                    let store = self.ctx.store();
                    let wait = self.ctx.replica.config().request_timeout;
                    tokio::task::spawn_blocking(move || store.wait_compacted(rev, wait))
                        .await
                        .map_err(|e| Status::internal(e.to_string()))?;
                }
                Ok(Response::new(pb::CompactionResponse { header: self.ctx.header_now() }))
            }
            other => Err(unexpected(other)),
        }
    }
}
