//! `check perf`: etcdctl's performance check. For 60 s it writes 1 KiB values under random
//! 256-byte keys at the load's rate with its number of clients, then deletes the keys and
//! judges the run as etcdctl does: throughput above 90% of the rate, slowest request at most
//! 0.5 s, standard deviation at most 0.1 s.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use tokio::sync::Mutex;

use super::print::go_quote;
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rusted_proto::keys::prefix_end;

/// `check ...`.
#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Check the performance of the etcd cluster
    Perf(PerfArgs),
    /// Check the memory usage of holding data for different workloads on a given server endpoint.
    Datascale(super::datascale::DatascaleArgs),
}

/// `check perf`.
#[derive(Debug, Args)]
pub struct PerfArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long = "auto-compact")]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long = "auto-defrag")]
    pub auto_defrag: bool,
}

/// A workload: writes per second, clients, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Writes per second.
    pub limit: u32,
    /// Concurrent clients (connections).
    pub clients: usize,
    /// Seconds of load.
    pub duration: u64,
}

/// etcdctl's workloads by name and alias.
pub fn load(name: &str) -> Option<Load> {
    let (limit, clients) = match name {
        "s" | "small" => (150, 50),
        "m" | "medium" => (1000, 200),
        "l" | "large" => (8000, 500),
        "xl" | "xLarge" => (15000, 1000),
        _ => return None,
    };
    Some(Load { limit, clients, duration: 60 })
}

/// What the run measured (seconds).
#[derive(Debug, Default)]
struct Stats {
    lats: Vec<f64>,
    errors: std::collections::BTreeMap<String, u64>,
}

/// Runs a `check` command.
pub async fn run(ctl: &Ctl, cmd: &CheckCommand) -> CtlResult {
    let a = match cmd {
        CheckCommand::Perf(a) => a,
        CheckCommand::Datascale(a) => return super::datascale::run(ctl, a).await,
    };
    let Some(cfg) = load(&a.load) else {
        return Err(CtlError {
            message: format!("unknown load option {}", a.load),
            code: super::EXIT_BAD_FEATURE,
        });
    };
    let mut clients =
        open_clients(ctl, cfg.clients, &a.prefix, Duration::from_secs(cfg.duration)).await?;
    let prefix = a.prefix.as_bytes().to_vec();

    let bar = indicatif::ProgressBar::with_draw_target(
        Some(cfg.duration),
        indicatif::ProgressDrawTarget::stdout(),
    );
    let stats = Arc::new(Mutex::new(Stats::default()));
    let (tx, rx) = async_channel(cfg.clients);
    let start = Instant::now();
    let mut workers = Vec::new();
    for mut c in clients.iter().cloned() {
        let rx = rx.clone();
        let stats = stats.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(req) = next else { break };
                let t = Instant::now();
                let r = c.put(req).await;
                let took = t.elapsed().as_secs_f64();
                let mut s = stats.lock().await;
                match r {
                    Ok(_) => s.lats.push(took),
                    Err(e) => *s.errors.entry(e.message().to_string()).or_default() += 1,
                }
            }
        }));
    }
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            for _ in 0..cfg.duration {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
            bar.finish();
        })
    };
    // A token bucket of one at the load's rate, for the load's duration.
    let every = Duration::from_secs_f64(1.0 / f64::from(cfg.limit));
    let end = start + Duration::from_secs(cfg.duration);
    let mut rng = seed();
    let mut next = tokio::time::Instant::now();
    let value = vec![0u8; 1024];
    while Instant::now() < end {
        // A token bucket of one, as etcdctl's limiter: missed slots are lost, not bursted.
        next = next.max(tokio::time::Instant::now());
        tokio::time::sleep_until(next).await;
        next += every;
        if tx.send(random_put(&mut rng, &prefix, 256, &value)).await.is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let total = start.elapsed().as_secs_f64();
    let _ = ticker.await;

    clean_up(ctl, &mut clients[0], &prefix, a.auto_compact, a.auto_defrag).await?;

    let s = stats.lock().await;
    let ok = judge(&s, total, cfg);
    if ok {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        Err(CtlError::silent(super::EXIT_ERROR))
    }
}

/// `n` connections for a check's load, once the check's `prefix` is found empty (etcdctl's
/// refusal otherwise).
pub(crate) async fn open_clients(
    ctl: &Ctl,
    n: usize,
    prefix: &str,
    timeout: Duration,
) -> CtlResult<Vec<KvClient<super::Conn>>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(KvClient::new(ctl.dial().await?));
    }
    let key = prefix.as_bytes().to_vec();
    let range =
        pb::RangeRequest { range_end: prefix_end(&key), key, limit: 1, ..Default::default() };
    let found = tokio::time::timeout(timeout, clients[0].range(range))
        .await
        .map_err(|_| CtlError::failed("context deadline exceeded"))??
        .into_inner();
    if !found.kvs.is_empty() {
        return Err(CtlError {
            message: format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {} first",
                go_quote(prefix),
                prefix
            ),
            code: super::EXIT_INVALID_INPUT,
        });
    }
    Ok(clients)
}

