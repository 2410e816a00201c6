//! Big ranges over gRPC on 127.0.0.194: a unary Range past the lazy threshold answers what a
//! small one would (checked key by key), and RangeStream (etcd 3.7) — its chunks merged — is
//! the Range's answer for every shape it accepts, with the header, `more` and `count` on the
//! last chunk only; the shapes it refuses get etcd's Unimplemented messages.
#![allow(clippy::unwrap_used)]

mod common;

use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::range_request::SortOrder;
use rusted_proto::etcdserverpb::range_request::SortTarget;
use rusted_proto::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use rusted_server::member::StartOptions;
use tonic::transport::Channel;

const IP: &str = "127.0.0.194";

fn value(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; 200 + i % 1500]
}

async fn stream(
    kv: &mut KvClient<Channel>,
    r: RangeRequest,
) -> Result<Vec<RangeResponse>, tonic::Status> {
    let mut s = kv.range_stream(r).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push(m.range_response.unwrap_or_default());
    }
    Ok(out)
}

fn merged(chunks: &[RangeResponse]) -> RangeResponse {
    let mut m = RangeResponse::default();
    for c in chunks {
        m.kvs.extend(c.kvs.iter().cloned());
        if c.header.is_some() {
            m.header = c.header;
        }
        m.more |= c.more;
        if c.count != 0 {
            m.count = c.count;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_ranges_and_range_streams_answer_as_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let _m = common::start_member(IP, dir.path(), StartOptions::default(), &[]).await;
    let mut kv = KvClient::connect(format!("http://{IP}:2379")).await.unwrap();
    for i in 0..3000 {
        let put = PutRequest {
            key: format!("k{i:05}").into_bytes(),
            value: value(i),
            ..Default::default()
        };
        kv.put(put).await.unwrap();
    }
    let half =
        kv.range(RangeRequest { key: b"k00000".to_vec(), ..Default::default() }).await.unwrap();
    let old_rev = half.into_inner().header.unwrap().revision;
    for i in 0..100 {
        let put = PutRequest {
            key: format!("k{i:05}").into_bytes(),
            value: b"new".to_vec(),
            ..Default::default()
        };
        kv.put(put).await.unwrap();
    }

    // Unary, lazily encoded: every key with its value, in order.
    let all = RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
    let whole = kv.range(all.clone()).await.unwrap().into_inner();
    assert_eq!(whole.kvs.len(), 3000);
    assert_eq!(whole.count, 3000);
    for (i, kv) in whole.kvs.iter().enumerate() {
        assert_eq!(kv.key, format!("k{i:05}").into_bytes());
        assert_eq!(kv.value, if i < 100 { b"new".to_vec() } else { value(i) });
        assert_eq!(kv.version, if i < 100 { 2 } else { 1 });
    }

    let shapes = [
        all.clone(),
        RangeRequest { limit: 1000, ..all.clone() },
        RangeRequest { keys_only: true, ..all.clone() },
        RangeRequest { revision: old_rev, ..all.clone() },
        RangeRequest { sort_order: SortOrder::Ascend as i32, limit: 2999, ..all.clone() },
        RangeRequest { key: b"k00100".to_vec(), range_end: b"k00110".to_vec(), ..all.clone() },
        RangeRequest { key: b"x".to_vec(), range_end: b"y".to_vec(), ..all.clone() },
        RangeRequest { count_only: true, ..all.clone() },
        RangeRequest {
            key: b"k02000".to_vec(),
            range_end: vec![0],
            serializable: true,
            ..all.clone()
        },
    ];
    for r in shapes {
        let unary = kv.range(r.clone()).await.unwrap().into_inner();
        let chunks = stream(&mut kv, r.clone()).await.unwrap();
        assert!(!chunks.is_empty(), "{r:?}");
        let (last, rest) = chunks.split_last().unwrap();
        assert!(last.header.is_some(), "the last chunk carries the header");
        for c in rest {
            assert!(
                c.header.is_none() && c.count == 0 && !c.more,
                "only the last chunk has header, more, count"
            );
        }
        let bytes: usize = unary.kvs.iter().map(|k| k.key.len() + k.value.len()).sum();
        if bytes > 3 << 20 {
            assert!(chunks.len() > 1, "{} bytes in one chunk", bytes);
        }
        assert_eq!(merged(&chunks), unary, "{r:?}");
    }

    // What RangeStream refuses, with etcd 3.7's messages.
    for (r, msg) in [
        (
            RangeRequest { sort_order: SortOrder::Descend as i32, ..all.clone() },
            "RangeStream does not support custom sort orders",
        ),
        (
            RangeRequest {
                sort_order: SortOrder::Ascend as i32,
                sort_target: SortTarget::Mod as i32,
                ..all.clone()
            },
            "RangeStream does not support custom sort orders",
        ),
        (
            RangeRequest { min_mod_revision: 5, ..all.clone() },
            "RangeStream does not support revision filters",
        ),
    ] {
        let e = stream(&mut kv, r).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert_eq!(e.message(), msg);
    }
    let e = stream(&mut kv, RangeRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(e.message(), "etcdserver: key is not provided");
    let e = stream(&mut kv, RangeRequest { revision: 1_000_000, ..all }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange);
}
