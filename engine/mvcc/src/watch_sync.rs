//! The catch-up thread of the watch hub: brings unsynced watchers level by reading their
//! events from the store (etcd's syncWatchers loop), 100 ms apart or when woken.
//!
//! Each round takes up to [`MAX_WATCHERS_PER_SYNC`] unsynced watchers, starting after the last
//! one served (so a stalled client cannot starve the others), and reads at most
//! [`WATCH_BATCH_MAX_REVS`] revisions of history per watcher, only for a watcher whose stream
//! has room (a stopped reader costs nothing but a check). A watcher whose history reaches
//! the published revision is handed back to the synced group under the writer lock, after
//! delivering whatever was published while its history was read: no write can slip between.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;

use crate::error::{MvccError, Result};
use crate::kv::KeyValue;
use crate::store::Inner;
use crate::watch::{Event, WatchResponse, Watcher, MAX_WATCHERS_PER_SYNC, WATCH_BATCH_MAX_REVS};

/// How often unsynced watchers are retried when nothing wakes the thread.
pub const WATCH_RESYNC_PERIOD: Duration = Duration::from_millis(100);
/// Pause between rounds that made progress (etcd retries victims every 10 ms).
const BUSY_PAUSE: Duration = Duration::from_millis(2);

type Key = (u64, i64);

/// Runs until the store closes.
pub(crate) fn run(inner: &Inner) {
    let mut busy = false;
    let mut cursor: Option<Key> = None;
    loop {
        {
            let s = inner.watch.lock();
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            let wait = if busy { BUSY_PAUSE } else { WATCH_RESYNC_PERIOD };
            let _ = inner.watch.wake.wait_timeout(s, wait);
        }
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        busy = sync_round(inner, &mut cursor);
    }
}

/// The watchers of one round, starting after `cursor` and wrapping around.
fn choose(inner: &Inner, cursor: &mut Option<Key>) -> Vec<(Key, Watcher)> {
    let s = inner.watch.lock();
    let after = |k: &Key| cursor.is_none_or(|c| *k > c);
    let mut batch: Vec<(Key, Watcher)> = s
        .unsynced
        .iter()
        .filter(|(k, _)| after(k))
        .chain(s.unsynced.iter().filter(|(k, _)| !after(k)))
        .take(MAX_WATCHERS_PER_SYNC)
        .map(|(k, w)| (*k, w.clone()))
        .collect();
    *cursor = batch.last().map(|(k, _)| *k);
    batch.dedup_by_key(|(k, _)| *k);
    batch
}

/// One round; true if any watcher moved on.
pub(crate) fn sync_round(inner: &Inner, cursor: &mut Option<Key>) -> bool {
    let mut progress = false;
    for (key, w) in choose(inner, cursor) {
        match sync_one(inner, key, &w) {
            Ok(p) => progress |= p,
            Err(e) => tracing::error!(watch_id = w.id, error = %e, "watch catch-up failed"),
        }
    }
    progress
}

/// Is `w` (by serial) still unsynced at revision `next_rev`?
fn current(inner: &Inner, key: Key, w: &Watcher) -> bool {
    inner
        .watch
        .lock()
        .unsynced
        .get(&key)
        .is_some_and(|cur| cur.serial == w.serial && cur.next_rev == w.next_rev)
}

/// History of `w` in `[from, to]`, at most `max_revs` revisions, shaped for it; and the last
/// revision covered.
fn history(
    inner: &Inner,
    w: &Watcher,
    from: i64,
    to: i64,
    max_revs: usize,
) -> Result<(Vec<Event>, i64)> {
    if from > to {
        return Ok((Vec::new(), to));
    }
    inner.watch.read_history();
    let changes = crate::store::changes(inner, &w.opts.key, &w.opts.range_end, from, to, max_revs)?;
    let mut revs: Vec<i64> = changes.iter().map(|(kv, _)| kv.mod_revision).collect();
    revs.dedup();
    let through = if max_revs > 0 && revs.len() >= max_revs { revs[revs.len() - 1] } else { to };
    let mut events: Vec<Event> =
        changes.into_iter().map(|(kv, deleted)| Event { kv, deleted, prev_kv: None }).collect();
    if w.opts.prev_kv {
        for e in &mut events {
            if e.deleted || e.kv.create_revision != e.kv.mod_revision {
                e.prev_kv = previous(inner, &e.kv);
            }
        }
    }
    Ok((w.select(&events), through))
}

