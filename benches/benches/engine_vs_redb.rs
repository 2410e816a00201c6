//! rusted-engine's page store against redb, same data, one run.
//!
//! Loads (timed once each, both stores fsync every commit): 1M random 8-byte keys in
//! transactions of 1,000; 1M sequential keys likewise; 100-byte values. Then, on the loaded
//! stores: random point gets, a full scan, and 1,000-key range scans — timed over repeated
//! rounds (best of 3) and also measured by criterion. Prints a table of rusted ÷ redb ratios.
//! `RUSTED_BENCH_KEYS` changes the key count.
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use rusted_engine::{Db, DbOptions};

const T: TableDefinition<&[u8], &[u8]> = TableDefinition::new("t");
const BATCH: u64 = 1000;

fn keys(n: u64) -> (Vec<[u8; 8]>, Vec<[u8; 8]>) {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let random = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_be_bytes()
        })
        .collect();
    let seq = (0..n).map(|i| i.to_be_bytes()).collect();
    (random, seq)
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

trait Store {
    fn load(&self, keys: &[[u8; 8]], value: &[u8]);
    fn get_all(&self, keys: &[[u8; 8]]) -> usize;
    fn scan_all(&self) -> usize;
    fn ranges(&self, starts: &[[u8; 8]], n: usize) -> usize;
}

struct Rusted(Db);
struct Redb(redb::Database);

impl Store for Rusted {
    fn load(&self, keys: &[[u8; 8]], value: &[u8]) {
        for chunk in keys.chunks(BATCH as usize) {
            let mut tx = self.0.begin_write().expect("begin");
            tx.create_bucket_if_missing(b"t").expect("bucket");
            for k in chunk {
                tx.put(b"t", k, value).expect("put");
            }
            tx.commit().expect("commit");
        }
    }
    fn get_all(&self, keys: &[[u8; 8]]) -> usize {
        let tx = self.0.begin_read().expect("read");
        let b = tx.bucket(b"t").expect("bucket");
        keys.iter().map(|k| b.get(k).expect("get").map_or(0, |v| v.len())).sum()
    }
    fn scan_all(&self) -> usize {
        let tx = self.0.begin_read().expect("read");
        let mut n = 0;
        tx.scan(b"t", b"", b"", |_, v| {
            n += v.len();
            true
        })
        .expect("scan");
        n
    }
    fn ranges(&self, starts: &[[u8; 8]], len: usize) -> usize {
        let tx = self.0.begin_read().expect("read");
        let b = tx.bucket(b"t").expect("bucket");
        let mut total = 0;
        for s in starts {
            let mut c = b.cursor();
            let mut it = c.seek(s).expect("seek");
            let mut i = 0;
            while let Some((_, v)) = it {
                total += v.len();
                i += 1;
                if i == len {
                    break;
                }
                it = c.next().expect("next");
            }
        }
        total
    }
}

