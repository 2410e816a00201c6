//! The replicated state machine: raft entries (a `rustedpb.Proposal` each) applied to the MVCC
//! store, in the replication layer's [`StateMachine`] terms.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rusted_engine::mvcc::request as eng;
use rusted_engine::mvcc::{Applied, LeaseGrant, MvccError, Store, StoreOptions, StoreSlot};
use rusted_replication::{ReplicationError, StateMachine};

use crate::convert;
use crate::proto::rustedpb::{proposal::Request, Proposal};

/// What applying an entry produced.
#[derive(Debug)]
pub enum ApplyOut {
    /// A put.
    Put(eng::PutResponse),
    /// A delete.
    Delete(eng::DeleteRangeResponse),
    /// A txn.
    Txn(eng::TxnResponse),
    /// A compaction (the store revision after it).
    Compact(i64),
    /// A lease grant.
    LeaseGrant(LeaseGrant),
    /// A lease revoke (the revision after it).
    LeaseRevoke(i64),
    /// A lease checkpoint.
    Done,
}

/// The result a proposer gets.
pub type ApplyResult = Result<ApplyOut, MvccError>;

/// The MVCC store (replaced whole when a snapshot is installed).
#[derive(Debug)]
pub struct EtcdMachine {
    slot: StoreSlot,
    /// Lease deadlines a new leader extends by (etcd: the election timeout).
    pub lease_extend: Duration,
}

fn sm_err(e: impl std::fmt::Display) -> ReplicationError {
    ReplicationError::StateMachine(e.to_string())
}

impl EtcdMachine {
    /// Opens the store at `path`.
    pub fn open(
        path: &Path,
        opts: StoreOptions,
        lease_extend: Duration,
    ) -> Result<Self, MvccError> {
        Ok(EtcdMachine { slot: StoreSlot::open(path, opts)?, lease_extend })
    }

    /// The current store (replaced only when a snapshot is installed).
    pub fn store(&self) -> Arc<Store> {
        self.slot.get()
    }

    /// Encodes a proposal.
    pub fn encode(r: Request) -> Vec<u8> {
        Proposal { request: Some(r) }.encode_to_vec()
    }
}

impl StateMachine for EtcdMachine {
    type Output = ApplyResult;

    fn applied(&self) -> u64 {
        self.store().applied().index
    }

    fn apply(&self, index: u64, term: u64, data: &[u8]) -> ApplyResult {
        let at = Applied { index, term };
        let s = self.store();
        let req = match Proposal::decode(data) {
            Ok(Proposal { request: Some(r) }) => r,
            Ok(Proposal { request: None }) | Err(_) => {
                // Keep the index moving; the entry carries nothing this version understands.
                s.apply_noop(at)?;
                return Err(MvccError::Corrupt(format!("entry {index}: undecodable proposal")));
            }
        };
        match req {
            Request::Put(p) => s.put(at, &convert::put_in(&p)).map(ApplyOut::Put),
            Request::DeleteRange(d) => {
                s.delete_range(at, &convert::delete_in(&d)).map(ApplyOut::Delete)
            }
            Request::Txn(t) => s.txn(at, &convert::txn_in(&t)).map(ApplyOut::Txn),
            Request::Compaction(c) => s.compact(at, c.revision).map(ApplyOut::Compact),
            Request::LeaseGrant(g) => s.lease_grant(at, g.id, g.ttl).map(ApplyOut::LeaseGrant),
            Request::LeaseRevoke(r) => s.lease_revoke(at, r.id).map(ApplyOut::LeaseRevoke),
            // rusted proposes one checkpoint per entry (the store records one per index).
            Request::LeaseCheckpoint(c) => match c.checkpoints.first() {
                Some(cp) => s.lease_checkpoint(at, cp.id, cp.remaining_ttl),
                None => s.apply_noop(at),
            }
            .map(|()| ApplyOut::Done),
        }
    }

    fn apply_noop(&self, index: u64, term: u64) -> rusted_replication::Result<()> {
        self.store().apply_noop(Applied { index, term }).map_err(sm_err)
    }

    fn apply_cluster(
        &self,
        index: u64,
        term: u64,
        record: &[u8],
    ) -> rusted_replication::Result<()> {
        self.store().apply_cluster(Applied { index, term }, record).map_err(sm_err)
    }

    fn cluster(&self) -> rusted_replication::Result<Option<Vec<u8>>> {
        self.store().cluster().map_err(sm_err)
    }

    fn sync(&self) -> rusted_replication::Result<()> {
        self.store().sync().map_err(sm_err)
    }

    fn write_snapshot(
        &self,
        path: &Path,
    ) -> rusted_replication::Result<(u64, u64, Option<Vec<u8>>)> {
        let info = self.store().write_snapshot(path).map_err(sm_err)?;
        Ok((info.applied.index, info.applied.term, info.cluster))
    }

    fn restore(&self, path: &Path) -> rusted_replication::Result<()> {
        self.slot.restore(path).map_err(sm_err)
    }

    fn on_leader_change(&self, is_leader: bool) {
        let s = self.store();
        if is_leader {
            s.lease_promote(self.lease_extend);
        } else {
            s.lease_demote();
        }
    }
}
