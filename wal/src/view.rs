//! The in-memory view of the log: where each live entry sits, and the latest state records.
//!
//! The same rules apply when records are replayed at recovery and when they are appended live,
//! so both go through [`Span`] (which indexes are live) and [`LogView::apply`].
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use crate::error::{Result, WalError};
use crate::record::{HardState, SnapshotMarker};

/// The range of live entry indexes: `[first, next)`. `first == 0` means the log has never held
/// an entry and accepts any first index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Index of the first live entry (or the next one, when there is none).
    pub first: u64,
    /// One past the last live entry.
    pub next: u64,
}

impl Span {
    /// Last live index (`first - 1` when empty).
    pub fn last(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// Checks an entry with `index` may be appended; returns how many live entries it keeps
    /// (entries at or after `index` are replaced).
    pub fn check_entry(&self, index: u64) -> Result<u64> {
        if index == 0 {
            return Err(self.gap(index));
        }
        if self.first == 0 {
            return Ok(0);
        }
        if index < self.first || index > self.next {
            return Err(self.gap(index));
        }
        Ok(index - self.first)
    }

    /// Applies an entry already checked by [`Span::check_entry`].
    pub fn push_entry(&mut self, index: u64) {
        if self.first == 0 {
            self.first = index;
        }
        self.next = index + 1;
    }

    /// Checks a truncation after `after`; returns how many live entries stay.
    pub fn check_truncate(&self, after: u64) -> Result<u64> {
        if self.first == 0 {
            return Ok(0);
        }
        if after + 1 < self.first {
            return Err(WalError::Compacted(after));
        }
        Ok(after.min(self.last()) + 1 - self.first)
    }

    /// Applies a truncation already checked.
    pub fn truncate(&mut self, after: u64) {
        if self.first != 0 && after < self.last() {
            self.next = after + 1;
        }
    }

    /// Applies a snapshot marker: the entries it covers are no longer live (raft compacted
    /// them; their frames stay in their segment until it is released). When it covers every
    /// live entry, the log restarts after it. Returns how many live entries were dropped from
    /// the front.
    pub fn snapshot(&mut self, index: u64) -> u64 {
        let live = self.next - self.first;
        if index >= self.last() {
            self.first = index + 1;
            self.next = index + 1;
            live
        } else if self.first != 0 && index >= self.first {
            let dropped = index + 1 - self.first;
            self.first = index + 1;
            dropped
        } else {
            0
        }
    }

    fn gap(&self, index: u64) -> WalError {
        WalError::IndexGap { index, first: self.first, last: self.last() }
    }
}

/// Locations kept allocated however few entries are live.
const MIN_LOCS: usize = 1024;

/// Where one live entry's frame sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// The entry's term (kept in memory: raft asks for terms often).
    pub term: u64,
    /// Segment sequence number.
    pub seg: u64,
    /// Offset of the frame within the segment.
    pub off: u64,
    /// Length of the whole frame.
    pub len: u32,
}

/// A change to the view, produced when a record is encoded (live) or decoded (recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// An entry was written at `loc`.
    Entry {
        /// Its index.
        index: u64,
        /// Its location.
        loc: Loc,
    },
    /// A hard state.
    HardState(HardState),
    /// A snapshot marker.
    Snapshot(SnapshotMarker),
    /// A restated snapshot marker (entries untouched).
    SnapshotState(SnapshotMarker),
    /// Metadata.
    Metadata(Vec<u8>),
    /// A truncation.
    Truncate {
        /// The last index kept.
        after: u64,
    },
}

/// The published view of the log.
#[derive(Debug, Default, Clone)]
pub struct LogView {
    /// Live index range.
    pub span: Span,
    /// Location of each live entry, `locs[i]` for index `span.first + i`.
    pub locs: VecDeque<Loc>,
    /// Latest hard state.
    pub hard_state: Option<HardState>,
    /// Latest snapshot marker.
    pub snapshot: Option<SnapshotMarker>,
    /// Latest metadata.
    pub metadata: Option<Vec<u8>>,
    /// Set while replaying the oldest surviving segment: what preceded it was released, so an
    /// entry or truncation below the first live index (a conflict that rewrote released
    /// entries), or an entry past an empty live range, restarts the live range instead of
    /// being a gap.
    pub floating: bool,
}

