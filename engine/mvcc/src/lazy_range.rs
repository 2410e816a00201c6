//! Range answers read while they are sent: a big plain range keeps only the revisions of its
//! keys (16 bytes each) and a pinned read view of the page store; each key-value is read, as
//! borrowed slices of the page store's map, when the server encodes it into the answer. So
//! the memory of an answer does not grow with its bytes, whatever its size or the number of
//! callers.
//!
//! Only ranges whose answer is in key order and unfiltered are served lazily (no sort other
//! than by key ascending, no mod/create revision filters, not `count_only`), and only from
//! [`LAZY_MIN_KEYS`] keys up: the others are read whole, as [`Store::range`].
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;

use rusted_engine::ReadTx;

use crate::error::{MvccError, Result};
use crate::kv;
use crate::request::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::revision::Revision;
use crate::store::{finish_range, plan_range, range_revision, Plan, Store, KEY_BUCKET};

/// Ranges of fewer keys are read whole.
pub const LAZY_MIN_KEYS: usize = 256;

/// A key-value of an answer, borrowed from the page store (or the write buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Revision of the put that created the key.
    pub create_revision: i64,
    /// Revision of the last change.
    pub mod_revision: i64,
    /// Puts since creation.
    pub version: i64,
    /// The value (empty for `keys_only`).
    pub value: &'a [u8],
    /// Attached lease (0: none).
    pub lease: i64,
}

/// A range answer whose key-values are read on demand (see the module documentation).
#[derive(Debug)]
pub struct LazyRange {
    tx: ReadTx,
    revs: Vec<Revision>,
    /// Values of revisions newer than the view's last flush, taken when the range was served.
    fresh: HashMap<Revision, Arc<[u8]>>,
    keys_only: bool,
    /// The store's revision when the range was served (the header revision).
    pub revision: i64,
    /// Keys in the range.
    pub count: i64,
    /// More keys matched than returned.
    pub more: bool,
}

impl LazyRange {
    /// Key-values in the answer.
    pub fn len(&self) -> usize {
        self.revs.len()
    }

    /// Whether the answer has no key-values.
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Calls `f` with the `i`th key-value of the answer.
    pub fn with<R>(&self, i: usize, f: impl FnOnce(KvRef<'_>) -> R) -> Result<R> {
        let rev = *self
            .revs
            .get(i)
            .ok_or_else(|| MvccError::Corrupt(format!("answer has no key-value {i}")))?;
        let bytes: &[u8] = match self.fresh.get(&rev) {
            Some(b) => b,
            None => self.tx.get(KEY_BUCKET, &rev.to_key(false))?.ok_or_else(|| {
                MvccError::Corrupt(format!("revision {rev:?} is indexed but not stored"))
            })?,
        };
        let (key, value, create_revision, version, lease) =
            kv::split(bytes).map_err(|e| MvccError::Corrupt(e.to_string()))?;
        let value = if self.keys_only { &[][..] } else { value };
        Ok(f(KvRef { key, create_revision, mod_revision: rev.main, version, value, lease }))
    }
}

/// A range's answer: whole, or to be read while it is sent.
#[derive(Debug)]
pub enum RangeOut {
    /// Read whole.
    Full(RangeResponse),
    /// Read on demand.
    Lazy(LazyRange),
}

fn lazy_shape(req: &RangeRequest) -> bool {
    // Ascending by key is the index's own order: the same answer as no sort.
    (req.sort_order == SortOrder::None || req.sort_order == SortOrder::Ascend)
        && req.sort_target == SortTarget::Key
        && req.min_mod_revision == 0
        && req.max_mod_revision == 0
        && req.min_create_revision == 0
        && req.max_create_revision == 0
        && !req.count_only
}

impl Store {
    /// Serves a range as [`Store::range`] does, but an answer of at least `min_keys` plain
    /// key-values comes back [`RangeOut::Lazy`].
    pub fn range_lazy(&self, req: &RangeRequest, min_keys: usize) -> Result<RangeOut> {
        let inner = &self.inner;
        inner.ops.ranges.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        req.validate()?;
        let tx = inner.db.begin_read()?;
        let (revs, total, more, current) = {
            let st = inner.read_state();
            if !lazy_shape(req) {
                let plan = plan_range(&st, req, st.current, None)?;
                drop(st);
                return Ok(RangeOut::Full(finish_range(inner, &tx, req, plan)?));
            }
            let at = range_revision(&st, req, st.current, None)?;
            let limit = if req.limit <= 0 { 0 } else { req.limit as usize + 1 };
            let (keys, total) = st.index.range(&req.key, &req.range_end, at, limit);
            if keys.len() < min_keys {
                let keys = keys.into_iter().map(|(k, v)| (k.to_vec(), v)).collect();
                let plan = Plan { keys, total, current: st.current };
                drop(st);
                return Ok(RangeOut::Full(finish_range(inner, &tx, req, plan)?));
            }
            let mut revs: Vec<Revision> = keys.iter().map(|(_, v)| v.modified).collect();
            let more = req.limit > 0 && revs.len() > req.limit as usize;
            if more {
                revs.truncate(req.limit as usize);
            }
            (revs, total, more, st.current)
        };
        let flushed = tx.user()[0] as i64;
        let mut fresh = HashMap::new();
        for rev in revs.iter().filter(|r| r.main > flushed) {
            let (kv, _) = inner.fetch_change(&tx, *rev)?;
            let b = kv::encode_parts(&kv.key, kv.create_revision, kv.version, kv.lease, &kv.value);
            fresh.insert(*rev, b.into());
        }
        Ok(RangeOut::Lazy(LazyRange {
            tx,
            revs,
            fresh,
            keys_only: req.keys_only,
            revision: current,
            count: total as i64,
            more,
        }))
    }
}
