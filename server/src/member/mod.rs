//! Assembles a member and stops it: identity ([`bootstrap`]), store and state machine, replica,
//! peer transport and service, client services, background duties ([`duties`],
//! [`autocompact`]).
//!
//! **Order, and why.** The replica's mailbox is made first, so the peer transport holds it from
//! the start; the replica starts with that transport; the handlers' context is built on the
//! running replica; only then do the peer and client listeners open, each service built with
//! everything it answers from (nothing is filled in later, nothing polls to copy state).
#![forbid(unsafe_code)]

pub mod autocompact;
pub mod bootstrap;
pub mod corrupt;
mod duties;
mod runtime;

use std::sync::Arc;
use std::time::Duration;

use rusted_engine::io::{OsIo, PageIo};
use rusted_engine::PhaseObserver;
use rusted_mvcc::{CommitObserver, EventObserver, StoreOptions};
use rusted_proto::etcdserverpb::auth_server::AuthServer;
use rusted_proto::etcdserverpb::cluster_server::ClusterServer;
use rusted_proto::etcdserverpb::kv_server::KvServer;
use rusted_proto::etcdserverpb::lease_server::LeaseServer;
use rusted_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use rusted_proto::etcdserverpb::watch_server::WatchServer;
use rusted_proto::health::health_server::HealthServer;
use rusted_proto::rustedpb::peer_server::PeerServer;
use rusted_proto::v3electionpb::election_server::ElectionServer;
use rusted_proto::v3lockpb::lock_server::LockServer;
use rusted_replication::{Bootstrap, Mailbox, Replica, ReplicaConfig};
use tokio::sync::watch;

use crate::api::auth::AuthService;
use crate::api::cluster::ClusterService;
use crate::api::ctx::{Ctx, Limits};
use crate::api::election::ElectionService;
use crate::api::forward::Forwarder;
use crate::api::health::HealthService;
use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::api::lock::LockService;
use crate::api::maintenance::MaintenanceService;
use crate::api::watch::WatchService;
use crate::apply::machine::{AuthOptions, EtcdMachine};
use crate::config::flags::{bind_addr, urls};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::net::access::Access;
use crate::net::serve::{serve, Protocol};
use crate::net::tls::Acceptor;
use crate::peer::service::PeerService;
use crate::peer::transport::{GrpcTransport, GrpcTransportRef, PeerTimeouts};
use bootstrap::{bootstrap, Identity};
use runtime::PeerRuntime;
use rusted_proto::tls::ClientTls;

/// grpc-go's keepalive policy when none is given (`--grpc-keepalive-min-time=0`).
const GRPC_DEFAULT_PING_MIN_TIME: Duration = Duration::from_secs(5 * 60);

/// A startup failure.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Peer messages (raft appends, snapshot chunks) up to this size are accepted.
pub const MAX_PEER_MESSAGE: usize = 64 << 20;
/// Room above `--max-request-bytes` for a client message's envelope (etcd's gRPC limit is the
/// request limit plus this).
pub const CLIENT_MESSAGE_OVERHEAD: usize = 512 * 1024;

/// What a member is started with besides its flags: the seams tests inject faults through.
#[derive(Clone)]
pub struct StartOptions {
    /// How the page store writes its file ([`rusted_engine::io::OsIo`] by default).
    pub page_io: Arc<dyn PageIo>,
    /// Adjusts the WAL's options after the flags set them (fault-injecting backends, a full
    /// disk, small segments).
    pub wal: Option<WalSeam>,
}

/// See [`StartOptions::wal`].
pub type WalSeam = Arc<dyn Fn(&mut rusted_wal::WalOptions) + Send + Sync>;

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("page_io", &self.page_io)
            .field("wal", &self.wal.is_some())
            .finish()
    }
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { page_io: Arc::new(OsIo), wal: None }
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

impl Member {
    /// Starts a member as `cfg` says, serving clients and peers until [`Member::stop`].
    pub async fn start(cfg: ServerConfig) -> Result<Member, StartError> {
        Self::start_with(cfg, StartOptions::default()).await
    }

