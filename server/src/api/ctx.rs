//! What every handler shares: the replica, the store, the limits, and the response header.
#![forbid(unsafe_code)]

use std::sync::Arc;

use rusted_mvcc::Store;
use rusted_replication::Replica;

use crate::api::errors::{ApiError, ApiResult};
use crate::api::forward::Forwarder;
use crate::api::idgen::IdGen;
use crate::apply::machine::{ApplyOut, EtcdMachine};
use crate::auth::{token, Auth, AuthError, AuthInfo};
use rusted_proto::etcdserverpb::ResponseHeader;
use rusted_proto::rustedpb::peer_client::PeerClient;
use rusted_proto::rustedpb::proposal::Request;

/// etcd's request limits, by the same flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// --max-request-bytes (etcd: 1.5 MiB).
    pub max_request_bytes: usize,
    /// --max-txn-ops (etcd: 128).
    pub max_txn_ops: usize,
    /// --quota-backend-bytes (etcd: 2 GiB; `None`: disabled by a negative flag).
    pub quota_backend_bytes: Option<u64>,
    /// --experimental-watch-progress-notify-interval (etcd: 10 minutes): how often a watcher
    /// that asked for progress notifications and got no event hears the current revision.
    pub watch_progress_interval: std::time::Duration,
    /// --experimental-stop-grpc-service-on-defrag: the gRPC health service says NOT_SERVING
    /// while this member defragments, so health-checking clients go elsewhere.
    pub stop_grpc_service_on_defrag: bool,
    /// --client-cert-auth: a verified client certificate's common name is the user of a gRPC
    /// request that carries no token (etcd's CN auth).
    pub client_cert_auth: bool,
}

/// The common name of a request's verified client certificate (the leaf), if any (read once
/// per connection, by `net::serve`).
pub fn cert_common_name<T>(req: &tonic::Request<T>) -> Option<String> {
    req.extensions().get::<crate::net::serve::ClientCn>().map(|cn| cn.0.to_string())
}

/// What a stream's caller presented: its metadata (token) and its certificate's common name.
#[derive(Debug, Clone, Default)]
pub struct Creds {
    /// The request metadata.
    pub md: tonic::metadata::MetadataMap,
    /// The verified client certificate's common name.
    pub cn: Option<String>,
}

impl Creds {
    /// A gRPC request's credentials.
    pub fn of<T>(req: &tonic::Request<T>) -> Self {
        Creds { md: req.metadata().clone(), cn: cert_common_name(req) }
    }
}

/// Who sent a request (`None`: nobody, or auth disabled).
pub type Who = Option<AuthInfo>;

/// etcd's default space quota.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;
/// Above this etcd warns that the quota may degrade performance.
pub const MAX_QUOTA_BYTES: u64 = 8 << 30;

impl Limits {
    /// The quota from the flag's value, as etcd reads it (0: default, negative: disabled).
    pub fn quota_from_flag(v: i64) -> Option<u64> {
        match v {
            0 => Some(DEFAULT_QUOTA_BYTES),
            v if v < 0 => None,
            v => Some(v as u64),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            quota_backend_bytes: Some(DEFAULT_QUOTA_BYTES),
            watch_progress_interval: crate::api::watch::PROGRESS_REPORT_INTERVAL,
            stop_grpc_service_on_defrag: false,
            client_cert_auth: false,
        }
    }
}

