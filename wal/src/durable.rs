//! Durability notification: the handle an append returns, usable from threads and async tasks.
//!
//! Appends join a numbered write group. The writer publishes the number of the last group whose
//! fdatasync succeeded; a handle is done once that number reaches its group. Blocked threads wait
//! on one of two condition variables chosen by group parity, so completing a group wakes only
//! its own waiters, not those already queued for the next one. Async waiters leave a waker.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::{Result, WalError};

#[derive(Debug, Default)]
struct Inner {
    poisoned: Option<String>,
    wakers: Vec<(u64, Waker)>,
}

/// Shared between the writer and every handle.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    durable: AtomicU64,
    inner: Mutex<Inner>,
    cvs: [Condvar; 2],
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave `Inner` inconsistent (plain fields).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Group `group` is durable.
    pub(crate) fn complete(&self, group: u64) {
        debug_assert!(group >= self.durable.load(Ordering::Relaxed), "groups complete in order");
        self.durable.store(group, Ordering::Release);
        let mut g = self.lock();
        let mut i = 0;
        while i < g.wakers.len() {
            if g.wakers[i].0 <= group {
                g.wakers.swap_remove(i).1.wake();
            } else {
                i += 1;
            }
        }
        self.cvs[(group % 2) as usize].notify_all();
    }

    /// The log failed: every waiter not yet durable gets the error.
    pub(crate) fn poison(&self, msg: String) {
        let mut g = self.lock();
        g.poisoned.get_or_insert(msg);
        for (_, w) in g.wakers.drain(..) {
            w.wake();
        }
        self.cvs[0].notify_all();
        self.cvs[1].notify_all();
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
        let mut g = self.sig.lock();
        loop {
            if self.is_durable() {
                return Ok(());
            }
            if let Some(m) = &g.poisoned {
                return Err(WalError::Poisoned(m.clone()));
            }
            g = self.sig.cvs[(self.group % 2) as usize]
                .wait(g)
                .unwrap_or_else(|p| p.into_inner());
        }
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
