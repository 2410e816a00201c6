//! KV's unary calls (Range, Put, DeleteRange, Txn, Compact) read and answered by the front
//! door itself: the request's one message is read from the HTTP/2 body (shared, not copied,
//! when it arrives in one frame), decoded, handed to the KV service, and its answer encoded
//! into one buffer sent as one data frame followed by `grpc-status: 0`.
//!
//! **Why.** These five methods are nearly all of a loaded member's calls, and tonic's generic
//! unary path (a streaming decoder and an encoding body around a one-item stream, each with a
//! buffer of its own, and a boxed future per call) cost about as much CPU as the handler it
//! wraps (benches/RESULTS.md, session 18). The service code is the same one tonic calls; the
//! rest of the client port (streams, other services, compressed requests) still goes through
//! tonic.
//!
//! What a client sees is what tonic (and etcd) answer: a request over the size limit gets
//! grpc-go's RESOURCE_EXHAUSTED words before the rest is read; a missing, truncated or
//! undecodable message gets INTERNAL; an error from the service is a trailers-only answer.
#![forbid(unsafe_code)]

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::api::errors::message_too_large;
use crate::api::kv::KvService;
use rusted_proto::etcdserverpb::kv_server::Kv;

/// gRPC's message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// The KV methods answered here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvUnary {
    /// `/etcdserverpb.KV/Range`
    Range,
    /// `/etcdserverpb.KV/Put`
    Put,
    /// `/etcdserverpb.KV/DeleteRange`
    DeleteRange,
    /// `/etcdserverpb.KV/Txn`
    Txn,
    /// `/etcdserverpb.KV/Compact`
    Compact,
}

impl KvUnary {
    /// The method a request's path names, if it is one of these.
    pub fn of(path: &str) -> Option<Self> {
        Some(match path.strip_prefix("/etcdserverpb.KV/")? {
            "Range" => KvUnary::Range,
            "Put" => KvUnary::Put,
            "DeleteRange" => KvUnary::DeleteRange,
            "Txn" => KvUnary::Txn,
            "Compact" => KvUnary::Compact,
            _ => return None,
        })
    }
}

/// Whether a request may take this path: not compressed (tonic answers those, or refuses
/// an encoding it lacks with its own words).
pub fn uncompressed<B>(req: &Request<B>) -> bool {
    const GRPC_ENCODING: header::HeaderName = header::HeaderName::from_static("grpc-encoding");
    req.headers().get(GRPC_ENCODING).is_none_or(|v| v.as_bytes() == b"identity")
}

/// The KV service and the request size limit (`--max-request-bytes` plus gRPC's overhead).
#[derive(Clone, Debug)]
pub struct KvCalls {
    /// The service tonic would call.
    pub svc: KvService,
    /// Largest request message accepted, in bytes.
    pub max_msg: usize,
}

impl KvCalls {
    /// Answers one call of `method`.
    pub async fn call<B>(self, method: KvUnary, req: Request<B>) -> Response<tonic::body::Body>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        let (parts, body) = req.into_parts();
        let msg = match read_message(body, self.max_msg).await {
            Ok(m) => m,
            Err(s) => return s.into_http(),
        };
        let svc = &self.svc;
        match method {
            KvUnary::Range => handle(msg, parts, |r| svc.range(r)).await,
            KvUnary::Put => handle(msg, parts, |r| svc.put(r)).await,
            KvUnary::DeleteRange => handle(msg, parts, |r| svc.delete_range(r)).await,
            KvUnary::Txn => handle(msg, parts, |r| svc.txn(r)).await,
            KvUnary::Compact => handle(msg, parts, |r| svc.compact(r)).await,
        }
    }
}

/// Decodes `msg` as `M`, calls `method` with it and the request's metadata and extensions,
/// and encodes what it answers.
async fn handle<M, R, Fut>(
    msg: Bytes,
    parts: http::request::Parts,
    method: impl FnOnce(tonic::Request<M>) -> Fut,
) -> Response<tonic::body::Body>
where
    M: Message + Default,
    R: Message,
    Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
{
    match decode::<M>(msg) {
        Ok(m) => {
            let metadata = MetadataMap::from_headers(parts.headers);
            answer(method(tonic::Request::from_parts(metadata, parts.extensions, m)).await)
        }
        Err(s) => s.into_http(),
    }
}

