//! The records the raft layer writes, and their payload encodings.
//!
//! Payload layouts (little-endian), each inside one frame (see [`crate::frame`]):
//!
//! | type          | offset | size | field                      |
//! |---------------|--------|------|----------------------------|
//! | 1 Entry       | 0      | 8    | index                      |
//! |               | 8      | 8    | term                       |
//! |               | 16     | n    | data (opaque)              |
//! | 2 HardState   | 0      | 8    | term                       |
//! |               | 8      | 8    | vote                       |
//! |               | 16     | 8    | commit                     |
//! | 3 Snapshot    | 0      | 8    | index                      |
//! |               | 8      | 8    | term                       |
//! |               | 16     | n    | conf state (opaque bytes)  |
//! | 4 Metadata    | 0      | n    | opaque bytes               |
//! | 5 Truncate    | 0      | 8    | drop every entry after this index |
//! | 6 SnapshotState | 0    | 16+n | as Snapshot; restated at a segment start, entries untouched |
#![forbid(unsafe_code)]

use crate::frame::{encode_frame, frame_len, RecordType};

/// Largest entry, snapshot or truncation index the log accepts (written or read): keeps every
/// `index + 1` in range whatever the bytes on disk say.
pub const MAX_INDEX: u64 = u64::MAX / 2;

/// A raft log entry as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Raft index (≥ 1).
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// Opaque payload.
    pub data: Vec<u8>,
}

/// Raft's persistent hard state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Vote in the current term (0: none).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

/// Marks that a snapshot at `index`/`term` was taken or installed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMarker {
    /// Index of the last entry the snapshot covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The membership at that point (opaque to the WAL).
    pub conf_state: Vec<u8>,
}

/// A record handed to [`crate::Wal::append`], borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A log entry. Its index must be at most one past the last, and not below the first.
    Entry {
        /// Raft index.
        index: u64,
        /// Raft term.
        term: u64,
        /// Payload.
        data: &'a [u8],
    },
    /// A new hard state.
    HardState(HardState),
    /// A snapshot marker.
    Snapshot {
        /// Snapshot index.
        index: u64,
        /// Snapshot term.
        term: u64,
        /// Conf state bytes.
        conf_state: &'a [u8],
    },
    /// Opaque metadata; the latest one wins.
    Metadata(&'a [u8]),
    /// Drops every entry after `after` (raft log conflict).
    Truncate {
        /// The last index kept.
        after: u64,
    },
    /// Records the latest snapshot marker without touching the entries (what a new segment
    /// starts with, so released segments do not take the marker with them).
    SnapshotState {
        /// Snapshot index.
        index: u64,
        /// Snapshot term.
        term: u64,
        /// Conf state bytes.
        conf_state: &'a [u8],
    },
}

impl Record<'_> {
    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        match self {
            Record::Entry { data, .. } => 16 + data.len(),
            Record::HardState(_) => 24,
            Record::Snapshot { conf_state, .. } | Record::SnapshotState { conf_state, .. } => {
                16 + conf_state.len()
            }
            Record::Metadata(m) => m.len(),
            Record::Truncate { .. } => 8,
        }
    }

    /// On-disk size including the frame header.
    pub fn frame_len(&self) -> usize {
        frame_len(self.payload_len())
    }

    /// Appends this record's frame to `out`, as part of the write group starting at `batch`.
    pub fn encode(&self, out: &mut Vec<u8>, batch: u32) {
        match *self {
            Record::Entry { index, term, data } => encode_frame(
                out,
                RecordType::Entry,
                batch,
                &[&index.to_le_bytes(), &term.to_le_bytes(), data],
            ),
            Record::HardState(hs) => encode_frame(
                out,
                RecordType::HardState,
                batch,
                &[&hs.term.to_le_bytes(), &hs.vote.to_le_bytes(), &hs.commit.to_le_bytes()],
            ),
            Record::Snapshot { index, term, conf_state } => encode_frame(
                out,
                RecordType::Snapshot,
                batch,
                &[&index.to_le_bytes(), &term.to_le_bytes(), conf_state],
            ),
            Record::SnapshotState { index, term, conf_state } => encode_frame(
                out,
                RecordType::SnapshotState,
                batch,
                &[&index.to_le_bytes(), &term.to_le_bytes(), conf_state],
            ),
            Record::Metadata(m) => encode_frame(out, RecordType::Metadata, batch, &[m]),
            Record::Truncate { after } => {
                encode_frame(out, RecordType::Truncate, batch, &[&after.to_le_bytes()])
            }
        }
    }
}

/// A decoded record, borrowing from the segment bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// See [`Record::Entry`].
    Entry {
        /// Raft index.
        index: u64,
        /// Raft term.
        term: u64,
        /// Payload.
        data: &'a [u8],
    },
    /// See [`Record::HardState`].
    HardState(HardState),
    /// See [`Record::Snapshot`].
    Snapshot {
        /// Snapshot index.
        index: u64,
        /// Snapshot term.
        term: u64,
        /// Conf state bytes.
        conf_state: &'a [u8],
    },
    /// See [`Record::Metadata`].
    Metadata(&'a [u8]),
    /// See [`Record::Truncate`].
    Truncate {
        /// The last index kept.
        after: u64,
    },
    /// See [`Record::SnapshotState`].
    SnapshotState {
        /// Snapshot index.
        index: u64,
        /// Snapshot term.
        term: u64,
        /// Conf state bytes.
        conf_state: &'a [u8],
    },
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Decodes a payload whose frame was already verified. `None` if the payload is too short or
/// too long for its type, or carries an index above [`MAX_INDEX`] (a record that passed its
/// checksum but was written by a different format is still rejected, never misread).
pub fn decode_payload(ty: RecordType, p: &[u8]) -> Option<Decoded<'_>> {
    let d = decode_unchecked(ty, p)?;
    (d.index() <= MAX_INDEX).then_some(d)
}

