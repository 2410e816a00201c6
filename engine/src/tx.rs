//! Read and write transactions, and buckets (named trees listed in a catalog tree).
//!
//! The catalog maps a bucket name to a 16-byte value: the bucket's root page id and a sequence
//! number, both little-endian u64.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use crate::cursor::{get, Cursor};
use crate::db::{BucketChange, BucketRoots, Db, DbInner, Snapshot, WriterState};
use crate::defrag::Op;
use crate::error::{EngineError, Result};
use crate::node::NodeId;
use crate::page::u64_at;
use crate::tree::{Dirty, Pages};

/// Largest key (as bbolt's MaxKeySize).
pub const MAX_KEY_SIZE: usize = 32768;
/// Largest value (as bbolt's MaxValueSize, 2^31 - 2).
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

fn bucket_root(v: &[u8], name: &[u8]) -> Result<(NodeId, u64)> {
    let bad = |why: String| EngineError::Corrupt {
        page: 0,
        reason: format!("catalog entry for {:?}: {why}", String::from_utf8_lossy(name)),
    };
    if v.len() != 16 {
        return Err(bad(format!("{} bytes", v.len())));
    }
    let root = u64_at(v, 0);
    if root & crate::node::DIRTY != 0 || root < 2 {
        return Err(bad(format!("impossible root page {root:#x}")));
    }
    Ok((root, u64_at(v, 8)))
}

fn not_found(name: &[u8]) -> EngineError {
    EngineError::BucketNotFound(String::from_utf8_lossy(name).into_owned())
}

/// A consistent, read-only view of the store as of the transaction it started from.
/// Any number may be open at once, alongside the writer. Cheap to hold: it pins the pages it
/// can see (they are not reused until it is dropped) and the map it reads them from.
#[derive(Debug)]
pub struct ReadTx {
    snap: Snapshot,
    pages: Pages,
    db: Arc<DbInner>,
}

impl ReadTx {
    pub(crate) fn new(db: Arc<DbInner>, snap: Snapshot) -> Self {
        let pages = snap.pages();
        ReadTx { snap, pages, db }
    }

    fn pages(&self) -> &Pages {
        &self.pages
    }

    /// The transaction id this view shows.
    pub fn txid(&self) -> u64 {
        self.snap.meta.txid
    }

    /// The user fields (applied index, term) as of this view.
    pub fn user(&self) -> [u64; 2] {
        self.snap.meta.user
    }

    fn root(&self, bucket: &[u8]) -> Result<NodeId> {
        let roots = self.snap.roots.get_or_init(|| self.read_roots().ok());
        if let Some(roots) = roots {
            return match roots.iter().find(|(name, _)| **name == *bucket) {
                Some((_, root)) => Ok(*root),
                None => Err(not_found(bucket)),
            };
        }
        let v =
            get(self.pages(), self.snap.meta.catalog, bucket)?.ok_or_else(|| not_found(bucket))?;
        Ok(bucket_root(v, bucket)?.0)
    }

    /// Every bucket's root, from the catalog.
    fn read_roots(&self) -> Result<BucketRoots> {
        let mut c = Cursor::new(self.pages(), self.snap.meta.catalog);
        let mut out = Vec::new();
        let mut it = c.first()?;
        while let Some((name, v)) = it {
            out.push((Box::from(name), bucket_root(v, name)?.0));
            it = c.next()?;
        }
        Ok(out.into_boxed_slice())
    }

    /// The bucket's sequence number.
    pub fn sequence(&self, bucket: &[u8]) -> Result<u64> {
        let v =
            get(self.pages(), self.snap.meta.catalog, bucket)?.ok_or_else(|| not_found(bucket))?;
        Ok(bucket_root(v, bucket)?.1)
    }

    /// Does the bucket exist?
    pub fn has_bucket(&self, bucket: &[u8]) -> Result<bool> {
        Ok(get(self.pages(), self.snap.meta.catalog, bucket)?.is_some())
    }

