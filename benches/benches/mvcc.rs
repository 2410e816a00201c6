//! The MVCC store: criterion for put, txn with 3 compares, ranges of 1 / 100 / 10,000 keys and
//! watch fan-out (1 writer, 10,000 watchers of one key); timed once each: restart (index
//! rebuild) with 1M keys and compaction of 1M revisions. No WAL here: these are the engine's
//! own costs. `RUSTED_BENCH_KEYS` changes the 1M.
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use rusted_mvcc::request::*;
use rusted_mvcc::{Applied, Store, StoreOptions, WatchOptions};

fn key(i: u64) -> Vec<u8> {
    format!("/registry/pods/ns-{:03}/pod-{:07}", i % 100, i).into_bytes()
}

fn put(store: &Store, k: Vec<u8>, v: &[u8]) {
    store
        .put(Applied::default(), &PutRequest { key: k, value: v.to_vec(), ..Default::default() })
        .expect("put");
}

fn main() {
    let n: u64 =
        std::env::var("RUSTED_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let value = [0x5Au8; 256];
    let mut report = Vec::new();

    // Load n keys, then restart: the index is rebuilt from the key bucket.
    let path = dir.path().join("mvcc");
    let t = Instant::now();
    {
        let store = Store::open(&path, StoreOptions::default()).expect("open");
        for i in 0..n {
            put(&store, key(i), &value);
        }
        store.close().expect("close");
    }
    report
        .push(format!("load {n} puts (256 B values, no WAL): {:.2} s", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let store = Store::open(&path, StoreOptions::default()).expect("reopen");
    report.push(format!(
        "restart with {n} keys (index rebuilt from the key bucket): {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    ));

    // Compaction of n revisions: overwrite every key once more, compact at the last revision
    // of the first pass' overwrites, wait for the physical deletion.
    for i in 0..n {
        put(&store, key(i), &value);
    }
    let rev = store.current_revision();
    let t = Instant::now();
    store.compact(Applied::default(), rev).expect("compact");
    let logical = t.elapsed();
    // A writer keeps putting while the compaction runs: its worst put is the stall.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut worst, mut puts) = (Duration::ZERO, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                put(&store, format!("/other/{puts}").into_bytes(), &[1; 64]);
                worst = worst.max(t.elapsed());
                puts += 1;
            }
            (worst, puts)
        })
    };
    assert!(store.wait_compacted(rev, Duration::from_secs(3600)), "compaction finished");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (worst, puts) = writer.join().expect("writer");
    report.push(format!(
        "compaction of {n} revisions: applied in {:.1} ms, index + physical deletion (batches of \
         1,000, 10 ms apart) done in {:.1} s; a concurrent writer did {puts} puts, worst {:.1} ms",
        logical.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64(),
        worst.as_secs_f64() * 1e3
    ));

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let mut i = n;
    c.bench_function("mvcc put 256 B", |b| {
        b.iter(|| {
            i += 1;
            put(&store, key(i % n), &value)
        })
    });
    let compare = |k: u64| Compare {
        key: key(k),
        target: CompareTarget::Version(0),
        result: CompareResult::Greater,
        range_end: vec![],
    };
    c.bench_function("mvcc txn 3 compares + put", |b| {
        b.iter(|| {
            i += 1;
            let req = TxnRequest {
                compare: vec![compare(i % n), compare((i + 1) % n), compare((i + 2) % n)],
                success: vec![RequestOp::Put(PutRequest {
                    key: key(i % n),
                    value: value.to_vec(),
                    ..Default::default()
                })],
                failure: vec![],
            };
            black_box(store.txn(Applied::default(), &req).expect("txn"))
        })
    });
    for len in [1u64, 100, 10_000] {
        let start = n / 3;
        let req = RangeRequest {
            key: format!("/registry/pods/ns-{:03}/", start % 100).into_bytes(),
            range_end: format!("/registry/pods/ns-{:03}0", start % 100).into_bytes(),
            limit: len as i64,
            ..Default::default()
        };
        c.bench_function(&format!("mvcc range {len} keys"), |b| {
            b.iter(|| black_box(store.range(&req).expect("range").kvs.len()))
        });
    }

    // Watch fan-out: 10,000 watchers of one key on 100 streams; a put is done when every
    // watcher has its event.
    let streams: Vec<_> = (0..100)
        .map(|_| {
            let (mut ws, rx) = store.watch_stream(1024);
            for _ in 0..100 {
                ws.watch(0, WatchOptions { key: b"/hot".to_vec(), ..Default::default() })
                    .expect("watch");
            }
            (ws, rx)
        })
        .collect();
    let (mut keep, mut rxs): (Vec<_>, Vec<_>) = streams.into_iter().unzip();
    c.bench_function("mvcc watch fan-out put -> 10,000 watchers", |b| {
        b.iter(|| {
            put(&store, b"/hot".to_vec(), &value);
            let mut got = 0;
            while got < 10_000 {
                for rx in &mut rxs {
                    while rx.try_recv().is_ok() {
                        got += 1;
                    }
                }
            }
        })
    });
    keep.clear();
    // The other common shape: 10,000 watchers of one key each (locks, elections), and a put
    // to a key none of them watches.
    let idle: Vec<_> = (0..100)
        .map(|s| {
            let (mut ws, rx) = store.watch_stream(16);
            for w in 0..100 {
                let key = format!("/idle/{s}/{w}").into_bytes();
                ws.watch(0, WatchOptions { key, ..Default::default() }).expect("watch");
            }
            (ws, rx)
        })
        .collect();
    c.bench_function("mvcc put with 10,000 single-key watchers of other keys", |b| {
        b.iter(|| put(&store, b"/unwatched".to_vec(), &value))
    });
    drop(idle);
    for line in report {
        println!("{line}");
    }
}