impl Decoded<'_> {
    /// The index the record carries (0 for kinds without one).
    fn index(&self) -> u64 {
        match *self {
            Decoded::Entry { index, .. }
            | Decoded::Snapshot { index, .. }
            | Decoded::SnapshotState { index, .. } => index,
            Decoded::Truncate { after } => after,
            Decoded::HardState(_) | Decoded::Metadata(_) => 0,
        }
    }
}

impl Record<'_> {
    /// The index the record carries (0 for kinds without one).
    pub fn index(&self) -> u64 {
        match *self {
            Record::Entry { index, .. }
            | Record::Snapshot { index, .. }
            | Record::SnapshotState { index, .. } => index,
            Record::Truncate { after } => after,
            Record::HardState(_) | Record::Metadata(_) => 0,
        }
    }
}

fn decode_unchecked(ty: RecordType, p: &[u8]) -> Option<Decoded<'_>> {
    Some(match ty {
        RecordType::Entry => {
            Decoded::Entry { index: u64_at(p, 0)?, term: u64_at(p, 8)?, data: p.get(16..)? }
        }
        RecordType::HardState if p.len() == 24 => Decoded::HardState(HardState {
            term: u64_at(p, 0)?,
            vote: u64_at(p, 8)?,
            commit: u64_at(p, 16)?,
        }),
        RecordType::HardState => return None,
        RecordType::Snapshot => Decoded::Snapshot {
            index: u64_at(p, 0)?,
            term: u64_at(p, 8)?,
            conf_state: p.get(16..)?,
        },
        RecordType::SnapshotState => Decoded::SnapshotState {
            index: u64_at(p, 0)?,
            term: u64_at(p, 8)?,
            conf_state: p.get(16..)?,
        },
        RecordType::Metadata => Decoded::Metadata(p),
        RecordType::Truncate if p.len() == 8 => Decoded::Truncate { after: u64_at(p, 0)? },
        RecordType::Truncate => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_frame, Frame};

    fn roundtrip(r: Record<'_>) -> Vec<u8> {
        let mut buf = Vec::new();
        r.encode(&mut buf, 64);
        assert_eq!(buf.len(), r.frame_len());
        buf
    }

    #[test]
    fn every_kind_roundtrips() {
        let hs = HardState { term: 3, vote: 2, commit: 9 };
        let recs = [
            Record::Entry { index: 7, term: 2, data: b"payload" },
            Record::HardState(hs),
            Record::Snapshot { index: 5, term: 1, conf_state: b"cs" },
            Record::Metadata(b"meta"),
            Record::Truncate { after: 4 },
        ];
        for r in recs {
            let buf = roundtrip(r);
            let Frame::Record { ty, payload, .. } = decode_frame(&buf, 0, u32::MAX) else {
                panic!("bad frame")
            };
            let d = decode_payload(ty, payload).expect("decodes");
            let same = match (r, d) {
                (
                    Record::Entry { index, term, data },
                    Decoded::Entry { index: i, term: t, data: x },
                ) => index == i && term == t && data == x,
                (Record::HardState(a), Decoded::HardState(b)) => a == b,
                (
                    Record::Snapshot { index, term, conf_state },
                    Decoded::Snapshot { index: i, term: t, conf_state: c },
                ) => index == i && term == t && conf_state == c,
                (Record::Metadata(a), Decoded::Metadata(b)) => a == b,
                (Record::Truncate { after }, Decoded::Truncate { after: a }) => after == a,
                _ => false,
            };
            assert!(same, "{r:?} decoded as {d:?}");
        }
    }

    #[test]
    fn indexes_above_the_maximum_are_rejected() {
        let mut p = (MAX_INDEX + 1).to_le_bytes().to_vec();
        p.extend_from_slice(&[0; 8]);
        assert!(decode_payload(RecordType::Entry, &p).is_none());
        assert!(decode_payload(RecordType::Snapshot, &p).is_none());
        assert!(decode_payload(RecordType::Truncate, &p[..8]).is_none());
        p[..8].copy_from_slice(&MAX_INDEX.to_le_bytes());
        assert!(decode_payload(RecordType::Entry, &p).is_some());
    }

    #[test]
    fn wrong_payload_sizes_are_rejected() {
        assert!(decode_payload(RecordType::Entry, &[0; 15]).is_none());
        assert!(decode_payload(RecordType::HardState, &[0; 23]).is_none());
        assert!(decode_payload(RecordType::HardState, &[0; 25]).is_none());
        assert!(decode_payload(RecordType::Truncate, &[0; 9]).is_none());
        assert!(decode_payload(RecordType::Snapshot, &[0; 3]).is_none());
    }
}
