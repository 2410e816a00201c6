//! Requests checked before they are proposed (after the space quota, as etcd's quota layer
//! wraps its KV server), as etcd's v3rpc checks them (`checkPutRequest`,
//! `checkTxnRequest`, `checkIntervals`, ...): a malformed request is refused with etcd's code
//! and message without a raft round or an fsync. The store checks the same again when it
//! applies (every member alike), so a request that reaches raft some other way is still
//! refused; checks that depend on state (a lease exists, a revision is compacted, the space
//! quota) are made only there.
#![forbid(unsafe_code)]

use rusted_mvcc::request::check_branch;
use rusted_mvcc::MvccError;
use rusted_proto::etcdserverpb as pb;

use crate::api::errors::{ApiError, ApiResult};
use crate::apply::convert;

fn empty_key() -> ApiError {
    ApiError::Mvcc(MvccError::EmptyKey)
}

/// A range needs a key.
pub fn range(r: &pb::RangeRequest) -> ApiResult<()> {
    if r.key.is_empty() {
        return Err(empty_key());
    }
    Ok(())
}

/// A RangeStream (etcd 3.7): a range, in key order, without revision filters.
pub fn range_stream(r: &pb::RangeRequest) -> ApiResult<()> {
    use pb::range_request::{SortOrder, SortTarget};
    range(r)?;
    let order = r.sort_order();
    if !(order == SortOrder::None
        || (r.sort_target() == SortTarget::Key && order == SortOrder::Ascend))
    {
        return Err(ApiError::Unsupported("RangeStream does not support custom sort orders"));
    }
    if r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
    {
        return Err(ApiError::Unsupported("RangeStream does not support revision filters"));
    }
    Ok(())
}

/// A put needs a key; `ignore_value` comes without a value, `ignore_lease` without a lease.
pub fn put(r: &pb::PutRequest) -> ApiResult<()> {
    if r.key.is_empty() {
        return Err(empty_key());
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(ApiError::Mvcc(MvccError::ValueProvided));
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(ApiError::Mvcc(MvccError::LeaseProvided));
    }
    Ok(())
}

/// A delete needs a key.
pub fn delete_range(r: &pb::DeleteRangeRequest) -> ApiResult<()> {
    if r.key.is_empty() {
        return Err(empty_key());
    }
    Ok(())
}

/// A txn: at most `max_ops` compares and ops per branch (a nested txn gets what its parent
/// leaves: `max_ops` less the parent's largest count, as etcd), every compare and op
/// well-formed, and no key written twice by ops that may run together.
pub fn txn(t: &pb::TxnRequest, max_ops: usize) -> ApiResult<()> {
    txn_ops(t, max_ops)?;
    // After the cheap checks, so a huge txn is refused before the quadratic one.
    let t = convert::txn_in(t);
    check_branch(&t.success)?;
    check_branch(&t.failure)?;
    Ok(())
}

fn txn_ops(t: &pb::TxnRequest, max_ops: usize) -> ApiResult<()> {
    let most = t.compare.len().max(t.success.len()).max(t.failure.len());
    if most > max_ops {
        return Err(ApiError::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(empty_key());
    }
    for op in t.success.iter().chain(&t.failure) {
        use pb::request_op::Request as Q;
        match &op.request {
            Some(Q::RequestRange(r)) => range(r)?,
            Some(Q::RequestPut(p)) => put(p)?,
            Some(Q::RequestDeleteRange(d)) => delete_range(d)?,
            Some(Q::RequestTxn(n)) => txn_ops(n, max_ops - most)?,
            // An empty op: etcd refuses it as "key not found".
            None => return Err(ApiError::Mvcc(MvccError::KeyNotFound)),
        }
    }
    Ok(())
}

/// A lease ID names a lease only when it is not 0 (etcd answers "lease not found" for 0).
pub fn lease_id(id: i64) -> ApiResult<()> {
    if id == 0 {
        return Err(ApiError::Mvcc(MvccError::Lease(rusted_mvcc::LeaseError::NotFound)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::request_op::Request as Q;

    fn put_op(k: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Q::RequestPut(pb::PutRequest { key: k.into(), ..Default::default() })),
        }
    }
    fn txn_op(success: Vec<pb::RequestOp>) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Q::RequestTxn(pb::TxnRequest { success, ..Default::default() })),
        }
    }
    fn status(r: ApiResult<()>) -> (tonic::Code, String) {
        let s: tonic::Status = r.unwrap_err().into();
        (s.code(), s.message().to_string())
    }

    #[test]
    fn refusals_are_etcds() {
        let inv = tonic::Code::InvalidArgument;
        assert_eq!(
            status(put(&pb::PutRequest::default())),
            (inv, "etcdserver: key is not provided".into())
        );
        let p = pb::PutRequest {
            key: "k".into(),
            value: "v".into(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(status(put(&p)), (inv, "etcdserver: value is provided".into()));
        let p =
            pb::PutRequest { key: "k".into(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(status(put(&p)), (inv, "etcdserver: lease is provided".into()));
        assert!(range(&pb::RangeRequest::default()).is_err());
        assert!(delete_range(&pb::DeleteRangeRequest::default()).is_err());
        let t = pb::TxnRequest { success: vec![put_op("a"), put_op("a")], ..Default::default() };
        assert_eq!(
            status(txn(&t, 128)),
            (inv, "etcdserver: duplicate key given in txn request".into())
        );
        let (code, msg) = status(lease_id(0));
        assert_eq!(
            (code, msg.as_str()),
            (tonic::Code::NotFound, "etcdserver: requested lease not found")
        );
    }

    #[test]
    fn txn_op_limits_nest_as_etcds() {
        let ops = |n: usize| (0..n).map(|i| put_op(&format!("k{i}"))).collect::<Vec<_>>();
        let flat = pb::TxnRequest { success: ops(3), ..Default::default() };
        assert!(txn(&flat, 3).is_ok());
        assert!(matches!(txn(&flat, 2), Err(ApiError::TooManyOps)));
        // Parent uses 2 of 4: the nested txn may have 2, not 3.
        let nested =
            |n| pb::TxnRequest { success: vec![put_op("p"), txn_op(ops(n))], ..Default::default() };
        assert!(txn(&nested(2), 4).is_ok());
        assert!(matches!(txn(&nested(3), 4), Err(ApiError::TooManyOps)));
        let empty =
            pb::TxnRequest { success: vec![pb::RequestOp { request: None }], ..Default::default() };
        assert!(matches!(txn(&empty, 128), Err(ApiError::Mvcc(MvccError::KeyNotFound))));
        let bad_nested =
            pb::TxnRequest { success: vec![txn_op(vec![put_op("")])], ..Default::default() };
        assert!(matches!(txn(&bad_nested, 128), Err(ApiError::Mvcc(MvccError::EmptyKey))));
    }
}
