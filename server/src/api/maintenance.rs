//! The Maintenance service: status, hashes, defragment, snapshot, alarms, leader transfer.
#![forbid(unsafe_code)]

use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::authorize;
use crate::api::ctx::Ctx;
use crate::api::errors::{internal, ApiError, ApiResult};
use crate::apply::machine::ApplyOut;
use crate::SERVER_VERSION;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::maintenance_server::Maintenance;
use rusted_proto::rustedpb::proposal::Request as P;

/// Page size of the bbolt file a snapshot is written as (etcd's: the OS page size).
pub const SNAPSHOT_PAGE_SIZE: usize = 4096;

/// Bytes per snapshot message (etcd sends 32 KiB).
pub const SNAPSHOT_SEND_CHUNK: usize = 32 * 1024;

/// The Maintenance service.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

type SnapStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        req: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let who = self.ctx.who_of(&req).await?;
        let r = req.into_inner();
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => {
                authorize::identity(&self.ctx, &who)?;
                let of = pb::AlarmType::try_from(r.alarm).unwrap_or(pb::AlarmType::None);
                let alarms = self.ctx.machine.alarms().members(of);
                // etcd 3.4 leaves the alarm response's header empty.
                Ok(Response::new(pb::AlarmResponse { header: None, alarms }))
            }
            Ok(AlarmAction::Activate | AlarmAction::Deactivate) => {
                authorize::admin(&self.ctx, &who)?;
                match self.ctx.propose_for(&who, P::Alarm(r)).await? {
                    ApplyOut::Alarm(alarms) => {
                        Ok(Response::new(pb::AlarmResponse { header: None, alarms }))
                    }
                    other => Err(crate::api::errors::unexpected(other).into()),
                }
            }
            Err(_) => Err(ApiError::Invalid(format!("unknown alarm action {}", r.action)).into()),
        }
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        authorize::identity(&self.ctx, &who)?;
        let st = self.ctx.replica.status();
        let store = self.ctx.store();
        let stats = store.db().stats();
        let in_use = stats.pages.saturating_sub(stats.free_pages) * stats.page_size;
        Ok(Response::new(pb::StatusResponse {
            header: self.ctx.header(store.current_revision()),
            version: SERVER_VERSION.into(),
            db_size: stats.file_size as i64,
            leader: st.leader,
            raft_index: st.committed,
            raft_term: st.term,
            raft_applied_index: st.applied,
            errors: self.ctx.machine.alarms().status_errors(),
            db_size_in_use: in_use as i64,
            is_learner: st.is_learner,
            storage_version: String::new(),
            // A 3.5 field; etcd 3.4 (what clients compare with) leaves it unset.
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        admin_raw(&self.ctx, &req).await?;
        let store = self.ctx.store();
        let _defragmenting = Defragmenting::start(&self.ctx);
        let started = std::time::Instant::now();
        let path = store.db().path().display().to_string();
        tracing::info!(path, "current-db-size-bytes" = store.db().size(), "defragmenting");
        let report = tokio::task::spawn_blocking(move || {
            store.flush()?;
            store.db().defrag().map_err(rusted_mvcc::MvccError::from)
        })
        .await
        .map_err(|e| Status::from(internal(e)))?
        .map_err(ApiError::from)?;
        // Writes went on during the copy; they waited only for the swap (`paused`).
        let took = started.elapsed();
        tracing::info!(
            path,
            "current-db-size-bytes-diff" = report.after as i64 - report.before as i64,
            "current-db-size-bytes" = report.after,
            took = ?took,
            paused = ?report.paused,
            "replayed-edits" = report.replayed,
            "finished defragmenting directory"
        );
        self.ctx.metrics.store.defragmented(took, report.paused);
        // etcd answers a defragment with an empty response (no header).
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(
        &self,
        req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        admin_raw(&self.ctx, &req).await?;
        let store = self.ctx.store();
        let hash = tokio::task::spawn_blocking(move || store.hash())
            .await
            .map_err(|e| Status::from(internal(e)))?
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::HashResponse { header: self.ctx.header_now(), hash }))
    }

    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        admin_raw(&self.ctx, &req).await?;
        Ok(Response::new(hash_kv(&self.ctx, req.into_inner().revision).await?))
    }

    type SnapshotStream = SnapStream;

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<SnapStream>, Status> {
        admin_raw(&self.ctx, &req).await?;
        // Each snapshot streams the store from its own read transaction into a temporary
        // file (memory bounded by a page per tree level): several may run at once.
        let store = self.ctx.store();
        let dir = store.db().path().parent().map(|p| p.to_path_buf()).unwrap_or_default();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!("client-snapshot-{}-{n}.db", std::process::id()));
        let cluster = self.ctx.replica.cluster();
        let alarms = self.ctx.machine.alarms().clone();
        let auth = self.ctx.auth().state();
        // etcd streams its backend file: write the store in etcd's layout, as a bbolt file, so
        // etcd's tools read it. The file is unlinked as soon as it is open (even if the client
        // has gone meanwhile), so nothing is left behind.
        let metrics = self.ctx.metrics.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, Status> {
            let started = std::time::Instant::now();
            let written = (|| {
                let export = store.export_stream().map_err(ApiError::from)?;
                let streams =
                    crate::apply::etcd_backend::streams(&export, &cluster, &alarms, &auth)
                        .map_err(ApiError::from)?;
                rusted_bbolt::write_bolt_stream(&tmp, SNAPSHOT_PAGE_SIZE, streams)
                    .map_err(|e| Status::from(internal(format!("writing the snapshot: {e}"))))?;
                std::fs::File::open(&tmp).map_err(|e| Status::from(internal(e)))
            })();
            let _ = std::fs::remove_file(&tmp);
            metrics.store.snapshotted(started.elapsed());
            written
        })
        .await
        .map_err(|e| Status::from(internal(e)))??;
        let mut f = tokio::fs::File::from_std(file);
        let size = f.metadata().await.map_err(|e| Status::from(internal(e)))?.len();
        let mut header = self.ctx.header_now();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut h = Sha256::new();
            let mut left = size;
            let mut first = true;
            loop {
                let mut buf = vec![0u8; SNAPSHOT_SEND_CHUNK];
                let n = match f.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(internal(e).into())).await;
                        return;
                    }
                };
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                h.update(&buf);
                left = left.saturating_sub(n as u64);
                let msg = pb::SnapshotResponse {
                    header: header.take(),
                    remaining_bytes: left + 32,
                    blob: buf,
                    version: if first { SERVER_VERSION.into() } else { String::new() },
                };
                first = false;
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            // As etcd: the stream ends with the SHA-256 of the bytes before it.
            let sum = h.finalize().to_vec();
            let _ = tx
                .send(Ok(pb::SnapshotResponse {
                    header: None,
                    remaining_bytes: 0,
                    blob: sum,
                    version: String::new(),
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        let to = req.into_inner().target_id;
        self.ctx.replica.transfer_leader(to).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::MoveLeaderResponse { header: self.ctx.header_now() }))
    }

    async fn downgrade(
        &self,
        req: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        let who = self.ctx.who_of(&req).await?;
        authorize::admin(&self.ctx, &who)?;
        Err(ApiError::Unsupported("rusted: downgrade is not supported").into())
    }
}