    /// Bucket names, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut c = Cursor::new(self.pages(), self.snap.meta.catalog);
        let mut out = Vec::new();
        let mut it = c.first()?;
        while let Some((k, _)) = it {
            out.push(k.to_vec());
            it = c.next()?;
        }
        Ok(out)
    }

    /// The value of `key` in `bucket`, borrowed from the map (zero-copy).
    pub fn get(&self, bucket: &[u8], key: &[u8]) -> Result<Option<&[u8]>> {
        let root = self.root(bucket)?;
        get(self.pages(), root, key)
    }

    /// A handle on `bucket` with its root resolved once (use it for many reads).
    pub fn bucket(&self, bucket: &[u8]) -> Result<Bucket<'_>> {
        Ok(Bucket { pages: self.pages(), root: self.root(bucket)? })
    }

    /// A cursor over `bucket`.
    pub fn cursor(&self, bucket: &[u8]) -> Result<Cursor<'_, Pages>> {
        let root = self.root(bucket)?;
        Ok(Cursor::new(self.pages(), root))
    }

    /// Calls `f` for each entry of `bucket` with key in `[from, to)` (`to` empty: no end),
    /// in order, until it returns false.
    pub fn scan(
        &self,
        bucket: &[u8],
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let mut c = self.cursor(bucket)?;
        let mut it = c.seek(from)?;
        while let Some((k, v)) = it {
            if (!to.is_empty() && k >= to) || !f(k, v) {
                break;
            }
            it = c.next()?;
        }
        Ok(())
    }

    pub(crate) fn pages_for_check(&self) -> (&Pages, NodeId, &crate::meta::Meta) {
        (self.pages(), self.snap.meta.catalog, &self.snap.meta)
    }
}

/// A bucket of a read transaction, its root resolved.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    pages: &'a Pages,
    root: NodeId,
}

impl<'a> Bucket<'a> {
    /// The value of `key`, borrowed from the map.
    pub fn get(&self, key: &[u8]) -> Result<Option<&'a [u8]>> {
        get(self.pages, self.root, key)
    }

    /// A cursor over the bucket.
    pub fn cursor(&self) -> Cursor<'a, Pages> {
        Cursor::new(self.pages, self.root)
    }
}

impl Drop for ReadTx {
    fn drop(&mut self) {
        self.db.end_read(self.snap.epoch, self.snap.meta.txid);
    }
}

#[derive(Debug, Clone)]
struct BucketState {
    root: NodeId,
    seq: u64,
    dirty: bool,
}

/// The single write transaction. Edits are copy-on-write and invisible to readers until
/// [`WriteTx::commit`] (or [`WriteTx::commit_nosync`]) returns; dropping it rolls back.
pub struct WriteTx<'db> {
    pub(crate) db: &'db Db,
    pub(crate) guard: MutexGuard<'db, WriterState>,
    pub(crate) snap: Snapshot,
    buckets: BTreeMap<Vec<u8>, Option<BucketState>>,
    catalog: NodeId,
    user: [u64; 2],
    dirty: Option<Dirty>,
    /// An edit failed part-way (damaged pages): the dirty set may be inconsistent, so the
    /// transaction can only be rolled back.
    failed: Option<String>,
    /// The edits, kept while a defrag copies the store (it replays them into the copy).
    ops: Option<Vec<Op>>,
}

impl std::fmt::Debug for WriteTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx").field("txid", &(self.snap.meta.txid + 1)).finish_non_exhaustive()
    }
}

impl<'db> WriteTx<'db> {
    pub(crate) fn new(db: &'db Db, guard: MutexGuard<'db, WriterState>, snap: Snapshot) -> Self {
        let catalog = snap.meta.catalog;
        let user = snap.meta.user;
        let ops = db.recorder().recording().then(Vec::new);
        WriteTx {
            db,
            guard,
            snap,
            buckets: BTreeMap::new(),
            catalog,
            user,
            dirty: None,
            failed: None,
            ops,
        }
    }

