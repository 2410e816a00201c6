//! grpc-go's keepalive enforcement on the client port: a client that pings too often is sent
//! GOAWAY `ENHANCE_YOUR_CALM` with the debug data `too_many_pings`, and the connection is
//! closed (`--grpc-keepalive-min-time`, as etcd's `keepalive.EnforcementPolicy` with
//! `PermitWithoutStream: false`). hyper answers pings but has no such policy, so
//! [`Pings`] watches the frames going both ways, between the socket and the HTTP/2 server.
//!
//! The policy, as grpc-go's server applies it to each PING a client sends (not to ACKs):
//! - a ping after the server sent HEADERS or DATA since the previous ping clears the strikes;
//! - otherwise it is a strike when it comes sooner than the minimum time after the previous
//!   ping, or, while the client has no stream open, sooner than two hours after it;
//! - on the third strike the server says GOAWAY (last stream: the highest the client opened)
//!   and closes.
//!
//! A stream is open from the client's first HEADERS until the server ends it (HEADERS or DATA
//! with END_STREAM) or either side resets it. Only 9-byte frame headers are parsed; payloads
//! are skipped. A connection that does not start with the HTTP/2 preface (HTTP/1 to the
//! gateway) is passed through untouched.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::authority::{FRAME_HEADER, PREFACE};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// grpc-go's `maxPingStrikes`: the GOAWAY comes on the strike after this many.
const MAX_STRIKES: u8 = 2;
/// grpc-go's `defaultPingTimeout`: without an open stream, pings must be this far apart.
const IDLE_PING_TIME: Duration = Duration::from_secs(2 * 60 * 60);
/// The GOAWAY's debug data, which grpc-go clients look for to back off their keepalive.
pub const TOO_MANY_PINGS: &[u8] = b"too_many_pings";

/// A frame's header, as far as the policy needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Splits a byte stream into frame headers, across reads or writes of any size.
#[derive(Debug, Default)]
struct Scanner {
    /// Preface bytes still to match (read side only).
    preface: usize,
    /// Header bytes collected so far.
    head: [u8; FRAME_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
}

impl Scanner {
    fn reading() -> Self {
        Scanner { preface: PREFACE.len(), ..Scanner::default() }
    }

    /// Whether the stream sits between two frames.
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0 && self.preface == 0
    }

    /// Feeds bytes; calls `seen` for each complete frame header. Err when the bytes are not
    /// the HTTP/2 preface.
    fn feed(&mut self, mut b: &[u8], mut seen: impl FnMut(Frame)) -> Result<(), ()> {
        while !b.is_empty() {
            if self.preface > 0 {
                let at = PREFACE.len() - self.preface;
                let n = self.preface.min(b.len());
                if b[..n] != PREFACE[at..at + n] {
                    return Err(());
                }
                self.preface -= n;
                b = &b[n..];
            } else if self.skip > 0 {
                let n = self.skip.min(b.len());
                self.skip -= n;
                b = &b[n..];
            } else {
                let n = (FRAME_HEADER - self.have).min(b.len());
                self.head[self.have..self.have + n].copy_from_slice(&b[..n]);
                self.have += n;
                b = &b[n..];
                if self.have == FRAME_HEADER {
                    let h = &self.head;
                    self.have = 0;
                    self.skip =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    seen(Frame { kind: h[3], flags: h[4], stream });
                }
            }
        }
        Ok(())
    }
}

/// The policy's state for one connection (see the module documentation).
#[derive(Debug)]
struct Policy {
    min_time: Duration,
    open: HashSet<u32>,
    max_stream: u32,
    last_ping: Option<Instant>,
    strikes: u8,
    /// The server sent HEADERS or DATA since the last ping.
    reset: bool,
}

impl Policy {
    fn new(min_time: Duration) -> Self {
        Policy {
            min_time,
            open: HashSet::new(),
            max_stream: 0,
            last_ping: None,
            strikes: 0,
            reset: false,
        }
    }

    /// A frame from the client; true when it calls for GOAWAY.
    fn client(&mut self, f: Frame, now: Instant) -> bool {
        match f.kind {
            HEADERS if f.stream > self.max_stream => {
                self.max_stream = f.stream;
                self.open.insert(f.stream);
            }
            RST_STREAM => {
                self.open.remove(&f.stream);
            }
            PING if f.flags & FLAG_ACK == 0 => return self.ping(now),
            _ => {}
        }
        false
    }

    fn ping(&mut self, now: Instant) -> bool {
        let previous = self.last_ping.replace(now);
        if std::mem::take(&mut self.reset) {
            self.strikes = 0;
            return false;
        }
        let least = if self.open.is_empty() { IDLE_PING_TIME } else { self.min_time };
        if previous.is_some_and(|p| now < p + least) {
            self.strikes = self.strikes.saturating_add(1);
        }
        self.strikes > MAX_STRIKES
    }