/// Sends `events` (if any) to `w`; Ok(false) when its stream is full, Err(()) when gone.
fn send(
    inner: &Inner,
    w: &Watcher,
    revision: i64,
    events: Vec<Event>,
) -> std::result::Result<bool, ()> {
    if events.is_empty() {
        return Ok(true);
    }
    let n = events.len();
    let resp = WatchResponse { watch_id: w.id, revision, events, ..Default::default() };
    match w.tx.try_send(resp) {
        Ok(()) => {
            inner.watch.sent(n);
            Ok(true)
        }
        Err(TrySendError::Full(_)) => Ok(false),
        Err(TrySendError::Closed(_)) => Err(()),
    }
}

fn drop_watcher(inner: &Inner, key: Key) {
    let w = inner.watch.lock().unsynced.remove(&key);
    if let Some(w) = w {
        inner.watch_forget(&w);
    }
}

fn sync_one(inner: &Inner, key: Key, w: &Watcher) -> Result<bool> {
    let upto = inner.watch.lock().published;
    let compact = inner.read_state().compact;
    if w.next_rev < compact {
        let resp = WatchResponse {
            watch_id: w.id,
            compact_revision: compact,
            canceled: true,
            ..Default::default()
        };
        if current(inner, key, w) {
            match w.tx.try_send(resp) {
                Ok(()) | Err(TrySendError::Closed(_)) => drop_watcher(inner, key),
                Err(TrySendError::Full(_)) => return Ok(false),
            }
        }
        return Ok(true);
    }
    // Room in its stream first: a client that stopped reading costs no history read per
    // round (etcd keeps such watchers as victims and retries only the send).
    let permit = match w.tx.try_reserve() {
        Ok(p) => p,
        Err(TrySendError::Full(())) => return Ok(false),
        Err(TrySendError::Closed(())) => {
            drop_watcher(inner, key);
            return Ok(true);
        }
    };
    let (events, through) = match history(inner, w, w.next_rev, upto, WATCH_BATCH_MAX_REVS) {
        Ok(x) => x,
        Err(MvccError::Compacted { .. }) => return Ok(false), // answered next round
        Err(e) => return Err(e),
    };
    if !current(inner, key, w) {
        return Ok(false);
    }
    if !events.is_empty() {
        let n = events.len();
        permit.send(WatchResponse { watch_id: w.id, revision: upto, events, ..Default::default() });
        inner.watch.sent(n);
    }
    let next = through + 1;
    {
        let mut s = inner.watch.lock();
        let Some(cur) = s.unsynced.get_mut(&key) else { return Ok(true) };
        if cur.serial != w.serial {
            return Ok(true);
        }
        cur.next_rev = next;
    }
    if through < upto {
        return Ok(true); // more history next round
    }
    // Level with `upto`. Hand over under the writer lock: nothing is published meanwhile, so
    // delivering what came after `upto` and joining the synced group is one step.
    let _writer = inner.lock_writer();
    let published = inner.watch.lock().published;
    let moved = Watcher { next_rev: next, ..w.clone() };
    let (tail, _) = history(inner, &moved, next, published, 0)?;
    match send(inner, &moved, published, tail) {
        Ok(true) => {}
        Ok(false) => return Ok(true), // stays unsynced at `next`
        Err(()) => {
            drop_watcher(inner, key);
            return Ok(true);
        }
    }
    let mut s = inner.watch.lock();
    if let Some(mut cur) = s.unsynced.remove(&key) {
        if cur.serial == w.serial {
            cur.next_rev = published + 1;
            s.synced.insert(key, cur);
        } else {
            s.unsynced.insert(key, cur);
        }
    }
    Ok(true)
}

/// The key's value just before `kv`'s revision (None if it did not exist or is compacted).
fn previous(inner: &Inner, kv: &KeyValue) -> Option<KeyValue> {
    crate::store::get_at(inner, &kv.key, kv.mod_revision - 1).ok().flatten()
}
