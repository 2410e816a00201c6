//! The only module of this crate with `unsafe` code: the io_uring backend.
//!
//! One ring per writer thread. A durable group write is either one write SQE flagged RWF_DSYNC
//! (the default: measured fastest, especially with O_DIRECT where it can become a FUA write) or
//! a write SQE linked (IO_LINK) to an fdatasync SQE. The call returns only after every
//! completion was reaped, which is what keeps the borrowed buffer alive for as long as the
//! kernel may read it.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring};

use crate::io::IoBackend;

/// Largest single write submitted (the SQE length is a u32).
const MAX_IO: usize = 1 << 30;
const WRITE_TAG: u64 = 1;
const SYNC_TAG: u64 = 2;

/// Writes and fdatasyncs through an io_uring.
pub struct UringBackend {
    ring: IoUring,
    broken: bool,
    /// Make writes durable with RWF_DSYNC instead of a linked fdatasync.
    dsync: bool,
}

impl std::fmt::Debug for UringBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringBackend").finish_non_exhaustive()
    }
}

impl UringBackend {
    /// Sets up a small ring; fails where io_uring is unavailable (old kernel, seccomp, sysctl).
    /// With `dsync`, a durable write is one write op flagged RWF_DSYNC; otherwise a write linked
    /// to an fdatasync.
    pub fn new(dsync: bool) -> io::Result<Self> {
        let ring = IoUring::new(8)?;
        // Probe once with a no-op so a ring that can be created but not used is caught here.
        let mut b = UringBackend { ring, broken: false, dsync };
        b.submit_and_reap(&[opcode::Nop::new().build().user_data(0)])?;
        Ok(b)
    }

    /// Pushes `entries`, submits them and waits for exactly that many completions; returns
    /// (user_data, result) pairs in completion order.
    fn submit_and_reap(&mut self, entries: &[squeue::Entry]) -> io::Result<Vec<(u64, i32)>> {
        if self.broken {
            return Err(io::Error::other("io_uring backend failed earlier"));
        }
        debug_assert!(self.ring.completion().is_empty(), "no stray completions between calls");
        {
            let mut sq = self.ring.submission();
            for e in entries {
                // SAFETY: the buffers the entries point to are borrowed by our caller for the
                // whole call, and on every path where the kernel accepted the entries this
                // function waits for all their completions before returning, after which the
                // kernel no longer touches the memory. io_uring_enter reports an error only when
                // it submitted nothing in that call; in that case the backend is marked broken
                // and never submits again, so the queued entries never reach the kernel. The
                // queue has room: it holds 8 entries, we push at most 2, and it is empty between
                // calls.
                unsafe { sq.push(e) }.map_err(|_| io::Error::other("io_uring submission full"))?;
            }
        }
        let want = entries.len();
        let mut got = Vec::with_capacity(want);
        let mut submitted = false;
        while got.len() < want {
            match self.ring.submit_and_wait(want - got.len()) {
                Ok(_) => submitted = true,
                // Transient: retry (the entries stay queued or in flight meanwhile).
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) => {}
                Err(e) if !submitted => {
                    // Nothing reached the kernel in this call or before: give up; the queued
                    // entries are never submitted (broken).
                    self.broken = true;
                    return Err(e);
                }
                Err(e) => {
                    // The kernel holds entries pointing into the caller's buffer and we cannot
                    // wait for them: returning would let the buffer be freed under the kernel.
                    tracing::error!(error = %e, "io_uring wait failed with operations in flight");
                    std::process::abort();
                }
            }
            for cqe in self.ring.completion() {
                got.push((cqe.user_data(), cqe.result()));
            }
        }
        Ok(got)
    }
}

impl IoBackend for UringBackend {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn write_sync(
        &mut self,
        file: &File,
        mut off: u64,
        mut buf: &[u8],
        sync: bool,
    ) -> io::Result<()> {
        let fd = types::Fd(file.as_raw_fd());
        loop {
            let n = buf.len().min(MAX_IO);
            let last = n == buf.len();
            let link_sync = sync && last;
            let mut entries = Vec::with_capacity(2);
            if n > 0 {
                // With RWF_DSYNC every piece carries the flag: it only covers its own range.
                let dsync = sync && self.dsync;
                let mut w = opcode::Write::new(fd, buf.as_ptr(), n as u32)
                    .offset(off)
                    .rw_flags(if dsync { libc::RWF_DSYNC } else { 0 })
                    .build()
                    .user_data(WRITE_TAG);
                if link_sync && !dsync {
                    w = w.flags(squeue::Flags::IO_LINK);
                }
                entries.push(w);
            }
            if link_sync && (n == 0 || !self.dsync) {
                entries.push(
                    opcode::Fsync::new(fd)
                        .flags(types::FsyncFlags::DATASYNC)
                        .build()
                        .user_data(SYNC_TAG),
                );
            }
            if entries.is_empty() {
                return Ok(());
            }
            let mut written = 0usize;
            let mut synced = n > 0 && link_sync && self.dsync;
            let sync_only = n == 0;
            for (tag, res) in self.submit_and_reap(&entries)? {
                match tag {
                    WRITE_TAG if res < 0 => return Err(io::Error::from_raw_os_error(-res)),
                    WRITE_TAG if res == 0 && n > 0 => {
                        return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"))
                    }
                    WRITE_TAG => written = res as usize,
                    SYNC_TAG if res == -libc::ECANCELED && !sync_only => {} // short write broke the link
                    SYNC_TAG if res < 0 => return Err(io::Error::from_raw_os_error(-res)),
                    SYNC_TAG => synced = true,
                    _ => {}
                }
            }
            if n == 0 {
                return Ok(());
            }
            buf = &buf[written..];
            off += written as u64;
            if buf.is_empty() {
                if sync && !synced {
                    // The sync was cancelled by a short final write that then completed: sync now.
                    let e = [opcode::Fsync::new(fd)
                        .flags(types::FsyncFlags::DATASYNC)
                        .build()
                        .user_data(SYNC_TAG)];
                    let (_, res) = self.submit_and_reap(&e)?[0];
                    if res < 0 {
                        return Err(io::Error::from_raw_os_error(-res));
                    }
                }
                return Ok(());
            }
        }
    }
}