    /// A frame the server sent.
    fn server(&mut self, f: Frame) {
        match f.kind {
            DATA | HEADERS => {
                self.reset = true;
                if f.flags & FLAG_END_STREAM != 0 {
                    self.open.remove(&f.stream);
                }
            }
            RST_STREAM => {
                self.open.remove(&f.stream);
            }
            _ => {}
        }
    }
}

/// The GOAWAY frame grpc-go sends a client that pings too often.
pub fn too_many_pings_goaway(last_stream: u32) -> Vec<u8> {
    let len = 8 + TOO_MANY_PINGS.len();
    let mut f = Vec::with_capacity(FRAME_HEADER + len);
    f.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    f.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&last_stream.to_be_bytes());
    f.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    f.extend_from_slice(TOO_MANY_PINGS);
    f
}

#[derive(Debug)]
enum State {
    /// Frames are watched.
    Watching,
    /// Not HTTP/2, or no policy: bytes pass untouched.
    PassThrough,
    /// GOAWAY bytes to write (from `.1` on), then close.
    GoingAway(Vec<u8>, usize),
    /// GOAWAY sent and the write side shut: reads end, writes fail.
    Closed,
}

/// The connection wrapper (see the module documentation).
#[derive(Debug)]
pub struct Pings<T> {
    inner: T,
    state: State,
    policy: Policy,
    read: Scanner,
    write: Scanner,
    /// A reader waiting for the server to finish a frame before the GOAWAY can go.
    read_waker: Option<Waker>,
}

