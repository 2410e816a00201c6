//! The narrow disk interface the writer uses, so tests can inject faults.
//!
//! The writer only ever needs "write these bytes at this offset, then make them durable". The
//! production backends are [`crate::sys::UringBackend`] and [`PwriteBackend`]; [`FaultyBackend`]
//! wraps either to fail an fdatasync, tear a write, or fail at a point chosen from a seed.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Writes a buffer at an offset and optionally fdatasyncs the file, returning only when done.
pub trait IoBackend: Send + std::fmt::Debug {
    /// Backend name for logs and benchmarks.
    fn name(&self) -> &'static str;
    /// Writes all of `buf` at `off` in `file`; with `sync`, then fdatasyncs it. An error means
    /// nothing can be assumed about what reached the disk.
    fn write_sync(&mut self, file: &File, off: u64, buf: &[u8], sync: bool) -> io::Result<()>;
}

/// `pwrite` + `fdatasync`, or `pwritev2(RWF_DSYNC)`.
#[derive(Debug, Default)]
pub struct PwriteBackend {
    /// Make writes durable with RWF_DSYNC instead of a following fdatasync.
    pub dsync: bool,
}

impl IoBackend for PwriteBackend {
    fn name(&self) -> &'static str {
        "pwrite"
    }

    fn write_sync(
        &mut self,
        file: &File,
        mut off: u64,
        mut buf: &[u8],
        sync: bool,
    ) -> io::Result<()> {
        if !(sync && self.dsync) || buf.is_empty() {
            file.write_all_at(buf, off)?;
            if sync {
                file.sync_data()?;
            }
            return Ok(());
        }
        while !buf.is_empty() {
            let n = rustix::io::pwritev2(
                file,
                &[std::io::IoSlice::new(buf)],
                off,
                rustix::io::ReadWriteFlags::DSYNC,
            )?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev2 wrote nothing"));
            }
            buf = &buf[n..];
            off += n as u64;
        }
        Ok(())
    }
}

/// How a write group is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStyle {
    /// The write carries RWF_DSYNC (one operation).
    Dsync,
    /// The write is followed by fdatasync.
    Fdatasync,
    /// Never synced (etcd's `--unsafe-no-fsync`): a crash of the host may lose acknowledged
    /// writes. For tests and throwaway clusters only.
    UnsafeNoSync,
}

/// Wraps a backend so it never syncs (`SyncStyle::UnsafeNoSync`).
#[derive(Debug)]
struct NoSync(Box<dyn IoBackend>);

impl IoBackend for NoSync {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn write_sync(&mut self, file: &File, off: u64, buf: &[u8], _sync: bool) -> io::Result<()> {
        self.0.write_sync(file, off, buf, false)
    }
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring when a ring can be set up, else pwrite (logged).
    Auto,
    /// io_uring or fail.
    Uring,
    /// pwrite + fdatasync.
    Pwrite,
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoMode::Auto),
            "uring" | "io_uring" => Ok(IoMode::Uring),
            "pwrite" => Ok(IoMode::Pwrite),
            _ => Err(format!("unknown io mode {s:?} (auto, uring, pwrite)")),
        }
    }
}

/// Builds the backend for `mode`.
pub fn make_backend(mode: IoMode, sync: SyncStyle) -> io::Result<Box<dyn IoBackend>> {
    if sync == SyncStyle::UnsafeNoSync {
        return Ok(Box::new(NoSync(make_backend(mode, SyncStyle::Fdatasync)?)));
    }
    let dsync = sync == SyncStyle::Dsync;
    match mode {
        IoMode::Pwrite => Ok(Box::new(PwriteBackend { dsync })),
        IoMode::Uring => Ok(Box::new(crate::sys::UringBackend::new(dsync)?)),
        IoMode::Auto => match crate::sys::UringBackend::new(dsync) {
            Ok(b) => Ok(Box::new(b)),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unavailable, falling back to pwrite");
                Ok(Box::new(PwriteBackend { dsync }))
            }
        },
    }
}

/// A fault plan shared between a test and the backend it injected.
#[derive(Debug, Default)]
pub struct FaultPlan {
    /// Fail the n-th fdatasync (1-based; 0 = never).
    pub fail_sync_at: AtomicU64,
    /// Tear the n-th write (1-based; 0 = never): only the first `tear_keep` bytes are written,
    /// then the write fails.
    pub tear_write_at: AtomicU64,
    /// Bytes kept of the torn write.
    pub tear_keep: AtomicU64,
    syncs: AtomicU64,
    writes: AtomicU64,
}

impl FaultPlan {
    /// A plan derived from a seed: one fault (failed sync or torn write) somewhere in the first
    /// `horizon` operations, so a failing run can be replayed from its seed.
    pub fn from_seed(seed: u64, horizon: u64) -> Self {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let p = FaultPlan::default();
        let at = 1 + next() % horizon.max(1);
        if next() % 2 == 0 {
            p.fail_sync_at.store(at, Ordering::Relaxed);
        } else {
            p.tear_write_at.store(at, Ordering::Relaxed);
            p.tear_keep.store(next() % 8192, Ordering::Relaxed);
        }
        p
    }

    /// fdatasyncs attempted so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

/// Wraps a backend and injects the faults of a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Box<dyn IoBackend>,
    plan: Arc<FaultPlan>,
}

impl FaultyBackend {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn IoBackend>, plan: Arc<FaultPlan>) -> Self {
        FaultyBackend { inner, plan }
    }
}

impl IoBackend for FaultyBackend {
    fn name(&self) -> &'static str {
        "faulty"
    }

    fn write_sync(&mut self, file: &File, off: u64, buf: &[u8], sync: bool) -> io::Result<()> {
        let w = self.plan.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if w == self.plan.tear_write_at.load(Ordering::Relaxed) {
            let keep = (self.plan.tear_keep.load(Ordering::Relaxed) as usize).min(buf.len());
            self.inner.write_sync(file, off, &buf[..keep], false)?;
            return Err(io::Error::other("injected torn write"));
        }
        self.inner.write_sync(file, off, buf, false)?;
        if sync {
            let s = self.plan.syncs.fetch_add(1, Ordering::Relaxed) + 1;
            if s == self.plan.fail_sync_at.load(Ordering::Relaxed) {
                return Err(io::Error::other("injected fdatasync failure"));
            }
            self.inner.write_sync(file, off, &[], true)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_no_sync_never_asks_for_a_sync() {
        let plan = Arc::new(FaultPlan::default());
        plan.fail_sync_at.store(1, Ordering::SeqCst);
        let faulty = FaultyBackend::new(Box::new(PwriteBackend { dsync: false }), plan.clone());
        let mut b = NoSync(Box::new(faulty));
        let f = tempfile::tempfile().unwrap();
        for i in 0..3u64 {
            b.write_sync(&f, i * 4, b"abcd", true).unwrap();
        }
        let mut buf = [0u8; 12];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"abcdabcdabcd");
    }
}
