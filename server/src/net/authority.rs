//! Lets clients that send a malformed HTTP/2 `:authority` talk to us.
//!
//! etcd 3.4's clientv3 dials a single endpoint (for Status, HashKV, Defragment, and so every
//! `etcdctl endpoint status`, `defrag` or `--cluster` command) through grpc-go's passthrough
//! resolver with the endpoint as given, so `--endpoints=http://10.0.0.1:2379` sends the
//! `:authority` "http://10.0.0.1:2379". etcd's Go server ignores it; the `h2` crate under tonic
//! rejects the stream with PROTOCOL_ERROR, and there is no setting to relax that.
//!
//! [`AuthorityFix`] sits between the socket and the HTTP/2 server and rewrites such a value,
//! in the client's HEADERS blocks, to a valid one of the *same length* (`a` repeated). The HPACK
//! dynamic table accounts entries by name and value length, so the server's table stays in
//! step with the client's, and later references to the entry resolve to the rewritten value.
//! Nobody reads the value: no route or handler here looks at `:authority`.
//!
//! Cost: it parses frame headers only until the first HEADERS block of a connection. If that
//! block's authority is valid (every client but these), the connection becomes a plain pass-
//! through; otherwise it keeps inspecting HEADERS blocks and copies other frames through. A
//! connection that does not start with the HTTP/2 preface (the JSON gateway over HTTP/1) is
//! passed through from its first byte.
//!
//! Only the forms grpc-go emits are rewritten: a literal whose name is the static `:authority`
//! (index 1) or a literal name `:authority`. An empty value is left alone (there is no valid
//! value of length 0).
#![forbid(unsafe_code)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface a client starts with.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes of an HTTP/2 frame header (length, type, flags, stream).
pub(crate) const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// HTTP/2's default (and minimum) SETTINGS_MAX_FRAME_SIZE: the largest frame we emit.
const MAX_FRAME: usize = 16_384;
/// The largest header block collected before giving up on rewriting (h2's own default limit
/// on a header list is 16 MiB; blocks this large are refused by it anyway).
const MAX_BLOCK: usize = 1 << 20;
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Matching the first bytes against the HTTP/2 preface.
    Preface,
    /// Parsing frames; header blocks are inspected.
    Frames,
    /// Copying bytes through untouched.
    PassThrough,
}

/// A header block being collected: the first frame's header and priority bytes, then the
/// fragments of it and its CONTINUATION frames.
#[derive(Debug)]
struct Block {
    flags: u8,
    stream: [u8; 4],
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// The connection wrapper (see the module documentation).
#[derive(Debug)]
pub struct AuthorityFix<T> {
    inner: T,
    mode: Mode,
    /// Bytes read from `inner`, not yet processed.
    raw: BytesMut,
    /// Processed bytes waiting for the reader.
    out: BytesMut,
    /// Bytes of the current non-header frame still to copy through.
    copying: usize,
    block: Option<Block>,
    eof: bool,
}

impl<T> AuthorityFix<T> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: T) -> Self {
        AuthorityFix {
            inner,
            mode: Mode::Preface,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            copying: 0,
            block: None,
            eof: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Moves what can be decided from `raw` to `out`.
    fn process(&mut self) {
        loop {
            match self.mode {
                Mode::PassThrough => {
                    let all = self.raw.split();
                    self.out.extend_from_slice(&all);
                    return;
                }
                Mode::Preface => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        self.mode = Mode::PassThrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    let p = self.raw.split_to(PREFACE.len());
                    self.out.extend_from_slice(&p);
                    self.mode = Mode::Frames;
                }
                Mode::Frames => {
                    if self.copying > 0 {
                        let n = self.copying.min(self.raw.len());
                        let b = self.raw.split_to(n);
                        self.out.extend_from_slice(&b);
                        self.copying -= n;
                        if self.copying > 0 {
                            return;
                        }
                        continue;
                    }
                    if self.raw.len() < FRAME_HEADER {
                        return;
                    }
                    let len = (usize::from(self.raw[0]) << 16)
                        | (usize::from(self.raw[1]) << 8)
                        | usize::from(self.raw[2]);
                    let kind = self.raw[3];
                    let in_block = self.block.is_some();
                    let continues_block = match kind {
                        TYPE_HEADERS => !in_block,
                        TYPE_CONTINUATION => in_block,
                        _ => false,
                    };
                    if !continues_block {
                        if in_block {
                            // A block interrupted by another frame: a protocol error the
                            // server will refuse on its own; stop interfering.
                            self.give_up();
                        } else {
                            // Not part of a header block: copy it through.
                            self.copying = FRAME_HEADER + len;
                        }
                        continue;
                    }
                    if len > MAX_FRAME {
                        // Larger than the server allows: let it refuse the frame, without
                        // holding it here first.
                        self.give_up();
                        continue;
                    }
                    if self.raw.len() < FRAME_HEADER + len {
                        return;
                    }
                    let frame = self.raw.split_to(FRAME_HEADER + len);
                    if !self.add_frame(&frame) {
                        // Malformed framing: hand the server the original bytes to refuse.
                        self.out.extend_from_slice(&frame);
                        self.mode = Mode::PassThrough;
                    }
                }
            }
        }
    }

