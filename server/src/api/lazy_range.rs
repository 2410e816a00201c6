//! A big Range answer, encoded while it is sent: the gRPC message is written in chunks of
//! about [`CHUNK`] bytes straight from the page store's map (a [`LazyRange`]), each chunk only
//! when the connection has room for more (hyper polls a body when HTTP/2 flow control lets it
//! send). A slow reader holds one chunk, not its answer; a hundred callers of a 100 MB range
//! hold a hundred chunks.
//!
//! The bytes are those prost (and etcd's Go marshaller) write for the whole `RangeResponse`:
//! the header, each key-value in field order with zero fields left out, then `more` and
//! `count`. Its length goes in the gRPC prefix first, so the answer is measured before it is
//! sent (a pass over the same view that reads only lengths).
//!
//! The KV service's Range handler returns the answer without key-values and a [`LazyAnswer`]
//! in the response's extensions; the client port's dispatcher swaps tonic's body for this one.
#![forbid(unsafe_code)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;
use rusted_mvcc::lazy_range::Position;
use rusted_mvcc::{KvRef, LazyRange, RangeOut};
use rusted_proto::etcdserverpb as pb;
use tonic::Status;

/// Bytes per data frame of a lazily encoded answer.
pub const CHUNK: usize = 64 << 10;
/// grpc-go's (and so etcd's) largest message it sends (math.MaxInt32).
pub const MAX_SEND_BYTES: usize = i32::MAX as usize;

fn int64_len(tag: u32, v: i64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v as u64)
    }
}

fn bytes_len(tag: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(b.len() as u64) + b.len()
    }
}

/// Encoded length of a `mvccpb.KeyValue` (without its own tag and length).
fn kv_len(kv: &KvRef<'_>) -> usize {
    bytes_len(1, kv.key)
        + int64_len(2, kv.create_revision)
        + int64_len(3, kv.mod_revision)
        + int64_len(4, kv.version)
        + bytes_len(5, kv.value)
        + int64_len(6, kv.lease)
}

fn put_int64(tag: u32, v: i64, buf: &mut BytesMut) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v as u64, buf);
    }
}

fn put_bytes(tag: u32, b: &[u8], buf: &mut BytesMut) {
    if !b.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(b.len() as u64, buf);
        buf.put_slice(b);
    }
}

/// Appends `RangeResponse.kvs` entry `kv` (field 2) to `buf`.
fn put_kv(kv: &KvRef<'_>, buf: &mut BytesMut) {
    encode_key(2, WireType::LengthDelimited, buf);
    encode_varint(kv_len(kv) as u64, buf);
    put_bytes(1, kv.key, buf);
    put_int64(2, kv.create_revision, buf);
    put_int64(3, kv.mod_revision, buf);
    put_int64(4, kv.version, buf);
    put_bytes(5, kv.value, buf);
    put_int64(6, kv.lease, buf);
}

fn kv_entry_len(kv: &KvRef<'_>) -> usize {
    let n = kv_len(kv);
    key_len(2) + encoded_len_varint(n as u64) + n
}

/// The body of a lazily encoded Range answer: prefix and header, key-values, `more` and
/// `count`, then the trailers of a successful call.
#[derive(Debug)]
pub struct RangeBody {
    range: LazyRange,
    pos: Position,
    /// The gRPC prefix and the header field, sent first.
    head: Option<Bytes>,
    /// `more` and `count`, sent after the last key-value.
    tail: Option<Bytes>,
    /// Bytes still to send (for the size hint).
    left: u64,
    done: bool,
}

