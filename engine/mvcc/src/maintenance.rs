//! Compaction, hashes and the lease operations that do not go through the log.
//!
//! Compaction: the index is compacted at once (reads below the revision fail from then on),
//! the scheduled revision is committed, and the background thread deletes the revisions the
//! index no longer needs in batches (see [`crate::background`]); [`Store::wait_compacted`]
//! waits for that (etcd's `physical` flag).
//!
//! Hashes are CRC-32 (IEEE, crc32fast) — etcd uses CRC-32C over its own encoding, so values are
//! comparable between rusted members only, which is what they are for.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use crate::counters::StoreEvent;
use crate::error::{MvccError, Result};
use crate::lease::{LeaseId, TimeToLive};
use crate::revision::Revision;
use crate::store::{
    Applied, CompactJob, Store, CONSISTENT_INDEX, KEY_BUCKET, META_BUCKET, SCHEDULED_COMPACT, TERM,
};

/// Result of [`Store::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// The hash.
    pub hash: u32,
    /// The compacted revision (-1: never compacted).
    pub compact_revision: i64,
    /// The revision hashed up to.
    pub hash_revision: i64,
    /// The store's current revision (the header revision).
    pub revision: i64,
}

impl Store {
    /// Applies a compaction at `rev`: history before it becomes unreadable. Returns the
    /// current revision (the header revision etcd answers with).
    pub fn compact(&self, at: Applied, rev: i64) -> Result<i64> {
        let mut w = self.begin_apply(at)?;
        {
            let st = self.inner.read_state();
            if rev <= st.compact {
                return Err(MvccError::Compacted { compact_revision: st.compact });
            }
            if rev > st.current {
                return Err(MvccError::FutureRevision);
            }
        }
        // Everything up to now into the page store, so the job only deletes stored revisions.
        w.meta.meta.insert(SCHEDULED_COMPACT, (rev as u64).to_be_bytes().to_vec());
        crate::background::flush(&self.inner, &mut w)?;
        // Reads below `rev` fail from now on; the index itself is compacted in chunks by the
        // background thread, writes in between.
        self.inner.state.write().unwrap_or_else(|p| p.into_inner()).compact = rev;
        // A newer job supersedes an unfinished older one: everything the older would delete,
        // the newer deletes too.
        w.compaction = Some(CompactJob {
            rev,
            scheduled: Instant::now(),
            index_next: Some(Vec::new()),
            keep: Default::default(),
            next: Vec::new(),
        });
        self.inner.wake.notify_all();
        Ok(self.inner.read_state().current)
    }

