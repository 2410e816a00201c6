//! The store's background work: flushing buffered writes into the page store every batch
//! interval, syncing it now and then, and deleting compacted revisions in bounded batches so
//! that writes interleave with a long compaction.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::counters::StoreEvent;
use crate::error::{MvccError, Result};
use crate::revision::Revision;
use crate::store::{
    CompactJob, Inner, Writer, CONSISTENT_INDEX, FINISHED_COMPACT, KEY_BUCKET, LEASE_BUCKET,
    META_BUCKET, TERM,
};

/// Keys of the index compacted per step (each step holds the index's write lock).
const INDEX_CHUNK: usize = 10_000;

/// Commits every buffered change, the pending meta and lease entries, and the flushed revision
/// in one page-store transaction (no fsync), then drops them from the buffer.
pub(crate) fn flush(inner: &Inner, w: &mut Writer) -> Result<()> {
    let kvs = inner.pending.snapshot();
    if kvs.is_empty() && w.meta.is_empty() {
        w.last_flush = Instant::now();
        return Ok(());
    }
    let current = inner.read_state().current;
    let mut tx = inner.db.begin_write()?;
    let mut last = None;
    for (rev, kv) in &kvs {
        debug_assert!(rev.main <= current, "buffered revisions are applied ones");
        tx.put(KEY_BUCKET, &rev.to_key(kv.tombstone), &kv.bytes)?;
        last = Some(*rev);
    }
    // Taken out only once committed: a failed flush leaves them for the next one.
    for (id, rec) in &w.meta.leases {
        let key = crate::lease::record_key(*id);
        match rec {
            Some(r) => tx.put(LEASE_BUCKET, &key, &r.encode())?,
            None => {
                tx.delete(LEASE_BUCKET, &key)?;
            }
        }
    }
    for (name, value) in &w.meta.meta {
        tx.put(META_BUCKET, name, value)?;
    }
    for (key, value) in &w.meta.entries {
        match value {
            Some(v) => tx.put(META_BUCKET, key, v)?,
            None => {
                tx.delete(META_BUCKET, key)?;
            }
        }
    }
    if let Some(a) = w.meta.applied {
        tx.put(META_BUCKET, CONSISTENT_INDEX, &a.index.to_be_bytes())?;
        tx.put(META_BUCKET, TERM, &a.term.to_be_bytes())?;
    }
    let flushed = last.map_or(tx_flushed(inner)?, |r| r.main);
    tx.set_user([flushed as u64, 0]);
    let started = Instant::now();
    tx.commit_nosync()?;
    if let Some(observe) = &inner.opts.on_commit.0 {
        observe(started.elapsed());
    }
    w.meta.leases.clear();
    w.meta.meta.clear();
    w.meta.entries.clear();
    w.meta.applied = None;
    if let Some(last) = last {
        inner.pending.drop_through(last);
    }
    w.last_flush = Instant::now();
    w.unsynced_flushes += 1;
    Ok(())
}

/// Is a page-store sync due (taken: the counter restarts)? The caller syncs without holding
/// the writer lock, so applies continue into the buffer during the fsync.
fn sync_due(inner: &Inner, w: &mut Writer) -> bool {
    let every = inner.opts.sync_every_flushes;
    if every > 0 && w.unsynced_flushes >= every {
        w.unsynced_flushes = 0;
        return true;
    }
    false
}

/// The flushed revision of the newest commit.
fn tx_flushed(inner: &Inner) -> Result<i64> {
    Ok(inner.db.begin_read()?.user()[0] as i64)
}

