//! Range answers read while they are sent: a big plain range keeps its bounds, its revision
//! and a pinned read view of the page store; the key index is walked again, a batch at a time,
//! and each key-value is read, as borrowed slices of the page store's map, when the server
//! encodes it into the answer. So the memory of an answer does not grow with its size,
//! whatever the number of callers. The view is consistent: only a compaction past the
//! answer's revision changes what the index shows at it, and that fails the reading.
//!
//! Only ranges whose answer is in key order and unfiltered are served lazily (no sort other
//! than by key ascending, no mod/create revision filters, not `count_only`), and only from
//! [`LAZY_MIN_KEYS`] keys up: the others are read whole, as [`Store::range`].
#![forbid(unsafe_code)]

use std::sync::Arc;

use rusted_engine::ReadTx;

use crate::error::{MvccError, Result};
use crate::kv;
use crate::request::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::revision::Revision;
use crate::store::{finish_range, plan_range, range_revision, Inner, Plan, Store, KEY_BUCKET};

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

impl KvRef<'_> {
    /// An owned copy.
    pub fn to_key_value(&self) -> crate::KeyValue {
        crate::KeyValue {
            key: self.key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

/// A range answer whose key-values are read on demand (see the module documentation).
pub struct LazyRange {
    inner: Arc<Inner>,
    tx: ReadTx,
    key: Vec<u8>,
    end: Vec<u8>,
    at: i64,
    len: usize,
    keys_only: bool,
    /// The store's revision when the range was served (the header revision).
    pub revision: i64,
    /// Keys in the range.
    pub count: i64,
    /// More keys matched than returned.
    pub more: bool,
}

impl std::fmt::Debug for LazyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRange")
            .field("at", &self.at)
            .field("len", &self.len)
            .field("count", &self.count)
            .field("more", &self.more)
            .finish_non_exhaustive()
    }
}

/// Where a reading of a [`LazyRange`] is: the last key given and how many so far.
#[derive(Debug, Default, Clone)]
pub struct Position {
    after: Option<Vec<u8>>,
    done: usize,
}

impl Position {
    /// How many key-values this reading has been given.
    pub fn done(&self) -> usize {
        self.done
    }
}

/// Keys walked in the index per hold of its lock.
const BATCH: usize = 128;

impl LazyRange {
    /// Key-values in the answer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the answer has no key-values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f` with the answer's next key-values, in order, from `pos` on, until `f` returns
    /// false or the answer ends; returns how many it was called with (0: the end). Each call
    /// walks the key index again from the last key given, at the answer's revision: a
    /// compaction past that revision meanwhile fails the reading (etcd's `ErrCompacted`).
    pub fn next(&self, pos: &mut Position, mut f: impl FnMut(KvRef<'_>) -> bool) -> Result<usize> {
        let mut given = 0;
        loop {
            let want = BATCH.min(self.len - pos.done);
            if want == 0 {
                return Ok(given);
            }
            let batch: Vec<(Vec<u8>, Revision)> = {
                let st = self.inner.read_state();
                if st.compact > self.at {
                    return Err(MvccError::Compacted { compact_revision: st.compact });
                }
                st.index
                    .range_after(&self.key, &self.end, pos.after.as_deref(), self.at, want)
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.modified))
                    .collect()
            };
            if batch.len() != want {
                return Err(MvccError::Corrupt(format!(
                    "range at revision {} changed while read: {} keys where {want} were",
                    self.at,
                    batch.len()
                )));
            }
            let flushed = self.tx.user()[0] as i64;
            for (key, rev) in batch {
                let more = if rev.main > flushed {
                    let (kv, _) = self.inner.fetch_change(&self.tx, rev)?;
                    let value = if self.keys_only { &[][..] } else { &kv.value[..] };
                    f(KvRef {
                        key: &kv.key,
                        create_revision: kv.create_revision,
                        mod_revision: rev.main,
                        version: kv.version,
                        value,
                        lease: kv.lease,
                    })
                } else {
                    let (key, n) = rev.key_bytes(false);
                    let bytes = self.tx.get(KEY_BUCKET, &key[..n])?.ok_or_else(|| {
                        MvccError::Corrupt(format!("revision {rev:?} is indexed but not stored"))
                    })?;
                    let (k, value, create_revision, version, lease) =
                        kv::split(bytes).map_err(|e| MvccError::Corrupt(e.to_string()))?;
                    let value = if self.keys_only { &[][..] } else { value };
                    f(KvRef {
                        key: k,
                        create_revision,
                        mod_revision: rev.main,
                        version,
                        value,
                        lease,
                    })
                };
                pos.done += 1;
                pos.after = Some(key);
                given += 1;
                if !more {
                    return Ok(given);
                }
            }
        }
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
        let (len, total, more, at, current) = {
            let st = inner.read_state();
            if !lazy_shape(req) {
                let plan = plan_range(&st, req, st.current, None)?;
                drop(st);
                return Ok(RangeOut::Full(finish_range(inner, &tx, req, plan)?));
            }
            let at = range_revision(&st, req, st.current, None)?;
            // One walk counts the range and keeps the first keys, enough for a small answer.
            let cap = if req.limit > 0 {
                (req.limit as usize + 1).min(min_keys + 1)
            } else {
                min_keys + 1
            };
            let (keys, total) = st.index.range(&req.key, &req.range_end, at, cap);
            let len = if req.limit > 0 { total.min(req.limit as usize) } else { total };
            if len < min_keys {
                let keys = keys.into_iter().map(|(k, v)| (k.to_vec(), v)).collect();
                let plan = Plan { keys, total, current: st.current };
                drop(st);
                return Ok(RangeOut::Full(finish_range(inner, &tx, req, plan)?));
            }
            (len, total, req.limit > 0 && total > req.limit as usize, at, st.current)
        };
        Ok(RangeOut::Lazy(LazyRange {
            inner: inner.clone(),
            tx,
            key: req.key.clone(),
            end: req.range_end.clone(),
            at,
            len,
            keys_only: req.keys_only,
            revision: current,
            count: total as i64,
            more,
        }))
    }
}
