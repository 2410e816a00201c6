//! The catch-up thread of the watch hub: brings unsynced watchers level by reading their
//! events from the store (etcd's syncWatchers loop), 100 ms apart or when woken.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;

use super::error::MvccError;
use super::kv::KeyValue;
use super::store::Inner;
use super::watch::{
    by_revision, Event, WatchResponse, MAX_WATCHERS_PER_SYNC, WATCH_BATCH_MAX_REVS,
};

/// How often unsynced watchers are retried when nothing wakes the thread.
pub const WATCH_RESYNC_PERIOD: Duration = Duration::from_millis(100);

/// Runs until the store closes.
pub(crate) fn run(inner: &Inner) {
    let mut busy = false;
    loop {
        {
            let s = inner.watch.lock();
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            let wait = if busy { Duration::from_millis(10) } else { WATCH_RESYNC_PERIOD };
            if s.unsynced.is_empty() || !busy {
                let _ = inner.watch.wake.wait_timeout(s, wait);
            }
        }
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        busy = match sync_round(inner) {
            Ok(progress) => progress,
            Err(e) => {
                tracing::error!(error = %e, "watch catch-up failed");
                false
            }
        };
    }
}

/// One round over up to [`MAX_WATCHERS_PER_SYNC`] unsynced watchers; true if any moved on.
pub(crate) fn sync_round(inner: &Inner) -> Result<bool, MvccError> {
    let (batch, upto) = {
        let s = inner.watch.lock();
        let batch: Vec<_> =
            s.unsynced.iter().take(MAX_WATCHERS_PER_SYNC).map(|(k, w)| (*k, w.clone())).collect();
        (batch, s.published)
    };
    let mut progress = false;
    for (key, w) in batch {
        let compact = inner.read_state().compact;
        let changes = if w.next_rev < compact {
            Err(MvccError::Compacted { compact_revision: compact })
        } else if w.next_rev > upto {
            Ok(Vec::new())
        } else {
            super::store::changes(inner, &w.opts.key, &w.opts.range_end, w.next_rev, upto, 0)
        };
        let mut s = inner.watch.lock();
        if s.unsynced.get(&key).is_none_or(|cur| cur.next_rev != w.next_rev) {
            continue; // cancelled, or moved on meanwhile
        }
        let changes = match changes {
            Ok(c) => c,
            Err(MvccError::Compacted { compact_revision }) => {
                let resp = WatchResponse {
                    watch_id: w.id,
                    compact_revision,
                    canceled: true,
                    ..Default::default()
                };
                match w.tx.try_send(resp) {
                    Ok(()) | Err(TrySendError::Closed(_)) => {
                        s.unsynced.remove(&key);
                        progress = true;
                    }
                    Err(TrySendError::Full(_)) => {}
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut groups = by_revision(
            changes.into_iter().map(|(kv, deleted)| Event { kv, deleted, prev_kv: None }).collect(),
        );
        let complete = groups.len() <= WATCH_BATCH_MAX_REVS;
        groups.truncate(WATCH_BATCH_MAX_REVS);
        let through = if complete { upto } else { groups.last().map_or(upto, |g| g.0) };
        drop(s);
        let mut events: Vec<Event> = groups.into_iter().flat_map(|(_, v)| v).collect();
        if w.opts.prev_kv {
            for e in &mut events {
                if e.deleted || e.kv.create_revision != e.kv.mod_revision {
                    e.prev_kv = previous(inner, &e.kv);
                }
            }
        }
        let mine = w.select(&events);
        let mut s = inner.watch.lock();
        let Some(cur) = s.unsynced.get_mut(&key) else { continue };
        if cur.next_rev != w.next_rev {
            continue;
        }
        if !mine.is_empty() {
            let resp = WatchResponse {
                watch_id: w.id,
                revision: upto,
                events: mine,
                ..Default::default()
            };
            match cur.tx.try_send(resp) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => continue, // still behind; retried later
                Err(TrySendError::Closed(_)) => {
                    if let Some(w) = s.unsynced.remove(&key) {
                        drop(s);
                        inner.watch_forget(&w);
                    }
                    continue;
                }
            }
        }
        cur.next_rev = through + 1;
        progress = true;
        // Level with everything published: back to the synced group. Anything published
        // since `upto` was not delivered to it, so it stays behind for another round.
        if cur.next_rev > s.published {
            if let Some(w) = s.unsynced.remove(&key) {
                s.synced.insert(key, w);
            }
        }
    }
    Ok(progress)
}

/// The key's value just before `kv`'s revision (None if it did not exist or is compacted).
fn previous(inner: &Inner, kv: &KeyValue) -> Option<KeyValue> {
    super::store::get_at(inner, &kv.key, kv.mod_revision - 1).ok().flatten()
}
