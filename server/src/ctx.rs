//! What every handler shares: the replica, the store, the limits, and the response header.
#![forbid(unsafe_code)]

use std::sync::Arc;

use rusted_engine::mvcc::Store;
use rusted_replication::Replica;

use crate::errors::{ApiError, ApiResult};
use crate::machine::{ApplyOut, EtcdMachine};
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::rustedpb::proposal::Request;

/// The version rusted reports (the etcd API level it serves).
pub const SERVER_VERSION: &str = "3.5.0";
/// The cluster version reported with it.
pub const CLUSTER_VERSION: &str = "3.5.0";

/// etcd's request limits, by the same flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// --max-request-bytes (etcd: 1.5 MiB).
    pub max_request_bytes: usize,
    /// --max-txn-ops (etcd: 128).
    pub max_txn_ops: usize,
    /// --quota-backend-bytes (etcd: 2 GiB).
    pub quota_backend_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_request_bytes: 1536 * 1024, max_txn_ops: 128, quota_backend_bytes: 2 << 30 }
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
}

impl Ctx {
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

    /// Replicates a request and returns what applying it produced.
    pub async fn propose(&self, req: Request) -> ApiResult<ApplyOut> {
        let bytes = EtcdMachine::encode(req);
        if bytes.len() > self.limits.max_request_bytes {
            return Err(ApiError::RequestTooLarge);
        }
        Ok(self.replica.propose(&bytes).await??)
    }

    /// A linearizable read barrier.
    pub async fn linearize(&self) -> ApiResult<()> {
        self.replica.read_index().await?;
        Ok(())
    }
}
