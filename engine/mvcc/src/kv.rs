//! A key's value at one revision (etcd's mvccpb.KeyValue) and its encoding in the `key` bucket.
//!
//! The bucket key is the revision ([`crate::revision`]); the value, format version 1:
//!
//! | offset | size | field                                              |
//! |--------|------|----------------------------------------------------|
//! | 0      | 1    | format version (1)                                 |
//! | 1      | 8    | create revision (i64, little-endian)               |
//! | 9      | 8    | version (i64 LE; 0 in a tombstone)                 |
//! | 17     | 8    | lease id (i64 LE; 0 = none)                        |
//! | 25     | 4    | key length K (u32 LE)                              |
//! | 29     | K    | key                                                |
//! | 29+K   | rest | value                                              |
//!
//! The mod revision is not stored: it is the revision in the bucket key. A tombstone holds the
//! key only (as etcd's), so deletions can be replayed to watchers and the index rebuilt.
#![forbid(unsafe_code)]

/// Format version of an encoded [`KeyValue`].
pub const KV_FORMAT: u8 = 1;
const HEADER: usize = 29;

/// A key/value pair as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Revision of the put that created the key (in its current generation).
    pub create_revision: i64,
    /// Revision of the last change.
    pub mod_revision: i64,
    /// Number of puts since creation (1 for the creating put; 0 for a deletion).
    pub version: i64,
    /// The value.
    pub value: Vec<u8>,
    /// Attached lease (0: none).
    pub lease: i64,
}

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvDecodeError {
    /// Shorter than its fixed header or its key length.
    #[error("stored key-value of {0} bytes is truncated")]
    Truncated(usize),
    /// Written by an unknown format.
    #[error("stored key-value has unknown format version {0}")]
    Version(u8),
}

impl KeyValue {
    /// Encodes for the `key` bucket (the mod revision goes in the bucket key).
    pub fn encode(&self) -> Vec<u8> {
        encode_parts(&self.key, self.create_revision, self.version, self.lease, &self.value)
    }

    /// Decodes a stored value whose bucket key holds revision `mod_revision`.
    pub fn decode(b: &[u8], mod_revision: i64) -> Result<KeyValue, KvDecodeError> {
        let (key, value, create_revision, version, lease) = split(b)?;
        Ok(KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision,
            version,
            value: value.to_vec(),
            lease,
        })
    }
}

/// Encodes a key-value from its parts.
pub fn encode_parts(key: &[u8], create: i64, version: i64, lease: i64, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + key.len() + value.len());
    b.push(KV_FORMAT);
    b.extend_from_slice(&create.to_le_bytes());
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&lease.to_le_bytes());
    // Keys are bounded far below 4 GiB by the request size limit.
    b.extend_from_slice(&(key.len() as u32).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    b
}

/// Borrowed parts of a stored value: (key, value, create revision, version, lease).
pub type Parts<'a> = (&'a [u8], &'a [u8], i64, i64, i64);

/// Splits a stored value into its [`Parts`] without copying.
pub fn split(b: &[u8]) -> Result<Parts<'_>, KvDecodeError> {
    if b.len() < HEADER {
        return Err(KvDecodeError::Truncated(b.len()));
    }
    if b[0] != KV_FORMAT {
        return Err(KvDecodeError::Version(b[0]));
    }
    let i64_at = |at: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[at..at + 8]);
        i64::from_le_bytes(x)
    };
    let klen = u32::from_le_bytes([b[25], b[26], b[27], b[28]]) as usize;
    let rest = &b[HEADER..];
    if rest.len() < klen {
        return Err(KvDecodeError::Truncated(b.len()));
    }
    let (key, value) = rest.split_at(klen);
    Ok((key, value, i64_at(1), i64_at(9), i64_at(17)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(key in proptest::collection::vec(any::<u8>(), 0..40),
                       value in proptest::collection::vec(any::<u8>(), 0..40),
                       c in any::<i64>(), m in any::<i64>(), v in any::<i64>(), l in any::<i64>()) {
            let kv = KeyValue { key, create_revision: c, mod_revision: m, version: v, value, lease: l };
            prop_assert_eq!(KeyValue::decode(&kv.encode(), m).unwrap(), kv);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = KeyValue::decode(&b, 1);
        }
    }

    #[test]
    fn damage_is_an_error() {
        let kv = KeyValue { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
        let b = kv.encode();
        assert_eq!(KeyValue::decode(&b[..HEADER], 1), Err(KvDecodeError::Truncated(HEADER)));
        let mut bad = b.clone();
        bad[0] = 9;
        assert_eq!(KeyValue::decode(&bad, 1), Err(KvDecodeError::Version(9)));
    }
}
