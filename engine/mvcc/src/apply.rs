//! The write path: puts, deletions, txns and lease changes, applied one log entry at a time.
//!
//! Each entry runs under the writer mutex and the index's write lock, so readers see it whole
//! or not at all. A write txn takes one main revision (the store's current + 1) and a sub
//! revision per change; a txn that changes nothing takes none. As etcd does, requests are
//! checked against the state before the txn (keys for ignore_value/ignore_lease, leases,
//! revisions) before anything is written, so a refused txn leaves no trace except the applied
//! index, which advances either way (the refusal is the entry's deterministic outcome).
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::error::{MvccError, Result};
use crate::kv::{self, KeyValue};
use crate::lease::{LeaseId, Lessor};
use crate::pending::PendingKv;
use crate::request::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use crate::revision::Revision;
use crate::store::{
    plan_range, shape_range, tombstone_bytes, Applied, Inner, State, Store, Writer,
};
use crate::txn_view::TxnView;
use crate::watch::Event;
use rusted_engine::ReadTx;

/// What a granted lease looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Its id.
    pub id: LeaseId,
    /// Its TTL in seconds (raised to the minimum TTL if asked lower).
    pub ttl: i64,
}

/// One write txn in progress.
pub(crate) struct WriteCtx<'a> {
    inner: &'a Inner,
    st: RwLockWriteGuard<'a, State>,
    lessor: MutexGuard<'a, Lessor>,
    tx: ReadTx,
    begin: i64,
    changes: i64,
    events: Vec<Event>,
    want_prev: bool,
    /// Operations run (ranges, puts, deletions), for the txn count.
    ops: u64,
}