/// Shared by the services.
#[derive(Debug)]
pub struct Ctx {
    /// This member's replica.
    pub replica: Arc<Replica<EtcdMachine>>,
    /// Its state machine.
    pub machine: Arc<EtcdMachine>,
    /// Limits.
    pub limits: Limits,
    /// Lease (and request) IDs.
    pub ids: IdGen,
    /// The connection to the leader, for requests only it answers.
    pub forward: Forwarder,
    /// A NOSPACE alarm proposal is in flight (one at a time, however many writes hit the quota).
    pub raising_nospace: Arc<std::sync::atomic::AtomicBool>,
    /// Defragmentations running now (the health service reads it).
    pub defragmenting: Arc<std::sync::atomic::AtomicUsize>,
    /// The member's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Ctx {
    /// The context of a member whose replica runs `machine`; `forward` reaches the leader.
    pub fn new(
        replica: Arc<Replica<EtcdMachine>>,
        machine: Arc<EtcdMachine>,
        limits: Limits,
        forward: Forwarder,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Ctx {
            metrics,
            ids: IdGen::new(replica.id()),
            replica,
            machine,
            limits,
            forward,
            raising_nospace: Default::default(),
            defragmenting: Default::default(),
        }
    }

    /// The store (current; replaced when a snapshot is installed).
    pub fn store(&self) -> Arc<Store> {
        self.machine.store()
    }

