//! Record framing: how one record sits in a segment.
//!
//! Every record is a 13-byte frame header followed by its payload. Integers are little-endian.
//!
//! | offset | size | field                                                              |
//! |--------|------|--------------------------------------------------------------------|
//! | 0      | 4    | `len`: payload length in bytes                                     |
//! | 4      | 4    | `crc`: CRC32 (IEEE, crc32fast) of bytes 0..4, 8..13 and the payload |
//! | 8      | 1    | `type`: record type, see [`RecordType`]; 0 is never written        |
//! | 9      | 4    | `batch`: segment offset where this record's write group begins     |
//! | 13     | len  | payload                                                            |
//!
//! The CRC covers every header field as well as the payload, so a flipped length or type is
//! detected like flipped data. A frame header of thirteen zero bytes marks the end of the written
//! part of a preallocated (zero-filled) segment.
//!
//! `batch` is what lets recovery tell a torn write from damage: the writer syncs one write group
//! before it writes any byte of the next, so a bad frame at offset X followed anywhere by a valid
//! frame whose `batch` is greater than X lies in a group that was synced (and acknowledged):
//! that is corruption. Without such a frame, the damage is within the last group written, which
//! no caller was told is durable unless its fdatasync returned: a torn tail.
#![forbid(unsafe_code)]

/// Size of the frame header in bytes.
pub const FRAME_HEADER_LEN: usize = 13;

/// Record types as stored in the frame's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// A raft log entry: index, term, data.
    Entry = 1,
    /// Raft hard state: term, vote, commit.
    HardState = 2,
    /// A snapshot marker: index, term, conf state bytes.
    Snapshot = 3,
    /// Opaque metadata (the latest one wins).
    Metadata = 4,
    /// Logical truncation of every entry after an index (raft log conflict).
    Truncate = 5,
    /// The latest snapshot marker restated at the start of a segment: records the marker only,
    /// with no effect on which entries are live.
    SnapshotState = 6,
}

impl RecordType {
    /// Maps the stored byte back to a type; `None` for unknown bytes (including 0).
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Entry,
            2 => Self::HardState,
            3 => Self::Snapshot,
            4 => Self::Metadata,
            5 => Self::Truncate,
            6 => Self::SnapshotState,
            _ => return None,
        })
    }
}

/// Computes the frame CRC over the length, the type and the payload parts.
fn frame_crc(len: u32, ty: u8, batch: u32, parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&[ty]);
    h.update(&batch.to_le_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Total on-disk size of a frame carrying `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

/// Appends one frame whose payload is the concatenation of `parts` to `out`; `batch` is the
/// segment offset where the write group that carries it begins.
///
/// The caller guarantees the payload fits in a `u32` (the WAL checks `max_record_bytes` first).
pub fn encode_frame(out: &mut Vec<u8>, ty: RecordType, batch: u32, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(len <= u32::MAX as usize, "payload length checked by the caller");
    let len32 = len as u32;
    let crc = frame_crc(len32, ty as u8, batch, parts);
    out.reserve(FRAME_HEADER_LEN + len);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(ty as u8);
    out.extend_from_slice(&batch.to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFrame {
    /// Fewer than thirteen bytes remain.
    ShortHeader,
    /// The length runs past the end of the available bytes.
    PastEnd {
        /// The claimed payload length.
        len: u32,
    },
    /// The length exceeds the configured maximum record size.
    TooLong {
        /// The claimed payload length.
        len: u32,
    },
    /// The type byte is not a known record type.
    BadType(u8),
    /// The checksum does not match.
    Checksum,
}

impl std::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadFrame::ShortHeader => write!(f, "partial frame header"),
            BadFrame::PastEnd { len } => write!(f, "record of {len} bytes runs past the end"),
            BadFrame::TooLong { len } => write!(f, "record length {len} exceeds the maximum"),
            BadFrame::BadType(t) => write!(f, "unknown record type {t}"),
            BadFrame::Checksum => write!(f, "checksum mismatch"),
        }
    }
}

/// The result of decoding the bytes at one offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A valid record; `next` is the offset just past it.
    Record {
        /// Its type.
        ty: RecordType,
        /// Its payload.
        payload: &'a [u8],
        /// Offset of the following frame.
        next: usize,
        /// Where its write group begins.
        batch: u32,
    },
    /// Thirteen zero bytes (or fewer, all zero, at the very end): the end of the written data.
    End,
    /// Not a valid frame.
    Bad(BadFrame),
}

/// Decodes the frame starting at `off` in `buf`. Never panics, whatever the bytes.
pub fn decode_frame(buf: &[u8], off: usize, max_payload: u32) -> Frame<'_> {
    let rest = buf.get(off..).unwrap_or(&[]);
    if rest.len() < FRAME_HEADER_LEN {
        return if rest.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Bad(BadFrame::ShortHeader)
        };
    }
    let (hdr, body) = rest.split_at(FRAME_HEADER_LEN);
    if hdr.iter().all(|&b| b == 0) {
        return Frame::End;
    }
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let ty_byte = hdr[8];
    let batch = u32::from_le_bytes([hdr[9], hdr[10], hdr[11], hdr[12]]);
    if len > max_payload {
        return Frame::Bad(BadFrame::TooLong { len });
    }
    let Some(payload) = body.get(..len as usize) else {
        return Frame::Bad(BadFrame::PastEnd { len });
    };
    let Some(ty) = RecordType::from_u8(ty_byte) else {
        return Frame::Bad(BadFrame::BadType(ty_byte));
    };
    if frame_crc(len, ty_byte, batch, &[payload]) != crc {
        return Frame::Bad(BadFrame::Checksum);
    }
    Frame::Record { ty, payload, next: off + FRAME_HEADER_LEN + len as usize, batch }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_single_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, RecordType::Entry, 77, &[b"abc", b"defg"]);
        assert_eq!(buf.len(), frame_len(7));
        match decode_frame(&buf, 0, 1024) {
            Frame::Record { ty, payload, next, batch } => {
                assert_eq!(batch, 77);
                assert_eq!(ty, RecordType::Entry);
                assert_eq!(payload, b"abcdefg");
                assert_eq!(next, buf.len());
            }
            other => panic!("unexpected {other:?}"),
        }
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_frame(&b, 0, 1024), Frame::Record { .. }),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn zeros_are_the_end_and_short_garbage_is_bad() {
        assert_eq!(decode_frame(&[0u8; 20], 0, 10), Frame::End);
        assert_eq!(decode_frame(&[0u8; 3], 0, 10), Frame::End);
        assert_eq!(decode_frame(&[1u8; 3], 0, 10), Frame::Bad(BadFrame::ShortHeader));
        assert_eq!(decode_frame(&[], 5, 10), Frame::End);
        let mut buf = Vec::new();
        encode_frame(&mut buf, RecordType::Metadata, 0, &[&[7u8; 50]]);
        assert_eq!(decode_frame(&buf, 0, 10), Frame::Bad(BadFrame::TooLong { len: 50 }));
        assert_eq!(decode_frame(&buf[..30], 0, 100), Frame::Bad(BadFrame::PastEnd { len: 50 }));
    }
}
