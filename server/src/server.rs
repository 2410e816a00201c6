//! Assembles a member: identity, store, replica, peer transport, gRPC services, background
//! duties (publish, lease expiry), and graceful stop.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusted_engine::mvcc::{CommitObserver, StoreOptions};

use crate::metrics::Metrics;
use rusted_replication::membership::{bootstrap_record, parse_initial_cluster, ClusterRecord};
use rusted_replication::{Bootstrap, Replica, ReplicaConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::auth::AuthService;
use crate::cluster::ClusterService;
use crate::config::{bind_addr, urls, ServerConfig};
use crate::ctx::{Ctx, Limits};
use crate::election::ElectionService;
use crate::health::HealthService;
use crate::kv::KvService;
use crate::lease::LeaseService;
use crate::lock::LockService;
use crate::machine::{ApplyOut, EtcdMachine};
use crate::maintenance::MaintenanceService;
use crate::peer::{fetch_cluster, GrpcTransport, GrpcTransportRef, PeerService, PeerState};
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest};
use crate::proto::health::health_server::HealthServer;
use crate::proto::rustedpb::peer_server::PeerServer;
use crate::proto::rustedpb::proposal::Request as P;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::watch::WatchService;

/// Who this member is, fixed at bootstrap (initial-* flags are ignored afterwards).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Identity {
    member_id: u64,
    cluster_id: u64,
}

/// A startup failure.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