    /// Stops collecting a block: emits what was collected unchanged and passes through.
    fn give_up(&mut self) {
        if let Some(b) = self.block.take() {
            let mut v = Vec::new();
            emit_block(&mut v, &b, &b.fragment);
            self.out.extend_from_slice(&v);
        }
        self.mode = Mode::PassThrough;
    }

    /// Adds a HEADERS or CONTINUATION frame to the current block; false if it is malformed.
    fn add_frame(&mut self, frame: &[u8]) -> bool {
        let flags = frame[4];
        let mut stream = [0u8; 4];
        stream.copy_from_slice(&frame[5..9]);
        let mut payload = &frame[FRAME_HEADER..];
        if frame[3] == TYPE_HEADERS {
            let mut priority = None;
            if flags & FLAG_PADDED != 0 {
                let Some((&pad, rest)) = payload.split_first() else { return false };
                if usize::from(pad) > rest.len() {
                    return false;
                }
                payload = &rest[..rest.len() - usize::from(pad)];
            }
            if flags & FLAG_PRIORITY != 0 {
                if payload.len() < 5 {
                    return false;
                }
                let mut p = [0u8; 5];
                p.copy_from_slice(&payload[..5]);
                priority = Some(p);
                payload = &payload[5..];
            }
            self.block = Some(Block { flags, stream, priority, fragment: payload.to_vec() });
        } else if let Some(b) = self.block.as_mut() {
            if b.stream != stream {
                return false;
            }
            b.fragment.extend_from_slice(payload);
            b.flags |= flags & FLAG_END_HEADERS;
        }
        let Some(b) = self.block.as_ref() else { return false };
        if b.fragment.len() > MAX_BLOCK {
            self.give_up();
            return true;
        }
        if b.flags & FLAG_END_HEADERS == 0 {
            return true;
        }
        let Some(b) = self.block.take() else { return false };
        let (fixed, rewrote) = match rewrite_block(&b.fragment) {
            Some(r) => r,
            // Not a block we can parse: leave it to the server to judge.
            None => (b.fragment.clone(), true),
        };
        let mut v = Vec::with_capacity(fixed.len() + 2 * FRAME_HEADER + 5);
        emit_block(&mut v, &b, &fixed);
        self.out.extend_from_slice(&v);
        if !rewrote {
            self.mode = Mode::PassThrough;
        }
        true
    }
}

