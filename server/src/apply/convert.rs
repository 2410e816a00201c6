//! Conversions between the wire messages (etcdserverpb, mvccpb) and the engine's request and
//! response types. Pure data mapping, no policy.
#![forbid(unsafe_code)]

use rusted_mvcc::request as eng;
use rusted_mvcc::KeyValue;

use rusted_proto::etcdserverpb as pb;
use rusted_proto::mvccpb;

/// A KeyValue on the wire.
pub fn kv_out(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A range request from the wire.
pub fn range_in(r: &pb::RangeRequest) -> eng::RangeRequest {
    use pb::range_request::{SortOrder as O, SortTarget as T};
    eng::RangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        limit: r.limit,
        revision: r.revision,
        sort_order: match O::try_from(r.sort_order).unwrap_or(O::None) {
            O::None => eng::SortOrder::None,
            O::Ascend => eng::SortOrder::Ascend,
            O::Descend => eng::SortOrder::Descend,
        },
        sort_target: match T::try_from(r.sort_target).unwrap_or(T::Key) {
            T::Key => eng::SortTarget::Key,
            T::Version => eng::SortTarget::Version,
            T::Create => eng::SortTarget::Create,
            T::Mod => eng::SortTarget::Mod,
            T::Value => eng::SortTarget::Value,
        },
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

/// A range response for the wire (header filled by the caller).
pub fn range_out(r: eng::RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: None,
        kvs: r.kvs.into_iter().map(kv_out).collect(),
        more: r.more,
        count: r.count,
    }
}

/// A put from the wire.
pub fn put_in(r: &pb::PutRequest) -> eng::PutRequest {
    eng::PutRequest {
        key: r.key.clone(),
        value: r.value.clone(),
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

/// A put's response for the wire.
pub fn put_out(r: eng::PutResponse) -> pb::PutResponse {
    pb::PutResponse { header: None, prev_kv: r.prev_kv.map(kv_out) }
}

/// A delete from the wire.
pub fn delete_in(r: &pb::DeleteRangeRequest) -> eng::DeleteRangeRequest {
    eng::DeleteRangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        prev_kv: r.prev_kv,
    }
}

/// A delete's response for the wire.
pub fn delete_out(r: eng::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: None,
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_out).collect(),
    }
}

fn compare_in(c: &pb::Compare) -> eng::Compare {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result).unwrap_or(R::Equal) {
        R::Equal => eng::CompareResult::Equal,
        R::Greater => eng::CompareResult::Greater,
        R::Less => eng::CompareResult::Less,
        R::NotEqual => eng::CompareResult::NotEqual,
    };
    // The target field names which union member counts; a missing member compares with zero
    // (proto3 defaults), as etcd does.
    let target = match T::try_from(c.target).unwrap_or(T::Version) {
        T::Version => eng::CompareTarget::Version(match c.target_union {
            Some(U::Version(v)) => v,
            _ => 0,
        }),
        T::Create => eng::CompareTarget::Create(match c.target_union {
            Some(U::CreateRevision(v)) => v,
            _ => 0,
        }),
        T::Mod => eng::CompareTarget::Mod(match c.target_union {
            Some(U::ModRevision(v)) => v,
            _ => 0,
        }),
        T::Value => eng::CompareTarget::Value(match &c.target_union {
            Some(U::Value(v)) => v.clone(),
            _ => Vec::new(),
        }),
        T::Lease => eng::CompareTarget::Lease(match c.target_union {
            Some(U::Lease(v)) => v,
            _ => 0,
        }),
    };
    eng::Compare { result, target, key: c.key.clone(), range_end: c.range_end.clone() }
}

fn op_in(op: &pb::RequestOp) -> Option<eng::RequestOp> {
    use pb::request_op::Request as Q;
    Some(match op.request.as_ref()? {
        Q::RequestRange(r) => eng::RequestOp::Range(range_in(r)),
        Q::RequestPut(r) => eng::RequestOp::Put(put_in(r)),
        Q::RequestDeleteRange(r) => eng::RequestOp::DeleteRange(delete_in(r)),
        Q::RequestTxn(t) => eng::RequestOp::Txn(txn_in(t)),
    })
}

/// A txn from the wire (an op with no request is skipped, as etcd's applier does).
pub fn txn_in(t: &pb::TxnRequest) -> eng::TxnRequest {
    eng::TxnRequest {
        compare: t.compare.iter().map(compare_in).collect(),
        success: t.success.iter().filter_map(op_in).collect(),
        failure: t.failure.iter().filter_map(op_in).collect(),
    }
}

/// A response header carrying only a revision (what etcd puts in txn sub-responses).
fn rev_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { revision, ..Default::default() })
}

/// A txn response for the wire (top header filled by the caller).
pub fn txn_out(t: eng::TxnResponse) -> pb::TxnResponse {
    use pb::response_op::Response as A;
    let responses = t
        .responses
        .into_iter()
        .map(|r| pb::ResponseOp {
            response: Some(match r {
                eng::ResponseOp::Range(r) => {
                    let rev = r.revision;
                    A::ResponseRange(pb::RangeResponse { header: rev_header(rev), ..range_out(r) })
                }
                eng::ResponseOp::Put(r) => {
                    let rev = r.revision;
                    A::ResponsePut(pb::PutResponse { header: rev_header(rev), ..put_out(r) })
                }
                eng::ResponseOp::DeleteRange(r) => {
                    let rev = r.revision;
                    A::ResponseDeleteRange(pb::DeleteRangeResponse {
                        header: rev_header(rev),
                        ..delete_out(r)
                    })
                }
                eng::ResponseOp::Txn(r) => {
                    let rev = r.revision;
                    A::ResponseTxn(pb::TxnResponse { header: rev_header(rev), ..txn_out(r) })
                }
            }),
        })
        .collect();
    pb::TxnResponse { header: None, succeeded: t.succeeded, responses }
}

/// etcd's quota estimate of what a put adds: key + value + a fixed per-key overhead.
pub const KV_OVERHEAD: u64 = 256;
/// etcd's quota estimate of what a lease adds.
pub const LEASE_OVERHEAD: u64 = 64;

/// What a put costs against the space quota.
pub fn put_cost(r: &pb::PutRequest) -> u64 {
    KV_OVERHEAD + r.key.len() as u64 + r.value.len() as u64
}

/// What a txn costs: the larger of its two branches' top-level puts (as etcd counts).
pub fn txn_cost(t: &pb::TxnRequest) -> u64 {
    use pb::request_op::Request as Q;
    let branch = |ops: &[pb::RequestOp]| -> u64 {
        ops.iter()
            .map(|o| match &o.request {
                Some(Q::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}