fn read_identity(path: &Path) -> Result<Option<Identity>, StartError> {
    match std::fs::read(path) {
        Ok(b) => {
            Ok(Some(serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

fn write_identity(path: &Path, id: Identity) -> Result<(), StartError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&id)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

/// Works out who this member is and how it starts.
async fn bootstrap(cfg: &ServerConfig) -> Result<(Identity, Bootstrap), StartError> {
    let id_path = cfg.member_dir().join("identity.json");
    let initial = parse_initial_cluster(&cfg.initial_cluster)?;
    let my_urls = urls(&cfg.initial_advertise_peer_urls);
    let existing = read_identity(&id_path)?;
    let (ident, boot) = if cfg.initial_cluster_state == "existing" && existing.is_none() {
        let others: Vec<String> = initial
            .iter()
            .flat_map(|(_, u)| u.iter().cloned())
            .filter(|u| !my_urls.contains(u))
            .collect();
        let raw = fetch_cluster(&others)
            .await
            .map_err(|e| format!("cannot fetch the cluster from its members: {e}"))?;
        let rec = ClusterRecord::decode(&raw)?;
        let me =
            rec.members.values().find(|m| m.peer_urls.iter().any(|u| my_urls.contains(u))).ok_or(
                "PeerURLs: no match found for existing member (add it with `member add` first)",
            )?;
        (Identity { member_id: me.id, cluster_id: rec.cluster_id }, Bootstrap::Existing(rec))
    } else {
        let rec = bootstrap_record(&initial, &cfg.initial_cluster_token)?;
        let me =
            rusted_replication::membership::member_id(&my_urls, &cfg.initial_cluster_token, None);
        if !rec.members.contains_key(&me) {
            return Err(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                cfg.name
            )
            .into());
        }
        (Identity { member_id: me, cluster_id: rec.cluster_id }, Bootstrap::New(rec))
    };
    match existing {
        Some(i) => Ok((i, boot)),
        None => {
            write_identity(&id_path, ident)?;
            Ok((ident, boot))
        }
    }
}

/// A running member.
#[derive(Debug)]
pub struct Member {
    /// Handler context.
    pub ctx: Arc<Ctx>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    peer_rt: PeerRuntime,
}

/// The runtime of the peer transport (its listener, streams and senders): a thread of its own,
/// so that raft's messages do not queue behind client requests on the client runtime's
/// workers. A loaded leader's append otherwise waited up to a millisecond or more for a worker,
/// and every write waits for that round trip.
#[derive(Debug)]
struct PeerRuntime {
    /// Taken by `drop`.
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl PeerRuntime {
    /// Worker threads of the peer runtime.
    const WORKERS: usize = 1;

    fn new() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(Self::WORKERS)
            .thread_name("peer-io")
            .enable_all()
            .build()?;
        Ok(PeerRuntime { handle: rt.handle().clone(), rt: Some(rt) })
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for PeerRuntime {
    fn drop(&mut self) {
        // Not a blocking shutdown: a member may be dropped on the client runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Member {
    /// Starts a member as `cfg` says, serving clients and peers until [`Member::stop`].
    pub async fn start(cfg: ServerConfig) -> Result<Member, StartError> {
        std::fs::create_dir_all(cfg.snap_dir())?;
        let (ident, boot) = bootstrap(&cfg).await?;
        let heartbeat = Duration::from_millis(cfg.heartbeat_interval.max(1));
        let election = Duration::from_millis(cfg.election_timeout);
        if cfg.election_timeout < 5 * cfg.heartbeat_interval {
            return Err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                cfg.election_timeout, cfg.heartbeat_interval
            )
            .into());
        }
        let auto_compaction =
            crate::autocompact::parse(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)?;
        let metrics = Arc::new(Metrics::new()?);
        let mut store_opts = StoreOptions::default();
        let m = metrics.clone();
        store_opts.on_commit = CommitObserver(Some(Arc::new(move |d| m.observe_backend_commit(d))));
        let machine =
            Arc::new(EtcdMachine::open(&cfg.snap_dir().join("db"), store_opts, election)?);
        let mut rcfg = ReplicaConfig::new(ident.member_id, cfg.member_dir(), boot);
        rcfg.wal_dir = cfg.wal_dir();
        rcfg.snap_dir = cfg.snap_dir();
        rcfg.heartbeat = heartbeat;
        rcfg.election = election;
        rcfg.snapshot_count = cfg.snapshot_count;
        rcfg.request_timeout = Duration::from_secs(5) + 2 * election;
        rcfg.pre_vote = cfg.pre_vote;
        let m = metrics.clone();
        rcfg.wal.on_sync = Some(Arc::new(move |d| m.observe_wal_fsync(d)));
        let peer_rt = PeerRuntime::new()?;
        let transport = GrpcTransport::new(peer_rt.handle(), ident.member_id, ident.cluster_id);
        let replica = {
            let (m, t) = (machine.clone(), transport.clone());
            tokio::task::spawn_blocking(move || {
                Replica::start(rcfg, m, Arc::new(GrpcTransportRef(t)))
            })
            .await??
        };
        let replica = Arc::new(replica);
        transport.attach(replica.mailbox());
        let peer_state = Arc::new(PeerState::default());
        let _ = peer_state.mailbox.set(replica.mailbox());
        let _ = peer_state.ids.set((ident.cluster_id, ident.member_id));
        *peer_state.cluster.lock().unwrap_or_else(|p| p.into_inner()) = replica.cluster().encode();

        let quota = Limits::quota_from_flag(cfg.quota_backend_bytes);
        match quota {
            None => tracing::warn!("disabled backend quota"),
            Some(q) if q > crate::ctx::MAX_QUOTA_BYTES => tracing::warn!(
                quota = q,
                max = crate::ctx::MAX_QUOTA_BYTES,
                "quota exceeds the maximum value; performance may degrade"
            ),
            Some(_) => {}
        }
        let limits = Limits {
            max_request_bytes: cfg.max_request_bytes,
            max_txn_ops: cfg.max_txn_ops,
            quota_backend_bytes: quota,
        };
        let ctx = Arc::new(Ctx {
            replica: replica.clone(),
            machine: machine.clone(),
            limits,
            ids: crate::idgen::IdGen::new(ident.member_id),
            forward: crate::forward::Forwarder::default(),
            raising_nospace: Default::default(),
        });
        let _ = peer_state.ctx.set(ctx.clone());
        let _ = peer_state.client_rt.set(tokio::runtime::Handle::current());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        for u in urls(&cfg.listen_peer_urls) {
            let addr = bind_addr(&u)?;
            // Bound here (so a taken port fails the start), registered on the peer runtime.
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| format!("listen {u}: {e}"))?;
            let listener = {
                let _in_peer_rt = peer_rt.handle().enter();
                tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| format!("listen {u}: {e}"))?
            };
            let svc = PeerServer::new(PeerService { state: peer_state.clone() })
                .max_decoding_message_size(64 << 20);
            let routes = tonic::service::Routes::new(svc);
            tasks.push(peer_rt.handle().spawn(serve(
                listener,
                routes,
                false,
                stop_rx.clone(),
                "peer",
            )));
            tracing::info!(url = %u, "serving peer traffic");
        }
        let max_msg = cfg.max_request_bytes + 512 * 1024;
        for u in urls(&cfg.listen_client_urls) {
            let addr = bind_addr(&u)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("listen {u}: {e}"))?;
            let routes = client_routes(&ctx, &metrics, max_msg);
            tasks.push(tokio::spawn(serve(listener, routes, true, stop_rx.clone(), "client")));
            tracing::info!(url = %u, "serving client traffic");
        }
        tasks.push(tokio::spawn(publish(
            ctx.clone(),
            cfg.name.clone(),
            urls(&cfg.advertise_client_urls),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(leader_duties(ctx.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(crate::autocompact::run(
            ctx.clone(),
            auto_compaction,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(refresh_peer_state(ctx.clone(), peer_state, stop_rx)));
        tracing::info!(id = %format!("{:x}", ident.member_id), cluster = %format!("{:x}", ident.cluster_id), "member started");
        Ok(Member { ctx, stop, tasks, peer_rt })
    }

    /// Stops serving, stops the replica (every acknowledged write is in the synced WAL) and
    /// closes the store.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        // Graceful shutdown waits for open streams (peers keep theirs open): give them a
        // moment, then cut them.
        for mut t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(1), &mut t).await.is_err() {
                t.abort();
            }
        }
        let ctx = self.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || {
            ctx.replica.stop();
            if let Err(e) = ctx.store().close() {
                tracing::warn!(error = %e, "store close");
            }
        })
        .await;
        // The transport's tasks go last: raft could send until the replica stopped.
        drop(self.peer_rt);
    }
}

/// Serves `routes` on `listener` (TCP_NODELAY on every connection, writes coalesced per burst;
/// HTTP/1.1 too when `http1`) until `stop`.
async fn serve(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    http1: bool,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
) {
    use tokio_stream::StreamExt as _;
    let inc = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)).map(
        |conn| conn.map(|c| crate::coalesce::Coalesce::new(crate::authority::AuthorityFix::new(c))),
    );
    let r = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .accept_http1(http1)
        .add_routes(routes)
        .serve_with_incoming_shutdown(inc, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, server = what, "serving failed");
    }
}