    /// A response header as etcd fills it.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.replica.cluster_id(),
            member_id: self.replica.id(),
            revision,
            raft_term: self.replica.term(),
        })
    }

    /// A header with the store's current revision.
    pub fn header_now(&self) -> Option<ResponseHeader> {
        self.header(self.store().current_revision())
    }

    /// Replicates a request of this member's own (lease expiry, compaction, alarms) and
    /// returns what applying it produced.
    pub async fn propose(&self, req: Request) -> ApiResult<ApplyOut> {
        self.propose_encoded(EtcdMachine::encode(req, None)).await
    }

    /// Replicates a client's request, with the identity its permissions were checked for
    /// (applying refuses it if the auth store changed since).
    pub async fn propose_for(&self, who: &Who, req: Request) -> ApiResult<ApplyOut> {
        let proposer = self.machine.auth.proposer(who.as_ref());
        self.propose_encoded(EtcdMachine::encode(req, Some(proposer))).await
    }

    async fn propose_encoded(&self, buf: Vec<u8>) -> ApiResult<ApplyOut> {
        // The buffer starts with the entry's kind byte.
        if buf.len().saturating_sub(1) > self.limits.max_request_bytes {
            return Err(ApiError::RequestTooLarge);
        }
        Ok(self.replica.propose_buf(buf).await??)
    }

    /// The auth store.
    pub fn auth(&self) -> &Auth {
        &self.machine.auth
    }

    /// Who sent a gRPC request: its token (see [`Ctx::who`]) or, with `--client-cert-auth` and
    /// no token, the common name of its verified client certificate (the JSON gateway's
    /// requests never carry a certificate identity, as etcd's).
    pub async fn who_of<T>(&self, req: &tonic::Request<T>) -> ApiResult<Who> {
        let who = self.who(req.metadata()).await?;
        if who.is_some() || !self.limits.client_cert_auth || !self.auth().enabled() {
            return Ok(who);
        }
        Ok(cert_common_name(req).map(|user| AuthInfo { user, revision: self.auth().revision() }))
    }

    /// [`Ctx::who_of`] for a stream's credentials, read again for each watch or renewal.
    pub async fn who_creds(&self, c: &Creds) -> ApiResult<Who> {
        let who = self.who(&c.md).await?;
        if who.is_some() || !self.limits.client_cert_auth || !self.auth().enabled() {
            return Ok(who);
        }
        Ok(c.cn.clone().map(|user| AuthInfo { user, revision: self.auth().revision() }))
    }

    /// Who sent a request, as etcd reads it: nobody while auth is disabled; else the token in
    /// the `token` metadata (or `authorization`, without a `Bearer ` prefix), which must be
    /// valid. A simple token names the raft index it was made at: this member waits until it
    /// has applied that far before looking it up.
    pub async fn who(&self, md: &tonic::metadata::MetadataMap) -> ApiResult<Who> {
        // Names made at compile time: a lookup by `&str` parses the name on every call.
        const TOKEN: http::HeaderName = http::HeaderName::from_static("token");
        let h: &http::HeaderMap = md.as_ref();
        let token = h
            .get(TOKEN)
            .or_else(|| h.get(http::header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .map(|t| t.strip_prefix("Bearer ").unwrap_or(t));
        let Some(token) = token else { return Ok(None) };
        if !self.auth().enabled() {
            // A follower that has not applied the AuthEnable before this token's Authenticate
            // would send the request as nobody, to be refused at apply ("user name is empty"):
            // wait for the token's index when the cluster has committed it.
            let index = if self.auth().is_jwt() { None } else { token::token_index(token) };
            let behind =
                index.filter(|&i| i > self.replica.applied() && i <= self.replica.committed());
            let Some(index) = behind else { return Ok(None) };
            if self.replica.wait_applied(index, self.request_timeout()).await.is_err()
                || !self.auth().enabled()
            {
                return Ok(None);
            }
        }
        if self.auth().is_jwt() {
            return Ok(Some(self.auth().token_info(token)?));
        }
        let index = token::token_index(token).ok_or(AuthError::InvalidAuthToken)?;
        // Nearly always applied already: no waiting (and no timer) then.
        if self.replica.applied() < index
            && self.replica.wait_applied(index, self.request_timeout()).await.is_err()
        {
            return Err(AuthError::InvalidAuthToken.into());
        }
        Ok(Some(self.auth().token_info(token)?))
    }

    /// A client to the leader's peer service (a follower forwards leader-only requests).
    pub fn leader_client(&self) -> ApiResult<PeerClient<tonic::transport::Channel>> {
        let leader = self.replica.leader();
        let urls = self
            .replica
            .cluster()
            .members
            .get(&leader)
            .map(|m| m.peer_urls.clone())
            .unwrap_or_default();
        self.forward.client(leader, &urls)
    }

    /// The time a forwarded or waited-on request may take (etcd's request timeout).
    pub fn request_timeout(&self) -> std::time::Duration {
        self.replica.config().request_timeout
    }

    /// The space quota check before a write that adds `cost` bytes (etcd's quota gate): refused
    /// while the NOSPACE alarm is raised; a write that would take the store past the quota
    /// raises the alarm (through raft, for this member) and is refused; so does any write while
    /// the WAL's disk is full.
    pub fn check_quota(&self, cost: u64) -> ApiResult<()> {
        // What adds nothing (deletes, reads) always passes: that is how space is freed.
        if cost == 0 {
            return Ok(());
        }
        if self.machine.nospace() {
            return Err(ApiError::NoSpace);
        }
        if self.replica.wal().space_error().is_some() {
            // The WAL disk is full: refuse before the entry has nowhere to go.
            self.raise_nospace();
            return Err(ApiError::NoSpace);
        }
        let Some(quota) = self.limits.quota_backend_bytes else { return Ok(()) };
        if self.store().db().size() + cost < quota {
            return Ok(());
        }
        self.raise_nospace();
        Err(ApiError::NoSpace)
    }

    /// Proposes the NOSPACE alarm for this member, unless it is raised or being raised.
    pub fn raise_nospace(&self) {
        use std::sync::atomic::Ordering;
        if self.machine.nospace() || self.raising_nospace.swap(true, Ordering::AcqRel) {
            return;
        }
        let req = rusted_proto::etcdserverpb::AlarmRequest {
            action: rusted_proto::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
            member_id: self.replica.id(),
            alarm: rusted_proto::etcdserverpb::AlarmType::Nospace as i32,
        };
        let bytes = EtcdMachine::encode(Request::Alarm(req), None);
        let replica = self.replica.clone();
        let raising = self.raising_nospace.clone();
        tokio::spawn(async move {
            if let Err(e) = replica.propose_buf(bytes).await {
                tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
            }
            raising.store(false, Ordering::Release);
        });
    }

    /// A linearizable read barrier.
    pub async fn linearize(&self) -> ApiResult<()> {
        self.replica.read_index().await?;
        Ok(())
    }
}
