//! Raft's log storage on the WAL: raft-rs's [`Storage`] trait over [`rusted_wal::Wal`], with an
//! in-memory tail.
//!
//! raft-rs asks for entries it handed out in a `Ready` before they are durable (the async-ready
//! flow), and a leader reads its recent tail constantly to feed followers. So every appended
//! entry goes into an in-memory tail (`cache`) at once and into the WAL's write group; the tail
//! is trimmed only below what is durable, and older entries are read back from the WAL.
//!
//! The WAL's payload for an entry is the rust-protobuf encoding of raft's `Entry` (its index and
//! term are also the WAL record's). A snapshot marker `(index, term)` in the WAL says the log
//! is compacted up to `index`: [`LogStore::first_index`] is `index + 1` and `term(index)` is
//! answered from the marker, whatever older entries the WAL still holds in unreleased segments.
//!
//! A hard state that differs from the last one written only in its commit index is not written
//! on its own (etcd's raft asks for a sync only when entries, term or vote change): it is kept in
//! memory and goes out with the next entries or the next snapshot marker. A stale commit index
//! on disk loses nothing — a restarted member learns it again from the leader, and the state
//! machine skips what it has already applied — but a write and an fsync per commit advance would
//! double a leader's WAL writes under load. One rule keeps restarts possible: raft refuses a
//! commit index below the log's first index − 1, so a marker is always written together with
//! the current hard state, and `open` raises an older stored commit index to the marker.
//!
//! Invariants: `cache` is contiguous and ends at `last`; every entry in `(snap.index, last]` is
//! in the cache or in the WAL; the cache never drops an entry that is not durable.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use rusted_wal::{Durable, Record, Wal};

use crate::error::{ReplicationError, Result};

/// Entries kept in memory once durable (a leader's followers read from here).
pub const CACHE_ENTRIES: usize = 16 * 1024;

/// The snapshot a leader can send, as the state machine last wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotAvail {
    /// Index and term the snapshot file is consistent with.
    pub index: u64,
    /// Term of `index`.
    pub term: u64,
    /// Membership at `index`.
    pub conf_state: ConfState,
}

#[derive(Debug, Default)]
struct State {
    hs: HardState,
    /// `hs` has a commit index the WAL does not have yet (term and vote are written).
    hs_dirty: bool,
    cs: ConfState,
    snap_index: u64,
    snap_term: u64,
    last: u64,
    cache: VecDeque<Entry>,
    persisted: u64,
    avail: Option<SnapshotAvail>,
    /// Raft asked for a snapshot at or above this index and none was available.
    wanted: Option<u64>,
}

impl State {
    fn cache_first(&self) -> u64 {
        self.cache.front().map_or(self.last + 1, Entry::get_index)
    }
}

/// Raft log storage: a cheap handle (clones share state).
#[derive(Debug, Clone)]
pub struct LogStore {
    wal: Arc<Wal>,
    state: Arc<Mutex<State>>,
}