/// Everything on a client URL: the etcd gRPC services, the JSON gateway, and the plain HTTP
/// endpoints, with every gRPC call counted.
fn client_routes(ctx: &Arc<Ctx>, metrics: &Arc<Metrics>, max_msg: usize) -> tonic::service::Routes {
    let grpc = crate::dispatch::GrpcServices {
        kv: KvServer::new(KvService { ctx: ctx.clone() }).max_decoding_message_size(max_msg),
        cluster: ClusterServer::new(ClusterService { ctx: ctx.clone() })
            .max_decoding_message_size(max_msg),
        maintenance: MaintenanceServer::new(MaintenanceService { ctx: ctx.clone() })
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(usize::MAX),
        watch: WatchServer::new(WatchService { ctx: ctx.clone() })
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(usize::MAX),
        lease: LeaseServer::new(LeaseService { ctx: ctx.clone() })
            .max_decoding_message_size(max_msg),
        auth: AuthServer::new(AuthService { ctx: ctx.clone() }).max_decoding_message_size(max_msg),
        health: HealthServer::new(HealthService { ctx: ctx.clone() }),
        lock: LockServer::new(LockService { ctx: ctx.clone() }).max_decoding_message_size(max_msg),
        election: ElectionServer::new(ElectionService { ctx: ctx.clone() })
            .max_decoding_message_size(max_msg),
    };
    let http = crate::gateway::router(ctx.clone())
        .merge(crate::http::router(ctx.clone(), metrics.clone()))
        .fallback(crate::gateway::not_found)
        .method_not_allowed_fallback(crate::gateway::method_not_allowed)
        .layer(axum::middleware::from_fn(crate::http::cors));
    let front = crate::dispatch::ClientDispatch::new(grpc, http, metrics.clone());
    tonic::service::Routes::from(axum::Router::new().fallback_service(front))
}

/// etcd's publish: the member's name and client URLs go through raft once it runs.
async fn publish(
    ctx: Arc<Ctx>,
    name: String,
    client_urls: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let cur = ctx.replica.cluster();
        if cur
            .members
            .get(&ctx.replica.id())
            .is_some_and(|m| m.name == name && m.client_urls == client_urls)
        {
            return;
        }
        match ctx.replica.publish(&name, client_urls.clone()).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "publish, retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Lease expiry and checkpoints, run only while leading (etcd's lessor loop).
async fn leader_duties(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !ctx.replica.is_leader() {
            continue;
        }
        let store = ctx.store();
        for id in store.expired_leases(1000) {
            match ctx.propose(P::LeaseRevoke(LeaseRevokeRequest { id })).await {
                Ok(ApplyOut::LeaseRevoke(_)) | Ok(_) => {}
                Err(e) => tracing::debug!(lease = id, error = %e, "lease expiry revoke failed"),
            }
        }
        for (id, remaining_ttl) in store.due_lease_checkpoints(1000) {
            let req =
                LeaseCheckpointRequest { checkpoints: vec![LeaseCheckpoint { id, remaining_ttl }] };
            if let Err(e) = ctx.propose(P::LeaseCheckpoint(req)).await {
                tracing::debug!(lease = id, error = %e, "lease checkpoint failed");
            }
        }
    }
}

async fn refresh_peer_state(ctx: Arc<Ctx>, st: Arc<PeerState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        *st.cluster.lock().unwrap_or_else(|p| p.into_inner()) = ctx.replica.cluster().encode();
    }
}
