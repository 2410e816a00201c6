//! wal-bench: fio-style load on the WAL.
//!
//! Each writer appends one entry of `--record-size` bytes at a time and waits until it is durable,
//! as a raft leader's proposers do; indexes are assigned under a lock, durability is awaited
//! outside it. `--mode naive` is the baseline without group commit: one pwrite + fdatasync per
//! append under a lock. `--matrix` runs writers × modes and prints a markdown table.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rusted_wal::{IoMode, Prealloc, Record, SyncStyle, Wal, WalOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Group commit through io_uring.
    Uring,
    /// Group commit through pwrite + fdatasync.
    Pwrite,
    /// No group commit: one pwrite + fdatasync per append.
    Naive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SyncArg {
    /// Writes flagged RWF_DSYNC.
    Dsync,
    /// Write, then fdatasync.
    Fdatasync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PreallocArg {
    Fallocate,
    Zero,
}

#[derive(Debug, Parser)]
#[command(name = "wal-bench", about = "Append load on the rusted WAL (group commit vs naive)")]
struct Args {
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 256)]
    record_size: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Write path.
    #[arg(long, value_enum, default_value_t = Mode::Uring)]
    mode: Mode,
    /// Buffered writes instead of O_DIRECT (the WAL's default is O_DIRECT).
    #[arg(long)]
    buffered: bool,
    /// How a group is made durable (naive mode always uses fdatasync).
    #[arg(long, value_enum, default_value_t = SyncArg::Dsync)]
    sync: SyncArg,
    /// Writers are async tasks on a 2-thread tokio runtime instead of OS threads.
    #[arg(long)]
    tasks: bool,
    /// How segments are preallocated.
    #[arg(long, value_enum, default_value_t = PreallocArg::Zero)]
    prealloc: PreallocArg,
    /// Directory for the log (a fresh subdirectory per run is created and removed).
    #[arg(long, default_value = "./wal-bench.data")]
    dir: PathBuf,
    /// Run writers 1, 16, 64, 256 × modes uring, pwrite, naive (thread writers, then task
    /// writers) and print a markdown table.
    #[arg(long)]
    matrix: bool,
    /// Writer counts for --matrix.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 16, 64, 256])]
    matrix_writers: Vec<usize>,
}

#[derive(Debug)]
struct Outcome {
    appends: u64,
    fsyncs: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
    backend: String,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.appends as f64 / self.elapsed.as_secs_f64()
    }
    fn q(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

fn new_hist() -> Histogram<u64> {
    // Nanoseconds, 1 ns .. 100 s, 3 significant figures: creation cannot fail with these bounds.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Appends the next entry: the index is taken under the lock (as raft assigns indexes), the
/// durability handle is awaited by the caller outside it.
fn append_next(
    wal: &Wal,
    next: &Mutex<u64>,
    payload: &[u8],
) -> Result<rusted_wal::Durable, String> {
    let mut n = next.lock().map_err(|e| e.to_string())?;
    let d = wal
        .append(&[Record::Entry { index: *n, term: 1, data: payload }])
        .map_err(|e| e.to_string())?;
    *n += 1;
    Ok(d)
}

fn run_wal(a: &Args, mode: Mode, writers: usize, dir: &Path) -> Result<Outcome, String> {
    let opts = WalOptions {
        io: if mode == Mode::Uring { IoMode::Uring } else { IoMode::Pwrite },
        direct_io: !a.buffered,
        sync: match a.sync {
            SyncArg::Dsync => SyncStyle::Dsync,
            SyncArg::Fdatasync => SyncStyle::Fdatasync,
        },
        prealloc: match a.prealloc {
            PreallocArg::Fallocate => Prealloc::Fallocate,
            PreallocArg::Zero => Prealloc::ZeroFill,
        },
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(dir, opts).map_err(|e| e.to_string())?;
    let wal = Arc::new(wal);
    let next = Arc::new(Mutex::new(1u64));
    let payload = vec![0xABu8; a.record_size];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.duration);
    if a.tasks {
        let hist = run_tasks(&wal, &next, &payload, writers, deadline)?;
        let elapsed = start.elapsed();
        let s = wal.stats();
        let backend =
            format!("{}{} tasks", wal.backend(), if wal.direct_io() { "+O_DIRECT" } else { "" });
        wal.close().map_err(|e| e.to_string())?;
        return Ok(Outcome { appends: s.records, fsyncs: s.groups, elapsed, hist, backend });
    }
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (wal, next, payload) = (wal.clone(), next.clone(), payload.clone());
            std::thread::spawn(move || -> Result<Histogram<u64>, String> {
                let mut h = new_hist();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    append_next(&wal, &next, &payload)?.wait().map_err(|e| e.to_string())?;
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                }
                Ok(h)
            })
        })
        .collect();
    let mut hist = new_hist();
    for t in threads {
        let h = t.join().map_err(|_| "writer panicked".to_string())??;
        hist.add(&h).map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    let s = wal.stats();
    let backend = format!("{}{}", wal.backend(), if wal.direct_io() { "+O_DIRECT" } else { "" });
    wal.close().map_err(|e| e.to_string())?;
    Ok(Outcome { appends: s.records, fsyncs: s.groups, elapsed, hist, backend })
}

