//! The stored lease record (etcd's leasepb.Lease). Bucket `lease`, key = the id as 8 bytes
//! big-endian ([`record_key`], so the bucket is in id order); value, format version 1 (integers
//! little-endian, as in the `key` bucket):
//!
//! | offset | size | field                                                  |
//! |--------|------|--------------------------------------------------------|
//! | 0      | 1    | format version (1)                                     |
//! | 1      | 8    | lease id (i64; never 0)                                |
//! | 9      | 8    | granted TTL in seconds (i64)                           |
//! | 17     | 8    | checkpointed remaining TTL in seconds (i64; 0 = unset) |
#![forbid(unsafe_code)]

use super::{LeaseId, NO_LEASE};

/// Format version of an encoded [`LeaseRecord`].
pub const LEASE_RECORD_FORMAT: u8 = 1;
/// Length of an encoded [`LeaseRecord`] (format version 1).
pub const LEASE_RECORD_BYTES: usize = 25;

/// Why a stored lease record or key could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// An empty value.
    #[error("stored lease record is empty")]
    Empty,
    /// Written by an unknown format.
    #[error("stored lease record has unknown format version {0}")]
    Version(u8),
    /// The wrong length for its format version.
    #[error("stored lease record has {got} bytes, expected {expected}")]
    Length {
        /// Bytes the format has.
        expected: usize,
        /// Bytes found.
        got: usize,
    },
    /// A record of lease 0 ("no lease").
    #[error("stored lease record has lease id 0")]
    ZeroId,
    /// A bucket key that is not 8 bytes.
    #[error("stored lease key has {0} bytes, expected 8")]
    Key(usize),
}

/// What the store persists of a lease (etcd's leasepb.Lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseRecord {
    /// The lease.
    pub id: LeaseId,
    /// Granted TTL, seconds.
    pub ttl: i64,
    /// Last checkpointed remaining TTL, seconds; 0 when unset.
    pub remaining_ttl: i64,
}

/// The `lease` bucket key of lease `id`: big-endian, so bucket order is id order.
pub fn record_key(id: LeaseId) -> [u8; 8] {
    id.to_be_bytes()
}

/// The lease id of a `lease` bucket key.
pub fn record_id(key: &[u8]) -> Result<LeaseId, RecordError> {
    let b: [u8; 8] = key.try_into().map_err(|_| RecordError::Key(key.len()))?;
    Ok(LeaseId::from_be_bytes(b))
}

impl LeaseRecord {
    /// Encodes for the `lease` bucket (format version 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LEASE_RECORD_BYTES);
        b.push(LEASE_RECORD_FORMAT);
        b.extend_from_slice(&self.id.to_le_bytes());
        b.extend_from_slice(&self.ttl.to_le_bytes());
        b.extend_from_slice(&self.remaining_ttl.to_le_bytes());
        debug_assert_eq!(b.len(), LEASE_RECORD_BYTES);
        b
    }

    /// Decodes a stored value; any damage is an error, never a panic.
    pub fn decode(b: &[u8]) -> Result<LeaseRecord, RecordError> {
        let (&version, rest) = b.split_first().ok_or(RecordError::Empty)?;
        if version != LEASE_RECORD_FORMAT {
            return Err(RecordError::Version(version));
        }
        let fields: &[u8; LEASE_RECORD_BYTES - 1] = rest
            .try_into()
            .map_err(|_| RecordError::Length { expected: LEASE_RECORD_BYTES, got: b.len() })?;
        let i64_at = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&fields[at..at + 8]);
            i64::from_le_bytes(x)
        };
        let record = LeaseRecord { id: i64_at(0), ttl: i64_at(8), remaining_ttl: i64_at(16) };
        if record.id == NO_LEASE {
            return Err(RecordError::ZeroId);
        }
        Ok(record)
    }
}
