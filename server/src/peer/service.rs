//! The peer service (rustedpb.Peer) on the peer URLs: raft messages in batches on a long-lived
//! stream, snapshots (the state machine file in chunks after the MsgSnapshot message), the
//! cluster record for joining members, and the requests followers forward to the leader
//! (lease renewals and time-to-live, learner promotion). The sending side is [`super::transport`].
#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use protobuf::Message as PbMessage;
use raft::eraftpb::{Message, MessageType};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::rustedpb::peer_server::Peer;
use rusted_proto::rustedpb::{
    ProbeRequest, ProbeResponse, RaftBatch, SendAck, SnapshotAck, SnapshotChunk,
};
use rusted_replication::Mailbox;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::api::ctx::Ctx;

/// The gRPC service peers send to. Built once the replica runs, before the peer listeners
/// open, so it has everything it answers with from its first call.
#[derive(Debug, Clone)]
pub struct PeerService {
    /// The client-facing context: the replica (its mailbox, IDs and membership) and what
    /// forwarded client requests need.
    ctx: Arc<Ctx>,
    /// The client runtime: forwarded client calls run there, not on the peer runtime's one
    /// worker, which carries every raft message.
    client_rt: tokio::runtime::Handle,
    /// Bytes received per peer.
    metrics: crate::metrics::PeerMetrics,
}

fn decode(b: &Bytes) -> Result<Message, Status> {
    Message::parse_from_carllerche_bytes(b)
        .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

impl PeerService {
    /// The service of the member whose context is `ctx`; forwarded client calls run on
    /// `client_rt`; bytes received are counted in `metrics`.
    pub fn new(
        ctx: Arc<Ctx>,
        client_rt: tokio::runtime::Handle,
        metrics: crate::metrics::PeerMetrics,
    ) -> Self {
        PeerService { ctx, client_rt, metrics }
    }

    fn mailbox(&self) -> Mailbox {
        self.ctx.replica.mailbox()
    }

    /// Runs a forwarded client call on the client runtime (the lessor's lock and proposals
    /// must not hold up raft traffic on the peer runtime).
    async fn on_client_rt<T, F>(&self, call: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Status>> + Send + 'static,
    {
        self.client_rt.spawn(call).await.map_err(|e| Status::internal(e.to_string()))?
    }
}

/// A raft stream or message addressed to another member ID (etcd's words for its X-Raft-To
/// check).
pub const TO_MISMATCH: &str = "to field mismatch";
/// A raft stream from a member the cluster removed (etcd answers its stream 410 Gone).
pub const REMOVED_MEMBER: &str = "removed member";

/// A forwarded request reached a member that is not the leader (leadership moved meanwhile).
fn not_leader() -> Status {
    crate::api::errors::ApiError::Replication(rusted_replication::ReplicationError::NotLeader)
        .into()
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<SendAck>, Status> {
        let mut s = req.into_inner();
        let mb = self.mailbox();
        let cid = self.ctx.replica.cluster_id();
        let me = mb.id();
        while let Some(batch) = s.next().await {
            let batch = batch?;
            if cid != 0 && batch.cluster_id != 0 && batch.cluster_id != cid {
                return Err(Status::failed_precondition("etcdserver: cluster ID mismatch"));
            }
            // Messages for a removed member that had this peer URL (as etcd's X-Raft-To check).
            if batch.to != me {
                tracing::warn!(
                    got = %format!("{:x}", batch.to), want = %format!("{me:x}"),
                    "streaming request ignored (ID mismatch)"
                );
                return Err(Status::failed_precondition(TO_MISMATCH));
            }
            if self.ctx.replica.was_removed(batch.from) {
                return Err(Status::failed_precondition(REMOVED_MEMBER));
            }
            let bytes = batch.messages.iter().map(Bytes::len).sum();
            self.metrics.received(batch.from, bytes);
            for raw in &batch.messages {
                let m = decode(raw)?;
                if m.to != me {
                    return Err(Status::failed_precondition(TO_MISMATCH));
                }
                // A snapshot message names a file that only the Snapshot RPC delivers.
                match m.get_msg_type() {
                    MessageType::MsgSnapshot => {
                        let e = "MsgSnapshot must come through Snapshot";
                        return Err(Status::invalid_argument(e));
                    }
                    MessageType::MsgAppend => self.metrics.appends.received(m.from, raw.len()),
                    _ => {}
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
        let mb = self.mailbox();
        let Some(first) = s.next().await else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        let first = first?;
        let msg = decode(&Bytes::copy_from_slice(&first.message))?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("first chunk is not a MsgSnapshot"));
        }
        let meta = msg.get_snapshot().get_metadata();
        let (i, t) = (meta.index, meta.term);
        let started = std::time::Instant::now();
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
        let synced = std::time::Instant::now();
        f.sync_all().await.map_err(|e| Status::internal(e.to_string()))?;
        self.metrics.snapshot_db_fsync(synced.elapsed());
        drop(f);
        tokio::fs::rename(&part, mb.snaps().incoming(i, t))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        self.metrics.snapshot_db_saved(started.elapsed());
        mb.step(msg);
        Ok(Response::new(SnapshotAck { ok: true, error: String::new() }))
    }

    async fn lease_renew(
        &self,
        req: Request<pb::LeaseKeepAliveRequest>,
    ) -> Result<Response<pb::LeaseKeepAliveResponse>, Status> {
        let ctx = self.ctx.clone();
        let id = req.get_ref().id;
        self.on_client_rt(async move {
            let header = ctx.header_now();
            match crate::api::lease::renew_local(&ctx, id).await {
                Ok(Some(ttl)) => Ok(Response::new(pb::LeaseKeepAliveResponse { header, id, ttl })),
                Ok(None) => Err(not_leader()),
                Err(e) if crate::api::lease::not_found(&e) => {
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
        let ctx = self.ctx.clone();
        let req = req.into_inner();
        self.on_client_rt(async move {
            match crate::api::lease::time_to_live_local(&ctx, &req)? {
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
        let ctx = self.ctx.clone();
        let id = req.get_ref().id;
        self.on_client_rt(async move {
            if !ctx.replica.is_leader() {
                return Err(not_leader());
            }
            let members =
                ctx.replica.member_promote(id).await.map_err(crate::api::errors::ApiError::from)?;
            Ok(Response::new(pb::MemberPromoteResponse {
                header: ctx.header(0),
                members: members.iter().map(crate::api::cluster::member_out).collect(),
            }))
        })
        .await
    }

    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let ctx = self.ctx.clone();
        let rev = req.get_ref().revision;
        self.on_client_rt(async move {
            Ok(Response::new(crate::api::maintenance::hash_kv(&ctx, rev).await?))
        })
        .await
    }

    async fn probe(&self, _req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let r = &self.ctx.replica;
        let (cluster_id, member_id, cluster) = (r.cluster_id(), r.id(), r.cluster().encode());
        Ok(Response::new(ProbeResponse { member_id, cluster_id, cluster }))
    }
}
