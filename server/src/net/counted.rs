//! A body that adds the length of each data frame it carries to a counter: the client port's
//! gRPC bytes in and out (`etcd_network_client_grpc_{received,sent}_bytes_total`).
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
}

impl<B> Counted<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, counter: IntCounter) -> Self {
        Counted { inner, counter }
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