fn storage_err(e: ReplicationError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl LogStore {
    /// Opens over a recovered WAL; `cs` is the membership as of the state machine's applied
    /// index (the state machine keeps it, atomically with that index).
    pub fn open(wal: Arc<Wal>, cs: ConfState) -> Result<LogStore> {
        let mut st = State { cs, ..State::default() };
        if let Some(h) = wal.hard_state() {
            st.hs.term = h.term;
            st.hs.vote = h.vote;
            st.hs.commit = h.commit;
        }
        if let Some(m) = wal.snapshot() {
            st.snap_index = m.index;
            st.snap_term = m.term;
        }
        st.last = wal.last_index().max(st.snap_index);
        st.persisted = st.last;
        // Markers are written only at committed indexes, so a lower stored commit index is one
        // that was kept back (see the module doc): raise it, as raft requires.
        st.hs.commit = st.hs.commit.max(st.snap_index);
        if st.hs.commit > st.last {
            // The commit index was persisted ahead of entries only if the log was damaged.
            return Err(ReplicationError::Corrupt {
                what: "raft log",
                detail: format!("hard state commit {} beyond last entry {}", st.hs.commit, st.last),
            });
        }
        Ok(LogStore { wal, state: Arc::new(Mutex::new(st)) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The WAL under this store.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// Appends a Ready's entries (taken, so the tail keeps them without a copy) and hard state:
    /// visible to raft at once, durable when the returned handle completes.
    pub fn append(&self, entries: Vec<Entry>, hs: Option<&HardState>) -> Result<Option<Durable>> {
        self.append_with(entries, hs, false)
    }

    /// As [`LogStore::append`], but the WAL group is written and synced on the calling thread
    /// before this returns (no hand-off to the WAL's writer thread and back): for a member
    /// that can only wait for the sync anyway.
    pub fn append_inline(
        &self,
        entries: Vec<Entry>,
        hs: Option<&HardState>,
    ) -> Result<Option<Durable>> {
        self.append_with(entries, hs, true)
    }

    fn append_with(
        &self,
        entries: Vec<Entry>,
        hs: Option<&HardState>,
        inline: bool,
    ) -> Result<Option<Durable>> {
        if entries.is_empty() && hs.is_none() {
            return Ok(None);
        }
        if entries.is_empty() {
            let mut st = self.lock();
            if let Some(h) = hs.filter(|h| h.term == st.hs.term && h.vote == st.hs.vote) {
                // Commit index only: nothing to make durable now (see the module doc).
                st.hs = h.clone();
                st.hs_dirty = true;
                return Ok(None);
            }
        }
        let mut bufs = Vec::with_capacity(entries.len());
        for e in &entries {
            let b = e.write_to_bytes().map_err(|e| ReplicationError::Corrupt {
                what: "raft entry",
                detail: e.to_string(),
            })?;
            bufs.push(b);
        }
        let mut recs: Vec<Record<'_>> = entries
            .iter()
            .zip(&bufs)
            .map(|(e, b)| Record::Entry { index: e.index, term: e.term, data: b })
            .collect();
        let mut st = self.lock();
        // A newer commit index kept back earlier rides along with these entries.
        let h = hs.or(st.hs_dirty.then_some(&st.hs));
        if let Some(h) = h {
            recs.push(Record::HardState(rusted_wal::HardState {
                term: h.term,
                vote: h.vote,
                commit: h.commit,
            }));
        }
        let durable =
            if inline { self.wal.append_deferred(&recs)? } else { self.wal.append(&recs)? };
        st.hs_dirty = false;
        let last_new = entries.last().map(Entry::get_index);
        if let Some(first) = entries.first() {
            let at = first.index;
            debug_assert!(at <= st.last + 1 && at > st.snap_index, "raft appends contiguously");
            // A conflicting suffix is replaced: drop it from the tail (the WAL does the same).
            let cf = st.cache_first();
            if at < cf {
                st.cache.clear();
            } else {
                let keep = (at - cf) as usize;
                st.cache.truncate(keep);
            }
            st.persisted = st.persisted.min(at - 1);
            st.cache.extend(entries);
            st.last = last_new.unwrap_or(st.last);
        }
        if let Some(h) = hs {
            st.hs = h.clone();
        }
        drop(st);
        if inline {
            // Not under the store's lock: the sync takes a while.
            self.wal.write_pending()?;
        }
        Ok(Some(durable))
    }

    /// Everything up to `index` is durable: the tail may now be trimmed below it.
    pub fn persisted_to(&self, index: u64) {
        let mut st = self.lock();
        st.persisted = st.persisted.max(index.min(st.last));
        while st.cache.len() > CACHE_ENTRIES
            && st.cache.front().is_some_and(|e| e.index <= st.persisted)
        {
            st.cache.pop_front();
        }
    }

    /// Installs a received snapshot's metadata: the log restarts after it.
    pub fn apply_snapshot(
        &self,
        meta: &SnapshotMetadata,
        hs: Option<&HardState>,
    ) -> Result<Durable> {
        let cs = meta
            .get_conf_state()
            .write_to_bytes()
            .map_err(|e| ReplicationError::Corrupt { what: "conf state", detail: e.to_string() })?;
        let mut st = self.lock();
        let mut recs =
            vec![Record::Snapshot { index: meta.index, term: meta.term, conf_state: &cs }];
        if meta.index < self.wal.last_index() {
            recs.push(Record::Truncate { after: meta.index });
        }
        // The hard state always goes with the marker, its commit at least the snapshot's index
        // (raft refuses to start with a commit index below the log's first index − 1).
        let mut h = hs.cloned().unwrap_or_else(|| st.hs.clone());
        h.commit = h.commit.max(meta.index);
        recs.push(Record::HardState(rusted_wal::HardState {
            term: h.term,
            vote: h.vote,
            commit: h.commit,
        }));
        let d = self.wal.append(&recs)?;
        st.hs = h;
        st.hs_dirty = false;
        st.snap_index = meta.index;
        st.snap_term = meta.term;
        st.cs = meta.get_conf_state().clone();
        st.cache.clear();
        st.last = meta.index;
        st.persisted = meta.index;
        Ok(d)
    }

    /// Compacts the log up to `index` (which the state machine has made durable): writes the
    /// marker; the caller releases WAL segments once it is durable.
    pub fn compact(&self, index: u64) -> Result<Option<Durable>> {
        let mut st = self.lock();
        if index <= st.snap_index || index > st.persisted {
            return Ok(None);
        }
        let term =
            self.term_locked(&st, index).map_err(|e| ReplicationError::Raft(e.to_string()))?;
        let cs = st
            .cs
            .write_to_bytes()
            .map_err(|e| ReplicationError::Corrupt { what: "conf state", detail: e.to_string() })?;
        // A commit index kept back (see the module doc) goes with the marker: the WAL must
        // never hold a marker above its last commit index, or raft refuses to restart.
        debug_assert!(st.hs.commit >= index, "compaction below the commit index");
        let mut recs = vec![Record::Snapshot { index, term, conf_state: &cs }];
        if st.hs_dirty {
            recs.push(Record::HardState(rusted_wal::HardState {
                term: st.hs.term,
                vote: st.hs.vote,
                commit: st.hs.commit,
            }));
        }
        let d = self.wal.append(&recs)?;
        st.hs_dirty = false;
        st.snap_index = index;
        st.snap_term = term;
        while st.cache.front().is_some_and(|e| e.index <= index) {
            st.cache.pop_front();
        }
        Ok(Some(d))
    }

    /// Records the membership after an applied conf change.
    pub fn set_conf_state(&self, cs: ConfState) {
        self.lock().cs = cs;
    }

    /// Offers a snapshot the state machine wrote to raft (for followers that need one).
    pub fn set_snapshot_avail(&self, s: SnapshotAvail) {
        let mut st = self.lock();
        if st.wanted.is_some_and(|w| s.index >= w) {
            st.wanted = None;
        }
        st.avail = Some(s);
    }

    /// Whether raft asked for a snapshot that is not there yet (and clears the request).
    pub fn take_snapshot_request(&self) -> Option<u64> {
        self.lock().wanted.take()
    }

    /// Compacted-to index and term.
    pub fn snapshot_index(&self) -> (u64, u64) {
        let st = self.lock();
        (st.snap_index, st.snap_term)
    }

    /// The hard state as last appended.
    pub fn hard_state(&self) -> HardState {
        self.lock().hs.clone()
    }

    /// Last index appended.
    pub fn last(&self) -> u64 {
        self.lock().last
    }

    fn term_locked(&self, st: &State, idx: u64) -> raft::Result<u64> {
        if idx == st.snap_index {
            return Ok(st.snap_term);
        }
        if idx < st.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > st.last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let cf = st.cache_first();
        if idx >= cf {
            return Ok(st.cache[(idx - cf) as usize].term);
        }
        self.wal.term(idx).map_err(|e| storage_err(e.into()))
    }

    fn decode(e: &rusted_wal::Entry) -> raft::Result<Entry> {
        let mut out = Entry::default();
        out.merge_from_bytes(&e.data).map_err(|err| {
            storage_err(ReplicationError::Corrupt {
                what: "raft entry",
                detail: format!("index {}: {err}", e.index),
            })
        })?;
        if out.index != e.index || out.term != e.term {
            return Err(storage_err(ReplicationError::Corrupt {
                what: "raft entry",
                detail: format!("index {} holds entry {}/{}", e.index, out.index, out.term),
            }));
        }
        Ok(out)
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let st = self.lock();
        Ok(RaftState::new(st.hs.clone(), st.cs.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max = max_size.into().unwrap_or(u64::MAX);
        let st = self.lock();
        if low <= st.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > st.last + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::new();
        let cf = st.cache_first();
        let mut size = 0u64;
        if low < cf {
            // Read outside the lock would race a truncation; reads from the WAL are rare.
            let hi = high.min(cf);
            for e in self.wal.entries(low, hi, max).map_err(|e| storage_err(e.into()))? {
                let e = Self::decode(&e)?;
                size += e.compute_size() as u64;
                out.push(e);
                if size > max {
                    return Ok(out);
                }
            }
            if (out.len() as u64) < hi - low {
                return Ok(out);
            }
        }
        let from = low.max(cf);
        for i in from..high {
            let e = &st.cache[(i - cf) as usize];
            let n = e.compute_size() as u64;
            if !out.is_empty() && size + n > max {
                break;
            }
            size += n;
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let st = self.lock();
        self.term_locked(&st, idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.lock().snap_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.lock().last)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut st = self.lock();
        // A snapshot from before `to` joined would be refused by it (it is not in the
        // snapshot's membership): one made after the join is needed.
        let includes = |cs: &ConfState| {
            [&cs.voters, &cs.learners, &cs.voters_outgoing, &cs.learners_next]
                .iter()
                .any(|ids| ids.contains(&to))
        };
        match &st.avail {
            Some(a)
                if a.index >= request_index
                    && a.index >= st.snap_index
                    && includes(&a.conf_state) =>
            {
                let mut s = Snapshot::default();
                let m = s.mut_metadata();
                m.index = a.index;
                m.term = a.term;
                m.set_conf_state(a.conf_state.clone());
                Ok(s)
            }
            _ => {
                let newer_than = st.avail.as_ref().map_or(0, |a| a.index + 1);
                st.wanted = Some(request_index.max(st.snap_index).max(newer_than));
                Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::{Config, RawNode, Storage};
    use rusted_wal::{Prealloc, WalOptions};

    fn opts() -> WalOptions {
        WalOptions { segment_size: 1 << 20, prealloc: Prealloc::Fallocate, ..WalOptions::default() }
    }

    fn entries(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
        (lo..=hi)
            .map(|i| Entry { index: i, term, data: vec![7; 8].into(), ..Default::default() })
            .collect()
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState { term, commit, ..Default::default() }
    }

    fn voters() -> ConfState {
        ConfState { voters: vec![1], ..Default::default() }
    }

    /// A fresh log holding entries 1..=n of term 1, written with commit 0 and durable.
    fn store_with(n: u64) -> (tempfile::TempDir, LogStore) {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
        let store = LogStore::open(Arc::new(wal), voters()).unwrap();
        store.append(entries(1, n, 1), Some(&hs(1, 0))).unwrap().unwrap().wait().unwrap();
        (dir, store)
    }

    /// raft-rs's own check at start: the stored commit index may not be below first index − 1.
    fn raft_accepts(store: LogStore) {
        let cfg = Config { id: 1, ..Config::default() };
        let logger = crate::logger::raft_logger(1);
        let node = RawNode::new(&cfg, store, &logger);
        assert!(node.is_ok(), "raft refused the restarted log");
    }

    #[test]
    fn commit_only_hard_states_are_kept_back_and_written_with_the_next_entries() {
        let (dir, store) = store_with(10);
        // Only the commit index moved: nothing to write.
        assert!(store.append(Vec::new(), Some(&hs(1, 10))).unwrap().is_none());
        assert_eq!(store.hard_state().commit, 10);
        // A term change is written on its own.
        assert!(store.append(Vec::new(), Some(&hs(2, 10))).unwrap().is_some());
        assert!(store.append(Vec::new(), Some(&hs(2, 10))).is_ok());
        store.wal().close().unwrap();
        let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
        assert_eq!(wal.hard_state().map(|h| (h.term, h.commit)), Some((2, 10)));
    }

    #[test]
    fn a_marker_above_the_written_commit_index_still_restarts() {
        // Entries 1..=100 written with commit 0; the commit moves to 100 in memory only; the
        // state machine syncs and the log is compacted at 50; the member restarts.
        let (dir, store) = store_with(100);
        assert!(store.append(Vec::new(), Some(&hs(1, 100))).unwrap().is_none());
        store.persisted_to(100);
        store.compact(50).unwrap().unwrap().wait().unwrap();
        store.wal().close().unwrap();
        let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
        let store = LogStore::open(Arc::new(wal), voters()).unwrap();
        assert_eq!(store.first_index().unwrap(), 51);
        assert_eq!(store.hard_state().commit, 100, "the kept-back commit went with the marker");
        raft_accepts(store);
    }

    #[test]
    fn open_raises_a_stored_commit_index_below_the_marker() {
        // A WAL written before markers carried the hard state: marker at 50, commit 0.
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
        let cs = voters().write_to_bytes().unwrap();
        let es = entries(1, 60, 1);
        let bufs: Vec<Vec<u8>> = es.iter().map(|e| e.write_to_bytes().unwrap()).collect();
        let mut recs: Vec<Record<'_>> =
            vec![Record::HardState(rusted_wal::HardState { term: 1, vote: 0, commit: 0 })];
        for (e, b) in es.iter().zip(&bufs) {
            recs.push(Record::Entry { index: e.index, term: e.term, data: b });
        }
        recs.push(Record::Snapshot { index: 50, term: 1, conf_state: &cs });
        wal.append_sync(&recs).unwrap();
        wal.close().unwrap();
        let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
        let store = LogStore::open(Arc::new(wal), voters()).unwrap();
        assert_eq!(store.hard_state().commit, 50);
        raft_accepts(store);
    }
}
