//! The replication layer's errors. The server maps them once, at the API edge, to etcd's
//! gRPC codes and messages (the `Display` strings here are etcd's text without the
//! "etcdserver: " prefix the server adds).
#![forbid(unsafe_code)]

/// Result of this crate.
pub type Result<T, E = ReplicationError> = std::result::Result<T, E>;

/// Why a proposal, read or membership change failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// No leader is known (etcd's ErrNoLeader).
    #[error("no leader")]
    NoLeader,
    /// Applying lags too far behind committing (etcd's ErrTooManyRequests).
    #[error("too many requests")]
    TooManyRequests,
    /// The request was not applied within the request timeout (etcd's ErrTimeout).
    #[error("request timed out")]
    Timeout,
    /// The request timed out after the leader changed (etcd's ErrTimeoutDueToLeaderFail).
    #[error("request timed out, possibly due to previous leader failure")]
    TimeoutLeaderFail,
    /// The member is stopping or stopped (etcd's ErrStopped).
    #[error("server stopped")]
    Stopped,
    /// The member was removed from the cluster (etcd's ErrStopped after removal).
    #[error("the member has been permanently removed from the cluster")]
    Removed,
    /// A membership change names an ID already in the cluster.
    #[error("member ID already exist")]
    MemberExists,
    /// A membership change names peer URLs already in use.
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    /// A membership change names an unknown member.
    #[error("member not found")]
    MemberNotFound,
    /// The member was removed before.
    #[error("member ID already removed")]
    MemberRemoved,
    /// Promote of a member that is not a learner.
    #[error("can only promote a learner member")]
    MemberNotLearner,
    /// Promote of a learner that is not caught up.
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// Too many learners.
    #[error("too many learner members in cluster")]
    TooManyLearners,
    /// The change would leave too few started voters for a quorum.
    #[error("re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// The change could cost the active quorum: this member has not been connected to enough
    /// voters for the health interval.
    #[error("unhealthy cluster")]
    Unhealthy,
    /// Leader transfer target is not a voter, or the transfer did not finish.
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    /// Leader transfer did not complete in time.
    #[error("leader changed")]
    LeaderChanged,
    /// An operation only the leader can run.
    #[error("not leader")]
    NotLeader,
    /// Bad configuration or bootstrap flags.
    #[error("{0}")]
    Config(String),
    /// The log failed (the member cannot continue).
    #[error("wal: {0}")]
    Wal(#[from] rusted_wal::WalError),
    /// Raft refused something.
    #[error("raft: {0}")]
    Raft(String),
    /// The state machine failed.
    #[error("state machine: {0}")]
    StateMachine(String),
    /// Bytes from disk or the network did not decode.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// File-system trouble outside the WAL (snapshots, data dir).
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl From<raft::Error> for ReplicationError {
    fn from(e: raft::Error) -> Self {
        ReplicationError::of_raft(&e)
    }
}

impl ReplicationError {
    /// What a raft refusal means to a caller (one error per waiter of a refused batch, as
    /// neither error type is `Clone`).
    pub(crate) fn of_raft(e: &raft::Error) -> Self {
        match e {
            raft::Error::ProposalDropped => ReplicationError::NoLeader,
            e => ReplicationError::Raft(e.to_string()),
        }
    }
}

/// Attaches a path to an I/O error.
pub(crate) trait IoAt<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoAt<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| ReplicationError::Io { path: path.display().to_string(), source })
    }
}