    /// Waits until the physical deletion of compactions up to `rev` finished (or `timeout`).
    /// Returns whether it did.
    pub fn wait_compacted(&self, rev: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut w = self.inner.lock_writer();
        loop {
            if w.finished_compact >= rev {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            w = self.inner.compacted.wait_timeout(w, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Hash of the key-values up to `rev` (0: current), leaving out compacted revisions that
    /// compaction at `rev` would not keep (etcd's HashKV): equal on members with equal history
    /// whatever their physical compaction progress.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv> {
        let started = Instant::now();
        let r = self.hash_kv_inner(rev);
        self.inner.opts.on_event.tell(StoreEvent::HashKv(started.elapsed()));
        r
    }

    fn hash_kv_inner(&self, rev: i64) -> Result<HashKv> {
        let mut w = self.inner.lock_writer();
        crate::background::flush(&self.inner, &mut w)?;
        let (current, compact, keep) = {
            let st = self.inner.read_state();
            if rev > 0 && rev < st.compact {
                return Err(MvccError::Compacted { compact_revision: st.compact });
            }
            if rev > st.current {
                return Err(MvccError::FutureRevision);
            }
            let upto = if rev <= 0 { st.current } else { rev };
            // As etcd: what compaction at the hashed revision would keep.
            (st.current, st.compact, st.index.keep(upto))
        };
        let tx = self.inner.db.begin_read()?;
        drop(w);
        let upto = if rev <= 0 { current } else { rev };
        let mut h = crc32fast::Hasher::new();
        h.update(KEY_BUCKET);
        let mut c = tx.cursor(KEY_BUCKET)?;
        let mut it = c.first()?;
        while let Some((k, v)) = it {
            let (r, tomb) = Revision::from_key(k)
                .ok_or_else(|| MvccError::Corrupt(format!("bad revision key {k:?}")))?;
            if r.main > upto {
                break;
            }
            // etcd also requires a non-empty keep set here, which makes its hash depend on
            // physical progress when every key is deleted; we skip compacted revisions always.
            let compacted = r.main <= compact && !keep.contains(&r);
            if !(compacted || (r.main == compact && tomb)) {
                h.update(k);
                h.update(v);
            }
            it = c.next()?;
        }
        Ok(HashKv {
            hash: h.finalize(),
            compact_revision: compact,
            hash_revision: upto,
            revision: current,
        })
    }

    /// Hash of the whole page store's contents, every bucket in order, leaving out the applied
    /// index and term (etcd's Maintenance.Hash).
    pub fn hash(&self) -> Result<u32> {
        let started = Instant::now();
        let r = self.hash_inner();
        self.inner.opts.on_event.tell(StoreEvent::Hash(started.elapsed()));
        r
    }

    fn hash_inner(&self) -> Result<u32> {
        let mut w = self.inner.lock_writer();
        crate::background::flush(&self.inner, &mut w)?;
        let tx = self.inner.db.begin_read()?;
        drop(w);
        let mut h = crc32fast::Hasher::new();
        for b in tx.buckets()? {
            h.update(&b);
            let mut c = tx.cursor(&b)?;
            let mut it = c.first()?;
            while let Some((k, v)) = it {
                if !(b == META_BUCKET && (k == CONSISTENT_INDEX || k == TERM)) {
                    h.update(k);
                    h.update(v);
                }
                it = c.next()?;
            }
        }
        Ok(h.finalize())
    }

    /// Renews a lease (keep-alive): its deadline moves to now + TTL; returns the TTL. Only the
    /// primary (leader) renews.
    pub fn lease_renew(&self, id: LeaseId) -> Result<i64> {
        let ttl = self.inner.lock_lessor().renew(id, Instant::now())?;
        self.inner.ops.leases_renewed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ttl)
    }

    /// Does a renewal of `id` have to clear a checkpointed remaining TTL through raft first
    /// (etcd proposes that, so that every member forgets the checkpoint)?
    pub fn lease_needs_checkpoint_clear(&self, id: LeaseId) -> bool {
        self.inner.lock_lessor().needs_checkpoint_clear(id)
    }

    /// A lease's granted and remaining TTL and keys.
    pub fn lease_time_to_live(&self, id: LeaseId) -> Result<TimeToLive> {
        Ok(self.inner.lock_lessor().time_to_live(id, Instant::now())?)
    }

    /// The keys attached to lease `id`, on any member (`None`: no such lease).
    pub fn lease_keys(&self, id: LeaseId) -> Option<Vec<Vec<u8>>> {
        self.inner.lock_lessor().keys(id)
    }

    /// Ids of every lease, soonest to expire first (etcd's LeaseLeases order).
    pub fn leases(&self) -> Vec<LeaseId> {
        self.inner.lock_lessor().leases_by_deadline()
    }

    /// Does the lease exist?
    pub fn lease_exists(&self, id: LeaseId) -> bool {
        self.inner.lock_lessor().lookup(id).is_some()
    }

    /// Leases past their deadline, at most `limit`: the leader proposes their revocation.
    pub fn expired_leases(&self, limit: usize) -> Vec<LeaseId> {
        self.inner.lock_lessor().expired(Instant::now(), limit)
    }

    /// Checkpoints due (lease, remaining TTL), at most `limit`: the leader proposes them.
    pub fn due_lease_checkpoints(&self, limit: usize) -> Vec<(LeaseId, i64)> {
        self.inner.lock_lessor().due_checkpoints(Instant::now(), limit)
    }

    /// This member became leader: leases start expiring, extended by `extend`.
    pub fn lease_promote(&self, extend: Duration) {
        self.inner.lock_lessor().promote(extend, Instant::now());
    }

    /// This member stopped being leader: leases stop expiring here.
    pub fn lease_demote(&self) {
        self.inner.lock_lessor().demote();
    }
}
