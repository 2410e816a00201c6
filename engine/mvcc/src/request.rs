//! Requests and responses of the key-value API (etcd's etcdserverpb Range/Put/DeleteRange/Txn),
//! as plain Rust types: the server converts its protobuf messages to these, so the engine knows
//! nothing of gRPC. Also the validation etcd does before applying: keys present, ignore_* flags
//! consistent, and the txn rule that no key is written twice (checked recursively).
#![forbid(unsafe_code)]

use std::cmp::Ordering;
use std::collections::HashSet;

use crate::error::{MvccError, Result};
use crate::kv::KeyValue;

/// Order of a range's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Key order (no sorting asked).
    #[default]
    None,
    /// Ascending by the target.
    Ascend,
    /// Descending by the target.
    Descend,
}

/// What a range sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// A range request (etcd's RangeRequest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End: empty = the key alone, `[0]` = every key ≥ key, else exclusive end.
    pub range_end: Vec<u8>,
    /// At most this many keys (0: no limit).
    pub limit: i64,
    /// Read at this revision (≤ 0: the current one).
    pub revision: i64,
    /// Result order.
    pub sort_order: SortOrder,
    /// Sort key.
    pub sort_target: SortTarget,
    /// Leave values out.
    pub keys_only: bool,
    /// Only count.
    pub count_only: bool,
    /// Filters (0: none).
    pub min_mod_revision: i64,
    /// Filters (0: none).
    pub max_mod_revision: i64,
    /// Filters (0: none).
    pub min_create_revision: i64,
    /// Filters (0: none).
    pub max_create_revision: i64,
}

/// A range's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store's revision when the range was served (the header revision).
    pub revision: i64,
    /// The keys.
    pub kvs: Vec<KeyValue>,
    /// More keys matched than returned.
    pub more: bool,
    /// Keys in the range (before the mod/create filters, as etcd counts).
    pub count: i64,
}

/// A put (etcd's PutRequest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Lease to attach (0: none; detaches a previous one).
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

/// A put's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// Header revision.
    pub revision: i64,
    /// The previous key-value, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// A deletion of a key or range (etcd's DeleteRangeRequest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End, encoded as in [`RangeRequest::range_end`].
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// A deletion's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// Header revision.
    pub revision: i64,
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// How a compare relates the key's field to the given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompareResult {
    /// Equal.
    #[default]
    Equal,
    /// Field > given.
    Greater,
    /// Field < given.
    Less,
    /// Not equal.
    NotEqual,
}

/// The field a compare looks at, with the value to compare it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The version.
    Version(i64),
    /// The create revision.
    Create(i64),
    /// The mod revision.
    Mod(i64),
    /// The value.
    Value(Vec<u8>),
    /// The lease.
    Lease(i64),
}

impl Default for CompareTarget {
    fn default() -> Self {
        CompareTarget::Version(0)
    }
}

/// One condition of a txn (etcd's Compare).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compare {
    /// The relation.
    pub result: CompareResult,
    /// The field and operand.
    pub target: CompareTarget,
    /// The key.
    pub key: Vec<u8>,
    /// A range of keys (every key must satisfy the compare), encoded as in a range.
    pub range_end: Vec<u8>,
}

impl Compare {
    /// Does `kv` satisfy the compare?
    pub fn holds(&self, kv: &KeyValue) -> bool {
        let ord = match &self.target {
            CompareTarget::Version(v) => kv.version.cmp(v),
            CompareTarget::Create(v) => kv.create_revision.cmp(v),
            CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
            CompareTarget::Lease(v) => kv.lease.cmp(v),
            CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        };
        match self.result {
            CompareResult::Equal => ord == Ordering::Equal,
            CompareResult::NotEqual => ord != Ordering::Equal,
            CompareResult::Greater => ord == Ordering::Greater,
            CompareResult::Less => ord == Ordering::Less,
        }
    }
}

/// One operation of a txn branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    /// A range.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A deletion.
    DeleteRange(DeleteRangeRequest),
    /// A nested txn.
    Txn(TxnRequest),
}

/// One operation's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOp {
    /// A range's.
    Range(RangeResponse),
    /// A put's.
    Put(PutResponse),
    /// A deletion's.
    DeleteRange(DeleteRangeResponse),
    /// A nested txn's.
    Txn(TxnResponse),
}

/// A transaction (etcd's TxnRequest): if every compare holds, the success ops run, else the
/// failure ops; all in one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Conditions.
    pub compare: Vec<Compare>,
    /// Ops when every compare holds.
    pub success: Vec<RequestOp>,
    /// Ops otherwise.
    pub failure: Vec<RequestOp>,
}

/// A transaction's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Header revision (the txn's revision if it wrote, else the current one).
    pub revision: i64,
    /// Did every compare hold?
    pub succeeded: bool,
    /// One response per op of the branch taken.
    pub responses: Vec<ResponseOp>,
}

impl TxnRequest {
    /// Does the txn (any branch, nested too) contain a write?
    pub fn has_writes(&self) -> bool {
        self.success.iter().chain(&self.failure).any(|op| match op {
            RequestOp::Range(_) => false,
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => true,
            RequestOp::Txn(t) => t.has_writes(),
        })
    }

    /// Checks what etcd checks before applying: every op well-formed and no key written twice
    /// by ops that could run together (see [`check_branch`]).
    pub fn validate(&self) -> Result<()> {
        for c in &self.compare {
            if c.key.is_empty() {
                return Err(MvccError::EmptyKey);
            }
        }
        for op in self.success.iter().chain(&self.failure) {
            match op {
                RequestOp::Range(r) => r.validate()?,
                RequestOp::Put(p) => p.validate()?,
                RequestOp::DeleteRange(d) => d.validate()?,
                RequestOp::Txn(t) => t.validate()?,
            }
        }
        check_branch(&self.success)?;
        check_branch(&self.failure)?;
        Ok(())
    }
}

