//! A txn's reads — compares, the branch path, range checks, ranges — over any consistent view
//! of the store: the write path's view (under the writer lock, see [`crate::apply`]) or a
//! read-only txn's ([`crate::Store::txn_read`], under the index's read lock only, so reads
//! never wait for the writer mutex or make a writer wait for them longer than one txn).
//! One implementation of etcd's applyCompares/compareToPath/checkRange for both.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::RwLockReadGuard;

use crate::error::{MvccError, Result};
use crate::kv::KeyValue;
use crate::request::{
    Compare, CompareTarget, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest,
    TxnResponse,
};
use crate::store::{plan_range, shape_range, Inner, State, Store};
use rusted_engine::ReadTx;

/// A consistent view a txn reads from.
pub(crate) trait TxnView {
    /// A range in this view.
    fn range(&self, req: &RangeRequest) -> Result<RangeResponse>;
    /// The store's revision before the txn (explicit range revisions may not pass it).
    fn begin(&self) -> i64;
    /// The compacted revision.
    fn compact(&self) -> i64;

    /// Does every compare hold in this view? (etcd's applyCompares.)
    fn compares_hold(&self, compares: &[Compare]) -> Result<bool> {
        for c in compares {
            let req = RangeRequest {
                key: c.key.clone(),
                range_end: c.range_end.clone(),
                ..Default::default()
            };
            let kvs = self.range(&req)?.kvs;
            if kvs.is_empty() {
                // A missing key compares as a zero key-value, except on its value, which a
                // missing key never matches.
                if matches!(c.target, CompareTarget::Value(_)) || !c.holds(&KeyValue::default()) {
                    return Ok(false);
                }
                continue;
            }
            if !kvs.iter().all(|kv| c.holds(kv)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Evaluates the compares of the txn and of every nested txn on the branches taken, all
    /// against the view before the txn writes anything (etcd's compareToPath): the branch
    /// choices in depth-first order.
    fn path(&self, req: &TxnRequest, out: &mut Vec<bool>) -> Result<()> {
        let ok = self.compares_hold(&req.compare)?;
        out.push(ok);
        for op in if ok { &req.success } else { &req.failure } {
            if let RequestOp::Txn(t) = op {
                self.path(t, out)?;
            }
        }
        Ok(())
    }

    /// A range's revision as etcd's checkRange sees it (0: current; negative: below the
    /// compacted revision, which starts at -1).
    fn check_range(&self, r: &RangeRequest) -> Result<()> {
        if r.revision == 0 {
            return Ok(());
        }
        if r.revision > self.begin() {
            return Err(MvccError::FutureRevision);
        }
        if r.revision < self.compact() {
            return Err(MvccError::Compacted { compact_revision: self.compact() });
        }
        Ok(())
    }
}

/// A read-only txn's view: the index under its read lock, values from one page-store read.
struct ReadView<'a> {
    inner: &'a Inner,
    st: RwLockReadGuard<'a, State>,
    tx: ReadTx,
}

impl TxnView for ReadView<'_> {
    fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let cur = self.st.current;
        let plan = plan_range(&self.st, req, cur, Some(cur))?;
        let mut kvs = Vec::with_capacity(plan.keys.len());
        for (_, vis) in &plan.keys {
            kvs.push(self.inner.fetch(&self.tx, vis.modified)?);
        }
        Ok(shape_range(req, kvs, plan.total, plan.current))
    }

    fn begin(&self) -> i64 {
        self.st.current
    }

    fn compact(&self) -> i64 {
        self.st.compact
    }
}

impl ReadView<'_> {
    /// etcd's checkRequests for a read-only txn: the ranges on the chosen path.
    fn precheck(&self, req: &TxnRequest, path: &[bool], pos: &mut usize) -> Result<()> {
        let ok = path.get(*pos).copied().unwrap_or(false);
        *pos += 1;
        for op in if ok { &req.success } else { &req.failure } {
            match op {
                RequestOp::Range(r) => self.check_range(r)?,
                RequestOp::Txn(t) => self.precheck(t, path, pos)?,
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    fn run(
        &self,
        req: &TxnRequest,
        path: &[bool],
        pos: &mut usize,
        ops: &mut u64,
    ) -> Result<TxnResponse> {
        let ok = path.get(*pos).copied().unwrap_or(false);
        *pos += 1;
        let branch = if ok { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            responses.push(match op {
                RequestOp::Range(r) => {
                    *ops += 1;
                    self.inner.ops.ranges.fetch_add(1, Ordering::Relaxed);
                    ResponseOp::Range(self.range(r)?)
                }
                RequestOp::Txn(t) => {
                    // etcd answers a nested txn with an all-zero header.
                    let mut r = self.run(t, path, pos, ops)?;
                    r.revision = 0;
                    ResponseOp::Txn(r)
                }
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    return Err(MvccError::Corrupt("a write in a read-only txn".into()))
                }
            });
        }
        Ok(TxnResponse { revision: self.st.current, succeeded: ok, responses })
    }
}

impl Store {
    /// A txn of ranges only (and nested txns of ranges), read from one consistent view without
    /// the writer lock: the answer [`Store::txn`] would give at this revision. A txn with a
    /// put or a deletion is refused (`MvccError::Corrupt`: the caller routes writes to raft).
    pub fn txn_read(&self, req: &TxnRequest) -> Result<TxnResponse> {
        req.validate()?;
        if req.has_writes() {
            return Err(MvccError::Corrupt("txn_read given a txn that writes".into()));
        }
        let inner = &self.inner;
        // The page-store read first, then the index (as a range): every revision the index
        // shows is then in the page store as of this read or still in the write buffer.
        let tx = inner.db.begin_read()?;
        let view = ReadView { inner, st: inner.read_state(), tx };
        let mut path = Vec::new();
        view.path(req, &mut path)?;
        view.precheck(req, &path, &mut 0)?;
        let mut ops = 0;
        let resp = view.run(req, &path, &mut 0, &mut ops)?;
        if ops > 1 {
            inner.ops.txns.fetch_add(1, Ordering::Relaxed);
        }
        Ok(resp)
    }
}