/// Writes a header block as a HEADERS frame (flags kept, padding dropped) and as many
/// CONTINUATION frames as it needs.
fn emit_block(out: &mut Vec<u8>, b: &Block, block: &[u8]) {
    let head_room = MAX_FRAME - if b.priority.is_some() { 5 } else { 0 };
    let first = block.len().min(head_room);
    let rest = &block[first..];
    // A block given up on before its end keeps going without END_HEADERS: its remaining
    // CONTINUATION frames follow, untouched.
    let ends = b.flags & FLAG_END_HEADERS;
    let mut flags = b.flags & !FLAG_PADDED & !FLAG_END_HEADERS;
    if rest.is_empty() {
        flags |= ends;
    }
    let len = first + if b.priority.is_some() { 5 } else { 0 };
    frame_header(out, len, TYPE_HEADERS, flags, b.stream);
    if let Some(p) = b.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&block[..first]);
    let mut chunks = rest.chunks(MAX_FRAME).peekable();
    while let Some(c) = chunks.next() {
        let f = if chunks.peek().is_none() { ends } else { 0 };
        frame_header(out, c.len(), TYPE_CONTINUATION, f, b.stream);
        out.extend_from_slice(c);
    }
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream);
}

/// An HPACK integer with an `n`-bit prefix at `b[*at]`; advances `at`.
fn read_int(b: &[u8], at: &mut usize, n: u8) -> Option<usize> {
    let mask = (1u16 << n) as u8 - 1;
    let mut v = usize::from(*b.get(*at)? & mask);
    *at += 1;
    if v < usize::from(mask) {
        return Some(v);
    }
    let mut shift = 0u32;
    loop {
        let x = *b.get(*at)?;
        *at += 1;
        v = v.checked_add(usize::from(x & 0x7f).checked_shl(shift)?)?;
        if x & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

fn write_int(out: &mut Vec<u8>, first_bits: u8, n: u8, v: usize) {
    let mask = ((1u16 << n) - 1) as usize;
    if v < mask {
        out.push(first_bits | v as u8);
        return;
    }
    out.push(first_bits | mask as u8);
    let mut r = v - mask;
    while r >= 0x80 {
        out.push((r as u8 & 0x7f) | 0x80);
        r >>= 7;
    }
    out.push(r as u8);
}

/// An HPACK string literal at `b[*at]`: (is Huffman, encoded bytes); advances `at`.
fn read_str<'a>(b: &'a [u8], at: &mut usize) -> Option<(bool, &'a [u8])> {
    let huffman = *b.get(*at)? & 0x80 != 0;
    let len = read_int(b, at, 7)?;
    let s = b.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some((huffman, s))
}

fn decoded(huffman: bool, s: &[u8]) -> Option<Vec<u8>> {
    if !huffman {
        return Some(s.to_vec());
    }
    let mut v = Vec::new();
    httlib_huffman::decode(s, &mut v, httlib_huffman::DecoderSpeed::FourBits).ok()?;
    Some(v)
}

/// Rewrites every malformed non-empty `:authority` literal in a header block. Returns the
/// block and whether anything was rewritten; `None` if the block does not parse.
pub fn rewrite_block(b: &[u8]) -> Option<(Vec<u8>, bool)> {
    let mut out = Vec::with_capacity(b.len());
    let mut at = 0;
    let mut rewrote = false;
    while at < b.len() {
        let start = at;
        let first = b[at];
        let (prefix, pattern) = if first & 0x80 != 0 {
            read_int(b, &mut at, 7)?;
            out.extend_from_slice(&b[start..at]);
            continue;
        } else if first & 0xc0 == 0x40 {
            (6, 0x40)
        } else if first & 0xe0 == 0x20 {
            read_int(b, &mut at, 5)?;
            out.extend_from_slice(&b[start..at]);
            continue;
        } else {
            (4, first & 0xf0)
        };
        let index = read_int(b, &mut at, prefix)?;
        let name_start = at;
        let is_authority = if index == 0 {
            let (h, name) = read_str(b, &mut at)?;
            decoded(h, name)?.as_slice() == b":authority"
        } else {
            index == 1
        };
        let name_end = at;
        let (h, value) = read_str(b, &mut at)?;
        if is_authority {
            let v = decoded(h, value)?;
            if !v.is_empty() && http::uri::Authority::try_from(v.as_slice()).is_err() {
                write_int(&mut out, pattern, prefix, index);
                out.extend_from_slice(&b[name_start..name_end]);
                write_int(&mut out, 0, 7, v.len());
                out.extend(std::iter::repeat_n(b'a', v.len()));
                rewrote = true;
                continue;
            }
        }
        out.extend_from_slice(&b[start..at]);
    }
    Some((out, rewrote))
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityFix<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::PassThrough && this.raw.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.eof {
                // Whatever is left undecided (a partial frame) goes through as it is.
                this.mode = Mode::PassThrough;
                this.process();
                if this.out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(rb.filled());
                        this.process();
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn huff(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        httlib_huffman::encode(s, &mut v).unwrap();
        v
    }

    fn lit(
        first: u8,
        prefix: u8,
        index: usize,
        name: Option<&[u8]>,
        value: &[u8],
        h: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        write_int(&mut out, first, prefix, index);
        if let Some(n) = name {
            write_int(&mut out, 0, 7, n.len());
            out.extend_from_slice(n);
        }
        let enc = if h { huff(value) } else { value.to_vec() };
        write_int(&mut out, if h { 0x80 } else { 0 }, 7, enc.len());
        out.extend_from_slice(&enc);
        out
    }

    fn fields(b: &[u8]) -> Vec<(usize, Option<Vec<u8>>, Vec<u8>)> {
        // A small decoder of the literal forms, for checking rewritten blocks.
        let mut at = 0;
        let mut v = Vec::new();
        while at < b.len() {
            let first = b[at];
            if first & 0x80 != 0 {
                let i = read_int(b, &mut at, 7).unwrap();
                v.push((i, None, Vec::new()));
                continue;
            }
            let p = if first & 0xc0 == 0x40 { 6 } else { 4 };
            let i = read_int(b, &mut at, p).unwrap();
            let name = (i == 0).then(|| {
                let (h, n) = read_str(b, &mut at).unwrap();
                decoded(h, n).unwrap()
            });
            let (h, val) = read_str(b, &mut at).unwrap();
            v.push((i, name, decoded(h, val).unwrap()));
        }
        v
    }

    #[test]
    fn rewrites_malformed_authorities_to_the_same_length() {
        let bad = b"http://127.0.0.1:2379";
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        block.extend(lit(0x40, 6, 1, None, bad, true)); // :authority, incremental indexing
        block.extend(lit(0x00, 4, 0, Some(b":authority"), bad, false));
        block.extend(lit(0x40, 6, 31, None, b"application/grpc", true)); // content-type
        let (out, rewrote) = rewrite_block(&block).unwrap();
        assert!(rewrote);
        let f = fields(&out);
        assert_eq!(f[0].0, 3);
        assert_eq!(f[2], (1, None, vec![b'a'; bad.len()]));
        assert_eq!(f[3], (0, Some(b":authority".to_vec()), vec![b'a'; bad.len()]));
        assert_eq!(f[4], (31, None, b"application/grpc".to_vec()));
        // A valid authority is left exactly as it was.
        let good = lit(0x40, 6, 1, None, b"127.0.0.1:2379", true);
        assert_eq!(rewrite_block(&good).unwrap(), (good.clone(), false));
        // Truncated blocks do not parse.
        assert!(rewrite_block(&block[..block.len() - 3]).is_none());
        assert!(rewrite_block(&[0x7f]).is_none());
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        frame_header(&mut v, payload.len(), kind, flags, stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    async fn through(input: Vec<u8>) -> Vec<u8> {
        // Fed one byte at a time, to cross every boundary.
        let (mut a, b) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for x in input {
                a.write_all(&[x]).await.unwrap();
            }
        });
        let mut fix = AuthorityFix::new(b);
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn connections_are_fixed_or_passed_through() {
        // HTTP/1 is untouched.
        let h1 = b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n\r\n{}".to_vec();
        assert_eq!(through(h1.clone()).await, h1);

        // HTTP/2 with a malformed authority, in a padded HEADERS frame with priority split
        // over a CONTINUATION, then DATA, then a second request that refers to the entry.
        let bad = b"http://127.0.0.1:2379";
        let mut block = vec![0x83, 0x86, 0x44, 0x01, b'/'];
        block.extend(lit(0x40, 6, 1, None, bad, true));
        let (b1, b2) = block.split_at(4);
        let mut p = vec![2u8]; // pad length
        p.extend([0, 0, 0, 0, 16]); // priority
        p.extend_from_slice(b1);
        p.extend([0, 0]); // padding
        let mut conn = PREFACE.to_vec();
        conn.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        conn.extend(frame(TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 1, &p));
        conn.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b2));
        conn.extend(frame(0x0, 0x1, 1, b"\0\0\0\0\0"));
        conn.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS | 0x1, 3, &[0x83, 0x86, 0xbe]));
        let out = through(conn).await;

        let mut want = PREFACE.to_vec();
        want.extend(frame(0x4, 0, 0, &[]));
        let mut fixed = vec![0x83, 0x86, 0x44, 0x01, b'/'];
        fixed.extend(lit(0x40, 6, 1, None, &[b'a'; 21], false));
        let mut pf = vec![0, 0, 0, 0, 16];
        pf.extend(&fixed);
        want.extend(frame(TYPE_HEADERS, FLAG_PRIORITY | FLAG_END_HEADERS, 1, &pf));
        want.extend(frame(0x0, 0x1, 1, b"\0\0\0\0\0"));
        want.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS | 0x1, 3, &[0x83, 0x86, 0xbe]));
        assert_eq!(out, want);

        // A valid first request turns the connection into a plain pipe.
        let mut conn = PREFACE.to_vec();
        let good = lit(0x40, 6, 1, None, b"127.0.0.1:2379", true);
        conn.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &good));
        conn.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 3, &lit(0x40, 6, 1, None, bad, false)));
        assert_eq!(through(conn.clone()).await, conn);
    }

    #[tokio::test]
    async fn blocks_it_cannot_finish_go_through_as_they_came() {
        // A HEADERS frame without END_HEADERS interrupted by DATA (a protocol error h2 will
        // report): the partial block is not marked complete.
        let block = lit(0x40, 6, 1, None, b"127.0.0.1:2379", false);
        let mut conn = PREFACE.to_vec();
        conn.extend(frame(TYPE_HEADERS, 0, 1, &block));
        conn.extend(frame(0x0, 0x1, 1, b"x"));
        assert_eq!(through(conn.clone()).await, conn);
        // A frame longer than HTTP/2's default limit is not held back.
        let mut conn = PREFACE.to_vec();
        let mut big = frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[]);
        big[0] = 0xff;
        conn.extend(big);
        conn.extend([0u8; 100]);
        let (mut a, b) = tokio::io::duplex(1 << 16);
        {
            use tokio::io::AsyncWriteExt;
            a.write_all(&conn).await.unwrap();
        }
        let mut fix = AuthorityFix::new(b);
        let mut got = vec![0u8; conn.len()];
        fix.read_exact(&mut got).await.unwrap();
        assert_eq!(got, conn);
    }

    #[test]
    fn big_blocks_are_split_into_frames() {
        let b = Block {
            flags: FLAG_END_HEADERS | 0x1,
            stream: [0, 0, 0, 1],
            priority: None,
            fragment: vec![],
        };
        let data = vec![7u8; MAX_FRAME * 2 + 10];
        let mut out = Vec::new();
        emit_block(&mut out, &b, &data);
        assert_eq!(out.len(), data.len() + 3 * FRAME_HEADER);
        assert_eq!(out[4], 0x1); // END_STREAM kept, END_HEADERS moved to the last frame
        let last = MAX_FRAME * 2 + 2 * FRAME_HEADER;
        assert_eq!((out[last + 3], out[last + 4]), (TYPE_CONTINUATION, FLAG_END_HEADERS));
    }
}