impl LogView {
    /// Applies one op. Fails (without changing anything) when an entry or truncation does not
    /// fit the live range, which at recovery means the log is corrupt.
    pub fn apply(&mut self, op: Op) -> Result<()> {
        match op {
            Op::Entry { index, loc } => {
                // Released entries may also end above a snapshot marker that emptied the
                // live range: the first entry after it then starts the range.
                let empty = self.span.first == self.span.next;
                if self.floating
                    && index != 0
                    && (index < self.span.first || (empty && index > self.span.next))
                {
                    self.locs.clear();
                    self.span = Span { first: index, next: index };
                }
                let keep = self.span.check_entry(index)?;
                self.locs.truncate(keep as usize);
                self.span.push_entry(index);
                self.locs.push_back(loc);
            }
            Op::Truncate { after } => {
                if self.floating && after + 1 < self.span.first {
                    self.locs.clear();
                    self.span = Span { first: after + 1, next: after + 1 };
                }
                let keep = self.span.check_truncate(after)?;
                self.locs.truncate(keep as usize);
                self.span.truncate(after);
            }
            Op::HardState(hs) => self.hard_state = Some(hs),
            Op::Snapshot(s) => {
                let dropped = self.span.snapshot(s.index) as usize;
                self.locs.drain(..dropped.min(self.locs.len()));
                // Memory follows the live entries, not the longest run between compactions.
                if self.locs.capacity() > 4 * self.locs.len() + MIN_LOCS {
                    self.locs.shrink_to(2 * self.locs.len() + MIN_LOCS);
                }
                self.snapshot = Some(s);
            }
            Op::SnapshotState(s) => self.snapshot = Some(s),
            Op::Metadata(m) => self.metadata = Some(m),
        }
        debug_assert_eq!(
            self.span.next - self.span.first,
            self.locs.len() as u64,
            "span and locations agree"
        );
        Ok(())
    }

    /// Drops the locations of every entry with index ≤ `upto` whose segment sequence is below
    /// `min_seg` (the entries of released segments).
    pub fn release(&mut self, min_seg: u64) {
        while let Some(l) = self.locs.front() {
            if l.seg >= min_seg {
                break;
            }
            self.locs.pop_front();
            self.span.first += 1;
        }
    }

    /// Ends a replay: a log whose entries were all released or covered by its latest snapshot
    /// restarts right after the snapshot.
    pub fn finish_replay(&mut self) {
        if let (0, Some(s)) = (self.span.first, &self.snapshot) {
            self.span = Span { first: s.index + 1, next: s.index + 1 };
        }
    }

    /// The location of entry `index`, if live.
    pub fn loc(&self, index: u64) -> Option<Loc> {
        if index < self.span.first {
            return None;
        }
        self.locs.get((index - self.span.first) as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(term: u64) -> Loc {
        Loc { term, seg: 0, off: 0, len: 0 }
    }

    #[test]
    fn entries_truncate_and_snapshot() {
        let mut v = LogView::default();
        v.apply(Op::Entry { index: 5, loc: loc(1) }).unwrap();
        v.apply(Op::Entry { index: 6, loc: loc(1) }).unwrap();
        v.apply(Op::Entry { index: 7, loc: loc(1) }).unwrap();
        assert!(v.apply(Op::Entry { index: 9, loc: loc(1) }).is_err());
        assert!(v.apply(Op::Entry { index: 4, loc: loc(1) }).is_err());
        // Overwrite from 6 on (raft conflict).
        v.apply(Op::Entry { index: 6, loc: loc(2) }).unwrap();
        assert_eq!(v.span, Span { first: 5, next: 7 });
        assert_eq!(v.loc(6).unwrap().term, 2);
        v.apply(Op::Truncate { after: 5 }).unwrap();
        assert_eq!(v.span, Span { first: 5, next: 6 });
        assert!(v.apply(Op::Truncate { after: 2 }).is_err());
        v.apply(Op::Snapshot(SnapshotMarker { index: 10, term: 3, conf_state: vec![] })).unwrap();
        assert_eq!(v.span, Span { first: 11, next: 11 });
        assert!(v.locs.is_empty());
        v.apply(Op::Entry { index: 11, loc: loc(3) }).unwrap();
        assert_eq!(v.span.last(), 11);
        // A marker inside the live range drops the entries it covers, and only those.
        for i in 12..=20 {
            v.apply(Op::Entry { index: i, loc: loc(i) }).unwrap();
        }
        v.apply(Op::Snapshot(SnapshotMarker { index: 15, term: 3, conf_state: vec![] })).unwrap();
        assert_eq!(v.span, Span { first: 16, next: 21 });
        assert_eq!(v.loc(16).unwrap().term, 16);
        assert_eq!(v.loc(15), None);
        assert!(v.apply(Op::Entry { index: 15, loc: loc(4) }).is_err(), "below the marker");
        // An older marker changes nothing.
        v.apply(Op::Snapshot(SnapshotMarker { index: 12, term: 3, conf_state: vec![] })).unwrap();
        assert_eq!(v.span, Span { first: 16, next: 21 });
        assert_eq!(v.locs.len(), 5);
    }
}
