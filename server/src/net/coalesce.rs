//! Write coalescing for served connections: the responses that complete in one burst leave in
//! one `writev`.
//!
//! **Why.** A loaded leader answers a whole applied batch at once, but each answer completes
//! in its own task, and tokio runs the woken connection task right after each one. The HTTP/2
//! connection then flushed one response per system call: about 1.1 `writev` per request, each
//! paying the loopback or NIC send path and a wake-up of the client's reader.
//!
//! **How.** Writes are copied into a buffer. The first flush of a buffered batch yields once:
//! it wakes its own task and returns `Pending`, so tokio queues the connection behind the
//! answer tasks that are already runnable. When the connection runs again, their responses
//! are in the buffer too, and one write sends them all. Nothing waits on a timer. A connection
//! with nothing else to do costs one extra task poll per flush.
//!
//! **Invariants.** Bytes leave in the order they were written. `poll_flush` and
//! `poll_shutdown` return `Ready(Ok)` only once everything buffered has been written to the
//! inner stream and it has been flushed. At most [`MAX_BUFFERED`] bytes are held: a write
//! that would go past it first drains the buffer, and a write at least that large bypasses it.
#![forbid(unsafe_code)]

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before a write drains the buffer (h2's own write buffer is of this order).
pub const MAX_BUFFERED: usize = 64 * 1024;

/// Buffer capacity a connection keeps between bursts.
const KEEP_CAPACITY: usize = 16 * 1024;

/// A stream whose small writes are gathered until a flush, which yields once (see the module
/// documentation).
#[derive(Debug)]
pub struct Coalesce<T> {
    inner: T,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    sent: usize,
    /// This flush already yielded once.
    yielded: bool,
}

impl<T> Coalesce<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Coalesce { inner, buf: Vec::new(), sent: 0, yielded: false }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn pending_bytes(&self) -> usize {
        self.buf.len() - self.sent
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            // An idle connection (a watcher, say) does not keep a large burst's buffer.
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes; `false` when such a write should bypass the buffer.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.pending_bytes() + len > MAX_BUFFERED {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(len < MAX_BUFFERED))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if !ready!(me.poll_room(cx, data.len()))? {
            return Pin::new(&mut me.inner).poll_write(cx, data);
        }
        me.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if !ready!(me.poll_room(cx, len))? {
            return Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            me.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.pending_bytes() > 0 && !me.yielded {
            // Let the tasks that are already runnable add their responses first: a task
            // that wakes itself goes to the back of its worker's queue.
            me.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(me.poll_drain(cx))?;
        me.yielded = false;
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    /// Records every write and flush that reaches it; accepts at most `max_write` per call.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        max_write: Option<usize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.max_write.map_or(data.len(), |m| m.min(data.len()));
            self.get_mut().writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn write(c: &mut Coalesce<Recorder>, cx: &mut Context<'_>, data: &[u8]) {
        match Pin::new(c).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => assert_eq!(n, data.len()),
            other => panic!("write: {other:?}"),
        }
    }

    /// Flushes to the end, counting the `Pending`s on the way.
    fn flush(c: &mut Coalesce<Recorder>, cx: &mut Context<'_>) -> usize {
        let mut pendings = 0;
        loop {
            match Pin::new(&mut *c).poll_flush(cx) {
                Poll::Ready(Ok(())) => return pendings,
                Poll::Ready(Err(e)) => panic!("flush: {e}"),
                Poll::Pending => pendings += 1,
            }
            assert!(pendings < 3, "flush never finishes");
        }
    }

    #[test]
    fn small_writes_leave_together_after_one_yield() {
        let wake = Arc::new(CountWake::default());
        let waker = Waker::from(wake.clone());
        let mut cx = Context::from_waker(&waker);
        let mut c = Coalesce::new(Recorder::default());
        write(&mut c, &mut cx, b"one ");
        write(&mut c, &mut cx, b"two ");
        assert!(c.get_ref().writes.is_empty(), "held until a flush");
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending());
        assert_eq!(wake.0.load(Ordering::SeqCst), 1, "the yield wakes its own task");
        // What the other tasks add meanwhile goes in the same write.
        let v = [io::IoSlice::new(b"three "), io::IoSlice::new(b"four")];
        assert!(matches!(Pin::new(&mut c).poll_write_vectored(&mut cx, &v), Poll::Ready(Ok(10))));
        assert_eq!(flush(&mut c, &mut cx), 0);
        assert_eq!(c.get_ref().writes, vec![b"one two three four".to_vec()]);
        assert_eq!(c.get_ref().flushes, 1);
        // Nothing buffered: a flush goes straight through, without yielding.
        assert_eq!(flush(&mut c, &mut cx), 0);
        assert_eq!(c.get_ref().flushes, 2);
    }

    #[test]
    fn a_large_write_drains_the_buffer_first_then_bypasses_it() {
        let waker = Waker::from(Arc::new(CountWake::default()));
        let mut cx = Context::from_waker(&waker);
        let mut c = Coalesce::new(Recorder::default());
        write(&mut c, &mut cx, b"head");
        let big = vec![7u8; MAX_BUFFERED];
        write(&mut c, &mut cx, &big);
        assert_eq!(c.get_ref().writes, vec![b"head".to_vec(), big]);
        assert_eq!(flush(&mut c, &mut cx), 0, "nothing held: no yield");
    }

    #[test]
    fn shutdown_writes_what_is_held() {
        let waker = Waker::from(Arc::new(CountWake::default()));
        let mut cx = Context::from_waker(&waker);
        let mut c = Coalesce::new(Recorder { max_write: Some(3), ..Default::default() });
        write(&mut c, &mut cx, b"abcdefgh");
        assert!(matches!(Pin::new(&mut c).poll_shutdown(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(c.get_ref().writes.concat(), b"abcdefgh", "partial writes resume in order");
    }

    proptest! {
        /// Against the model "the output is the input, in order": any mix of write sizes,
        /// vectored writes, short inner writes and flushes; after a flush everything written
        /// is out, and at most MAX_BUFFERED bytes are ever held.
        #[test]
        fn output_is_input_in_order(
            ops in proptest::collection::vec((0usize..3, 0usize..(MAX_BUFFERED + 5000), any::<u8>()), 1..40),
            max_write in proptest::option::of(1usize..70_000),
        ) {
            let waker = Waker::from(Arc::new(CountWake::default()));
            let mut cx = Context::from_waker(&waker);
            let mut c = Coalesce::new(Recorder { max_write, ..Default::default() });
            let mut model = Vec::new();
            for (kind, len, byte) in ops {
                let data = vec![byte; len];
                match kind {
                    0 => {
                        let r = Pin::new(&mut c).poll_write(&mut cx, &data);
                        prop_assert!(matches!(r, Poll::Ready(Ok(_))));
                        if let Poll::Ready(Ok(n)) = r { model.extend_from_slice(&data[..n]); }
                    }
                    1 => {
                        let (a, b) = data.split_at(len / 2);
                        let v = [io::IoSlice::new(a), io::IoSlice::new(b)];
                        let r = Pin::new(&mut c).poll_write_vectored(&mut cx, &v);
                        prop_assert!(matches!(r, Poll::Ready(Ok(_))));
                        if let Poll::Ready(Ok(n)) = r { model.extend_from_slice(&data[..n]); }
                    }
                    _ => {
                        flush(&mut c, &mut cx);
                        prop_assert_eq!(c.get_ref().writes.concat(), model.clone());
                    }
                }
                prop_assert!(c.pending_bytes() <= MAX_BUFFERED);
            }
            flush(&mut c, &mut cx);
            prop_assert_eq!(c.get_ref().writes.concat(), model);
        }
    }
}