    fn record(&mut self, op: impl FnOnce() -> Op) {
        if let Some(ops) = &mut self.ops {
            ops.push(op());
        }
    }

    /// The dirty set, created on first use.
    fn dirty(&mut self) -> &mut Dirty {
        if self.dirty.is_none() {
            self.dirty = Some(Dirty::new(self.snap.pages(), self.db.fill_percent()));
        }
        match self.dirty.as_mut() {
            Some(d) => d,
            None => unreachable!("set just above"),
        }
    }

    /// Records a failed edit (see `failed`) and passes the error on.
    fn fail<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.failed.get_or_insert_with(|| e.to_string());
        }
        r
    }

    fn state(&mut self, bucket: &[u8]) -> Result<Option<BucketState>> {
        if let Some(s) = self.buckets.get(bucket) {
            return Ok(s.clone());
        }
        let catalog = self.catalog;
        let found = match get(self.dirty(), catalog, bucket)? {
            Some(v) => {
                let (root, seq) = bucket_root(v, bucket)?;
                Some(BucketState { root, seq, dirty: false })
            }
            None => None,
        };
        self.buckets.insert(bucket.to_vec(), found.clone());
        Ok(found)
    }

    /// Creates a bucket.
    pub fn create_bucket(&mut self, name: &[u8]) -> Result<()> {
        check_key(name)?;
        if self.state(name)?.is_some() {
            return Err(EngineError::BucketExists(String::from_utf8_lossy(name).into_owned()));
        }
        let root = self.dirty().empty_leaf();
        self.buckets.insert(name.to_vec(), Some(BucketState { root, seq: 0, dirty: true }));
        self.record(|| Op::CreateBucket(name.to_vec()));
        Ok(())
    }

    /// Creates a bucket unless it exists.
    pub fn create_bucket_if_missing(&mut self, name: &[u8]) -> Result<()> {
        if self.state(name)?.is_none() {
            self.create_bucket(name)?;
        }
        Ok(())
    }

    /// Deletes a bucket and frees its pages.
    pub fn delete_bucket(&mut self, name: &[u8]) -> Result<()> {
        let s = self.state(name)?.ok_or_else(|| not_found(name))?;
        let r = self.dirty().free_tree(s.root, 0);
        self.fail(r)?;
        let catalog = self.catalog;
        let r = self.dirty().delete(catalog, name);
        let (c, _) = self.fail(r)?;
        self.catalog = c;
        self.buckets.insert(name.to_vec(), None);
        self.record(|| Op::DeleteBucket(name.to_vec()));
        Ok(())
    }

    fn root(&mut self, bucket: &[u8]) -> Result<BucketState> {
        self.state(bucket)?.ok_or_else(|| not_found(bucket))
    }

    /// Sets `key` to `value` in `bucket`.
    pub fn put(&mut self, bucket: &[u8], key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(EngineError::InvalidArgument(format!(
                "value of {} bytes is too large",
                value.len()
            )));
        }
        let mut s = self.root(bucket)?;
        let r = self.dirty().put(s.root, key, value);
        s.root = self.fail(r)?;
        s.dirty = true;
        self.buckets.insert(bucket.to_vec(), Some(s));
        self.record(|| Op::Put {
            bucket: bucket.to_vec(),
            key: key.to_vec(),
            value: value.to_vec(),
        });
        Ok(())
    }

    /// Removes `key` from `bucket`; returns whether it was there.
    pub fn delete(&mut self, bucket: &[u8], key: &[u8]) -> Result<bool> {
        let mut s = self.root(bucket)?;
        let r = self.dirty().delete(s.root, key);
        let (r, found) = self.fail(r)?;
        if found {
            s.root = r;
            s.dirty = true;
            self.buckets.insert(bucket.to_vec(), Some(s));
            self.record(|| Op::Delete { bucket: bucket.to_vec(), key: key.to_vec() });
        }
        Ok(found)
    }

    /// The value of `key` in `bucket`, as this transaction sees it.
    pub fn get(&mut self, bucket: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>> {
        let s = self.root(bucket)?;
        Ok(get(self.dirty(), s.root, key)?.map(<[u8]>::to_vec))
    }

    /// Calls `f` for each entry of `bucket` with key in `[from, to)` (`to` empty: no end),
    /// in order, until it returns false.
    pub fn scan(
        &mut self,
        bucket: &[u8],
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let s = self.root(bucket)?;
        let d: &Dirty = self.dirty();
        let mut c = Cursor::new(d, s.root);
        let mut it = c.seek(from)?;
        while let Some((k, v)) = it {
            if !to.is_empty() && k >= to {
                break;
            }
            if !f(k, v) {
                break;
            }
            it = c.next()?;
        }
        Ok(())
    }

    /// Next value of the bucket's sequence (as bbolt's NextSequence).
    pub fn next_sequence(&mut self, bucket: &[u8]) -> Result<u64> {
        let mut s = self.root(bucket)?;
        s.seq += 1;
        s.dirty = true;
        let seq = s.seq;
        self.buckets.insert(bucket.to_vec(), Some(s));
        self.record(|| Op::Sequence { bucket: bucket.to_vec(), seq });
        Ok(seq)
    }

    /// Sets the bucket's sequence.
    pub fn set_sequence(&mut self, bucket: &[u8], seq: u64) -> Result<()> {
        let mut s = self.root(bucket)?;
        s.seq = seq;
        s.dirty = true;
        self.buckets.insert(bucket.to_vec(), Some(s));
        self.record(|| Op::Sequence { bucket: bucket.to_vec(), seq });
        Ok(())
    }

    /// Sets the user fields stored in the meta (the MVCC layer's applied index and term).
    pub fn set_user(&mut self, user: [u64; 2]) {
        self.user = user;
        self.record(|| Op::User(user));
    }

    /// Commits and makes it durable (data pages, fdatasync, meta, fdatasync).
    pub fn commit(self) -> Result<u64> {
        self.finish(true)
    }

    /// Commits without syncing: readers see it at once; it becomes durable with the next
    /// synced commit or [`Db::sync`]. After a crash the store is back at the last synced
    /// commit, intact (pages a synced meta can reach are not reused before a later sync).
    pub fn commit_nosync(self) -> Result<u64> {
        self.finish(false)
    }

    fn finish(mut self, sync: bool) -> Result<u64> {
        if let Some(m) = &self.failed {
            return Err(EngineError::Corrupt {
                page: 0,
                reason: format!("transaction not committed: an edit failed ({m})"),
            });
        }
        // Write dirty buckets into the catalog, then spill everything.
        let changed: Vec<(Vec<u8>, BucketChange)> = self
            .buckets
            .iter()
            .filter_map(|(k, s)| {
                s.as_ref()
                    .filter(|s| s.dirty)
                    .map(|s| (k.clone(), BucketChange { root: s.root, seq: s.seq }))
            })
            .collect();
        let dirty = match self.dirty.take() {
            Some(d) => d,
            None if self.user == self.snap.meta.user && changed.is_empty() => {
                return Ok(self.snap.meta.txid)
            }
            None => Dirty::new(self.snap.pages(), self.db.fill_percent()),
        };
        let db = self.db;
        let catalog = self.catalog;
        let user = self.user;
        let txid = db.commit(&mut self.guard, &self.snap, dirty, catalog, changed, user, sync)?;
        // Still under the writer lock: recorded edits keep the order of the commits.
        if let Some(ops) = self.ops.take() {
            db.recorder().append(ops, db.opts().defrag_delta_limit);
        }
        Ok(txid)
    }
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(EngineError::InvalidArgument("key required".into()));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(EngineError::InvalidArgument(format!(
            "key of {} bytes is too large",
            key.len()
        )));
    }
    Ok(())
}
