//! `rusted-bench`: a load generator over the etcd v3 gRPC API, with the subcommands and flags
//! of etcd's benchmark tool (put, range, txn-put, watch-latency, lease-keepalive), so the same
//! command line runs against etcd and rusted. It shows a progress bar on a terminal and ends
//! with etcd's report (or `--json`).
//!
//! Clients are tasks sharing `--conns` connections round-robin. Each takes the next request
//! number from a shared counter, so `--total` requests are spread over the clients as etcd's
//! tool does with its request channel; `--rate` spaces the requests' start times evenly.

pub mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::lease_client::LeaseClient;
use rusted_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rusted_proto::etcdserverpb::watch_client::WatchClient;
use rusted_proto::tls::ClientTls;
use tonic::transport::Channel;

pub use report::Report;

/// The command line (etcd benchmark's global flags).
#[derive(Debug, Parser)]
#[command(name = "rusted-bench", about = "A low-level benchmark tool for etcd and rusted")]
pub struct Bench {
    /// gRPC endpoints
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',', global = true)]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections
    #[arg(long, default_value_t = 1, global = true)]
    pub conns: usize,
    /// Total number of gRPC clients
    #[arg(long, default_value_t = 1, global = true)]
    pub clients: usize,
    /// use full floating point precision
    #[arg(long, global = true)]
    pub precise: bool,
    /// connect only to the leader node
    #[arg(long = "target-leader", global = true)]
    pub target_leader: bool,
    /// print the report as one JSON object
    #[arg(long, global = true)]
    pub json: bool,
    /// verify certificates of HTTPS-enabled servers using this CA bundle
    #[arg(long, global = true)]
    pub cacert: Option<std::path::PathBuf>,
    /// identify HTTPS client using this SSL certificate file
    #[arg(long, global = true)]
    pub cert: Option<std::path::PathBuf>,
    /// identify HTTPS client using this SSL key file
    #[arg(long, global = true)]
    pub key: Option<std::path::PathBuf>,
    /// The benchmark.
    #[command(subcommand)]
    pub command: Workload,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Benchmark put
    Put(PutArgs),
    /// Benchmark range
    Range(RangeArgs),
    /// Benchmark txn-put
    TxnPut(TxnPutArgs),
    /// Benchmark watch latency
    WatchLatency(WatchLatencyArgs),
    /// Benchmark lease keepalive
    LeaseKeepalive(LeaseArgs),
}

/// `put`.
#[derive(Debug, Args, Clone)]
pub struct PutArgs {
    /// Key size of put request
    #[arg(long = "key-size", default_value_t = 8)]
    pub key_size: usize,
    /// Value size of put request
    #[arg(long = "val-size", default_value_t = 8)]
    pub val_size: usize,
    /// Maximum puts per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Maximum possible keys
    #[arg(long = "key-space-size", default_value_t = 1)]
    pub key_space_size: u64,
    /// Use sequential keys
    #[arg(long = "sequential-keys")]
    pub sequential_keys: bool,
}

/// `range`.
#[derive(Debug, Args, Clone)]
pub struct RangeArgs {
    /// The key, and optionally the end of the range.
    pub args: Vec<String>,
    /// Maximum range requests per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of range requests
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
}

/// `txn-put`.
#[derive(Debug, Args, Clone)]
pub struct TxnPutArgs {
    /// Key size of txn put
    #[arg(long = "key-size", default_value_t = 8)]
    pub key_size: usize,
    /// Value size of txn put
    #[arg(long = "val-size", default_value_t = 8)]
    pub val_size: usize,
    /// Number of puts per txn
    #[arg(long = "txn-ops", default_value_t = 1)]
    pub txn_ops: usize,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Maximum possible keys
    #[arg(long = "key-space-size", default_value_t = 1)]
    pub key_space_size: u64,
}

/// `watch-latency`.
#[derive(Debug, Args, Clone)]
pub struct WatchLatencyArgs {
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Number of keys to put per second
    #[arg(long = "put-rate", default_value_t = 100)]
    pub put_rate: u64,
    /// Key size of watch response
    #[arg(long = "key-size", default_value_t = 32)]
    pub key_size: usize,
    /// Value size of watch response
    #[arg(long = "val-size", default_value_t = 32)]
    pub val_size: usize,
}