impl Store for Redb {
    fn load(&self, keys: &[[u8; 8]], value: &[u8]) {
        for chunk in keys.chunks(BATCH as usize) {
            let tx = self.0.begin_write().expect("begin");
            {
                let mut t = tx.open_table(T).expect("table");
                for k in chunk {
                    t.insert(&k[..], value).expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
    }
    fn get_all(&self, keys: &[[u8; 8]]) -> usize {
        let tx = self.0.begin_read().expect("read");
        let t = tx.open_table(T).expect("table");
        keys.iter().map(|k| t.get(&k[..]).expect("get").map_or(0, |v| v.value().len())).sum()
    }
    fn scan_all(&self) -> usize {
        let tx = self.0.begin_read().expect("read");
        let t = tx.open_table(T).expect("table");
        t.iter().expect("iter").map(|e| e.expect("entry").1.value().len()).sum()
    }
    fn ranges(&self, starts: &[[u8; 8]], len: usize) -> usize {
        let tx = self.0.begin_read().expect("read");
        let t = tx.open_table(T).expect("table");
        let mut total = 0;
        for s in starts {
            for e in t.range(&s[..]..).expect("range").take(len) {
                total += e.expect("entry").1.value().len();
            }
        }
        total
    }
}

fn best_of_3(mut f: impl FnMut() -> usize) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let n: u64 =
        std::env::var("RUSTED_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let (random, seq) = keys(n);
    let value = [0x5Au8; 100];
    let mut rows: Vec<(String, f64, f64, &str)> = Vec::new();
    let open_rusted = |name: &str| {
        Rusted(Db::open(dir.path().join(name), DbOptions::default()).expect("open rusted"))
    };
    let open_redb =
        |name: &str| Redb(redb::Database::create(dir.path().join(name)).expect("open redb"));

    // Loads.
    let (r_rand, b_rand) = (open_rusted("rusted-rand"), open_redb("redb-rand"));
    let t = Instant::now();
    r_rand.load(&random, &value);
    let rusted_rand = t.elapsed();
    let t = Instant::now();
    b_rand.load(&random, &value);
    let redb_rand = t.elapsed();
    rows.push((
        "1M random inserts, 1,000/tx (s)".into(),
        rusted_rand.as_secs_f64(),
        redb_rand.as_secs_f64(),
        "lower",
    ));
    rows.push((
        "file size after random load (MiB)".into(),
        size(&dir.path().join("rusted-rand")) as f64 / 1048576.0,
        size(&dir.path().join("redb-rand")) as f64 / 1048576.0,
        "lower",
    ));
    let (r_seq, b_seq) = (open_rusted("rusted-seq"), open_redb("redb-seq"));
    let t = Instant::now();
    r_seq.load(&seq, &value);
    let rusted_seq = t.elapsed();
    let t = Instant::now();
    b_seq.load(&seq, &value);
    let redb_seq = t.elapsed();
    rows.push((
        "1M sequential inserts, 1,000/tx (s)".into(),
        rusted_seq.as_secs_f64(),
        redb_seq.as_secs_f64(),
        "lower",
    ));
    rows.push((
        "file size after sequential load (MiB)".into(),
        size(&dir.path().join("rusted-seq")) as f64 / 1048576.0,
        size(&dir.path().join("redb-seq")) as f64 / 1048576.0,
        "lower",
    ));

    // Reads on the random-key stores.
    let probe: Vec<[u8; 8]> = random.iter().step_by(7).copied().take(200_000).collect();
    let starts: Vec<[u8; 8]> = random.iter().step_by(997).copied().take(200).collect();
    let g1 = best_of_3(|| r_rand.get_all(&probe));
    let g2 = best_of_3(|| b_rand.get_all(&probe));
    rows.push((
        "random point get (ns/get)".into(),
        g1.as_nanos() as f64 / probe.len() as f64,
        g2.as_nanos() as f64 / probe.len() as f64,
        "lower",
    ));
    let s1 = best_of_3(|| r_rand.scan_all());
    let s2 = best_of_3(|| b_rand.scan_all());
    rows.push((
        "full scan of 1M (ms)".into(),
        s1.as_secs_f64() * 1e3,
        s2.as_secs_f64() * 1e3,
        "lower",
    ));
    let q1 = best_of_3(|| r_rand.ranges(&starts, 1000));
    let q2 = best_of_3(|| b_rand.ranges(&starts, 1000));
    rows.push((
        "1,000-key range scan (µs/scan)".into(),
        q1.as_secs_f64() * 1e6 / starts.len() as f64,
        q2.as_secs_f64() * 1e6 / starts.len() as f64,
        "lower",
    ));

    // Worst reader stall while the writer grows the file past its map again and again (a
    // 64 KiB initial map: dozens of remaps during a 200k-key sequential load).
    let stall = {
        let db = std::sync::Arc::new(
            Db::open(
                dir.path().join("remap"),
                DbOptions { initial_mmap_size: 64 << 10, ..DbOptions::default() },
            )
            .expect("open"),
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut worst, mut reads) = (Duration::ZERO, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let tx = db.begin_read().expect("read");
                    if tx.has_bucket(b"t").expect("bucket") {
                        black_box(tx.get(b"t", &7u64.to_be_bytes()).expect("get"));
                    }
                    drop(tx);
                    worst = worst.max(t.elapsed());
                    reads += 1;
                }
                (worst, reads)
            })
        };
        for chunk in seq[..(n as usize).min(200_000)].chunks(BATCH as usize) {
            let mut tx = db.begin_write().expect("begin");
            tx.create_bucket_if_missing(b"t").expect("bucket");
            for k in chunk {
                tx.put(b"t", k, &value).expect("put");
            }
            tx.commit_nosync().expect("commit");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().expect("reader")
    };
    println!(
        "worst begin_read+get while the file grew through remaps: {:?} over {} reads",
        stall.0, stall.1
    );

    // Criterion on the same loaded stores.
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    let few: Vec<[u8; 8]> = probe.iter().take(1000).copied().collect();
    c.bench_function("rusted get x1000", |b| b.iter(|| r_rand.get_all(&few)));
    c.bench_function("redb get x1000", |b| b.iter(|| b_rand.get_all(&few)));
    c.bench_function("rusted range 1000", |b| b.iter(|| r_rand.ranges(&starts[..1], 1000)));
    c.bench_function("redb range 1000", |b| b.iter(|| b_rand.ranges(&starts[..1], 1000)));

    println!("\n| measure ({n} keys, 100 B values) | rusted | redb | rusted ÷ redb |");
    println!("|---|---:|---:|---:|");
    for (name, a, b, _) in rows {
        println!("| {name} | {a:.2} | {b:.2} | {:.2} |", a / b);
    }
    println!("(ratios below 1 favour rusted for every row: all are times or sizes)");
}
