//! What the Lock and Election services are built from, as etcd builds them from its client's
//! concurrency recipes: a key per holder under a prefix (`<name>/<lease in hex>`), attached to
//! the holder's lease; holders are ordered by create revision; a waiter watches only the
//! holder just ahead of it for deletion.
#![forbid(unsafe_code)]

use rusted_mvcc::WatchOptions;

use crate::api::ctx::{Creds, Ctx};
use crate::api::errors::{ApiError, ApiResult};
use crate::api::kv;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::keys::prefix_end;
use rusted_proto::mvccpb::KeyValue;

/// `<name>/`.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// `<name>/<lease hex>`: the key a holder with `lease` owns.
pub fn holder_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut k = prefix(name);
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    k
}

/// etcd's Lock and Election services run their recipes through an in-process client, so
/// every error reaches their callers as code Unknown with etcd's text: so do ours.
pub fn as_unknown(e: impl Into<tonic::Status>) -> tonic::Status {
    let s: tonic::Status = e.into();
    tonic::Status::new(tonic::Code::Unknown, s.message())
}

fn cmp_create(key: &[u8], rev: i64) -> pb::Compare {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    pb::Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

fn op_put(key: &[u8], value: &[u8], lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn op_get(key: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

fn op_delete(key: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// Creates `key` with `value` on `lease` unless it exists. Returns (its create revision, the
/// stored key-value if it existed already, the txn header).
pub async fn create_once(
    ctx: &Ctx,
    caller: &Creds,
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> ApiResult<(i64, Option<KeyValue>, Option<pb::ResponseHeader>)> {
    let t = pb::TxnRequest {
        compare: vec![cmp_create(key, 0)],
        success: vec![op_put(key, value, lease)],
        failure: vec![op_get(key)],
    };
    let r = kv::txn(ctx, &ctx.who_creds(caller).await?, t).await?;
    let rev = r.header.as_ref().map_or(0, |h| h.revision);
    if r.succeeded {
        return Ok((rev, None, r.header));
    }
    let existing = r.responses.into_iter().find_map(|o| match o.response {
        Some(pb::response_op::Response::ResponseRange(rr)) => rr.kvs.into_iter().next(),
        _ => None,
    });
    match existing {
        Some(kv) => Ok((kv.create_revision, Some(kv), r.header)),
        // Deleted between the compare and the read (lease expired): the caller retries.
        None => Err(ApiError::Internal("holder key vanished while being created".into())),
    }
}

/// Puts `value` at `key` if it still has create revision `rev`; false if it does not (the
/// holder lost its key).
pub async fn put_if_created_at(
    ctx: &Ctx,
    caller: &Creds,
    key: &[u8],
    rev: i64,
    value: &[u8],
    lease: i64,
) -> ApiResult<(bool, Option<pb::ResponseHeader>)> {
    let t = pb::TxnRequest {
        compare: vec![cmp_create(key, rev)],
        success: vec![op_put(key, value, lease)],
        failure: Vec::new(),
    };
    let r = kv::txn(ctx, &ctx.who_creds(caller).await?, t).await?;
    Ok((r.succeeded, r.header))
}

/// Deletes `key` if it still has create revision `rev`.
pub async fn delete_if_created_at(
    ctx: &Ctx,
    caller: &Creds,
    key: &[u8],
    rev: i64,
) -> ApiResult<(bool, Option<pb::ResponseHeader>)> {
    let t = pb::TxnRequest {
        compare: vec![cmp_create(key, rev)],
        success: vec![op_delete(key)],
        failure: Vec::new(),
    };
    let r = kv::txn(ctx, &ctx.who_creds(caller).await?, t).await?;
    Ok((r.succeeded, r.header))
}

/// The key under `prefix` with the lowest (`first`) or highest create revision, limited to
/// create revisions ≤ `max_create` (0: any), and the read's revision.
pub async fn by_create(
    ctx: &Ctx,
    caller: &Creds,
    prefix: &[u8],
    first: bool,
    max_create: i64,
) -> ApiResult<(Option<KeyValue>, i64)> {
    use pb::range_request::{SortOrder, SortTarget};
    let r = pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: if first { SortOrder::Ascend } else { SortOrder::Descend } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    };
    let resp = kv::range(ctx, &ctx.who_creds(caller).await?, &r).await?;
    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
    Ok((resp.kvs.into_iter().next(), rev))
}

/// The current key-value at `key` (a linearizable read).
pub async fn get(ctx: &Ctx, caller: &Creds, key: &[u8]) -> ApiResult<Option<KeyValue>> {
    let r = pb::RangeRequest { key: key.to_vec(), ..Default::default() };
    Ok(kv::range(ctx, &ctx.who_creds(caller).await?, &r).await?.kvs.into_iter().next())
}

/// Waits until `key` is deleted at a revision after `after` (a watch from `after + 1`).
pub async fn wait_delete(ctx: &Ctx, key: &[u8], after: i64) -> ApiResult<()> {
    let store = ctx.store();
    let (mut ws, mut rx) = store.watch_stream(16);
    let opts = WatchOptions {
        key: key.to_vec(),
        start_revision: after + 1,
        no_put: true,
        ..Default::default()
    };
    ws.watch(0, opts).map_err(crate::api::errors::internal)?;
    let mut check = tokio::time::interval(STORE_CHECK_INTERVAL);
    loop {
        tokio::select! {
            resp = rx.recv() => match resp {
                // History is gone (compacted): the caller looks again from now.
                Some(r) if r.compact_revision != 0 => return Ok(()),
                Some(r) if r.events.iter().any(|e| e.deleted) => return Ok(()),
                Some(_) => {}
                None => return Err(ApiError::Mvcc(rusted_mvcc::MvccError::Closed)),
            },
            // A snapshot install replaced the store (this watch will hear nothing more): the
            // caller looks again.
            _ = check.tick() => {
                if !std::sync::Arc::ptr_eq(&store, &ctx.store()) {
                    return Ok(());
                }
            }
        }
    }
}

/// How often a waiting recipe checks whether a snapshot install replaced the store.
pub const STORE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Waits until no key under `prefix` has a create revision ≤ `max_create` (etcd's
/// waitDeletes): each round watches the newest such key for deletion.
pub async fn wait_deletes(
    ctx: &Ctx,
    caller: &Creds,
    prefix: &[u8],
    max_create: i64,
) -> ApiResult<i64> {
    loop {
        let (last, rev) = by_create(ctx, caller, prefix, false, max_create).await?;
        match last {
            None => return Ok(rev),
            Some(kv) => wait_delete(ctx, &kv.key, rev).await?,
        }
    }
}

/// Deletes `key` when dropped unless disarmed: a waiter whose client went away gives up its
/// place, as etcd's recipes delete their key when the wait fails.
#[derive(Debug)]
pub struct DeleteOnDrop {
    ctx: std::sync::Arc<Ctx>,
    caller: Creds,
    key: Option<Vec<u8>>,
}

impl DeleteOnDrop {
    /// Armed for `key`.
    pub fn new(ctx: std::sync::Arc<Ctx>, caller: &Creds, key: Vec<u8>) -> Self {
        DeleteOnDrop { ctx, caller: caller.clone(), key: Some(key) }
    }

    /// Keeps the key.
    pub fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let ctx = self.ctx.clone();
            let caller = self.caller.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let req = pb::DeleteRangeRequest { key, ..Default::default() };
                    let who = match ctx.who_creds(&caller).await {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot delete an abandoned waiter's key");
                            return;
                        }
                    };
                    if let Err(e) = kv::delete_range(&ctx, &who, req).await {
                        tracing::debug!(error = %e, "cannot delete an abandoned waiter's key");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefix_ends() {
        assert_eq!(holder_key(b"lk", 0x694d), b"lk/694d".to_vec());
    }
}