fn decode<M: Message + Default>(msg: Bytes) -> Result<M, Status> {
    // As tonic's prost codec words a decoding failure.
    M::decode(msg).map_err(|e| Status::internal(e.to_string()))
}

/// The one message of a unary request's body, without its prefix. The length in the prefix
/// is checked before the rest is read, and nothing past one message is kept.
async fn read_message<B>(body: B, max_msg: usize) -> Result<Bytes, Status>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    let mut body = body;
    // The bytes so far: the first frame alone while nothing else came (the usual case: no
    // copy), else an accumulation.
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut want: Option<usize> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::from_error(e.into()))?;
        let Ok(data) = frame.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        match first.take() {
            None if more.is_empty() => first = Some(data),
            None => more.extend_from_slice(&data),
            Some(f) => {
                more.reserve(f.len() + data.len());
                more.extend_from_slice(&f);
                more.extend_from_slice(&data);
            }
        }
        let seen = first.as_ref().map_or(more.len(), Bytes::len);
        if want.is_none() && seen >= PREFIX {
            let head = first.as_deref().unwrap_or(&more[..]);
            want = Some(message_len(&head[..PREFIX], max_msg)?);
        }
        if let Some(len) = want {
            if seen > PREFIX + len {
                // grpc-go's words for a unary call given a second message.
                return Err(Status::internal(
                    "grpc: client streaming protocol violation: get <nil>, want <EOF>",
                ));
            }
        }
    }
    let mut all = match first {
        Some(f) => f,
        None => more.freeze(),
    };
    match want {
        None if all.is_empty() => Err(Status::internal("Missing request message.")),
        Some(len) if all.len() == PREFIX + len => {
            all.advance(PREFIX);
            Ok(all)
        }
        _ => Err(Status::internal("Unexpected EOF decoding stream.")),
    }
}

/// The message length a prefix announces, refused if compressed (no encoding was named:
/// compressed requests never come here) or over the limit.
fn message_len(prefix: &[u8], max_msg: usize) -> Result<usize, Status> {
    let mut p = prefix;
    let flag = p.get_u8();
    let len = p.get_u32() as usize;
    match flag {
        0 => {}
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding \
                 was specified",
            ))
        }
        f => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {f} (valid \
                 flags are 0 and 1)"
            )))
        }
    }
    if len > max_msg {
        return Err(message_too_large(len, max_msg));
    }
    Ok(len)
}

/// The HTTP answer of a handler's result: an error as trailers only (as tonic and grpc-go),
/// else the handler's metadata as headers, the message as one prefixed data frame, and
/// `grpc-status: 0` in the trailers. The handler's extensions ride along (a lazy Range answer
/// is one: the dispatcher sends it in the message's place).
fn answer<M: Message>(r: Result<tonic::Response<M>, Status>) -> Response<tonic::body::Body> {
    let (metadata, msg, ext) = match r {
        Ok(r) => r.into_parts(),
        Err(s) => return s.into_http(),
    };
    let len = msg.encoded_len();
    let Ok(len32) = u32::try_from(len) else {
        return Status::resource_exhausted(format!(
            "grpc: trying to send message larger than max ({len} vs. {})",
            u32::MAX
        ))
        .into_http();
    };
    let mut buf = BytesMut::with_capacity(PREFIX + len);
    buf.put_u8(0);
    buf.put_u32(len32);
    msg.encode_raw(&mut buf);
    let mut resp =
        Response::new(tonic::body::Body::new(OneMessage { data: Some(buf.freeze()), done: false }));
    *resp.headers_mut() = metadata.into_headers();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    *resp.extensions_mut() = ext;
    resp
}

/// One data frame, then the OK trailers.
struct OneMessage {
    data: Option<Bytes>,
    done: bool,
}

