//! Durability notification: the handle an append returns, usable from threads and async tasks.
//!
//! Appends join a numbered write group. The writer publishes the number of the last group whose
//! fdatasync succeeded; a handle is done once that number reaches its group. A blocked thread
//! registers its own handle and parks; completing a group unparks exactly the threads of that
//! group, which then return after one atomic load — no shared mutex to fight over on wake-up.
//! The writer itself unparks only [`FANOUT`] threads and leaves the rest in a lock-free queue;
//! every woken thread unparks `FANOUT` more before it returns, so waking a large group takes a
//! few rounds spread over all cores instead of one long chain on the writer's critical path
//! (measured: with 64 writers the chain of unparks was most of the group-commit cycle). Async
//! waiters leave a waker instead.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;

use crate::error::{Result, WalError};

/// One blocked `wait()` call. `done` flips once: either a waker claims it (and unparks the
/// thread, which must then pass the wake-up on) or the thread leaves on its own (and a waker
/// popping the stale entry later skips it without counting it as a wake-up).
#[derive(Debug)]
struct Waiter {
    thread: Thread,
    done: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    poisoned: Option<String>,
    wakers: Vec<(u64, Waker)>,
    threads: Vec<(u64, Arc<Waiter>)>,
}

/// Shared between the writer and every handle.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    durable: AtomicU64,
    inner: Mutex<Inner>,
    /// Waiters of completed groups still to be unparked.
    to_wake: crossbeam_queue::SegQueue<Arc<Waiter>>,
}

/// Threads each waker (the writer, then every woken thread) unparks.
const FANOUT: usize = 2;

impl Signal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave `Inner` inconsistent (plain fields).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Group `group` is durable.
    pub(crate) fn complete(&self, group: u64) {
        debug_assert!(group >= self.durable.load(Ordering::Relaxed), "groups complete in order");
        self.durable.store(group, Ordering::Release);
        let (mut threads, mut wakers) = (Vec::new(), Vec::new());
        {
            let mut g = self.lock();
            let mut i = 0;
            while i < g.threads.len() {
                if g.threads[i].0 <= group {
                    threads.push(g.threads.swap_remove(i).1);
                } else {
                    i += 1;
                }
            }
            let mut i = 0;
            while i < g.wakers.len() {
                if g.wakers[i].0 <= group {
                    wakers.push(g.wakers.swap_remove(i).1);
                } else {
                    i += 1;
                }
            }
        }
        // Wake outside the lock so woken threads never find it taken.
        for w in threads {
            self.to_wake.push(w);
        }
        self.wake_some();
        for w in wakers {
            w.wake();
        }
    }

    /// Unparks up to [`FANOUT`] queued waiters that are still waiting (entries of waiters that
    /// already left are dropped without counting).
    fn wake_some(&self) {
        let mut woken = 0;
        while woken < FANOUT {
            let Some(w) = self.to_wake.pop() else { break };
            if !w.done.swap(true, Ordering::AcqRel) {
                w.thread.unpark();
                woken += 1;
            }
        }
    }

    /// The log failed: every waiter not yet durable gets the error.
    pub(crate) fn poison(&self, msg: String) {
        let (threads, wakers) = {
            let mut g = self.lock();
            g.poisoned.get_or_insert(msg);
            (std::mem::take(&mut g.threads), std::mem::take(&mut g.wakers))
        };
        for (_, w) in threads {
            w.done.store(true, Ordering::Release);
            w.thread.unpark();
        }
        while let Some(w) = self.to_wake.pop() {
            w.done.store(true, Ordering::Release);
            w.thread.unpark();
        }
        for (_, w) in wakers {
            w.wake();
        }
    }

    /// The message of the failure, if the log failed.
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.lock().poisoned.clone()
    }

    /// Last durable group.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }
}

/// Completes when the records of one append are durable (their fdatasync returned success).
#[derive(Debug, Clone)]
#[must_use = "an append is only durable once its handle completed"]
pub struct Durable {
    group: u64,
    sig: Arc<Signal>,
}

impl Durable {
    pub(crate) fn new(group: u64, sig: Arc<Signal>) -> Self {
        Durable { group, sig }
    }

    /// True once durable (false also when the log failed).
    pub fn is_durable(&self) -> bool {
        self.sig.durable() >= self.group
    }

    /// Blocks the thread until durable, or until the log fails.
    pub fn wait(&self) -> Result<()> {
        if self.is_durable() {
            return Ok(());
        }
        let me = Arc::new(Waiter { thread: std::thread::current(), done: AtomicBool::new(false) });
        let mut registered = false;
        let result = loop {
            if self.is_durable() {
                break Ok(());
            }
            {
                let mut g = self.sig.lock();
                // Re-check under the lock: `complete` stores before it takes the lock, so either
                // we see the store here or it sees our registration.
                if self.is_durable() {
                    break Ok(());
                }
                if let Some(m) = &g.poisoned {
                    break Err(WalError::Poisoned(m.clone()));
                }
                if !registered {
                    g.threads.push((self.group, me.clone()));
                    registered = true;
                }
            }
            // A spurious unpark just loops; the registration stays the same.
            std::thread::park();
        };
        if registered {
            // Leave: if a waker claimed us, it counted on us to pass the wake-up on; if not,
            // our entry is now stale and will be skipped. Passing it on either way is harmless.
            me.done.store(true, Ordering::Release);
            self.sig.wake_some();
        }
        result
    }
}

impl Future for Durable {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.is_durable() {
            return Poll::Ready(Ok(()));
        }
        let mut g = self.sig.lock();
        if self.is_durable() {
            return Poll::Ready(Ok(()));
        }
        if let Some(m) = &g.poisoned {
            return Poll::Ready(Err(WalError::Poisoned(m.clone())));
        }
        // A re-poll before completion adds a second waker; both are drained when the group
        // completes, so the list stays bounded by the polls of pending handles.
        g.wakers.push((self.group, cx.waker().clone()));
        Poll::Pending
    }
}
