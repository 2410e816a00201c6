//! A body that adds the length of each data frame it carries to a counter: the client port's
//! gRPC bytes in and out (`etcd_network_client_grpc_{received,sent}_bytes_total`); and,
//! optionally, counts the gRPC messages in it (`grpc_server_msg_{received,sent}_total`) by
//! following their 5-byte prefixes (flag, big-endian length) across frames.
#![forbid(unsafe_code)]

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;

/// `inner`, counting its data bytes into `counter` as they pass.
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    counter: IntCounter,
    messages: Option<(IntCounter, Framing)>,
}

impl<B> Counted<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, counter: IntCounter) -> Self {
        Counted { inner, counter, messages: None }
    }

    /// Also counts the gRPC messages passing into `messages`.
    pub fn with_messages(mut self, messages: IntCounter) -> Self {
        self.messages = Some((messages, Framing::default()));
        self
    }
}

/// Where a stream of gRPC messages is: inside a prefix (bytes of it seen so far) or inside a
/// message's body (bytes left).
#[derive(Debug, Default)]
pub struct Framing {
    prefix: [u8; 5],
    prefix_len: usize,
    body_left: u64,
}

impl Framing {
    /// Takes the next bytes of the stream; returns how many messages began in them.
    pub fn feed(&mut self, mut b: &[u8]) -> u64 {
        let mut started = 0;
        while !b.is_empty() {
            if self.body_left > 0 {
                let n = usize::try_from(self.body_left).unwrap_or(usize::MAX).min(b.len());
                self.body_left -= n as u64;
                b = &b[n..];
                continue;
            }
            let n = (5 - self.prefix_len).min(b.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&b[..n]);
            self.prefix_len += n;
            b = &b[n..];
            if self.prefix_len == 5 {
                let [_, l0, l1, l2, l3] = self.prefix;
                self.body_left = u64::from(u32::from_be_bytes([l0, l1, l2, l3]));
                self.prefix_len = 0;
                started += 1;
            }
        }
        started
    }
}

impl<B> Body for Counted<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &polled {
            if let Some(d) = f.data_ref() {
                self.counter.inc_by(d.remaining() as u64);
                if let Some((counter, framing)) = &mut self.messages {
                    // Every chunk of the frame, without consuming it.
                    let mut slices = [std::io::IoSlice::new(&[]); 64];
                    let n = d.chunks_vectored(&mut slices);
                    let started: u64 = slices[..n].iter().map(|s| framing.feed(s)).sum();
                    counter.inc_by(started);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn messages_are_counted_across_frame_boundaries() {
        let msg = |len: u32| {
            let mut v = vec![0u8];
            v.extend_from_slice(&len.to_be_bytes());
            v.extend(std::iter::repeat_n(7u8, len as usize));
            v
        };
        let stream: Vec<u8> = [msg(3), msg(0), msg(70_000), msg(1)].concat();
        for cut in [1usize, 2, 4, 5, 6, 1000, stream.len()] {
            let mut f = Framing::default();
            let total: u64 = stream.chunks(cut).map(|c| f.feed(c)).sum();
            assert_eq!(total, 4, "frames of {cut} bytes");
        }
    }

    #[tokio::test]
    async fn counts_every_data_byte() {
        let c = IntCounter::new("c", "c").expect("counter");
        let body =
            Counted::new(http_body_util::Full::new(bytes::Bytes::from_static(b"hello")), c.clone());
        let all = body.collect().await.expect("collect").to_bytes();
        assert_eq!(&all[..], b"hello");
        assert_eq!(c.get(), 5);
    }
}
