//! The gRPC message codec of every generated service and client: prost, with small per-call
//! buffers.
//!
//! tonic allocates its codec buffer size up front for each call, once to decode the request and
//! once to encode the response, and grows the buffer as a message needs. Its default of 8 KiB
//! is larger than glibc's per-thread cache serves, so each unary call paid two large
//! allocations (with `malloc_consolidate` and chunk unlinking) although most etcd messages are
//! a few hundred bytes. [`CODEC_BUFFER_SIZE`] fits a put of a 256-byte value; larger messages
//! grow the buffer (the decoder reserves the exact length from the gRPC frame header; the
//! encoder's buffer grows as prost writes), so no size is refused here. Size limits stay where
//! they are: each service's max decoding/encoding size (`--max-request-bytes` for clients).

use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes allocated per call for the request and for the response before they grow.
pub const CODEC_BUFFER_SIZE: usize = 1024;

/// A streamed response is handed to the transport once this many encoded bytes are buffered
/// (tonic's default).
pub const CODEC_YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding of `T`, decoding of `U`, with [`CODEC_BUFFER_SIZE`] buffers.
#[derive(Debug)]
pub struct Codec1K<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec1K<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(CODEC_BUFFER_SIZE, CODEC_YIELD_THRESHOLD)
}

impl<T, U> Codec for Codec1K<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
