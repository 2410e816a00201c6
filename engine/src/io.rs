//! The narrow disk interface the page store writes through, so tests can inject faults (a
//! failed write or fdatasync, as a full or failing disk gives) and see what the layers above
//! do with them. Reads go through the memory map and are not part of it.
//!
//! [`OsIo`] is the real thing; [`FaultyIo`] fails the n-th write or sync of a [`PageFaults`]
//! plan (from a seed, so a failure replays), and every one after it, as a dead disk would.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How the page store writes its file.
pub trait PageIo: Send + Sync + std::fmt::Debug {
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// Sets the file's length.
    fn set_len(&self, file: &File, len: u64) -> io::Result<()>;
}

/// The operating system's calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsIo;

impl PageIo for OsIo {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }
}

/// Writes through another [`PageIo`] but never syncs (etcd's `--unsafe-no-fsync`): a host
/// crash may lose or tear recent commits. For tests and throwaway clusters only.
#[derive(Debug)]
pub struct NoSyncIo(pub Arc<dyn PageIo>);

impl PageIo for NoSyncIo {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(file, buf, offset)
    }
    fn sync_data(&self, _file: &File) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        self.0.set_len(file, len)
    }
}

/// Which calls fail: the `n`-th write or sync (counting from 1) and every one after it. 0
/// means never.
#[derive(Debug, Default)]
pub struct PageFaults {
    /// The first write to fail.
    pub fail_write_from: AtomicU64,
    /// The first sync to fail.
    pub fail_sync_from: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
    /// Faults injected so far.
    pub injected: AtomicU64,
}

impl PageFaults {
    /// A plan that fails syncs from the `n`-th on.
    pub fn fail_sync_from(n: u64) -> Arc<Self> {
        let p = PageFaults::default();
        p.fail_sync_from.store(n, Ordering::SeqCst);
        Arc::new(p)
    }

    /// A plan derived from `seed`: writes or syncs fail from somewhere in the first 64 calls.
    pub fn from_seed(seed: u64) -> Arc<Self> {
        // splitmix64: a seed names one plan.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let p = PageFaults::default();
        let n = 1 + (z >> 1) % 64;
        if z & 1 == 0 {
            p.fail_write_from.store(n, Ordering::SeqCst);
        } else {
            p.fail_sync_from.store(n, Ordering::SeqCst);
        }
        Arc::new(p)
    }

    /// Fails from now on: every later write and sync.
    pub fn fail_now(&self) {
        self.fail_write_from.store(self.writes.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
        self.fail_sync_from.store(self.syncs.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    }

    fn check(&self, count: &AtomicU64, from: &AtomicU64, what: &str) -> io::Result<()> {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let f = from.load(Ordering::SeqCst);
        if f != 0 && n >= f {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other(format!("injected {what} failure (call {n})")));
        }
        Ok(())
    }
}

/// [`OsIo`] with the faults of a [`PageFaults`] plan.
#[derive(Debug, Clone)]
pub struct FaultyIo {
    plan: Arc<PageFaults>,
}

impl FaultyIo {
    /// Injects `plan`'s faults.
    pub fn new(plan: Arc<PageFaults>) -> Self {
        FaultyIo { plan }
    }
}

impl PageIo for FaultyIo {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        self.plan.check(&self.plan.writes, &self.plan.fail_write_from, "write")?;
        OsIo.write_at(file, buf, offset)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.plan.check(&self.plan.syncs, &self.plan.fail_sync_from, "fdatasync")?;
        OsIo.sync_data(file)
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        OsIo.set_len(file, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_fails_from_its_call_on() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        let io = FaultyIo::new(PageFaults::fail_sync_from(2));
        io.sync_data(&f).unwrap();
        assert!(io.sync_data(&f).is_err());
        assert!(io.sync_data(&f).is_err());
        io.write_at(&f, b"x", 0).unwrap();
        assert_eq!(io.plan.injected.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_seed_names_one_plan() {
        for seed in 0..32 {
            let (a, b) = (PageFaults::from_seed(seed), PageFaults::from_seed(seed));
            let w = a.fail_write_from.load(Ordering::SeqCst);
            let s = a.fail_sync_from.load(Ordering::SeqCst);
            assert_eq!(w, b.fail_write_from.load(Ordering::SeqCst));
            assert_eq!(s, b.fail_sync_from.load(Ordering::SeqCst));
            assert!((w == 0) != (s == 0) && w.max(s) <= 64);
        }
    }
}
