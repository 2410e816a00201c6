//! The peer transport: raft's messages to the other members over gRPC (rustedpb.Peer) on
//! their peer URLs. Each peer gets one long-lived client stream; messages queued for it are
//! sent in batches; a broken stream is reported to raft (unreachable) and reconnected with
//! backoff. Snapshots stream the state machine file in [`SNAPSHOT_CHUNK`]s after the
//! MsgSnapshot message.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protobuf::Message as PbMessage;
use raft::eraftpb::{Message, MessageType};
use rusted_proto::rustedpb::peer_client::PeerClient;
use rusted_proto::rustedpb::{ProbeRequest, RaftBatch, SnapshotChunk};
use rusted_proto::tls::ClientTls;
use rusted_replication::{Mailbox, Transport};

use super::service::REMOVED_MEMBER;
use crate::metrics::PeerMetrics;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Messages queued per peer before new ones are dropped (raft resends what matters).
pub const PEER_QUEUE: usize = 8192;
/// Messages per batch on the wire.
pub const MAX_BATCH: usize = 512;
/// Snapshot chunk size.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;
/// How often an idle peer link is pinged.
pub const PEER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered before the link counts as down (etcd's
/// `--raft-read-timeout` default).
pub const PEER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a batch of messages may wait to go out on a peer stream before the link is
/// redialed (etcd's `--raft-write-timeout` default).
pub const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Deadlines of a peer link (`--raft-read-timeout`, `--raft-write-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTimeouts {
    /// An unanswered keepalive ping closes the link after this long.
    pub read: Duration,
    /// A batch that cannot be handed to the stream in this long closes the link.
    pub write: Duration,
}

impl Default for PeerTimeouts {
    fn default() -> Self {
        PeerTimeouts { read: PEER_KEEPALIVE_TIMEOUT, write: PEER_WRITE_TIMEOUT }
    }
}
/// How often a connected peer's round trip is measured (etcd's prober: its 5 s read timeout
/// less a second).
pub const PEER_PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// How long connecting to a peer may take before it counts as unreachable.
/// Half an election timeout: a dial whose SYN a partition dropped is given up (and retried)
/// soon enough that a healed link is back within one election timeout. Linux resends a lost
/// SYN after 1 s, so a longer timeout would let a dial begun before the heal hang past it.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait between dials of an unreachable peer (they double from 50 ms).
pub const PEER_MAX_BACKOFF: Duration = Duration::from_millis(200);

struct PeerHandle {
    tx: mpsc::Sender<Message>,
    urls: watch::Sender<Vec<String>>,
    /// Since when the stream to the peer has been up (etcd's ActiveSince).
    active: Arc<Mutex<Option<Instant>>>,
}

fn set_active(a: &Mutex<Option<Instant>>, v: Option<Instant>) {
    *a.lock().unwrap_or_else(|p| p.into_inner()) = v;
}

/// The client side: a [`Transport`] over gRPC streams.
pub struct GrpcTransport {
    rt: tokio::runtime::Handle,
    from: u64,
    cluster_id: u64,
    mailbox: Mailbox,
    /// TLS towards the other members (`--peer-*` flags), if any.
    tls: Option<ClientTls>,
    timeouts: PeerTimeouts,
    peers: Mutex<HashMap<u64, PeerHandle>>,
    metrics: PeerMetrics,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport").field("from", &self.from).finish()
    }
}

impl GrpcTransport {
    /// A transport for member `from` of `cluster_id`, running its tasks on `rt`, reporting
    /// unreachable peers and snapshot outcomes to the local replica's `mailbox`.
    pub fn new(
        rt: tokio::runtime::Handle,
        from: u64,
        cluster_id: u64,
        mailbox: Mailbox,
        tls: Option<ClientTls>,
        timeouts: PeerTimeouts,
        metrics: PeerMetrics,
    ) -> Arc<Self> {
        let peers = Mutex::new(HashMap::new());
        Arc::new(GrpcTransport { rt, from, cluster_id, mailbox, tls, timeouts, peers, metrics })
    }

    fn report_unreachable(&self, to: u64) {
        self.mailbox.report_unreachable(to);
    }

    fn send_snapshot(self: &Arc<Self>, m: Message) {
        let to = m.to;
        let mb = self.mailbox.clone();
        let tls = self.tls.clone();
        let url = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&to)
            .and_then(|p| p.urls.borrow().first().cloned());
        let Some(url) = url else {
            mb.report_snapshot(to, false);
            return;
        };
        self.rt.spawn(async move {
            let ok = match stream_snapshot(&url, tls.as_ref(), &mb, m).await {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::warn!(to = %format!("{to:x}"), error = %e, "snapshot send failed");
                    false
                }
            };
            mb.report_snapshot(to, ok);
        });
    }
}

async fn stream_snapshot(
    url: &str,
    tls: Option<&ClientTls>,
    mb: &Mailbox,
    m: Message,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let meta = m.get_snapshot().get_metadata();
    let path = mb.snaps().outgoing(meta.index, meta.term);
    let mut f = tokio::fs::File::open(&path).await?;
    let total = f.metadata().await?.len();
    let mut client = PeerClient::new(dial_peer(url, tls).await?);
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
    let msg = m.write_to_bytes()?;
    let feeder = tokio::spawn(async move {
        let mut first = Some(msg);
        loop {
            let mut buf = vec![0u8; SNAPSHOT_CHUNK];
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]).await {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(_) => return,
                }
            }
            buf.truncate(n);
            let last = n < SNAPSHOT_CHUNK;
            let c = SnapshotChunk {
                message: first.take().unwrap_or_default(),
                data: buf,
                last,
                total_size: total,
            };
            if tx.send(c).await.is_err() || last {
                return;
            }
        }
    });
    let ack = client.snapshot(ReceiverStream::new(rx)).await?.into_inner();
    let _ = feeder.await;
    Ok(ack.ok)
}

async fn peer_loop(
    from: u64,
    to: u64,
    cluster_id: u64,
    urls: watch::Receiver<Vec<String>>,
    mut msgs: mpsc::Receiver<Message>,
    t: std::sync::Weak<GrpcTransport>,
    active: Arc<Mutex<Option<Instant>>>,
) {
    let mut backoff = Duration::from_millis(50);
    // Whether "established" was logged and no "lost" since (etcd's pair of log lines).
    let mut announced = false;
    let Some(metrics) = t.upgrade().map(|t| t.metrics.clone()) else { return };
    loop {
        // The peer was removed: its queue's sender is gone. Whatever is still queued was meant
        // for the removed ID and must not reach a new member that took over its URL.
        if msgs.is_closed() {
            return;
        }
        let url = urls.borrow().first().cloned();
        let Some((tls, timeouts)) = t.upgrade().map(|t| (t.tls.clone(), t.timeouts)) else {
            return;
        };
        let ch = match url {
            Some(u) => dial_peer_with(&u, tls.as_ref(), timeouts.read).await.ok(),
            None => None,
        };
        let Some(ch) = ch else {
            // Unreachable: drop what is queued (raft resends), tell raft, back off.
            let mut dropped = 0;
            while msgs.try_recv().is_ok() {
                dropped += 1;
            }
            metrics.send_failed(to, dropped);
            match t.upgrade() {
                Some(t) => t.report_unreachable(to),
                None => return,
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(PEER_MAX_BACKOFF);
            continue;
        };
        let mut client = PeerClient::new(ch);
        let prober =
            tokio::spawn(probe_loop(client.clone(), from, to, cluster_id, metrics.clone()));
        let (btx, brx) = mpsc::channel::<RaftBatch>(64);
        let mut call = tokio::spawn(async move { client.send(ReceiverStream::new(brx)).await });
        let connected_at = Instant::now();
        if !announced {
            tracing::info!(
                "local-member-id" = %format!("{from:x}"),
                "remote-peer-id" = %format!("{to:x}"),
                "established TCP streaming connection with remote peer"
            );
            announced = true;
        }
        set_active(&active, Some(connected_at));
        metrics.set_active(from, to, true);
        let mut ended = None;
        loop {
            let m = tokio::select! {
                m = msgs.recv() => m,
                // The peer went away (reset, restarted): notice without waiting for a send.
                r = &mut call => { ended = Some(r); break; }
            };
            let Some(m) = m.filter(|_| !msgs.is_closed()) else {
                set_active(&active, None);
                metrics.set_active(from, to, false);
                prober.abort();
                drop(btx);
                let _ = call.await;
                return;
            };
            let mut batch = Vec::with_capacity(16);
            batch.push(encode(&m, from, &metrics));
            while batch.len() < MAX_BATCH {
                match msgs.try_recv() {
                    Ok(m) => batch.push(encode(&m, from, &metrics)),
                    Err(_) => break,
                }
            }
            let (n, bytes) = (batch.len(), batch.iter().map(Bytes::len).sum());
            let batch = RaftBatch { messages: batch, from, to, cluster_id };
            match tokio::time::timeout(timeouts.write, btx.send(batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    metrics.send_failed(to, n);
                    break;
                }
                Err(_) => {
                    // The stream has not taken a batch for the whole write timeout: the link
                    // is stuck (a black hole, a peer that stopped reading); redial.
                    tracing::warn!(to = %format!("{to:x}"), timeout = ?timeouts.write,
                        "peer stream write timed out; reconnecting");
                    metrics.send_failed(to, n);
                    break;
                }
            }
            metrics.sent(to, bytes);
        }
        set_active(&active, None);
        metrics.set_active(from, to, false);
        prober.abort();
        if announced && connected_at.elapsed() >= Duration::from_secs(1) {
            // Not for a peer that takes the stream and drops it at once (retried quietly).
            tracing::warn!(
                "local-member-id" = %format!("{from:x}"),
                "remote-peer-id" = %format!("{to:x}"),
                "lost TCP streaming connection with remote peer"
            );
            announced = false;
        }
        if let Some(t) = t.upgrade() {
            t.report_unreachable(to);
        }
        let ended = match ended {
            Some(r) => r,
            None => call.await,
        };
        if let Ok(Err(s)) = &ended {
            if s.code() == tonic::Code::FailedPrecondition && s.message() == REMOVED_MEMBER {
                // As etcd's member that a peer answers 410 Gone: the cluster removed it.
                if let Some(t) = t.upgrade() {
                    t.mailbox.report_removed();
                }
            }
        }
        // A peer that accepts and at once ends the stream (wrong port, stopping) is retried
        // with backoff, not in a tight loop.
        if connected_at.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(PEER_MAX_BACKOFF);
        } else {
            backoff = Duration::from_millis(50);
        }
    }
}

/// `m` on the wire; appends are counted (`/v2/stats/self`).
fn encode(m: &Message, from: u64, metrics: &PeerMetrics) -> Bytes {
    let b: Bytes = m.write_to_bytes().unwrap_or_default().into();
    if m.get_msg_type() == MessageType::MsgAppend {
        metrics.appends.sent(from, b.len());
    }
    b
}

/// Measures the round trip to a connected peer now and then (etcd_network_peer_round_trip_time).
async fn probe_loop(
    mut client: PeerClient<Channel>,
    from: u64,
    to: u64,
    cluster_id: u64,
    metrics: PeerMetrics,
) {
    loop {
        let t0 = Instant::now();
        // Timed only when the member that answered is the one meant: its URL may have been
        // taken over by a new member (a removed one replaced on the same address).
        if let Ok(r) = client.probe(ProbeRequest { from, cluster_id }).await {
            if r.get_ref().member_id == to {
                metrics.round_trip(to, t0.elapsed());
            }
        }
        tokio::time::sleep(PEER_PROBE_INTERVAL).await;
    }
}

impl Transport for GrpcTransportRef {
    fn send(&self, msgs: Vec<Message>) {
        let t = &self.0;
        let peers = t.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut unreachable = Vec::new();
        let mut snaps = Vec::new();
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snaps.push(m);
                continue;
            }
            match peers.get(&m.to) {
                Some(p) => {
                    let to = m.to;
                    if p.tx.try_send(m).is_err() {
                        // Queue full: dropped, raft sends again.
                        t.metrics.send_failed(to, 1);
                    }
                }
                None => unreachable.push(m.to),
            }
        }
        drop(peers);
        for to in unreachable {
            t.metrics.send_failed(to, 1);
            t.report_unreachable(to);
        }
        for m in snaps {
            t.send_snapshot(m);
        }
    }

    fn set_peer(&self, id: u64, peer_urls: &[String]) {
        let t = &self.0;
        let mut peers = t.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get(&id) {
            p.urls.send_replace(peer_urls.to_vec());
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let (utx, urx) = watch::channel(peer_urls.to_vec());
        let active = Arc::new(Mutex::new(None));
        peers.insert(id, PeerHandle { tx, urls: utx, active: active.clone() });
        let weak = Arc::downgrade(t);
        t.rt.spawn(peer_loop(t.from, id, t.cluster_id, urx, rx, weak, active));
    }

    fn remove_peer(&self, id: u64) {
        // Dropping the queue's sender ends the peer's task.
        self.0.peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    fn active_since(&self, id: u64) -> Option<Instant> {
        let peers = self.0.peers.lock().unwrap_or_else(|p| p.into_inner());
        let a = peers.get(&id)?.active.lock().unwrap_or_else(|p| p.into_inner());
        *a
    }
}

/// The [`Transport`] handed to the replica (a strong handle to the shared transport).
#[derive(Debug, Clone)]
pub struct GrpcTransportRef(pub Arc<GrpcTransport>);

/// A channel to a peer URL (TLS as the URL and `tls` say), with the default read timeout.
pub async fn dial_peer(url: &str, tls: Option<&ClientTls>) -> Result<Channel, String> {
    dial_peer_with(url, tls, PEER_KEEPALIVE_TIMEOUT).await
}

/// A channel to a peer URL whose unanswered keepalive pings close it after `read_timeout`.
pub async fn dial_peer_with(
    url: &str,
    tls: Option<&ClientTls>,
    read_timeout: Duration,
) -> Result<Channel, String> {
    let target = rusted_proto::dial::target(url, tls).map_err(|e| e.to_string())?;
    target
        .with(|e| {
            // A link that stops answering (a partition that drops packets) is noticed within
            // the timeout, as etcd's stream heartbeats notice it: the link is down until
            // redialed, for raft and for the strict reconfiguration check.
            e.connect_timeout(PEER_CONNECT_TIMEOUT)
                .http2_keep_alive_interval(PEER_KEEPALIVE_INTERVAL)
                .keep_alive_timeout(read_timeout)
                .keep_alive_while_idle(true)
        })
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// Asks the peers at `urls` for the current cluster record (joining an existing cluster).
pub async fn fetch_cluster(urls: &[String], tls: Option<&ClientTls>) -> Result<Vec<u8>, String> {
    let mut last = String::from("no peer URL given");
    for u in urls {
        match dial_peer(u, tls).await.map(PeerClient::new) {
            Ok(mut c) => match c.probe(ProbeRequest { from: 0, cluster_id: 0 }).await {
                Ok(r) if !r.get_ref().cluster.is_empty() => return Ok(r.into_inner().cluster),
                Ok(_) => last = format!("{u}: member not ready"),
                Err(e) => last = format!("{u}: {e}"),
            },
            Err(e) => last = format!("{u}: {e}"),
        }
    }
    Err(last)
}