impl<'a> WriteCtx<'a> {
    fn new(inner: &'a Inner) -> Result<WriteCtx<'a>> {
        // Taken under the writer mutex: no flush can run, so the buffer holds every revision
        // after this transaction's flushed revision.
        let tx = inner.db.begin_read()?;
        let st = inner.state.write().unwrap_or_else(|p| p.into_inner());
        let lessor = inner.lock_lessor();
        let begin = st.current;
        if begin >= i64::MAX - 1 {
            return Err(MvccError::Corrupt(format!("revision {begin} cannot grow")));
        }
        Ok(WriteCtx {
            inner,
            st,
            lessor,
            tx,
            begin,
            changes: 0,
            events: Vec::new(),
            want_prev: inner.watch.wants_prev_kv(),
            ops: 0,
        })
    }

    /// The revision the txn's view shows: one ahead once it wrote.
    fn view_rev(&self) -> i64 {
        if self.changes > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    fn rev(&self) -> Revision {
        Revision::new(self.begin + 1, self.changes)
    }

    fn value_at(&self, rev: Revision) -> Result<KeyValue> {
        self.inner.fetch(&self.tx, rev)
    }

    /// The key's current key-value in the txn's view.
    fn current_kv(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.st.index.get(key, self.view_rev()) {
            Ok(vis) => self.value_at(vis.modified).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        self.ops += 1;
        self.inner.ops.puts.fetch_add(1, Ordering::Relaxed);
        // The index gives create revision and version; the previous value is read only when
        // something needs it (most puts don't: a page-store lookup saved per put).
        let vis = self.st.index.get(&req.key, self.view_rev()).ok();
        let need_prev = req.prev_kv || req.ignore_value || req.ignore_lease || self.want_prev;
        let prev = match vis {
            Some(v) if need_prev => Some(self.value_at(v.modified)?),
            _ => None,
        };
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            (None, true) => return Err(MvccError::KeyNotFound),
            (_, false) => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            (None, true) => return Err(MvccError::KeyNotFound),
            (_, false) => req.lease,
        };
        let rev = self.rev();
        let (create, version) = match vis {
            Some(v) => (v.created.main, v.version.saturating_add(1)),
            None => (rev.main, 1),
        };
        let put_bytes = (req.key.len() + value.len()) as u64;
        self.inner.ops.put_bytes.fetch_add(put_bytes, Ordering::Relaxed);
        let bytes = kv::encode_parts(&req.key, create, version, lease, &value);
        self.inner.pending.insert(rev, PendingKv { tombstone: false, bytes: bytes.into() });
        self.st.index.put(&req.key, rev)?;
        if let Some(old) = self.lessor.lease_of(&req.key) {
            // As etcd: detach from the lease the key is attached to, then attach anew.
            self.lessor.detach(old, &req.key)?;
        }
        if lease != 0 {
            self.lessor.attach(lease, &req.key)?;
        }
        self.changes += 1;
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: create,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        let prev_for_watch = if self.want_prev { prev.clone() } else { None };
        self.events.push(Event { kv, deleted: false, prev_kv: prev_for_watch });
        Ok(PutResponse { revision: self.begin + 1, prev_kv: if req.prev_kv { prev } else { None } })
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.ops += 1;
        self.inner.ops.deletes.fetch_add(1, Ordering::Relaxed);
        let (keys, _) = self.st.index.range(&req.key, &req.range_end, self.view_rev(), 0);
        let keys: Vec<(Vec<u8>, Revision)> =
            keys.into_iter().map(|(k, v)| (k.to_vec(), v.modified)).collect();
        let mut prev_kvs = Vec::new();
        for (key, modified) in &keys {
            let prev =
                if req.prev_kv || self.want_prev { Some(self.value_at(*modified)?) } else { None };
            let rev = self.rev();
            self.inner
                .pending
                .insert(rev, PendingKv { tombstone: true, bytes: tombstone_bytes(key) });
            self.st.index.tombstone(key, rev)?;
            if let Some(old) = self.lessor.lease_of(key) {
                self.lessor.detach(old, key)?;
            }
            self.changes += 1;
            let kv = KeyValue { key: key.clone(), mod_revision: rev.main, ..Default::default() };
            let prev_for_watch = if self.want_prev { prev.clone() } else { None };
            self.events.push(Event { kv, deleted: true, prev_kv: prev_for_watch });
            if req.prev_kv {
                if let Some(p) = prev {
                    prev_kvs.push(p);
                }
            }
        }
        Ok(DeleteRangeResponse { revision: self.view_rev(), deleted: keys.len() as i64, prev_kvs })
    }

    /// Checks the ops on the chosen path, recursively, against the state before anything is
    /// written (etcd's checkRequests with checkPut for write txns, and checkRange).
    fn precheck(&self, req: &TxnRequest, path: &[bool], pos: &mut usize, puts: bool) -> Result<()> {
        // etcd runs the put checks over the whole path first (write txns only), then the
        // range checks; `puts` selects the pass.
        let ok = path.get(*pos).copied().unwrap_or(false);
        *pos += 1;
        for op in if ok { &req.success } else { &req.failure } {
            match op {
                RequestOp::Put(p) if puts => self.check_put(p, false)?,
                RequestOp::Range(r) if !puts => self.check_range(r)?,
                RequestOp::Txn(t) => self.precheck(t, path, pos, puts)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// A put's preconditions. In a txn etcd checks the key first; a lone put checks the lease
    /// first.
    fn check_put(&self, p: &PutRequest, lease_first: bool) -> Result<()> {
        let current =
            if p.ignore_value || p.ignore_lease { self.current_kv(&p.key)? } else { None };
        let key_missing =
            || -> Result<bool> { Ok((p.ignore_value || p.ignore_lease) && current.is_none()) };
        // With ignore_lease the key keeps its lease, which must still exist to be re-attached.
        let lease = match (&current, p.ignore_lease) {
            (Some(kv), true) => kv.lease,
            _ => p.lease,
        };
        let lease_missing = lease != 0 && self.lessor.lookup(lease).is_none();
        if lease_first && lease_missing {
            return Err(crate::lease::LeaseError::NotFound.into());
        }
        if key_missing()? {
            return Err(MvccError::KeyNotFound);
        }
        if lease_missing {
            return Err(crate::lease::LeaseError::NotFound.into());
        }
        Ok(())
    }

    fn txn(&mut self, req: &TxnRequest, path: &[bool], pos: &mut usize) -> Result<TxnResponse> {
        let ok = path.get(*pos).copied().unwrap_or(false);
        *pos += 1;
        let ops = if ok { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    self.ops += 1;
                    self.inner.ops.ranges.fetch_add(1, Ordering::Relaxed);
                    ResponseOp::Range(self.range(r)?)
                }
                RequestOp::Put(p) => ResponseOp::Put(self.put(p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(d)?),
                RequestOp::Txn(t) => {
                    // etcd answers a nested txn with an all-zero header.
                    let mut r = self.txn(t, path, pos)?;
                    r.revision = 0;
                    ResponseOp::Txn(r)
                }
            });
        }
        Ok(TxnResponse { revision: self.view_rev(), succeeded: ok, responses })
    }

    /// Publishes the txn: the new revision becomes current, watchers get its events.
    fn finish(mut self) -> i64 {
        if self.changes > 0 {
            self.st.current = self.begin + 1;
        }
        let rev = self.st.current;
        let events = std::mem::take(&mut self.events);
        drop(self.lessor);
        // Published before the index lock is released, so a watcher created from "now" starts
        // after this revision, never at it.
        if !events.is_empty() {
            self.inner.watch.notify(rev, events);
        }
        drop(self.st);
        rev
    }
}

impl TxnView for WriteCtx<'_> {
    fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let plan = plan_range(&self.st, req, self.view_rev(), Some(self.begin))?;
        let mut kvs = Vec::with_capacity(plan.keys.len());
        for (_, vis) in &plan.keys {
            kvs.push(self.value_at(vis.modified)?);
        }
        Ok(shape_range(req, kvs, plan.total, plan.current))
    }

    fn begin(&self) -> i64 {
        self.begin
    }

    fn compact(&self) -> i64 {
        self.st.compact
    }
}

impl Store {
    /// Starts applying the entry `at`: refuses one already applied, records it as applied.
    pub(crate) fn begin_apply(&self, at: Applied) -> Result<MutexGuard<'_, Writer>> {
        let mut w = self.inner.lock_writer();
        // Checked under the lock: close() sets the flag before its final flush under it.
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(MvccError::Closed);
        }
        if at.index != 0 {
            if at.index <= w.applied.index {
                return Err(MvccError::AlreadyApplied {
                    index: at.index,
                    applied: w.applied.index,
                });
            }
            w.applied = at;
            w.meta.applied = Some(at);
        }
        Ok(w)
    }

    /// At the batch limit the background thread is woken to flush; past eight times the limit
    /// (it is held up, e.g. by a page-store sync) the writer flushes itself, which bounds the
    /// buffer.
    fn end_apply(&self, mut w: MutexGuard<'_, Writer>) -> Result<()> {
        let buffered = self.inner.pending.len();
        let limit = self.inner.opts.batch_limit;
        if buffered >= limit.saturating_mul(8) {
            crate::background::flush(&self.inner, &mut w)?;
        } else if buffered >= limit {
            self.inner.wake.notify_all();
        }
        Ok(())
    }

    /// Applies a txn (etcd's Txn): validated, compares evaluated, one branch run, all in one
    /// revision.
    pub fn txn(&self, at: Applied, req: &TxnRequest) -> Result<TxnResponse> {
        let w = self.begin_apply(at)?;
        req.validate()?;
        let mut ctx = WriteCtx::new(&self.inner)?;
        let mut path = Vec::new();
        ctx.path(req, &mut path)?;
        if req.has_writes() {
            ctx.precheck(req, &path, &mut 0, true)?;
        }
        ctx.precheck(req, &path, &mut 0, false)?;
        let resp = ctx.txn(req, &path, &mut 0)?;
        if ctx.ops > 1 {
            self.inner.ops.txns.fetch_add(1, Ordering::Relaxed);
        }
        ctx.finish();
        self.end_apply(w)?;
        Ok(resp)
    }

    /// Applies a put.
    pub fn put(&self, at: Applied, req: &PutRequest) -> Result<PutResponse> {
        let w = self.begin_apply(at)?;
        req.validate()?;
        let mut ctx = WriteCtx::new(&self.inner)?;
        ctx.check_put(req, true)?;
        let resp = ctx.put(req)?;
        ctx.finish();
        self.end_apply(w)?;
        Ok(resp)
    }

    /// Applies a deletion.
    pub fn delete_range(
        &self,
        at: Applied,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        let w = self.begin_apply(at)?;
        req.validate()?;
        let mut ctx = WriteCtx::new(&self.inner)?;
        let resp = ctx.delete_range(req)?;
        ctx.finish();
        self.end_apply(w)?;
        Ok(resp)
    }

    /// Applies a lease grant. `id` must be nonzero (the proposer picks free ids).
    pub fn lease_grant(&self, at: Applied, id: LeaseId, ttl: i64) -> Result<LeaseGrant> {
        let mut w = self.begin_apply(at)?;
        let mut lessor = self.inner.lock_lessor();
        let info = lessor.grant(id, ttl, Instant::now())?;
        w.meta.leases.insert(id, Some(info.record()));
        self.inner.ops.leases_granted.fetch_add(1, Ordering::Relaxed);
        self.inner.opts.on_event.tell(crate::counters::StoreEvent::LeaseGranted(info.ttl));
        Ok(LeaseGrant { id, ttl: info.ttl })
    }

    /// Applies a lease revoke: every attached key deleted in one revision, then the lease.
    /// Returns the store's revision after it.
    pub fn lease_revoke(&self, at: Applied, id: LeaseId) -> Result<i64> {
        let mut w = self.begin_apply(at)?;
        let mut ctx = WriteCtx::new(&self.inner)?;
        let keys = ctx.lessor.revoke(id)?;
        for key in keys {
            ctx.delete_range(&DeleteRangeRequest { key, range_end: Vec::new(), prev_kv: false })?;
        }
        let rev = ctx.finish();
        w.meta.leases.insert(id, None);
        self.inner.ops.leases_revoked.fetch_add(1, Ordering::Relaxed);
        self.end_apply(w)?;
        Ok(rev)
    }

    /// Applies a lease checkpoint (the remaining TTL the primary saw).
    pub fn lease_checkpoint(&self, at: Applied, id: LeaseId, remaining_ttl: i64) -> Result<()> {
        let mut w = self.begin_apply(at)?;
        let mut lessor = self.inner.lock_lessor();
        // A checkpoint of a lease revoked meanwhile changes nothing.
        if let Some(rec) = lessor.checkpoint(id, remaining_ttl, Instant::now()) {
            w.meta.leases.insert(id, Some(rec));
        }
        Ok(())
    }

    /// Records an entry that changes nothing here (so the applied index advances with it).
    pub fn apply_noop(&self, at: Applied) -> Result<()> {
        let w = self.begin_apply(at)?;
        self.end_apply(w)
    }
}
