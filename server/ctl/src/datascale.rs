//! `check datascale`, as etcdctl 3.4's: writes the load's number of 1 KiB key-values (random
//! 512-byte keys, 512-byte values) under a prefix with its number of clients, reads the first
//! endpoint's `process_resident_memory_bytes` before and after, deletes the keys (then
//! compacts and defragments when asked) and reports the memory the data took.
#![forbid(unsafe_code)]

use std::sync::Arc;

use clap::Args;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use super::check::{random_put, seed};
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;

/// `check datascale`.
#[derive(Debug, Args)]
pub struct DatascaleArgs {
    /// The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the datascale check's keys.
    #[arg(long, default_value = "/etcdctl-check-datascale/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long = "auto-compact")]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long = "auto-defrag")]
    pub auto_defrag: bool,
}

/// etcdctl's datascale workloads: key-values, bytes each, clients.
fn load(name: &str) -> Option<(usize, usize, usize)> {
    Some(match name {
        "s" | "small" => (10_000, 1024, 50),
        "m" | "medium" => (100_000, 1024, 200),
        "l" | "large" => (1_000_000, 1024, 500),
        "xl" | "xLarge" => (3_000_000, 1024, 1000),
        _ => return None,
    })
}

/// The resident memory a server reports on its /metrics (0 when it cannot be read, after
/// printing why, as etcdctl does).
async fn resident_memory(ctl: &Ctl, endpoint: &str) -> f64 {
    let url =
        if endpoint.contains("://") { endpoint.to_owned() } else { format!("http://{endpoint}") };
    match fetch_metrics(ctl, &url).await {
        Ok(page) => {
            let key = "process_resident_memory_bytes";
            let Some(v) = page.lines().find_map(|l| l.strip_prefix(key)) else {
                println!("could not find: {key}");
                return 0.0;
            };
            v.trim().parse().unwrap_or_else(|e| {
                println!("fetch error: parsing {url}/metrics: {e}");
                0.0
            })
        }
        Err(e) => {
            println!("fetch error: {e}");
            0.0
        }
    }
}

async fn fetch_metrics(ctl: &Ctl, url: &str) -> Result<String, String> {
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::time::timeout(
        ctl.dial_timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("Get {url}/metrics: dial timeout"))?
    .map_err(|e| format!("Get {url}/metrics: {e}"))?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    let body = if https {
        let tls = ctl.tls().unwrap_or_default();
        let mut cfg = tls.config().map_err(|e| format!("client certificate error: {e}"))?;
        // HTTP/1.1 (the configuration offers h2 only, for gRPC).
        cfg.alpn_protocols.clear();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{url}: {e}"))?;
        let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("Get {url}/metrics: {e}"))?;
        exchange(s, &req).await
    } else {
        exchange(tcp, &req).await
    }
    .map_err(|e| format!("reading {url}/metrics: {e}"))?;
    // The body after the headers; a chunked body's size lines do not start with the key read.
    Ok(body.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

async fn exchange(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    req: &str,
) -> std::io::Result<String> {
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs `check datascale`.
pub async fn run(ctl: &Ctl, a: &DatascaleArgs) -> CtlResult {
    let Some((limit, kv_size, nclients)) = load(&a.load) else {
        return Err(CtlError {
            message: format!("unknown load option {}", a.load),
            code: super::EXIT_BAD_FEATURE,
        });
    };
    let mut clients =
        super::check::open_clients(ctl, nclients, &a.prefix, ctl.command_timeout()).await?;
    let prefix = a.prefix.as_bytes().to_vec();
    let endpoint = ctl.endpoints.first().cloned().unwrap_or_default();
    let before = resident_memory(ctl, &endpoint).await;
    if before == 0.0 {
        println!("FAIL: Could not read process_resident_memory_bytes before the put operations.");
        return Err(CtlError::silent(super::EXIT_ERROR));
    }
    println!(
        "Start data scale check for work load [{limit} key-value pairs, {kv_size} bytes per key-value, {nclients} concurrent clients]."
    );
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(limit as u64),
        indicatif::ProgressDrawTarget::stdout(),
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PutRequest>(nclients);
    let rx = Arc::new(Mutex::new(rx));
    let errors = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let mut workers = Vec::new();
    for mut c in clients.iter().cloned() {
        let (rx, errors, bar) = (rx.clone(), errors.clone(), bar.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(req) = next else { break };
                if let Err(e) = c.put(req).await {
                    *errors.lock().await.entry(e.message().to_string()).or_default() += 1;
                }
                bar.inc(1);
            }
        }));
    }
    let mut rng = seed();
    let value = vec![0u8; kv_size / 2];
    for _ in 0..limit {
        if tx.send(random_put(&mut rng, &prefix, kv_size / 2, &value)).await.is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    bar.finish();
    let after = resident_memory(ctl, &endpoint).await;
    if after == 0.0 {
        println!("FAIL: Could not read process_resident_memory_bytes after the put operations.");
        return Err(CtlError::silent(super::EXIT_ERROR));
    }
    super::check::clean_up(ctl, &mut clients[0], &prefix, a.auto_compact, a.auto_defrag).await?;
    let errors = errors.lock().await;
    if !errors.is_empty() {
        println!("FAIL: too many errors");
        for (k, v) in errors.iter() {
            println!("FAIL: ERROR({k}) -> {v}");
        }
        return Err(CtlError::silent(super::EXIT_ERROR));
    }
    let mb = (after - before) / (1024.0 * 1024.0);
    println!("PASS: Approximate system memory used : {mb:.2} MB.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctls_workloads() {
        assert_eq!(load("s"), Some((10_000, 1024, 50)));
        assert_eq!(load("xLarge"), Some((3_000_000, 1024, 1000)));
        assert_eq!(load("xxl"), None);
    }
}