    /// [`Member::start`] with `opts`.
    pub async fn start_with(cfg: ServerConfig, opts: StartOptions) -> Result<Member, StartError> {
        // Flags and TLS first: bad flags or certificates fail the start before anything is
        // opened.
        cfg.check()?;
        let data_dir = cfg.data_dir();
        let client_tls = cfg.tls.client(&data_dir, &urls(&cfg.listen_client_urls))?;
        let peer_tls = cfg.tls.peer(&data_dir, &urls(&cfg.listen_peer_urls))?;
        let peer_client = cfg.tls.peer_client(peer_tls.as_ref());
        let client_acceptor = client_tls.map(Acceptor::new).transpose()?.map(Arc::new);
        let peer_acceptor = peer_tls.map(Acceptor::new).transpose()?.map(Arc::new);
        std::fs::create_dir_all(cfg.snap_dir())?;
        // Client snapshots a crash interrupted (a finished one is unlinked once open).
        for e in std::fs::read_dir(cfg.snap_dir())?.flatten() {
            if e.file_name().to_string_lossy().starts_with("client-snapshot-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let (ident, boot) = bootstrap(&cfg, peer_client.as_ref()).await?;
        let mut rcfg = replica_config(&cfg, ident, boot)?;
        if let Some(adjust) = &opts.wal {
            adjust(&mut rcfg.wal);
        }
        let auto_compaction =
            autocompact::parse(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)?;
        let metrics = Arc::new(Metrics::new(cfg.deferred.metrics == "extensive")?);
        let mut store_opts = StoreOptions::default();
        store_opts.db.io = if cfg.unsafe_no_fsync {
            tracing::warn!("--unsafe-no-fsync: neither the WAL nor the page store is synced; a host crash may lose acknowledged writes");
            Arc::new(rusted_engine::io::NoSyncIo(opts.page_io))
        } else {
            opts.page_io
        };
        // etcd's backend and compaction batching flags (0: etcd's defaults, which are the
        // store's).
        if !cfg.backend_batch_interval.is_zero() {
            store_opts.batch_interval = cfg.backend_batch_interval;
        }
        if cfg.backend_batch_limit > 0 {
            store_opts.batch_limit = usize::try_from(cfg.backend_batch_limit).unwrap_or(usize::MAX);
        }
        if cfg.experimental.compaction_batch_limit > 0 {
            store_opts.compaction_batch_limit =
                usize::try_from(cfg.experimental.compaction_batch_limit).unwrap_or(usize::MAX);
        }
        if !cfg.experimental.compaction_sleep_interval.is_zero() {
            store_opts.compaction_sleep = cfg.experimental.compaction_sleep_interval;
        }
        let auth_opts = AuthOptions {
            // etcd: 0 means its default.
            token_ttl: match cfg.deferred.auth_token_ttl {
                0 => crate::auth::token::DEFAULT_TTL,
                n => Duration::from_secs(n),
            },
            bcrypt_cost: u32::try_from(cfg.deferred.bcrypt_cost).unwrap_or(0),
            provider: crate::auth::jwt::provider(&cfg.deferred.auth_token)?,
        };
        let m = metrics.clone();
        store_opts.on_commit = CommitObserver(Some(Arc::new(move |d| m.store.commit(d))));
        let m = metrics.clone();
        store_opts.db.on_commit = PhaseObserver(Some(Arc::new(move |p| m.store.commit_phases(p))));
        let m = metrics.clone();
        store_opts.on_event = EventObserver(Some(Arc::new(move |e| m.store.observe(e))));
        let machine = Arc::new(EtcdMachine::open(
            &cfg.snap_dir().join("db"),
            store_opts,
            rcfg.election,
            auth_opts,
        )?);
        machine.set_warning_apply_duration(cfg.experimental.warning_apply_duration);
        let threshold = cfg.experimental.bootstrap_defrag_threshold_megabytes;
        if threshold != 0 {
            bootstrap_defrag(&machine, threshold)?;
        }
        if cfg.experimental.memory_mlock {
            use rustix::mm::{mlockall, MlockAllFlags};
            // FUTURE too: the page store's map grows (etcd locks bbolt's mmap, remaps too).
            mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
                .map_err(|e| format!("--experimental-memory-mlock: cannot lock memory: {e}"))?;
        }
        let peer_rt = PeerRuntime::new()?;
        let replica = start_replica(
            rcfg,
            ident,
            machine.clone(),
            &peer_rt,
            &metrics,
            peer_client.clone(),
            peer_timeouts(&cfg),
        )
        .await?;
        let forward = Forwarder::new(peer_client.clone());
        let ctx = Arc::new(Ctx::new(replica, machine, limits(&cfg), forward, metrics.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let peer =
            PeerService::new(ctx.clone(), tokio::runtime::Handle::current(), metrics.peer.clone());
        for u in urls(&cfg.listen_peer_urls) {
            let tls = tls_for(&u, &peer_acceptor, "--peer-cert-file, --peer-key-file", "peer")?;
            // Bound here (so a taken port fails the start), registered on the peer runtime.
            let listener = {
                let _in_peer_rt = peer_rt.handle().enter();
                listen(&u, &cfg)?
            };
            let svc = PeerServer::new(peer.clone()).max_decoding_message_size(MAX_PEER_MESSAGE);
            let routes = tonic::service::Routes::new(svc);
            let stop = stop_rx.clone();
            tasks.push(peer_rt.handle().spawn(serve(
                listener,
                tls,
                routes,
                Protocol::default(),
                stop,
                "peer",
            )));
            tracing::info!(url = %u, "serving peer traffic");
        }
        let max_msg = cfg.max_request_bytes + CLIENT_MESSAGE_OVERHEAD;
        // Client ports are bound now (a taken port fails the start) and served once the member
        // has published itself, as etcd's: a member cut off from its cluster answers no client.
        let (ready_tx, ready_rx) = watch::channel(false);
        let http_only = urls(&cfg.listen_client_http_urls);
        let client_listeners = urls(&cfg.listen_client_urls).into_iter().map(|u| (u, false));
        for (u, http_listener) in
            client_listeners.chain(http_only.iter().map(|u| (u.clone(), true)))
        {
            let tls = tls_for(&u, &client_acceptor, "--cert-file, --key-file", "client")?;
            let listener = bind(&u, &cfg).await?;
            let http = client_http(&ctx, &metrics, &cfg, tls.is_some());
            let routes = if http_listener {
                crate::net::dispatch::ClientDispatch::http_only(http, metrics.clone())
            } else if http_only.is_empty() {
                client_routes(&ctx, &metrics, max_msg, http)
            } else {
                let none = axum::Router::new().fallback(crate::gateway::http::page_not_found);
                client_routes(&ctx, &metrics, max_msg, none)
            };
            let (mut ready, mut stop) = (ready_rx.clone(), stop_rx.clone());
            let d = &cfg.deferred;
            let protocol = Protocol {
                http1: true,
                streams: Some(cfg.max_concurrent_streams),
                // As etcd: no server pings unless both are positive.
                keepalive: Some((d.grpc_keepalive_interval, d.grpc_keepalive_timeout))
                    .filter(|(i, t)| !i.is_zero() && !t.is_zero()),
                // 0 leaves grpc-go's own default policy, as etcd does.
                ping_min_time: Some(if d.grpc_keepalive_min_time.is_zero() {
                    GRPC_DEFAULT_PING_MIN_TIME
                } else {
                    d.grpc_keepalive_min_time
                }),
            };
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    r = ready.wait_for(|r| *r) => if r.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
                tracing::info!(url = %u, "serving client traffic");
                serve(listener, tls, routes, protocol, stop, "client").await
            }));
        }
        for u in urls(&cfg.listen_metrics_urls) {
            let tls = tls_for(&u, &client_acceptor, "--cert-file, --key-file", "metrics")?;
            let listener = bind(&u, &cfg).await?;
            let routes = metrics_routes(&ctx, &metrics);
            let stop = stop_rx.clone();
            let protocol = Protocol { http1: true, ..Protocol::default() };
            tasks.push(tokio::spawn(serve(listener, tls, routes, protocol, stop, "metrics")));
            tracing::info!(url = %u, "serving metrics and health");
        }
        if cfg.experimental.initial_corrupt_check {
            // Peers are served already (they answer each other's checks); clients not yet.
            if let Err(e) = corrupt::initial_check(&ctx, peer_client.as_ref()).await {
                Member { ctx, stop, tasks, peer_rt }.stop().await;
                return Err(e);
            }
        }
        tasks.push(tokio::spawn(duties::publish(
            ctx.clone(),
            cfg.name.clone(),
            urls(&cfg.advertise_client_urls),
            ready_tx,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(duties::leader_duties(ctx.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(duties::v2_sync(ctx.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(autocompact::run(ctx.clone(), auto_compaction, stop_rx)));
        tracing::info!(id = %format!("{:x}", ident.member_id), cluster = %format!("{:x}", ident.cluster_id), "member started");
        Ok(Member { ctx, stop, tasks, peer_rt })
    }

    /// Waits until the member fails for good: its replica stopped on a fatal error, or its
    /// store could no longer make writes durable. Returns why. The process should then exit
    /// (as etcd does): the member can no longer follow the cluster, and must not keep
    /// answering from a state that drifts from it.
    pub async fn failed(&self) -> String {
        tokio::select! {
            why = self.ctx.replica.failed() => why,
            why = self.ctx.machine.failed() => why,
        }
    }

    /// Waits until the cluster has removed this member, then ten heartbeats more (etcd's
    /// delay, which lets the removal's commit reach the others when this member led). The
    /// process should then stop the member and exit, as etcd's does.
    pub async fn removed(&self) {
        self.ctx.replica.removed().await;
        tokio::time::sleep(self.ctx.replica.config().heartbeat * 10).await;
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
                // Dropped (with what it holds) once this returns.
                let _ = t.await;
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
        // The transport's tasks go last: raft could send until the replica stopped. Waiting
        // for them to be dropped lets a member start again at once on the same data dir.
        self.peer_rt.shutdown(Duration::from_secs(2)).await;
    }
}

/// etcd's --experimental-bootstrap-defrag-threshold-megabytes: defragment the page store
/// before serving when at least `threshold_mb` MiB of it is free.
fn bootstrap_defrag(machine: &EtcdMachine, threshold_mb: u64) -> Result<(), StartError> {
    let store = machine.store();
    let stats = store.db().stats();
    let in_use = stats.pages.saturating_sub(stats.free_pages) * stats.page_size;
    let free = stats.file_size.saturating_sub(in_use);
    let threshold = threshold_mb.saturating_mul(1 << 20);
    if free < threshold {
        tracing::info!(free, threshold, "skipping defragmentation");
        return Ok(());
    }
    let r = store.db().defrag().map_err(|e| format!("bootstrap defragmentation failed: {e}"))?;
    tracing::info!(free, threshold, report = ?r, "defragmented the page store before serving");
    Ok(())
}

/// The replica's settings from the flags (etcd's timing rules checked).
fn replica_config(
    cfg: &ServerConfig,
    ident: Identity,
    boot: Bootstrap,
) -> Result<ReplicaConfig, StartError> {
    let election = Duration::from_millis(cfg.election_timeout);
    let mut rcfg = ReplicaConfig::new(ident.member_id, cfg.member_dir(), boot);
    rcfg.wal_dir = cfg.wal_dir();
    rcfg.snap_dir = cfg.snap_dir();
    rcfg.heartbeat = Duration::from_millis(cfg.heartbeat_interval.max(1));
    rcfg.election = election;
    rcfg.snapshot_count = cfg.snapshot_count;
    rcfg.request_timeout = Duration::from_secs(5) + 2 * election;
    rcfg.pre_vote = cfg.pre_vote;
    rcfg.strict_reconfig_check = cfg.strict_reconfig_check;
    rcfg.max_snapshots = cfg.max_snapshots;
    rcfg.force_new_cluster = cfg.deferred.force_new_cluster;
    rcfg.catchup_entries = cfg.experimental.snapshot_catchup_entries;
    rcfg.wal.max_files = usize::try_from(cfg.max_wals).unwrap_or(usize::MAX);
    if cfg.max_wals == 0 {
        tracing::warn!("--max-wals=0: every WAL segment is kept on disk");
    }
    if cfg.unsafe_no_fsync {
        rcfg.wal.sync = rusted_wal::SyncStyle::UnsafeNoSync;
    }
    Ok(rcfg)
}

/// `--raft-read-timeout` and `--raft-write-timeout` (0 keeps etcd's 5 s default).
fn peer_timeouts(cfg: &ServerConfig) -> PeerTimeouts {
    let d = PeerTimeouts::default();
    let or = |v: Duration, default: Duration| if v.is_zero() { default } else { v };
    PeerTimeouts {
        read: or(cfg.deferred.raft_read_timeout, d.read),
        write: or(cfg.deferred.raft_write_timeout, d.write),
    }
}

/// Starts the replica with the peer transport (on the peer runtime) already holding its
/// mailbox.
async fn start_replica(
    mut rcfg: ReplicaConfig,
    ident: Identity,
    machine: Arc<EtcdMachine>,
    peer_rt: &PeerRuntime,
    metrics: &Arc<Metrics>,
    peer_tls: Option<ClientTls>,
    timeouts: PeerTimeouts,
) -> Result<Arc<Replica<EtcdMachine>>, StartError> {
    let m = metrics.clone();
    rcfg.wal.on_sync = Some(Arc::new(move |d| m.observe_wal_fsync(d)));
    let (mailbox, inbox) = Mailbox::new(ident.member_id, &rcfg.snap_dir)?;
    let transport = GrpcTransport::new(
        peer_rt.handle(),
        ident.member_id,
        ident.cluster_id,
        mailbox.clone(),
        peer_tls,
        timeouts,
        metrics.peer.clone(),
    );
    let replica = tokio::task::spawn_blocking(move || {
        Replica::start_with_mailbox(
            rcfg,
            machine,
            Arc::new(GrpcTransportRef(transport)),
            mailbox,
            inbox,
        )
    })
    .await??;
    Ok(Arc::new(replica))
}

/// etcd's request limits from the flags (the quota's warnings logged as etcd logs them).
fn limits(cfg: &ServerConfig) -> Limits {
    let quota = Limits::quota_from_flag(cfg.quota_backend_bytes);
    match quota {
        None => tracing::warn!("disabled backend quota"),
        Some(q) if q > crate::api::ctx::MAX_QUOTA_BYTES => tracing::warn!(
            quota = q,
            max = crate::api::ctx::MAX_QUOTA_BYTES,
            "quota exceeds the maximum value; performance may degrade"
        ),
        Some(_) => {}
    }
    if cfg.experimental.watch_progress_notify_interval.is_zero() {
        // etcd refuses a zero interval at start too.
        tracing::warn!(
            "--experimental-watch-progress-notify-interval of 0: etcd's default is used"
        );
    }
    let watch_progress_interval = if cfg.experimental.watch_progress_notify_interval.is_zero() {
        crate::api::watch::PROGRESS_REPORT_INTERVAL
    } else {
        cfg.experimental.watch_progress_notify_interval
    };
    Limits {
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops,
        quota_backend_bytes: quota,
        watch_progress_interval,
        stop_grpc_service_on_defrag: cfg.experimental.stop_grpc_service_on_defrag,
        client_cert_auth: cfg.tls.client_cert_auth,
    }
}

/// The TLS of a listener at `url`: required on https (etcd's error otherwise), ignored on
/// http (with etcd's warning, for client and peer URLs).
fn tls_for(
    url: &str,
    acceptor: &Option<Arc<Acceptor>>,
    flags: &str,
    what: &str,
) -> Result<Option<Arc<Acceptor>>, StartError> {
    let https = url.starts_with("https://");
    match (https, acceptor) {
        (true, Some(a)) => Ok(Some(a.clone())),
        (true, None) => Err(format!(
            "TLS key/cert ({flags}) must be provided for {what} url {url} with HTTPS scheme"
        )
        .into()),
        // etcd warns for client and peer URLs; a plain metrics URL beside TLS client URLs is
        // kubeadm's ordinary setup, and etcd says nothing about it.
        (false, Some(_)) => {
            if what != "metrics" {
                tracing::warn!(
                    url,
                    "scheme is HTTP while key and cert files are present; ignoring key and cert files"
                );
            }
            Ok(None)
        }
        (false, None) => Ok(None),
    }
}

/// A client-runtime listener on `url` (a taken port fails the start).
async fn bind(url: &str, cfg: &ServerConfig) -> Result<tokio::net::TcpListener, StartError> {
    Ok(listen(url, cfg)?)
}

/// A listening socket on `url` with `--socket-reuse-port` / `--socket-reuse-address`, in the
/// runtime that is current.
fn listen(url: &str, cfg: &ServerConfig) -> Result<tokio::net::TcpListener, String> {
    let addr = bind_addr(url)?;
    let err = |e: std::io::Error| format!("listen {url}: {e}");
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    // Rust's standard listener sets SO_REUSEADDR on Unix; etcd's (Go's) does too, so the
    // flag can only add to it.
    sock.set_reuseaddr(true).map_err(err)?;
    if cfg.socket_reuse_port {
        sock.set_reuseport(true).map_err(err)?;
    }
    sock.bind(addr).map_err(err)?;
    sock.listen(1024).map_err(err)
}

/// What a `--listen-metrics-urls` listener serves: /metrics and /health (and /livez,
/// /readyz, /version: the same plain endpoints as the client port), no gRPC, no gateway.
fn metrics_routes(ctx: &Arc<Ctx>, metrics: &Arc<Metrics>) -> tonic::service::Routes {
    let http = crate::gateway::http::router(ctx.clone(), metrics.clone());
    tonic::service::Routes::from(http)
}

/// The HTTP side of a client URL: the JSON gateway (unless `--enable-grpc-gateway=false`) and
/// the plain endpoints, behind etcd's access control (`--cors`, `--host-whitelist`).
fn client_http(
    ctx: &Arc<Ctx>,
    metrics: &Arc<Metrics>,
    cfg: &ServerConfig,
    tls: bool,
) -> axum::Router {
    let mut plain = crate::gateway::http::router(ctx.clone(), metrics.clone())
        .merge(crate::gateway::debug::router(ctx.clone(), cfg.deferred.enable_pprof));
    if cfg.deferred.enable_v2 {
        plain = plain.merge(crate::v2::members::router(ctx.clone()));
    }
    let http = if cfg.enable_grpc_gateway {
        crate::gateway::json::router(ctx.clone())
            .merge(plain)
            .fallback(crate::gateway::json::not_found)
    } else {
        plain.fallback(crate::gateway::http::page_not_found)
    };
    let access = Access::new(&cfg.cors, &cfg.host_whitelist, tls);
    http.method_not_allowed_fallback(crate::gateway::json::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(access, crate::net::access::layer))
}

/// Everything on a client URL: the etcd gRPC services and `http` (the HTTP side, or, with
/// `--listen-client-http-urls`, nothing but 404s), with every gRPC call counted.
fn client_routes(
    ctx: &Arc<Ctx>,
    metrics: &Arc<Metrics>,
    max_msg: usize,
    http: axum::Router,
) -> crate::net::dispatch::ClientDispatch {
    let grpc = crate::net::dispatch::GrpcServices {
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
        kv_calls: crate::net::unary::KvCalls { svc: KvService { ctx: ctx.clone() }, max_msg },
    };
    crate::net::dispatch::ClientDispatch::new(grpc, http, metrics.clone())
}
