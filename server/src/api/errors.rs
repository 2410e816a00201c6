//! The one table from every layer's errors to etcd's gRPC codes and messages (etcd's
//! rpctypes). Handlers return [`ApiError`]; tonic sees only the mapped `Status`.
#![forbid(unsafe_code)]

use rusted_mvcc::{LeaseError, MvccError};
use rusted_replication::ReplicationError;
use tonic::{Code, Status};

/// An API-level failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// From the MVCC store.
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// From replication.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// More ops in a txn than --max-txn-ops.
    #[error("too many operations in txn request")]
    TooManyOps,
    /// A request larger than --max-request-bytes.
    #[error("request is too large")]
    RequestTooLarge,
    /// Writes refused under the NOSPACE alarm.
    #[error("mvcc: database space exceeded")]
    NoSpace,
    /// Something rusted does not do yet.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A bug or an impossible state (gRPC Internal).
    #[error("{0}")]
    Internal(String),
    /// A malformed request (gRPC InvalidArgument with this message, no etcd prefix).
    #[error("{0}")]
    Invalid(String),
}

fn etcd(code: Code, msg: &str) -> Status {
    Status::new(code, format!("etcdserver: {msg}"))
}

fn lease(e: &LeaseError) -> Status {
    match e {
        LeaseError::NotFound | LeaseError::Expired => {
            etcd(Code::NotFound, "requested lease not found")
        }
        LeaseError::Exists => etcd(Code::FailedPrecondition, "lease already exists"),
        LeaseError::TtlTooLarge => etcd(Code::OutOfRange, "too large lease TTL"),
        LeaseError::NotPrimary => etcd(Code::FailedPrecondition, "not leader"),
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        use ReplicationError as R;
        match &e {
            ApiError::Mvcc(m) => match m {
                MvccError::Compacted { .. } => {
                    etcd(Code::OutOfRange, "mvcc: required revision has been compacted")
                }
                MvccError::FutureRevision => {
                    etcd(Code::OutOfRange, "mvcc: required revision is a future revision")
                }
                MvccError::EmptyKey
                | MvccError::KeyNotFound
                | MvccError::ValueProvided
                | MvccError::LeaseProvided
                | MvccError::DuplicateKey => etcd(Code::InvalidArgument, &m.to_string()),
                MvccError::Lease(l) => lease(l),
                MvccError::Closed => etcd(Code::Unavailable, "server stopped"),
                MvccError::NoSpace => {
                    etcd(Code::ResourceExhausted, "mvcc: database space exceeded")
                }
                other => Status::new(Code::Internal, other.to_string()),
            },
            ApiError::Replication(r) => match r {
                R::NoLeader => etcd(Code::Unavailable, "no leader"),
                // etcd sends these two with code Unknown (they are not rpctypes errors there).
                R::TooManyRequests | R::NotEnoughStartedMembers => {
                    etcd(Code::Unknown, &r.to_string())
                }
                R::Timeout | R::TimeoutLeaderFail | R::Stopped | R::Removed | R::LeaderChanged => {
                    etcd(Code::Unavailable, &r.to_string())
                }
                R::MemberExists
                | R::PeerUrlExists
                | R::MemberNotLearner
                | R::LearnerNotReady
                | R::TooManyLearners
                | R::BadLeaderTransferee
                | R::NotLeader => etcd(Code::FailedPrecondition, &r.to_string()),
                R::MemberNotFound | R::MemberRemoved => etcd(Code::NotFound, "member not found"),
                R::Config(_) => etcd(Code::InvalidArgument, "given member URLs are invalid"),
                other => Status::new(Code::Internal, other.to_string()),
            },
            ApiError::TooManyOps => {
                etcd(Code::InvalidArgument, "too many operations in txn request")
            }
            ApiError::RequestTooLarge => etcd(Code::InvalidArgument, "request is too large"),
            ApiError::NoSpace => etcd(Code::ResourceExhausted, "mvcc: database space exceeded"),
            ApiError::Unsupported(m) => Status::new(Code::Unimplemented, *m),
            ApiError::Invalid(m) => Status::new(Code::InvalidArgument, m.clone()),
            ApiError::Internal(m) => Status::new(Code::Internal, m.clone()),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
