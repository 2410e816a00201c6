//! What each request needs from its caller, as etcd 3.5 checks it: the "authorize" step of a
//! handler (validate → authorize → call the layer below). All pass while auth is disabled.
//!
//! | request | needs |
//! |---|---|
//! | Range | read `[key, range_end)` |
//! | Put | write `key`; read it too with `prev_kv`; write every key already on its lease (admins excepted) |
//! | DeleteRange | write the range; read it too with `prev_kv` |
//! | Txn | read every compare's range; every op of both branches as above, nested txns too |
//! | Compact, member changes, alarm changes, defrag, snapshot, hash, move-leader | the root role |
//! | LeaseRevoke, LeaseKeepAlive | write every key on the lease (admins excepted) |
//! | LeaseTimeToLive with keys, LeaseLeases | read those keys (admins excepted) |
//! | LeaseGrant, MemberList, Status, alarm list | an identity |
#![forbid(unsafe_code)]

use rusted_proto::etcdserverpb as pb;

use crate::api::ctx::{Ctx, Who};
use crate::api::errors::ApiResult;
use crate::auth::AuthError;

fn read(ctx: &Ctx, who: &Who, key: &[u8], end: &[u8]) -> Result<(), AuthError> {
    ctx.auth().op_permitted(who.as_ref(), key, end, false)
}

fn write(ctx: &Ctx, who: &Who, key: &[u8], end: &[u8]) -> Result<(), AuthError> {
    ctx.auth().op_permitted(who.as_ref(), key, end, true)
}

/// Range.
pub fn range(ctx: &Ctx, who: &Who, r: &pb::RangeRequest) -> ApiResult<()> {
    Ok(read(ctx, who, &r.key, &r.range_end)?)
}

/// Keys attached to a lease must be writable by whoever puts to, renews or revokes it, and
/// readable by whoever lists them (`write_needed` false).
pub fn lease_keys(ctx: &Ctx, who: &Who, lease: i64, write_needed: bool) -> ApiResult<()> {
    if lease == 0 || !ctx.auth().enabled() || ctx.auth().is_admin(who.as_ref()) {
        return Ok(());
    }
    // A lease that does not exist has no keys; the request then fails as etcd's does.
    let keys = ctx.store().lease_keys(lease).unwrap_or_default();
    for k in keys {
        if write_needed {
            write(ctx, who, &k, b"")?;
        } else {
            read(ctx, who, &k, b"")?;
        }
    }
    Ok(())
}

/// Put.
pub fn put(ctx: &Ctx, who: &Who, r: &pb::PutRequest) -> ApiResult<()> {
    write(ctx, who, &r.key, b"")?;
    lease_keys(ctx, who, r.lease, true)?;
    if r.prev_kv {
        read(ctx, who, &r.key, b"")?;
    }
    Ok(())
}

/// DeleteRange.
pub fn delete_range(ctx: &Ctx, who: &Who, r: &pb::DeleteRangeRequest) -> ApiResult<()> {
    write(ctx, who, &r.key, &r.range_end)?;
    if r.prev_kv {
        read(ctx, who, &r.key, &r.range_end)?;
    }
    Ok(())
}

/// Txn: every compare, then every op of both branches (the branch taken is not known yet).
pub fn txn(ctx: &Ctx, who: &Who, t: &pb::TxnRequest) -> ApiResult<()> {
    use pb::request_op::Request as Q;
    for c in &t.compare {
        read(ctx, who, &c.key, &c.range_end)?;
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Q::RequestRange(r)) => range(ctx, who, r)?,
            Some(Q::RequestPut(p)) => put(ctx, who, p)?,
            Some(Q::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    read(ctx, who, &d.key, &d.range_end)?;
                }
                write(ctx, who, &d.key, &d.range_end)?;
            }
            Some(Q::RequestTxn(n)) => txn(ctx, who, n)?,
            None => {}
        }
    }
    Ok(())
}

/// After a read: refused if the auth store changed while it was served (etcd's doSerialize).
pub fn unchanged(ctx: &Ctx, who: &Who) -> ApiResult<()> {
    match who {
        Some(i)
            if ctx.auth().enabled() && i.revision != 0 && i.revision != ctx.auth().revision() =>
        {
            Err(AuthError::AuthOldRevision.into())
        }
        _ => Ok(()),
    }
}

/// Operations reserved to the root role.
pub fn admin(ctx: &Ctx, who: &Who) -> ApiResult<()> {
    Ok(ctx.auth().admin_permitted(who.as_ref())?)
}

/// Operations that need an identity only.
pub fn identity(ctx: &Ctx, who: &Who) -> ApiResult<()> {
    Ok(ctx.auth().identity_required(who.as_ref())?)
}

/// LeaseLeases: every key of every lease readable (admins excepted).
pub fn leases(ctx: &Ctx, who: &Who, ids: &[i64]) -> ApiResult<()> {
    identity(ctx, who)?;
    for id in ids {
        lease_keys(ctx, who, *id, false)?;
    }
    Ok(())
}
