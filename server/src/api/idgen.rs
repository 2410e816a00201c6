//! Request and lease IDs as etcd's idutil makes them: the low 16 bits of the member ID, then a
//! 40-bit millisecond timestamp taken at start, then an 8-bit counter, incremented as one 48-bit
//! suffix so IDs stay unique across members and restarts.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const SUFFIX_BITS: u32 = 48;
const TS_BITS: u32 = 40;
const COUNT_BITS: u32 = 8;

/// The generator.
#[derive(Debug)]
pub struct IdGen {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGen {
    /// A generator for member `member_id`, seeded with the current time.
    pub fn new(member_id: u64) -> Self {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let ts = (ms as u64) & ((1 << TS_BITS) - 1);
        IdGen {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: AtomicU64::new(ts << COUNT_BITS),
        }
    }

    /// The next ID.
    pub fn next(&self) -> u64 {
        let s = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (s & ((1 << SUFFIX_BITS) - 1))
    }

    /// The next lease ID (etcd masks it to a positive int64).
    pub fn next_lease(&self) -> i64 {
        (self.next() & (u64::MAX >> 1)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_member_and_increase() {
        let g = IdGen::new(0x8e9e_05c5_2164_694d);
        let a = g.next();
        let b = g.next();
        assert_eq!(a >> 48, 0x694d);
        assert_eq!(b, a + 1);
        assert!(g.next_lease() > 0);
    }
}