/// This member's hash of its history up to `rev` (0: the current revision), as HashKV answers
/// it; the peer service answers the same to a starting member's corruption check.
pub async fn hash_kv(ctx: &Ctx, rev: i64) -> ApiResult<pb::HashKvResponse> {
    let store = ctx.store();
    let h = tokio::task::spawn_blocking(move || store.hash_kv(rev)).await.map_err(internal)??;
    Ok(pb::HashKvResponse {
        header: ctx.header(h.revision),
        hash: h.hash,
        compact_revision: h.compact_revision,
        hash_revision: h.hash_revision,
    })
}

/// The root role, for Defragment, Snapshot, Hash and HashKV: etcd answers their auth
/// refusals unmapped (code Unknown, the auth store's text).
async fn admin_raw<T>(ctx: &Ctx, req: &Request<T>) -> Result<(), Status> {
    let who = match ctx.who_of(req).await {
        Ok(w) => w,
        Err(ApiError::Auth(e)) => return Err(ApiError::AuthRaw(e).into()),
        Err(e) => return Err(e.into()),
    };
    ctx.auth().admin_permitted(who.as_ref()).map_err(|e| ApiError::AuthRaw(e).into())
}

/// Counts a running defragmentation for the health service, until dropped.
struct Defragmenting(Arc<std::sync::atomic::AtomicUsize>);

impl Defragmenting {
    fn start(ctx: &Ctx) -> Self {
        ctx.defragmenting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Defragmenting(ctx.defragmenting.clone())
    }
}

impl Drop for Defragmenting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