/// `lease-keepalive`.
#[derive(Debug, Args, Clone)]
pub struct LeaseArgs {
    /// Total number of lease keepalive requests
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad flags or arguments.
    #[error("{0}")]
    Args(String),
    /// No endpoint could be reached, or a setup request failed.
    #[error("{0}")]
    Connect(String),
}

/// Go's binary.PutVarint (zig-zag, 7 bits a byte) into a zeroed key of the key size, as
/// etcd's tool makes its keys; bytes past the key size are dropped.
pub fn varint_key(size: usize, v: i64) -> Vec<u8> {
    let mut k = vec![0u8; size];
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut i = 0;
    while i < size {
        if u < 0x80 {
            k[i] = u as u8;
            break;
        }
        k[i] = (u as u8) | 0x80;
        u >>= 7;
        i += 1;
    }
    k
}

/// A small per-client random source (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next value below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.below(256) as u8).collect()
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

/// TLS as etcd's benchmark tool reads its flags: when a CA, certificate or key is given.
fn tls(b: &Bench) -> Option<ClientTls> {
    if b.cacert.is_none() && b.cert.is_none() && b.key.is_none() {
        return None;
    }
    Some(ClientTls {
        ca_file: b.cacert.clone(),
        cert_file: b.cert.clone(),
        key_file: b.key.clone(),
        skip_verify: false,
    })
}

/// The connections: `conns` channels over the endpoints (or the leader's alone).
pub async fn connect(b: &Bench) -> Result<Vec<Channel>, BenchError> {
    let tls = tls(b);
    let mut eps = b.endpoints.clone();
    if b.target_leader {
        eps = vec![leader(&eps, tls.as_ref()).await?];
    }
    let mut out = Vec::new();
    for i in 0..b.conns.max(1) {
        let ep = &eps[i % eps.len()];
        out.push(dial(ep, tls.as_ref()).await?);
    }
    Ok(out)
}

async fn dial(ep: &str, tls: Option<&ClientTls>) -> Result<Channel, BenchError> {
    rusted_proto::dial::target(ep, tls)
        .map_err(|e| BenchError::Args(e.to_string()))?
        .connect()
        .await
        .map_err(|e| BenchError::Connect(format!("cannot connect to {ep}: {e}")))
}

async fn leader(eps: &[String], tls: Option<&ClientTls>) -> Result<String, BenchError> {
    for ep in eps {
        let Ok(ch) = dial(ep, tls).await else { continue };
        if let Ok(st) = MaintenanceClient::new(ch).status(pb::StatusRequest {}).await {
            let st = st.into_inner();
            if st.header.is_some_and(|h| h.member_id == st.leader) {
                return Ok(ep.clone());
            }
        }
    }
    Err(BenchError::Connect(format!("no leader among {}", eps.join(","))))
}

/// Shared by the clients of a run: the next request number, and the rate's next free slot.
struct Plan {
    next: AtomicU64,
    total: u64,
    every: Option<Duration>,
    slot: std::sync::Mutex<tokio::time::Instant>,
    done: AtomicU64,
}

impl Plan {
    fn new(total: u64, rate: u64) -> Arc<Plan> {
        Arc::new(Plan {
            next: AtomicU64::new(0),
            total,
            every: (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64)),
            slot: std::sync::Mutex::new(tokio::time::Instant::now()),
            done: AtomicU64::new(0),
        })
    }

    /// The next request number, once its turn under the rate has come. The rate is a token
    /// bucket of one, as etcd's tool uses: a slot missed while the server was slow is lost,
    /// not made up for later by a burst.
    async fn take(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.total {
            return None;
        }
        if let Some(every) = self.every {
            let at = {
                let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
                let at = (*slot).max(tokio::time::Instant::now());
                *slot = at + every;
                at
            };
            tokio::time::sleep_until(at).await;
        }
        Some(i)
    }
}