impl RangeRequest {
    /// A request without a key is refused.
    pub fn validate(&self) -> Result<()> {
        if self.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        Ok(())
    }
}

impl PutRequest {
    /// etcd's checks: a key; ignore_value without a value; ignore_lease without a lease.
    pub fn validate(&self) -> Result<()> {
        if self.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        if self.ignore_value && !self.value.is_empty() {
            return Err(MvccError::ValueProvided);
        }
        if self.ignore_lease && self.lease != 0 {
            return Err(MvccError::LeaseProvided);
        }
        Ok(())
    }
}

impl DeleteRangeRequest {
    /// A request without a key is refused.
    pub fn validate(&self) -> Result<()> {
        if self.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        Ok(())
    }
}

/// A deleted interval `[start, end)`; `end` None = unbounded.
#[derive(Debug, Clone)]
struct Deleted {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Deleted {
    fn of(key: &[u8], range_end: &[u8]) -> Deleted {
        let end = match range_end {
            [] => Some(point_end(key)),
            [0] => None,
            e => Some(e.to_vec()),
        };
        Deleted { start: key.to_vec(), end }
    }

    fn contains(&self, k: &[u8]) -> bool {
        k >= self.start.as_slice() && self.end.as_ref().is_none_or(|e| k < e.as_slice())
    }
}

/// The smallest key after `key` (the exclusive end of the single-key interval).
fn point_end(key: &[u8]) -> Vec<u8> {
    let mut e = key.to_vec();
    e.push(0);
    e
}

/// etcd's rule for one txn branch (its v3rpc `checkIntervals`): a key may be put only once
/// among the ops that can run together, and never inside a range the same ops delete. Ops of a
/// nested txn's success and failure branches never run together, so the same key may be put
/// in both. Overlapping deletions are fine.
///
/// Stricter than etcd in one case: a deletion with range end `"\0"` (every key from `key` on)
/// counts as covering those keys; etcd's interval check treats that range as empty and lets a
/// put of a covered key through.
pub fn check_branch(ops: &[RequestOp]) -> Result<()> {
    check_intervals(ops).map(|_| ())
}

fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>)> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(Deleted::of(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    let deleted = |dels: &[Deleted], k: &[u8]| dels.iter().any(|d| d.contains(k));
    for op in ops {
        let RequestOp::Txn(t) = op else { continue };
        let (then_puts, then_dels) = check_intervals(&t.success)?;
        let (else_puts, else_dels) = check_intervals(&t.failure)?;
        for k in &then_puts {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(MvccError::DuplicateKey);
            }
        }
        for k in &else_puts {
            if (puts.contains(k) && !then_puts.contains(k)) || deleted(&dels, k) {
                return Err(MvccError::DuplicateKey);
            }
        }
        puts.extend(then_puts);
        puts.extend(else_puts);
        dels.extend(then_dels);
        dels.extend(else_dels);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp::Put(PutRequest { key: k.into(), ..Default::default() })
    }
    fn del(k: &str, end: &[u8]) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.to_vec(),
            prev_kv: false,
        })
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp::Txn(TxnRequest { compare: vec![], success, failure })
    }
    fn dup(ops: Vec<RequestOp>) -> bool {
        matches!(check_branch(&ops), Err(MvccError::DuplicateKey))
    }

    #[test]
    fn duplicate_key_rule() {
        assert!(dup(vec![put("a"), put("a")]));
        assert!(!dup(vec![put("a"), put("b")]));
        assert!(dup(vec![del("a", b""), put("a")]));
        assert!(dup(vec![put("b"), del("a", b"c")]));
        assert!(!dup(vec![put("c"), del("a", b"c")]), "the end is exclusive");
        assert!(dup(vec![del("a", &[0]), put("zzz")]), "\\0 covers every later key");
        assert!(!dup(vec![del("a", b"c"), del("b", b"d")]), "overlapping deletes are fine");
        assert!(!dup(vec![txn(vec![put("a")], vec![put("a")])]), "branches exclude each other");
        assert!(dup(vec![put("a"), txn(vec![put("a")], vec![])]));
        assert!(dup(vec![put("a"), txn(vec![], vec![put("a")])]));
        assert!(dup(vec![txn(vec![del("a", b"")], vec![]), put("a")]));
        assert!(dup(vec![txn(vec![put("a")], vec![]), txn(vec![put("a")], vec![])]));
        assert!(dup(vec![txn(vec![txn(vec![put("x"), put("x")], vec![])], vec![])]));
    }

    #[test]
    fn compares() {
        let kv = KeyValue { version: 2, value: b"m".to_vec(), ..Default::default() };
        let c = |result, target| Compare { result, target, key: b"k".to_vec(), range_end: vec![] };
        assert!(c(CompareResult::Equal, CompareTarget::Version(2)).holds(&kv));
        assert!(c(CompareResult::Greater, CompareTarget::Version(1)).holds(&kv));
        assert!(c(CompareResult::Less, CompareTarget::Value(b"n".to_vec())).holds(&kv));
        assert!(c(CompareResult::NotEqual, CompareTarget::Lease(1)).holds(&kv));
        assert!(!c(CompareResult::Equal, CompareTarget::Mod(1)).holds(&kv));
    }
}
