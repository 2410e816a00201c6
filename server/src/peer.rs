//! The peer transport: raft messages between members over gRPC (rustedpb.Peer) on the peer
//! URLs. Each peer gets one long-lived client stream; messages queued for it are sent in
//! batches; a broken stream is reported to raft (unreachable) and reconnected with backoff.
//! Snapshots stream the state machine file in 1 MiB chunks after the MsgSnapshot message.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use protobuf::Message as PbMessage;
use raft::eraftpb::{Message, MessageType};
use rusted_replication::{Mailbox, Transport};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::etcdserverpb as pb;
use crate::proto::rustedpb::peer_client::PeerClient;
use crate::proto::rustedpb::peer_server::Peer;
use crate::proto::rustedpb::{
    ProbeRequest, ProbeResponse, RaftBatch, SendAck, SnapshotAck, SnapshotChunk,
};

/// Messages queued per peer before new ones are dropped (raft resends what matters).
pub const PEER_QUEUE: usize = 8192;
/// Messages per batch on the wire.
pub const MAX_BATCH: usize = 512;
/// Snapshot chunk size.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// What the peer server answers with; set once the replica runs.
#[derive(Debug, Default)]
pub struct PeerState {
    /// The local replica's inbox.
    pub mailbox: OnceLock<Mailbox>,
    /// Cluster ID and this member's ID.
    pub ids: OnceLock<(u64, u64)>,
    /// The cluster record (JSON) for joining members.
    pub cluster: Mutex<Vec<u8>>,
    /// The client-facing context, for requests forwarded to the leader.
    pub ctx: OnceLock<Arc<crate::ctx::Ctx>>,
    /// The client runtime: forwarded client calls run there, not on the peer runtime's one
    /// worker, which carries every raft message.
    pub client_rt: OnceLock<tokio::runtime::Handle>,
}

/// The gRPC service peers send to.
#[derive(Debug, Clone)]
pub struct PeerService {
    /// Shared state.
    pub state: Arc<PeerState>,
}