/// One step of a compaction job — an index chunk, or one batch of deletions — run without the
/// writer lock (page-store commits serialize on the page store's own lock, and deletions touch
/// only revisions at or below the job's, which no write or flush touches). True when finished.
pub(crate) fn compact_step(inner: &Inner, job: &mut CompactJob) -> Result<bool> {
    if let Some(from) = job.index_next.take() {
        let mut st = inner.state.write().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        job.index_next = st.index.compact_chunk(job.rev, &from, INDEX_CHUNK, &mut job.keep);
        drop(st);
        inner.opts.on_event.tell(StoreEvent::IndexCompaction(started.elapsed()));
        return Ok(false);
    }
    let limit = inner.opts.compaction_batch_limit.max(1);
    let end = Revision::new(job.rev.saturating_add(1), 0).to_key(false);
    let mut doomed = Vec::new();
    let mut next = None;
    {
        let tx = inner.db.begin_read()?;
        let mut c = tx.cursor(KEY_BUCKET)?;
        let mut it = c.seek(&job.next)?;
        while let Some((k, _)) = it {
            if k >= end.as_slice() {
                break;
            }
            let (rev, _) = Revision::from_key(k)
                .ok_or_else(|| MvccError::Corrupt(format!("bad revision key {k:?}")))?;
            if !job.keep.contains(&rev) {
                if doomed.len() == limit {
                    next = Some(k.to_vec());
                    break;
                }
                doomed.push(k.to_vec());
            }
            it = c.next()?;
        }
    }
    let started = Instant::now();
    let mut tx = inner.db.begin_write()?;
    for k in &doomed {
        tx.delete(KEY_BUCKET, k)?;
    }
    if next.is_none() {
        tx.put(META_BUCKET, FINISHED_COMPACT, &(job.rev as u64).to_be_bytes())?;
    }
    tx.commit_nosync()?;
    inner.ops.compacted_keys.fetch_add(doomed.len() as u64, Ordering::Relaxed);
    inner.opts.on_event.tell(StoreEvent::CompactionBatch(started.elapsed()));
    if next.is_none() {
        inner.opts.on_event.tell(StoreEvent::CompactionDone(job.scheduled.elapsed()));
    }
    match next {
        Some(n) => {
            job.next = n;
            Ok(false)
        }
        None => Ok(true),
    }
}

/// Runs one step of the current compaction job with the writer lock released, then puts the
/// job back — unless a newer compaction replaced it meanwhile (the newer one covers it).
fn run_compaction_step<'a>(
    inner: &'a Inner,
    mut w: std::sync::MutexGuard<'a, Writer>,
) -> (std::sync::MutexGuard<'a, Writer>, Result<bool>) {
    let Some(mut job) = w.compaction.take() else { return (w, Ok(true)) };
    drop(w);
    let r = compact_step(inner, &mut job);
    let mut w = inner.lock_writer();
    if w.compaction.is_none() {
        match r {
            Ok(true) => {
                w.finished_compact = w.finished_compact.max(job.rev);
                inner.compacted.notify_all();
            }
            _ => w.compaction = Some(job),
        }
    }
    (w, r)
}

/// The store failed for good: recorded, logged and reported once. The background thread ends
/// (every later flush would fail the same way: the page store is poisoned).
fn fail(inner: &Inner, what: &str, e: MvccError) {
    let why = format!("{what} failed: {e}");
    if inner.failure.set(why.clone()).is_ok() {
        tracing::error!(error = %e, "{what} failed; the store can no longer make writes durable");
        if let Some(report) = &inner.opts.on_failure.0 {
            report(&MvccError::Failed(why));
        }
    }
}

/// The background thread: flush every batch interval, run compaction batches, until closed.
pub(crate) fn run(inner: &Inner) {
    let interval = inner.opts.batch_interval;
    loop {
        let mut w = inner.lock_writer();
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut wait = interval.saturating_sub(w.last_flush.elapsed());
        if wait.is_zero() || inner.pending.len() >= inner.opts.batch_limit {
            if let Err(e) = flush(inner, &mut w) {
                fail(inner, "flushing the mvcc store", e);
                return;
            }
            wait = interval;
            if sync_due(inner, &mut w) {
                drop(w);
                if let Err(e) = inner.db.sync() {
                    fail(inner, "syncing the page store", e.into());
                    return;
                }
                continue;
            }
        }
        if w.compaction.is_some() {
            let (guard, r) = run_compaction_step(inner, w);
            w = guard;
            match r {
                Ok(false) => wait = wait.min(inner.opts.compaction_sleep),
                Ok(true) => {}
                Err(e) => {
                    tracing::error!(error = %e, "compaction batch failed; retrying");
                    wait = wait.min(Duration::from_secs(1));
                }
            }
        }
        let _ = inner.wake.wait_timeout(w, wait.max(Duration::from_millis(1)));
    }
}
