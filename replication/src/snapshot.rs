//! The snapshot thread: when raft needs a snapshot for a follower that is too far behind the
//! log, the state machine writes one into the snapshot directory, off the raft thread, and the
//! raft loop is told it is available (or that making it failed).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{ReplicationError, Result};
use crate::machine::StateMachine;
use crate::node::Input;
use crate::shared::Shared;
use crate::storage::SnapshotAvail;
use crate::transport::SnapDir;

/// The snapshot thread: writes a state machine snapshot when raft needs one for a follower.
pub(crate) fn snapshot_loop<S: StateMachine>(
    rx: Receiver<()>,
    node: Sender<Input>,
    shared: Arc<Shared<S>>,
    snaps: SnapDir,
) {
    for () in rx {
        let tmp = snaps.path().join("out.tmp");
        let _ = std::fs::remove_file(&tmp);
        let r = (|| -> Result<SnapshotAvail> {
            let (index, term, cluster) = shared.sm.write_snapshot(&tmp)?;
            let cs = match cluster {
                Some(b) => crate::membership::ClusterRecord::decode(&b)?.conf_state(),
                None => shared.cluster().conf_state(),
            };
            let path = snaps.outgoing(index, term);
            std::fs::rename(&tmp, &path).map_err(|source| ReplicationError::Io {
                path: path.display().to_string(),
                source,
            })?;
            snaps.prune("out-", &path);
            Ok(SnapshotAvail { index, term, conf_state: cs })
        })();
        match r {
            Ok(a) => {
                tracing::info!(index = a.index, "snapshot written for followers");
                let _ = node.send(Input::SnapshotReady(a));
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot for followers failed");
                std::thread::sleep(Duration::from_millis(500));
                let _ = node.send(Input::SnapshotFailed);
            }
        }
    }
}
