//! Read barriers for callers: a linearizable ReadIndex (or, on a sole voter, the commit index
//! its raft thread publishes), then a wait until this member has applied that far.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Replica;
use crate::error::{ReplicationError, Result};
use crate::machine::StateMachine;
use crate::node::Input;

impl<S: StateMachine> Replica<S> {
    /// A linearizable read barrier (ReadIndex): returns once this member has applied
    /// everything committed when the call began. Concurrent callers share one round.
    pub async fn read_index(&self) -> Result<u64> {
        let r = self.read_index_inner().await;
        let c = &self.shared.counters;
        match &r {
            Ok(_) => {}
            Err(ReplicationError::Timeout) => {
                c.read_indexes_slow.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                c.read_indexes_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    async fn read_index_inner(&self) -> Result<u64> {
        self.check_running()?;
        // A sole voter's commit index, published by the raft thread: no round needed.
        let local = self.shared.local_read.load(Ordering::SeqCst);
        if local != 0 {
            self.wait_applied(local, self.cfg.request_timeout).await?;
            return Ok(local);
        }
        self.wait_leader().await?;
        let (tx, rx) = oneshot::channel();
        self.tx.send(Input::Read(tx)).map_err(|_| ReplicationError::Stopped)?;
        let deadline = Instant::now() + self.cfg.request_timeout;
        let index = match tokio::time::timeout(self.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(ReplicationError::Stopped),
            Err(_) => return Err(ReplicationError::Timeout),
        };
        self.wait_applied(index, deadline.saturating_duration_since(Instant::now())).await?;
        Ok(index)
    }

    /// Waits until `index` is applied here.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        if self.shared.applied_index() >= index {
            return Ok(());
        }
        let mut rx = self.shared.applied.subscribe();
        let r =
            tokio::time::timeout(timeout, rx.wait_for(|a| *a >= index)).await.map(|r| r.is_ok());
        match r {
            Ok(true) => Ok(()),
            Ok(false) => Err(ReplicationError::Stopped),
            Err(_) => Err(ReplicationError::Timeout),
        }
    }
}