/// The same load from async tasks on a 2-worker tokio runtime (as the server's handlers).
fn run_tasks(
    wal: &Arc<Wal>,
    next: &Arc<Mutex<u64>>,
    payload: &[u8],
    writers: usize,
    deadline: Instant,
) -> Result<Histogram<u64>, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (wal, next, payload) = (wal.clone(), next.clone(), payload.to_vec());
                tokio::spawn(async move {
                    let mut h = new_hist();
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        append_next(&wal, &next, &payload)?.await.map_err(|e| e.to_string())?;
                        h.saturating_record(t0.elapsed().as_nanos() as u64);
                    }
                    Ok::<_, String>(h)
                })
            })
            .collect();
        let mut hist = new_hist();
        for t in tasks {
            let h = t.await.map_err(|e| e.to_string())??;
            hist.add(&h).map_err(|e| e.to_string())?;
        }
        Ok(hist)
    })
}

fn run_naive(a: &Args, writers: usize, dir: &Path) -> Result<Outcome, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("naive.log");
    let size = 64u64 << 20;
    drop(rusted_wal::segment::create_preallocated(
        &path,
        size,
        match a.prealloc {
            PreallocArg::Fallocate => Prealloc::Fallocate,
            PreallocArg::Zero => Prealloc::ZeroFill,
        },
    ));
    let mut o = OpenOptions::new();
    o.write(true);
    if !a.buffered {
        o.custom_flags(libc::O_DIRECT);
    }
    let file = o.open(&path).map_err(|e| e.to_string())?;
    // The same framing as the WAL, so only the commit policy differs.
    let mut frame = Vec::new();
    Record::Entry { index: 1, term: 1, data: &vec![0xABu8; a.record_size] }.encode(&mut frame, 0);
    let block = if !a.buffered { frame.len().div_ceil(4096) * 4096 } else { frame.len() };
    let mut aligned = vec![0u8; block + 4096];
    let at = aligned.as_ptr().align_offset(4096);
    aligned[at..at + frame.len()].copy_from_slice(&frame);
    let state = Arc::new(Mutex::new((file, 0u64, aligned, at)));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.duration);
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let state = state.clone();
            std::thread::spawn(move || -> Result<(Histogram<u64>, u64), String> {
                let mut h = new_hist();
                let mut n = 0;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    {
                        let mut g = state.lock().map_err(|e| e.to_string())?;
                        let (file, off, buf, at) = &mut *g;
                        if *off + block as u64 > size {
                            *off = 0;
                        }
                        file.write_all_at(&buf[*at..*at + block], *off)
                            .map_err(|e| e.to_string())?;
                        file.sync_data().map_err(|e| e.to_string())?;
                        *off += block as u64;
                    }
                    n += 1;
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                }
                Ok((h, n))
            })
        })
        .collect();
    let mut hist = new_hist();
    let mut appends = 0;
    for t in threads {
        let (h, n) = t.join().map_err(|_| "writer panicked".to_string())??;
        hist.add(&h).map_err(|e| e.to_string())?;
        appends += n;
    }
    Ok(Outcome {
        appends,
        fsyncs: appends,
        elapsed: start.elapsed(),
        hist,
        backend: format!("naive pwrite{}", if !a.buffered { "+O_DIRECT" } else { "" }),
    })
}

fn run(a: &Args, mode: Mode, writers: usize) -> Result<Outcome, String> {
    let dir = a.dir.join(format!("run-{}-{mode:?}-{writers}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let r = match mode {
        Mode::Naive => run_naive(a, writers, &dir),
        _ => run_wal(a, mode, writers, &dir),
    };
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn print_one(writers: usize, o: &Outcome) {
    println!(
        "{:<22} writers {:>4}  appends/s {:>9.0}  fsyncs/s {:>7.0}  records/fsync {:>6.1}  \
         p50 {:>7.0} µs  p99 {:>7.0} µs  p99.9 {:>7.0} µs",
        o.backend,
        writers,
        o.rate(),
        o.fsyncs as f64 / o.elapsed.as_secs_f64(),
        o.appends as f64 / o.fsyncs.max(1) as f64,
        o.q(0.5),
        o.q(0.99),
        o.q(0.999),
    );
}

fn main() {
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let a = Args::parse();
    if !a.matrix {
        match run(&a, a.mode, a.writers) {
            Ok(o) => print_one(a.writers, &o),
            Err(e) => {
                eprintln!("wal-bench: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let modes = [Mode::Uring, Mode::Pwrite, Mode::Naive];
    let mut rows = Vec::new();
    let mut a = a;
    for (tasks, w) in [false, true]
        .into_iter()
        .flat_map(|t| a.matrix_writers.clone().into_iter().map(move |w| (t, w)))
    {
        a.tasks = tasks;
        let mut outs = Vec::new();
        for m in modes {
            match run(&a, m, w) {
                Ok(o) => {
                    print_one(w, &o);
                    outs.push(o);
                }
                Err(e) => {
                    eprintln!("wal-bench: {m:?} with {w} writers: {e}");
                    std::process::exit(1);
                }
            }
        }
        rows.push((if tasks { "tasks" } else { "threads" }, w, outs));
    }
    println!();
    println!(
        "| writers | uring appends/s | uring p99 µs | pwrite appends/s | pwrite p99 µs | naive appends/s | naive p99 µs | uring ÷ naive | records/fsync (uring) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (kind, w, o) in rows {
        println!(
            "| {w} {kind} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1}× | {:.1} |",
            o[0].rate(),
            o[0].q(0.99),
            o[1].rate(),
            o[1].q(0.99),
            o[2].rate(),
            o[2].q(0.99),
            o[0].rate() / o[2].rate().max(1e-9),
            o[0].appends as f64 / o[0].fsyncs.max(1) as f64,
        );
    }
}
