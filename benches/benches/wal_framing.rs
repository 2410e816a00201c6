//! Criterion benches of the WAL's CPU-side work: framing (encode), verification (decode), and
//! the recovery scan over a segment.
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rusted_wal::frame::{decode_frame, Frame};
use rusted_wal::record::{decode_payload, Record};

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_encode_entry");
    for size in [64usize, 256, 4096] {
        let data = vec![7u8; size];
        let mut buf = Vec::with_capacity(1 << 20);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                buf.clear();
                Record::Entry { index: 42, term: 7, data: black_box(&data) }.encode(&mut buf, 64);
                black_box(buf.len())
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_decode_entry");
    for size in [64usize, 256, 4096] {
        let mut buf = Vec::new();
        Record::Entry { index: 42, term: 7, data: &vec![7u8; size] }.encode(&mut buf, 64);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| match decode_frame(black_box(&buf), 0, u32::MAX) {
                Frame::Record { ty, payload, .. } => {
                    black_box(decode_payload(ty, payload).is_some())
                }
                _ => false,
            })
        });
    }
    g.finish();
}

fn scan(c: &mut Criterion) {
    // A segment's worth of 256-byte entries, verified frame by frame as recovery does.
    let mut seg = Vec::new();
    let data = vec![1u8; 256];
    let mut i = 1;
    while seg.len() < 8 << 20 {
        Record::Entry { index: i, term: 1, data: &data }.encode(&mut seg, 0);
        i += 1;
    }
    let mut g = c.benchmark_group("wal_scan");
    g.throughput(Throughput::Bytes(seg.len() as u64));
    g.sample_size(20);
    g.bench_function("8MiB_of_256B_entries", |b| {
        b.iter(|| {
            let mut off = 0;
            let mut n = 0u64;
            while let Frame::Record { next, .. } = decode_frame(&seg, off, u32::MAX) {
                off = next;
                n += 1;
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, encode, decode, scan);
criterion_main!(benches);