impl Body for OneMessage {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        self.done = true;
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert(super::dispatch::GRPC_STATUS, HeaderValue::from_static("0"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn prefixed(flag: u8, msg: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        v.extend_from_slice(msg);
        v
    }

    type Frames = std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>;

    /// A body delivering `chunks` as separate data frames.
    fn body(chunks: Vec<Vec<u8>>) -> StreamBody<futures_util::stream::Iter<Frames>> {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
            chunks.into_iter().map(|c| Ok(Frame::data(Bytes::from(c)))).collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    async fn read(chunks: Vec<Vec<u8>>, max: usize) -> Result<Bytes, Status> {
        read_message(body(chunks), max).await
    }

    #[tokio::test]
    async fn a_message_is_read_whole_however_it_is_split() {
        let msg: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let wire = prefixed(0, &msg);
        for cuts in [vec![], vec![1], vec![5], vec![3, 7, 400], vec![999]] {
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts.iter().copied().chain([wire.len()]) {
                chunks.push(wire[at..c].to_vec());
                at = c;
            }
            let got = read(chunks, 4096).await.expect("read");
            assert_eq!(&got[..], &msg[..], "cuts {cuts:?}");
        }
        // An empty message is a message.
        assert!(read(vec![prefixed(0, b"")], 10).await.expect("empty").is_empty());
    }

    #[tokio::test]
    async fn bad_bodies_get_the_words_clients_see_from_tonic_and_grpc_go() {
        let err = |r: Result<Bytes, Status>| r.expect_err("refused");
        let s = err(read(vec![prefixed(0, &[7; 100])], 99).await);
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.message(), "grpc: received message larger than max (100 vs. 99)");
        // Refused from the prefix alone: the rest is never needed.
        let s = err(read(vec![prefixed(0, &[7; 100])[..5].to_vec()], 99).await);
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let s = err(read(vec![], 99).await);
        assert_eq!((s.code(), s.message()), (tonic::Code::Internal, "Missing request message."));
        let s = err(read(vec![prefixed(0, b"abc")[..6].to_vec()], 99).await);
        assert_eq!(s.message(), "Unexpected EOF decoding stream.");
        let s = err(read(vec![vec![0, 0, 0]], 99).await);
        assert_eq!(s.message(), "Unexpected EOF decoding stream.");
        let s = err(read(vec![prefixed(1, b"abc")], 99).await);
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(s.message().contains("compressed-flag"), "{}", s.message());
        let s = err(read(vec![prefixed(9, b"abc")], 99).await);
        assert!(s.message().contains("invalid compression flag: 9"), "{}", s.message());
        let mut two = prefixed(0, b"abc");
        two.extend(prefixed(0, b"de"));
        let s = err(read(vec![two], 99).await);
        assert_eq!(s.code(), tonic::Code::Internal);
        let s = decode::<rusted_proto::etcdserverpb::PutRequest>(Bytes::from_static(&[0x0a, 9]))
            .expect_err("truncated field");
        assert_eq!(s.code(), tonic::Code::Internal);
    }

    #[tokio::test]
    async fn an_answer_is_one_prefixed_frame_then_ok_trailers() {
        let msg = rusted_proto::etcdserverpb::PutResponse::default();
        let mut resp = tonic::Response::new(rusted_proto::etcdserverpb::PutResponse {
            header: Some(rusted_proto::etcdserverpb::ResponseHeader {
                revision: 7,
                ..Default::default()
            }),
            ..msg
        });
        resp.metadata_mut().insert("x-answer", "yes".parse().expect("value"));
        let http = answer(Ok(resp));
        assert_eq!(http.headers()["content-type"], "application/grpc");
        assert_eq!(http.headers()["x-answer"], "yes");
        let collected = http.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        let bytes = collected.to_bytes();
        let (prefix, rest) = bytes.split_at(PREFIX);
        assert_eq!(prefix[0], 0);
        assert_eq!(
            u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize,
            rest.len()
        );
        let back = rusted_proto::etcdserverpb::PutResponse::decode(rest).expect("decode");
        assert_eq!(back.header.expect("header").revision, 7);

        let http = answer::<rusted_proto::etcdserverpb::PutResponse>(Err(Status::not_found("x")));
        assert_eq!(http.headers()["grpc-status"], "5");
    }
}