impl<T> Pings<T> {
    /// Wraps `inner`; `min_time` None passes everything through.
    pub fn new(inner: T, min_time: Option<Duration>) -> Self {
        Pings {
            inner,
            state: if min_time.is_some() { State::Watching } else { State::PassThrough },
            policy: Policy::new(min_time.unwrap_or_default()),
            read: Scanner::reading(),
            write: Scanner::default(),
            read_waker: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn saw_read(&mut self, b: &[u8]) {
        if !matches!(self.state, State::Watching) {
            return;
        }
        let now = Instant::now();
        let (policy, mut calm) = (&mut self.policy, false);
        if self.read.feed(b, |f| calm |= policy.client(f, now)).is_err() {
            self.state = State::PassThrough;
        } else if calm {
            tracing::warn!("a client pinged too often; closing its connection (too_many_pings)");
            self.state = State::GoingAway(too_many_pings_goaway(self.policy.max_stream), 0);
        }
    }

    fn saw_write(&mut self, b: &[u8]) {
        if matches!(self.state, State::PassThrough | State::Closed) {
            return;
        }
        let policy = &mut self.policy;
        // The server's bytes are HTTP/2 frames whenever the client's are.
        let _ = self.write.feed(b, |f| policy.server(f));
        if self.write.at_boundary() {
            if let Some(w) = self.read_waker.take() {
                w.wake();
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> Pings<T> {
    /// Writes the pending GOAWAY and shuts the write side. Ready(Ok) once done.
    fn poll_go_away(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::GoingAway(frame, sent) => {
                    if *sent < frame.len() {
                        let n = std::task::ready!(
                            Pin::new(&mut self.inner).poll_write(cx, &frame[*sent..])
                        )?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        *sent += n;
                    } else {
                        std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
                        let _ = std::task::ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
                        self.state = State::Closed;
                    }
                }
                _ => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Before a write: a pending GOAWAY goes first (at a frame boundary); after it, writes fail.
    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if matches!(self.state, State::GoingAway(..)) && self.write.at_boundary() {
            std::task::ready!(self.poll_go_away(cx))?;
        }
        if matches!(self.state, State::Closed) {
            return Poll::Ready(Err(Self::closed()));
        }
        Poll::Ready(Ok(()))
    }

    fn closed() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, "closed: too_many_pings")
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Pings<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.state, State::GoingAway(..)) {
            if !this.write.at_boundary() {
                // The server is inside a frame: the GOAWAY goes when it ends.
                this.read_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            std::task::ready!(this.poll_go_away(cx))?;
        }
        if matches!(this.state, State::Closed) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.saw_read(&buf.filled()[before..]);
        if matches!(this.state, State::GoingAway(..)) {
            // Nothing more of this client's goes to the server.
            buf.set_filled(before);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Pings<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_writable(cx))?;
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.saw_write(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_writable(cx))?;
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let k = left.min(b.len());
            this.saw_write(&b[..k]);
            left -= k;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.state, State::Closed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.state, State::Closed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: usize) -> Vec<u8> {
        let mut f = (payload as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0u8, payload));
        f
    }

    #[test]
    fn frame_headers_are_found_across_any_split() {
        let mut bytes = PREFACE.to_vec();
        let frames = [(4, 0, 0, 6), (1, 4, 1, 30), (0, 1, 1, 100), (6, 0, 0, 8), (6, 1, 0, 8)];
        for (k, fl, s, len) in frames {
            bytes.extend(frame(k, fl, s, len));
        }
        for cut in 1..bytes.len() {
            let mut sc = Scanner::reading();
            let mut seen = Vec::new();
            sc.feed(&bytes[..cut], |f| seen.push(f)).unwrap();
            sc.feed(&bytes[cut..], |f| seen.push(f)).unwrap();
            let want: Vec<Frame> = frames
                .iter()
                .map(|&(kind, flags, stream, _)| Frame { kind, flags, stream })
                .collect();
            assert_eq!(seen, want, "cut at {cut}");
            assert!(sc.at_boundary());
        }
        assert!(Scanner::reading().feed(b"GET / HTTP/1.1\r\n", |_| {}).is_err());
    }

    fn ping() -> Frame {
        Frame { kind: PING, flags: 0, stream: 0 }
    }

    #[test]
    fn the_third_early_ping_calls_for_goaway() {
        let t0 = Instant::now();
        let mut p = Policy::new(Duration::from_secs(5));
        // No stream open: anything under two hours apart is early; the first ping is free.
        let calls: Vec<bool> =
            (0..4).map(|i| p.client(ping(), t0 + Duration::from_secs(i))).collect();
        assert_eq!(calls, [false, false, false, true]);
        // Acks are not pings.
        let mut p = Policy::new(Duration::from_secs(5));
        for i in 0..10 {
            assert!(!p.client(
                Frame { kind: PING, flags: FLAG_ACK, stream: 0 },
                t0 + Duration::from_millis(i)
            ));
        }
    }

    #[test]
    fn pings_a_stream_apart_by_the_minimum_time_are_fine() {
        let t0 = Instant::now();
        let mut p = Policy::new(Duration::from_secs(5));
        p.client(Frame { kind: HEADERS, flags: 4, stream: 1 }, t0);
        for i in 0..10 {
            assert!(!p.client(ping(), t0 + Duration::from_secs(5 * i)), "ping {i}");
        }
        // Once the server ends the stream, the idle rule applies.
        p.server(Frame { kind: HEADERS, flags: 5, stream: 1 });
        p.reset = false;
        let t1 = t0 + Duration::from_secs(100);
        let calls: Vec<bool> =
            (0..3).map(|i| p.client(ping(), t1 + Duration::from_secs(10 * i))).collect();
        assert_eq!(calls, [false, false, true]);
        assert_eq!(p.max_stream, 1);
    }

    #[test]
    fn data_from_the_server_clears_the_strikes() {
        let t0 = Instant::now();
        let mut p = Policy::new(Duration::from_secs(5));
        for i in 0..20 {
            p.server(Frame { kind: DATA, flags: 0, stream: 1 });
            assert!(!p.client(ping(), t0 + Duration::from_millis(i)));
        }
    }

    #[test]
    fn the_goaway_frame_is_grpc_gos() {
        let f = too_many_pings_goaway(7);
        assert_eq!(&f[..9], &[0, 0, 22, 7, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..13], &7u32.to_be_bytes());
        assert_eq!(&f[13..17], &11u32.to_be_bytes());
        assert_eq!(&f[17..], b"too_many_pings");
    }

    #[tokio::test]
    async fn a_client_that_pings_too_often_gets_goaway_and_eof() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut server = Pings::new(server, Some(Duration::from_secs(5)));
        let (mut cr, mut cw) = tokio::io::split(client);
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(4, 0, 0, 0));
        for _ in 0..4 {
            hello.extend(frame(PING, 0, 0, 8));
        }
        cw.write_all(&hello).await.unwrap();
        let mut got = Vec::new();
        // The server's reads see the preface and frames up to the violation, then the end.
        let mut sink = vec![0u8; 4096];
        loop {
            let n = server.read(&mut sink).await.unwrap();
            got.extend_from_slice(&sink[..n]);
            if n == 0 {
                break;
            }
        }
        assert!(got.len() < hello.len());
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, too_many_pings_goaway(0));
        assert!(server.write(b"x").await.is_err());
    }

    #[tokio::test]
    async fn http1_passes_through() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut server = Pings::new(server, Some(Duration::from_secs(5)));
        client.write_all(b"GET /health HTTP/1.1\r\n\r\n").await.unwrap();
        let mut b = [0u8; 64];
        let n = server.read(&mut b).await.unwrap();
        assert_eq!(&b[..n], b"GET /health HTTP/1.1\r\n\r\n");
        assert!(matches!(server.state, State::PassThrough));
    }
}
