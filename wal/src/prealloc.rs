//! The segment preallocator: a thread that keeps the next segment file ready, so a cut never
//! waits for 64 MiB of zeroes.
//!
//! A full disk shows here first: segments are preallocated whole, so a write into the current
//! segment needs no new blocks, and only making the next one can fail with `ENOSPC`. A failed
//! preallocation is retried every [`RETRY`] and reported meanwhile ([`AllocStatus`],
//! `Wal::space_error`), so the member can raise the NOSPACE alarm while the current segment
//! still has room; a cut that finds no file ready while preallocation fails gets its error
//! (and the log fails, as on any write error).
#![forbid(unsafe_code)]

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::options::PreallocHook;
use crate::segment::{create_preallocated, Prealloc};

/// How often a failed preallocation is tried again.
pub const RETRY: Duration = Duration::from_secs(1);
/// How often a cut waiting for its file checks whether preallocation is failing.
const TAKE_POLL: Duration = Duration::from_millis(20);

/// The preallocator's last failure, while it lasts. Read on every client write (the quota
/// check): the flag answers without the lock while all is well.
#[derive(Debug, Default)]
pub(crate) struct AllocStatus {
    failing: AtomicBool,
    error: Mutex<Option<(io::ErrorKind, String)>>,
}

impl AllocStatus {
    fn set(&self, v: Option<(io::ErrorKind, String)>) {
        let mut g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        self.failing.store(v.is_some(), Ordering::Release);
        *g = v;
    }

    /// The failure, as an error, if preallocation is failing now.
    pub(crate) fn error(&self) -> Option<io::Error> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }
}

/// Keeps one preallocated segment file ready.
#[derive(Debug)]
pub(crate) struct Allocator {
    rx: Option<Receiver<PathBuf>>,
    /// Dropped to stop the thread while it waits to retry.
    stop: Option<SyncSender<()>>,
    status: Arc<AllocStatus>,
    thread: Option<JoinHandle<()>>,
}

impl Allocator {
    pub(crate) fn start(
        dir: PathBuf,
        size: u64,
        how: Prealloc,
        hook: Option<PreallocHook>,
        status: Arc<AllocStatus>,
    ) -> Self {
        let (tx, rx) = sync_channel(0);
        let (stop, stopped) = sync_channel::<()>(0);
        let st = status.clone();
        let thread = std::thread::Builder::new()
            .name("wal-prealloc".into())
            .spawn(move || {
                for n in 0u64.. {
                    let path = dir.join(format!("{n:08}.tmp"));
                    loop {
                        let made = match &hook {
                            Some(h) => h(&path),
                            None => Ok(()),
                        }
                        .and_then(|()| create_preallocated(&path, size, how));
                        match made {
                            Ok(_) => {
                                st.set(None);
                                break;
                            }
                            Err(e) => {
                                let _ = std::fs::remove_file(&path);
                                if st.error().is_none() {
                                    tracing::error!(path = %path.display(), error = %e,
                                        "cannot preallocate the next wal segment; retrying");
                                }
                                st.set(Some((e.kind(), format!("{}: {e}", path.display()))));
                                if matches!(
                                    stopped.recv_timeout(RETRY),
                                    Err(RecvTimeoutError::Disconnected)
                                ) {
                                    return;
                                }
                            }
                        }
                    }
                    if tx.send(path.clone()).is_err() {
                        let _ = std::fs::remove_file(&path);
                        return;
                    }
                }
            })
            .ok();
        Allocator { rx: Some(rx), stop: Some(stop), status, thread }
    }

    /// The next preallocated file: waits for it, unless preallocation is failing.
    pub(crate) fn take(&self) -> io::Result<PathBuf> {
        let Some(rx) = self.rx.as_ref() else { return Err(stopped()) };
        loop {
            match rx.recv_timeout(TAKE_POLL) {
                Ok(p) => return Ok(p),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(e) = self.status.error() {
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(stopped()),
            }
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("segment preallocator stopped")
}

impl Drop for Allocator {
    fn drop(&mut self) {
        self.rx.take();
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
