//! Revisions: every change gets a main revision (one per write transaction) and a sub
//! revision (its position in that transaction), as in etcd.
//!
//! Key of the `key` bucket (big-endian, so byte order is revision order):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 8    | main revision                           |
//! | 8      | 1    | `_`                                     |
//! | 9      | 8    | sub revision                            |
//! | 17     | 1    | `t`, only for a tombstone (a deletion)  |
#![forbid(unsafe_code)]

/// Length of an encoded revision.
pub const REV_BYTES: usize = 17;
/// Length of an encoded tombstone revision.
pub const TOMBSTONE_REV_BYTES: usize = 18;

/// A (main, sub) revision; ordered by main, then sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// One per write transaction.
    pub main: i64,
    /// The change's position within it.
    pub sub: i64,
}

impl Revision {
    /// A revision.
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The bucket key of this revision (with the tombstone marker when `tombstone`).
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let (b, n) = self.key_bytes(tombstone);
        b[..n].to_vec()
    }

    /// [`Revision::to_key`] without allocating (a lookup's key): the bytes, and how many of
    /// them are the key.
    pub fn key_bytes(self, tombstone: bool) -> ([u8; TOMBSTONE_REV_BYTES], usize) {
        let mut b = [0u8; TOMBSTONE_REV_BYTES];
        b[..8].copy_from_slice(&self.main.to_be_bytes());
        b[8] = b'_';
        b[9..REV_BYTES].copy_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            b[REV_BYTES] = b't';
            (b, TOMBSTONE_REV_BYTES)
        } else {
            (b, REV_BYTES)
        }
    }

    /// Decodes a bucket key; `None` unless it is exactly a revision (with or without the marker).
    /// Returns the revision and whether it is a tombstone.
    pub fn from_key(b: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match b.len() {
            REV_BYTES => false,
            TOMBSTONE_REV_BYTES if b[17] == b't' => true,
            _ => return None,
        };
        if b[8] != b'_' {
            return None;
        }
        let mut m = [0u8; 8];
        let mut s = [0u8; 8];
        m.copy_from_slice(&b[0..8]);
        s.copy_from_slice(&b[9..17]);
        Some((Revision { main: i64::from_be_bytes(m), sub: i64::from_be_bytes(s) }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding_roundtrips_and_sorts_like_revisions() {
        let revs =
            [Revision::new(1, 0), Revision::new(1, 5), Revision::new(2, 0), Revision::new(300, 7)];
        for w in revs.windows(2) {
            assert!(w[0].to_key(false) < w[1].to_key(false));
        }
        for r in revs {
            assert_eq!(Revision::from_key(&r.to_key(false)), Some((r, false)));
            assert_eq!(Revision::from_key(&r.to_key(true)), Some((r, true)));
        }
        assert_eq!(Revision::from_key(b"short"), None);
        let mut bad = Revision::new(1, 1).to_key(true);
        bad[17] = b'x';
        assert_eq!(Revision::from_key(&bad), None);
    }
}