/// Deletes the check's keys, then (when asked) compacts at the deletion's revision and
/// defragments every endpoint, printing etcdctl's lines.
pub(crate) async fn clean_up(
    ctl: &Ctl,
    kv: &mut KvClient<super::Conn>,
    prefix: &[u8],
    auto_compact: bool,
    auto_defrag: bool,
) -> CtlResult {
    let deadline = |_| CtlError::failed("context deadline exceeded");
    let del = pb::DeleteRangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        prev_kv: false,
    };
    let dresp = tokio::time::timeout(Duration::from_secs(30), kv.delete_range(del))
        .await
        .map_err(deadline)??
        .into_inner();
    if auto_compact {
        let rev = dresp.header.as_ref().map_or(0, |h| h.revision);
        println!("Compacting with revision {rev}");
        let req = pb::CompactionRequest { revision: rev, physical: true };
        tokio::time::timeout(Duration::from_secs(30), kv.compact(req))
            .await
            .map_err(deadline)??;
        println!("Compacted with revision {rev}");
    }
    if auto_defrag {
        for ep in &ctl.endpoints {
            println!("Defragmenting {}", go_quote(ep));
            let mut m = MaintenanceClient::new(ctl.dial_one(ep).await?);
            tokio::time::timeout(Duration::from_secs(30), m.defragment(pb::DefragmentRequest {}))
                .await
                .map_err(deadline)??;
            println!("Defragmented {}", go_quote(ep));
        }
    }
    Ok(())
}

/// Prints etcdctl's verdict lines; true when every check passed.
fn judge(s: &Stats, total: f64, cfg: Load) -> bool {
    let mut ok = true;
    if !s.errors.is_empty() {
        println!("FAIL: too many errors");
        for (k, v) in &s.errors {
            println!("FAIL: ERROR({k}) -> {v}");
        }
        ok = false;
    }
    let n = s.lats.len() as f64;
    let rps = if total > 0.0 { n / total } else { 0.0 };
    let avg = if n > 0.0 { s.lats.iter().sum::<f64>() / n } else { f64::NAN };
    let stddev = (s.lats.iter().map(|l| (l - avg) * (l - avg)).sum::<f64>() / n).sqrt();
    let slowest = s.lats.iter().copied().fold(0.0, f64::max);
    if rps / f64::from(cfg.limit) <= 0.9 {
        println!("FAIL: Throughput too low: {} writes/s", rps as i64 + 1);
        ok = false;
    } else {
        println!("PASS: Throughput is {} writes/s", rps as i64 + 1);
    }
    if slowest > 0.5 {
        println!("Slowest request took too long: {slowest:.6}s");
        ok = false;
    } else {
        println!("PASS: Slowest request took {slowest:.6}s");
    }
    // NaN (no request succeeded) compares false, as in Go, and prints as Go's NaN.
    if stddev > 0.1 {
        println!("Stddev too high: {}s", go_float6(stddev));
        ok = false;
    } else {
        println!("PASS: Stddev is {}s", go_float6(stddev));
    }
    ok
}

fn go_float6(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v:.6}")
    }
}

/// A channel many workers receive from (each takes the next request).
type Rx = Arc<Mutex<tokio::sync::mpsc::Receiver<pb::PutRequest>>>;

fn async_channel(n: usize) -> (tokio::sync::mpsc::Sender<pb::PutRequest>, Rx) {
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    (tx, Arc::new(Mutex::new(rx)))
}

/// A put of `value` under `prefix` and a random key of `key_len` bytes (etcdctl's: a varint of
/// a random number, zero-padded).
pub(crate) fn random_put(
    rng: &mut u64,
    prefix: &[u8],
    key_len: usize,
    value: &[u8],
) -> pb::PutRequest {
    let mut key = vec![0u8; key_len];
    put_varint(&mut key, (xorshift(rng) >> 1) as i64);
    pb::PutRequest { key: [prefix, &key].concat(), value: value.to_vec(), ..Default::default() }
}

pub(crate) fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    t | 1
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Go's binary.PutVarint: zig-zag, then 7 bits per byte, low first.
fn put_varint(buf: &mut [u8], v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut i = 0;
    while u >= 0x80 && i < buf.len() {
        buf[i] = (u as u8) | 0x80;
        u >>= 7;
        i += 1;
    }
    if i < buf.len() {
        buf[i] = u as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_varints() {
        assert_eq!(load("small"), load("s"));
        assert_eq!(load("xLarge").map(|l| l.clients), Some(1000));
        assert!(load("huge").is_none());
        let mut b = [0u8; 4];
        put_varint(&mut b, 150);
        assert_eq!(b, [0xac, 0x02, 0, 0]);
    }

    #[test]
    fn verdicts() {
        let cfg = Load { limit: 10, clients: 1, duration: 1 };
        let good = Stats { lats: vec![0.01; 10], ..Default::default() };
        assert!(judge(&good, 1.0, cfg));
        let slow = Stats { lats: vec![0.01, 0.9], ..Default::default() };
        assert!(!judge(&slow, 1.0, cfg));
    }
}