/// A progress bar on stderr while `plan` runs (drawn only on a terminal).
fn progress(plan: &Arc<Plan>) -> tokio::task::JoinHandle<()> {
    let plan = plan.clone();
    tokio::spawn(async move {
        let bar = indicatif::ProgressBar::new(plan.total);
        loop {
            let d = plan.done.load(Ordering::Relaxed);
            bar.set_position(d);
            if d >= plan.total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bar.finish();
    })
}

/// Runs `clients` tasks, each calling `one(client index, request number)` until the plan is
/// used up; returns the merged report and the wall time.
async fn drive<F, Fut>(clients: usize, plan: Arc<Plan>, one: F) -> (Report, Duration)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let bar = progress(&plan);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let plan = plan.clone();
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = Report::new();
            while let Some(i) = plan.take().await {
                let t = Instant::now();
                match one(c, i).await {
                    Ok(()) => r.ok(t.elapsed()),
                    Err(e) => r.err(e.message().to_string()),
                }
                plan.done.fetch_add(1, Ordering::Relaxed);
            }
            r
        }));
    }
    let mut all = Report::new();
    for t in tasks {
        if let Ok(r) = t.await {
            all.merge(&r);
        }
    }
    let took = started.elapsed();
    plan.done.store(plan.total, Ordering::Relaxed);
    let _ = bar.await;
    (all, took)
}

/// The random value every write of a run carries, once the key space is known to be valid.
fn value_for(val_size: usize, key_space_size: u64) -> Result<Arc<Vec<u8>>, BenchError> {
    if key_space_size == 0 {
        return Err(BenchError::Args(format!(
            "expected positive --key-space-size, got ({key_space_size})"
        )));
    }
    Ok(Arc::new(Rng::new(seed()).bytes(val_size)))
}