fn decode(b: &[u8]) -> Result<Message, Status> {
    Message::parse_from_bytes(b)
        .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

impl PeerService {
    fn mailbox(&self) -> Result<Mailbox, Status> {
        self.state.mailbox.get().cloned().ok_or_else(|| Status::unavailable("member starting"))
    }

    fn ctx(&self) -> Result<&Arc<crate::ctx::Ctx>, Status> {
        self.state.ctx.get().ok_or_else(|| Status::unavailable("member starting"))
    }

    /// Runs a forwarded client call on the client runtime (the lessor's lock and proposals
    /// must not hold up raft traffic on the peer runtime).
    async fn on_client_rt<T, F>(&self, call: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Status>> + Send + 'static,
    {
        match self.state.client_rt.get() {
            Some(rt) => rt.spawn(call).await.map_err(|e| Status::internal(e.to_string()))?,
            None => call.await,
        }
    }
}

/// A forwarded request reached a member that is not the leader (leadership moved meanwhile).
fn not_leader() -> Status {
    crate::errors::ApiError::Replication(rusted_replication::ReplicationError::NotLeader).into()
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<SendAck>, Status> {
        let mut s = req.into_inner();
        let mb = self.mailbox()?;
        let cid = self.state.ids.get().map_or(0, |x| x.0);
        while let Some(batch) = s.next().await {
            let batch = batch?;
            if cid != 0 && batch.cluster_id != 0 && batch.cluster_id != cid {
                return Err(Status::failed_precondition("etcdserver: cluster ID mismatch"));
            }
            for m in &batch.messages {
                let m = decode(m)?;
                // A snapshot message names a file that only the Snapshot RPC delivers.
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    return Err(Status::invalid_argument("MsgSnapshot must come through Snapshot"));
                }
                if !mb.step(m) {
                    return Err(Status::unavailable("etcdserver: server stopped"));
                }
            }
        }
        Ok(Response::new(SendAck {}))
    }

    async fn snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let mut s = req.into_inner();
        let mb = self.mailbox()?;
        let Some(first) = s.next().await else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        let first = first?;
        let msg = decode(&first.message)?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("first chunk is not a MsgSnapshot"));
        }
        let meta = msg.get_snapshot().get_metadata();
        let (i, t) = (meta.index, meta.term);
        let part = mb.snaps().incoming_part(i, t);
        let mut f =
            tokio::fs::File::create(&part).await.map_err(|e| Status::internal(e.to_string()))?;
        let mut chunk = Some(first);
        let mut done = false;
        while let Some(c) = chunk.take() {
            tokio::io::AsyncWriteExt::write_all(&mut f, &c.data)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            if c.last {
                done = true;
                break;
            }
            chunk = match s.next().await {
                Some(c) => Some(c?),
                None => None,
            };
        }
        if !done {
            let _ = tokio::fs::remove_file(&part).await;
            return Ok(Response::new(SnapshotAck {
                ok: false,
                error: "stream ended early".into(),
            }));
        }
        f.sync_all().await.map_err(|e| Status::internal(e.to_string()))?;
        drop(f);
        tokio::fs::rename(&part, mb.snaps().incoming(i, t))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        mb.step(msg);
        Ok(Response::new(SnapshotAck { ok: true, error: String::new() }))
    }

    async fn lease_renew(
        &self,
        req: Request<pb::LeaseKeepAliveRequest>,
    ) -> Result<Response<pb::LeaseKeepAliveResponse>, Status> {
        let ctx = self.ctx()?.clone();
        let id = req.get_ref().id;
        self.on_client_rt(async move {
            let header = ctx.header_now();
            match crate::lease::renew_local(&ctx, id).await {
                Ok(Some(ttl)) => Ok(Response::new(pb::LeaseKeepAliveResponse { header, id, ttl })),
                Ok(None) => Err(not_leader()),
                Err(e) if crate::lease::not_found(&e) => {
                    Ok(Response::new(pb::LeaseKeepAliveResponse { header, id, ttl: 0 }))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let ctx = self.ctx()?.clone();
        let req = req.into_inner();
        self.on_client_rt(async move {
            match crate::lease::time_to_live_local(&ctx, &req)? {
                Some(r) => Ok(Response::new(r)),
                None => Err(not_leader()),
            }
        })
        .await
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let ctx = self.ctx()?.clone();
        let id = req.get_ref().id;
        self.on_client_rt(async move {
            if !ctx.replica.is_leader() {
                return Err(not_leader());
            }
            let members =
                ctx.replica.member_promote(id).await.map_err(crate::errors::ApiError::from)?;
            Ok(Response::new(pb::MemberPromoteResponse {
                header: ctx.header(0),
                members: members.iter().map(crate::cluster::member_out).collect(),
            }))
        })
        .await
    }

    async fn probe(&self, _req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let (cluster_id, member_id) = self.state.ids.get().copied().unwrap_or_default();
        let cluster = self.state.cluster.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Response::new(ProbeResponse { member_id, cluster_id, cluster }))
    }
}

struct PeerHandle {
    tx: mpsc::Sender<Message>,
    urls: watch::Sender<Vec<String>>,
}

/// The client side: a [`Transport`] over gRPC streams.
pub struct GrpcTransport {
    rt: tokio::runtime::Handle,
    from: u64,
    cluster_id: u64,
    mailbox: OnceLock<Mailbox>,
    peers: Mutex<HashMap<u64, PeerHandle>>,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport").field("from", &self.from).finish()
    }
}

impl GrpcTransport {
    /// A transport for member `from` of `cluster_id`, running its tasks on `rt`.
    pub fn new(rt: tokio::runtime::Handle, from: u64, cluster_id: u64) -> Arc<Self> {
        Arc::new(GrpcTransport {
            rt,
            from,
            cluster_id,
            mailbox: OnceLock::new(),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Connects the local replica (for reporting unreachable peers and snapshot outcomes).
    pub fn attach(&self, mb: Mailbox) {
        let _ = self.mailbox.set(mb);
    }

    fn report_unreachable(&self, to: u64) {
        if let Some(mb) = self.mailbox.get() {
            mb.report_unreachable(to);
        }
    }

    fn send_snapshot(self: &Arc<Self>, m: Message) {
        let to = m.to;
        let Some(mb) = self.mailbox.get().cloned() else { return };
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
            let ok = match stream_snapshot(&url, &mb, m).await {
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
    mb: &Mailbox,
    m: Message,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let meta = m.get_snapshot().get_metadata();
    let path = mb.snaps().outgoing(meta.index, meta.term);
    let mut f = tokio::fs::File::open(&path).await?;
    let total = f.metadata().await?.len();
    let mut client = PeerClient::connect(url.to_string()).await?;
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
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let url = urls.borrow().first().cloned();
        let endpoint = url.and_then(|u| tonic::transport::Endpoint::from_shared(u).ok());
        let ch = match endpoint {
            Some(e) => {
                e.connect_timeout(Duration::from_secs(1)).tcp_nodelay(true).connect().await.ok()
            }
            None => None,
        };
        let Some(ch) = ch else {
            // Unreachable: drop what is queued (raft resends), tell raft, back off.
            while msgs.try_recv().is_ok() {}
            match t.upgrade() {
                Some(t) => t.report_unreachable(to),
                None => return,
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(50);
        let mut client = PeerClient::new(ch);
        let (btx, brx) = mpsc::channel::<RaftBatch>(64);
        let call = tokio::spawn(async move { client.send(ReceiverStream::new(brx)).await });
        loop {
            let Some(m) = msgs.recv().await else {
                drop(btx);
                let _ = call.await;
                return;
            };
            let mut batch = Vec::with_capacity(16);
            batch.push(m.write_to_bytes().unwrap_or_default());
            while batch.len() < MAX_BATCH {
                match msgs.try_recv() {
                    Ok(m) => batch.push(m.write_to_bytes().unwrap_or_default()),
                    Err(_) => break,
                }
            }
            if btx.send(RaftBatch { messages: batch, from, to, cluster_id }).await.is_err() {
                break;
            }
        }
        if let Some(t) = t.upgrade() {
            t.report_unreachable(to);
        }
        let _ = call.await;
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
                    if p.tx.try_send(m).is_err() {
                        // Queue full: raft will retry; slow it down.
                    }
                }
                None => unreachable.push(m.to),
            }
        }
        drop(peers);
        for to in unreachable {
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
        peers.insert(id, PeerHandle { tx, urls: utx });
        let weak = Arc::downgrade(t);
        t.rt.spawn(peer_loop(t.from, id, t.cluster_id, urx, rx, weak));
    }

    fn remove_peer(&self, id: u64) {
        // Dropping the queue's sender ends the peer's task.
        self.0.peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// The [`Transport`] handed to the replica (a strong handle to the shared transport).
#[derive(Debug, Clone)]
pub struct GrpcTransportRef(pub Arc<GrpcTransport>);

/// Asks the peers at `urls` for the current cluster record (joining an existing cluster).
pub async fn fetch_cluster(urls: &[String]) -> Result<Vec<u8>, String> {
    let mut last = String::from("no peer URL given");
    for u in urls {
        match PeerClient::connect(u.clone()).await {
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
