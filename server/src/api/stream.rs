//! Server streams that answer as grpc-go's do: the response headers go out with the first
//! message. tonic writes them as soon as a handler returns; a client whose call returns on the
//! headers (Rust's etcd-client: `watch()`, then `put()`) would otherwise write before its watch
//! exists and miss its own write. The handler waits for the stream's first message instead.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Response, Status};

/// A boxed server stream.
pub type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The response for a stream fed by `rx`, once its first message is ready. A first message that
/// is an error becomes the call's status (no stream, as grpc-go's trailers-only answer); a
/// stream that ends before any message is answered empty.
pub async fn after_first<T: Send + 'static>(
    mut rx: mpsc::Receiver<Result<T, Status>>,
) -> Result<Response<Out<T>>, Status> {
    let first = match rx.recv().await {
        Some(Ok(m)) => Some(Ok(m)),
        Some(Err(status)) => return Err(status),
        None => None,
    };
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(Response::new(Box::pin(tokio_stream::StreamExt::chain(tokio_stream::iter(first), rest))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn waits_for_the_first_message_and_keeps_the_order() {
        let (tx, rx) = mpsc::channel(4);
        let answer = tokio::spawn(after_first(rx));
        tokio::task::yield_now().await;
        assert!(!answer.is_finished(), "answered before any message");
        tx.send(Ok(1)).await.expect("send");
        tx.send(Ok(2)).await.expect("send");
        drop(tx);
        let s = answer.await.expect("join").expect("a stream").into_inner();
        let got: Vec<i32> = s.map(|m| m.expect("ok")).collect().await;
        assert_eq!(got, [1, 2]);
    }

    #[tokio::test]
    async fn a_first_error_is_the_status_and_an_empty_stream_is_empty() {
        let (tx, rx) = mpsc::channel::<Result<i32, Status>>(1);
        tx.send(Err(Status::permission_denied("no"))).await.expect("send");
        let e = after_first(rx).await.err().expect("an error");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let (tx, rx) = mpsc::channel::<Result<i32, Status>>(1);
        drop(tx);
        let s = after_first(rx).await.expect("a stream").into_inner();
        assert_eq!(s.collect::<Vec<_>>().await.len(), 0);
    }
}