impl RangeBody {
    /// Measures the answer and prepares its first bytes; refuses one past grpc-go's send
    /// limit, as etcd does.
    pub fn new(header: Option<pb::ResponseHeader>, range: LazyRange) -> Result<Self, Status> {
        let head_msg = pb::RangeResponse { header, ..Default::default() };
        let tail_msg =
            pb::RangeResponse { more: range.more, count: range.count, ..Default::default() };
        let mut len = head_msg.encoded_len() + tail_msg.encoded_len();
        let mut measure = Position::default();
        while range
            .next(&mut measure, |kv| {
                len += kv_entry_len(&kv);
                true
            })
            .map_err(status)?
            > 0
        {}
        if len > MAX_SEND_BYTES {
            return Err(Status::resource_exhausted(format!(
                "grpc: trying to send message larger than max ({len} vs. {MAX_SEND_BYTES})"
            )));
        }
        let mut head = BytesMut::with_capacity(5 + head_msg.encoded_len());
        head.put_u8(0);
        head.put_u32(len as u32);
        head_msg.encode(&mut head).map_err(|e| Status::internal(e.to_string()))?;
        let tail = tail_msg.encode_to_vec();
        Ok(RangeBody {
            range,
            pos: Position::default(),
            head: Some(head.freeze()),
            tail: Some(tail.into()),
            left: len as u64 + 5,
            done: false,
        })
    }

    /// The next data frame: key-values until the chunk is full, then the tail.
    fn chunk(&mut self) -> Result<Option<Bytes>, Status> {
        if let Some(h) = self.head.take() {
            return Ok(Some(h));
        }
        let mut buf = BytesMut::with_capacity(CHUNK + 1024);
        let RangeBody { range, pos, .. } = self;
        range
            .next(pos, |kv| {
                put_kv(&kv, &mut buf);
                buf.len() < CHUNK
            })
            .map_err(status)?;
        if !buf.is_empty() {
            return Ok(Some(buf.freeze()));
        }
        Ok(self.tail.take().filter(|t| !t.is_empty()))
    }
}

fn status(e: rusted_mvcc::MvccError) -> Status {
    Status::from(crate::api::errors::ApiError::from(e))
}

fn trailers(status: &Status) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", http::HeaderValue::from(status.code() as i32));
    if !status.message().is_empty() {
        let msg = percent_encoding::utf8_percent_encode(status.message(), GRPC_MESSAGE);
        if let Ok(v) = http::HeaderValue::from_str(&msg.to_string()) {
            h.insert("grpc-message", v);
        }
    }
    h
}

/// What gRPC leaves unescaped in grpc-message: printable ASCII but '%'.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(0x7f);

impl Body for RangeBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.chunk() {
            Ok(Some(b)) => {
                self.left = self.left.saturating_sub(b.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Ok(None) => {
                self.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers(&Status::ok(""))))))
            }
            Err(e) => {
                // The prefix promised more bytes: the client sees the status, not a message.
                tracing::warn!(error = %e, "range answer failed while being sent");
                self.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers(&e)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        let mut h = SizeHint::new();
        h.set_lower(self.left);
        h
    }
}

/// A [`RangeBody`] travelling from the Range handler to the dispatcher in the response's
/// extensions (which must be cloneable: the body is taken out once).
#[derive(Clone, Debug)]
pub struct LazyAnswer(Arc<Mutex<Option<RangeBody>>>);

impl LazyAnswer {
    /// Wraps `body`.
    pub fn new(body: RangeBody) -> Self {
        LazyAnswer(Arc::new(Mutex::new(Some(body))))
    }

