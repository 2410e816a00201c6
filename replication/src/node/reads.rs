//! Read barriers on the raft thread: ReadIndex rounds (every read waiting at the moment shares
//! one), their answers and expiry, and the commit index a sole voter publishes for readers to
//! take without a round (`Shared::local_read`).
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Instant;

use raft::StateRole;

use super::RaftLoop;
use crate::error::ReplicationError;
use crate::machine::StateMachine;

impl<S: StateMachine> RaftLoop<S> {
    pub(super) fn start_read_round(&mut self) {
        if self.reads_waiting.is_empty() || self.reads_inflight.is_some() {
            return;
        }
        if self.raw.raft.leader_id == raft::INVALID_ID {
            for tx in self.reads_waiting.drain(..) {
                let _ = tx.send(Err(ReplicationError::NoLeader));
            }
            return;
        }
        self.read_seq += 1;
        let waiting = std::mem::take(&mut self.reads_waiting);
        self.raw.read_index(self.read_seq.to_le_bytes().to_vec());
        self.reads_inflight = Some((self.read_seq, waiting, Instant::now()));
    }

    /// A read round that got no answer (the leader was lost meanwhile) fails after an
    /// election timeout, so its readers can retry.
    pub(super) fn expire_reads(&mut self) {
        if let Some((_, _, at)) = &self.reads_inflight {
            if at.elapsed() > self.election * 2 {
                if let Some((_, txs, _)) = self.reads_inflight.take() {
                    for tx in txs {
                        let _ = tx.send(Err(ReplicationError::Timeout));
                    }
                }
            }
        }
    }

    /// A sole voter that leads and has committed in its term answers read barriers without a
    /// ReadIndex round: nobody else can lead or commit without its vote, which this thread
    /// would give only after clearing this (see `Shared::local_read`).
    pub(super) fn publish_local_read(&self) {
        let r = &self.raw.raft;
        let index =
            if self.role == StateRole::Leader && self.sole_voter() && r.commit_to_current_term() {
                r.raft_log.committed
            } else {
                0
            };
        self.shared.local_read.store(index, Ordering::SeqCst);
    }

    pub(super) fn read_state(&mut self, ctx: &[u8], index: u64) {
        let Some((seq, _, _)) = &self.reads_inflight else { return };
        if ctx != seq.to_le_bytes() {
            return;
        }
        if let Some((_, txs, _)) = self.reads_inflight.take() {
            for tx in txs {
                let _ = tx.send(Ok(index));
            }
        }
    }
}