/// Runs the benchmark; returns its report and wall time.
pub async fn run(b: &Bench) -> Result<(Report, Duration), BenchError> {
    let conns = connect(b).await?;
    let all = conns.clone();
    let chan = move |c: usize| conns[c % conns.len()].clone();
    let clients = b.clients.max(1);
    match &b.command {
        Workload::Put(a) => {
            let value = value_for(a.val_size, a.key_space_size)?;
            let a = a.clone();
            let plan = Plan::new(a.total, a.rate);
            let rng_seed = seed();
            Ok(drive(clients, plan, move |c, i| {
                let mut kv = KvClient::new(chan(c));
                let n = if a.sequential_keys {
                    i % a.key_space_size
                } else {
                    Rng::new(rng_seed ^ i).below(a.key_space_size)
                };
                let req = pb::PutRequest {
                    key: varint_key(a.key_size, n as i64),
                    value: value.as_ref().clone(),
                    ..Default::default()
                };
                async move { kv.put(req).await.map(|_| ()) }
            })
            .await)
        }
        Workload::Range(a) => {
            let (key, range_end) = match a.args.as_slice() {
                [k] => (k.as_bytes().to_vec(), Vec::new()),
                [k, e] => (k.as_bytes().to_vec(), e.as_bytes().to_vec()),
                _ => return Err(BenchError::Args("range needs a key and an optional end".into())),
            };
            let serializable = match a.consistency.as_str() {
                "l" => false,
                "s" => true,
                other => {
                    return Err(BenchError::Args(format!("unknown consistency flag {other:?}")))
                }
            };
            let req = pb::RangeRequest { key, range_end, serializable, ..Default::default() };
            let plan = Plan::new(a.total, a.rate);
            Ok(drive(clients, plan, move |c, _| {
                let mut kv = KvClient::new(chan(c));
                let req = req.clone();
                async move { kv.range(req).await.map(|_| ()) }
            })
            .await)
        }
        Workload::TxnPut(a) => {
            let value = value_for(a.val_size, a.key_space_size)?;
            let a = a.clone();
            let plan = Plan::new(a.total, a.rate);
            Ok(drive(clients, plan, move |c, i| {
                let mut kv = KvClient::new(chan(c));
                // As etcd's tool: the txn's keys follow each other, so none repeats in a txn.
                let ops = a.txn_ops.max(1) as u64;
                let success = (0..ops)
                    .map(|j| pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                            key: varint_key(a.key_size, ((i * ops + j) % a.key_space_size) as i64),
                            value: value.as_ref().clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let req = pb::TxnRequest { compare: vec![], success, failure: vec![] };
                async move { kv.txn(req).await.map(|_| ()) }
            })
            .await)
        }
        Workload::LeaseKeepalive(a) => {
            // Each client grants one lease, then renews it once per request over a new
            // keep-alive stream (as clientv3's KeepAliveOnce in etcd's tool).
            let mut leases = Vec::new();
            for c in 0..clients {
                let mut l = LeaseClient::new(chan(c));
                let g = l
                    .lease_grant(pb::LeaseGrantRequest { ttl: 100, id: 0 })
                    .await
                    .map_err(|e| BenchError::Connect(format!("lease grant: {}", e.message())))?;
                leases.push(g.into_inner().id);
            }
            let leases = Arc::new(leases);
            let plan = Plan::new(a.total, 0);
            Ok(drive(clients, plan, move |c, _| {
                let mut l = LeaseClient::new(chan(c));
                let id = leases[c];
                async move {
                    let once = tokio_stream::once(pb::LeaseKeepAliveRequest { id });
                    let mut s = l.lease_keep_alive(once).await?.into_inner();
                    match s.message().await? {
                        Some(r) if r.ttl > 0 => Ok(()),
                        Some(_) => {
                            Err(tonic::Status::not_found("etcdserver: requested lease not found"))
                        }
                        None => Err(tonic::Status::unavailable("keep-alive stream closed")),
                    }
                }
            })
            .await)
        }
        Workload::WatchLatency(a) => watch_latency(b, a, &all).await,
    }
}

/// One watcher per client on one key; each put is timed from its acknowledgement to the
/// moment each watcher sees it (as etcd's tool), `--put-rate` puts a second.
async fn watch_latency(
    b: &Bench,
    a: &WatchLatencyArgs,
    conns: &[Channel],
) -> Result<(Report, Duration), BenchError> {
    let mut rng = Rng::new(seed());
    let key = rng.bytes(a.key_size);
    let value = rng.bytes(a.val_size);
    let clients = b.clients.max(1);
    let mut streams = Vec::new();
    for c in 0..clients {
        let mut w = WatchClient::new(conns[c % conns.len()].clone());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest { key: key.clone(), ..Default::default() },
            )),
        };
        let _ = tx.send(create).await;
        let mut s = w
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|e| BenchError::Connect(format!("watch: {}", e.message())))?
            .into_inner();
        // The "created" answer.
        s.message().await.map_err(|e| BenchError::Connect(format!("watch: {}", e.message())))?;
        streams.push((s, tx));
    }
    let put_conn = dial(&b.endpoints[0], tls(b).as_ref()).await?;
    let mut kv = KvClient::new(put_conn);
    let plan = Plan::new(a.total, a.put_rate);
    let bar = progress(&plan);
    let mut report = Report::new();
    let started = Instant::now();
    while plan.take().await.is_some() {
        let req = pb::PutRequest { key: key.clone(), value: value.clone(), ..Default::default() };
        if let Err(e) = kv.put(req).await {
            return Err(BenchError::Connect(format!(
                "Failed to Put for watch latency benchmark: {}",
                e.message()
            )));
        }
        let t = Instant::now();
        let waits = streams.iter_mut().map(|(s, _)| async move {
            loop {
                match s.message().await {
                    Ok(Some(r)) if !r.events.is_empty() => return Ok(t.elapsed()),
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err("watch stream closed".to_string()),
                    Err(e) => return Err(e.message().to_string()),
                }
            }
        });
        for r in futures_util::future::join_all(waits).await {
            match r {
                Ok(d) => report.ok(d),
                Err(e) => report.err(e),
            }
        }
        plan.done.fetch_add(1, Ordering::Relaxed);
    }
    let took = started.elapsed();
    plan.done.store(plan.total, Ordering::Relaxed);
    let _ = bar.await;
    Ok((report, took))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_etcds_tool_makes_them() {
        assert_eq!(varint_key(8, 0), vec![0; 8]);
        assert_eq!(varint_key(8, 150), vec![0xac, 0x02, 0, 0, 0, 0, 0, 0]);
        assert_eq!(varint_key(2, 1 << 40), vec![0x80, 0x80]);
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }

    #[tokio::test]
    async fn plans_hand_out_each_request_once() {
        let plan = Plan::new(1000, 0);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let (r, _) = drive(8, plan, move |_, i| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(i);
                if i % 100 == 0 {
                    Err(tonic::Status::unavailable("x"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let mut v = seen.lock().unwrap().clone();
        v.sort();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
        assert_eq!((r.count(), r.errors()), (990, 10));
    }
}