    /// The body (once).
    pub fn take(&self) -> Option<RangeBody> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Key-value bytes per RangeStream message (etcd aims its chunks at `--max-request-bytes`).
pub const STREAM_CHUNK: usize = 1 << 20;

/// The messages of a RangeStream (etcd 3.7): consecutive slices of the key-values, about
/// [`STREAM_CHUNK`] bytes each, read from the view as the client takes them; the last one
/// also carries the header, `more` and `count`. Merged, they are the Range's answer.
pub fn range_stream(
    header: Option<pb::ResponseHeader>,
    out: RangeOut,
) -> impl futures_util::Stream<Item = Result<pb::RangeStreamResponse, Status>> + Send {
    let wrap = |r: pb::RangeResponse| pb::RangeStreamResponse { range_response: Some(r) };
    let (lazy, first) = match out {
        // count_only (etcd: one message, the header and the count).
        RangeOut::Full(r) => {
            let whole = pb::RangeResponse { header, ..crate::apply::convert::range_out(r) };
            (None, Some(wrap(whole)))
        }
        RangeOut::Lazy(l) => (Some(l), None),
    };
    let state = (lazy, first, Position::default(), false);
    futures_util::stream::unfold(state, move |(lazy, first, mut pos, done)| async move {
        if done {
            return None;
        }
        if let Some(m) = first {
            return Some((Ok(m), (None, None, pos, true)));
        }
        let l = lazy?;
        let mut kvs = Vec::new();
        let mut bytes = 0usize;
        let read = l.next(&mut pos, |kv| {
            bytes += kv_entry_len(&kv);
            kvs.push(crate::apply::convert::kv_out(kv.to_key_value()));
            bytes < STREAM_CHUNK
        });
        if let Err(e) = read {
            return Some((Err(status(e)), (None, None, pos, true)));
        }
        let last = kvs.is_empty() || l.len() == pos.done();
        let mut r = pb::RangeResponse { kvs, ..Default::default() };
        if last {
            r.header = header;
            r.more = l.more;
            r.count = l.count;
        }
        Some((Ok(wrap(r)), (Some(l), None, pos, last)))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::BodyExt;
    use rusted_mvcc::{Store, StoreOptions};

    fn store(dir: &std::path::Path) -> Store {
        Store::open(dir.join("db"), StoreOptions::default()).unwrap()
    }

    /// The streamed bytes equal prost's encoding of the whole answer, for every shape of
    /// key-value (zero lease, empty value, keys_only, limit with `more`, unflushed writes).
    #[tokio::test]
    async fn the_streamed_answer_is_byte_for_byte_the_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut index = 0;
        let mut at = || {
            index += 1;
            rusted_mvcc::Applied { index, term: 1 }
        };
        for id in 1..5 {
            s.lease_grant(at(), id, 600).unwrap();
        }
        for i in 0..3000u32 {
            let put = rusted_mvcc::request::PutRequest {
                key: format!("k{i:05}").into_bytes(),
                value: if i % 7 == 0 {
                    Vec::new()
                } else {
                    vec![b'a' + (i % 26) as u8; (i % 300) as usize]
                },
                lease: (i % 5) as i64,
                ..Default::default()
            };
            s.put(at(), &put).unwrap();
            if i % 3 == 0 {
                s.put(at(), &put).unwrap(); // version 2
            }
            if i == 2000 {
                s.flush().unwrap();
            }
        }
        for (key, end, limit, keys_only, rev) in [
            (b"k".to_vec(), b"l".to_vec(), 0, false, 0),
            (b"k".to_vec(), b"l".to_vec(), 0, true, 0),
            (b"k00100".to_vec(), b"k02500".to_vec(), 1000, false, 0),
            (b"k".to_vec(), vec![0], 2999, false, 0),
            (b"k".to_vec(), b"l".to_vec(), 0, false, 1500),
        ] {
            let req = rusted_mvcc::request::RangeRequest {
                key,
                range_end: end,
                limit,
                keys_only,
                revision: rev,
                ..Default::default()
            };
            let whole = s.range(&req).unwrap();
            let header = Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: whole.revision,
                raft_term: 3,
            });
            let want = pb::RangeResponse { header, ..crate::apply::convert::range_out(whole) };
            let mut framed = vec![0u8];
            framed.extend((want.encoded_len() as u32).to_be_bytes());
            framed.extend(want.encode_to_vec());
            let RangeOut::Lazy(lazy) = s.range_lazy(&req, 1).unwrap() else { panic!("not lazy") };
            let body = RangeBody::new(header, lazy).unwrap();
            let collected = body.collect().await.unwrap();
            let trailers = collected.trailers().cloned().unwrap();
            assert_eq!(trailers.get("grpc-status").unwrap(), "0");
            let got = collected.to_bytes();
            assert_eq!(got.len(), framed.len(), "limit {limit} keys_only {keys_only} rev {rev}");
            assert!(
                got[..] == framed[..],
                "limit {limit} keys_only {keys_only} rev {rev}: bytes differ"
            );
        }
    }
}
