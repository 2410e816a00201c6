//! The one table from every layer's errors to etcd's gRPC codes and messages (etcd's
//! rpctypes). Handlers return [`ApiError`]; tonic sees only the mapped `Status`. Every etcd
//! message a client sees is spelled here: the lower crates' own error texts are for logs.
#![forbid(unsafe_code)]

use crate::apply::machine::ApplyError;
use crate::auth::AuthError;
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
    /// An auth operation while auth is disabled.
    #[error("authentication is not enabled")]
    AuthNotEnabled,
    /// The auth store refused it.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An auth refusal etcd sends unmapped (Defragment, Snapshot, Hash, HashKV): code Unknown
    /// with the auth store's own text.
    #[error(transparent)]
    AuthRaw(AuthError),
    /// Proclaim or resign by a candidate that no longer leads.
    #[error("election: not leader")]
    ElectionNotLeader,
    /// Leader asked of an election nobody leads.
    #[error("election: no leader")]
    ElectionNoLeader,
    /// An election request without its leader key.
    #[error("leader field must be provided")]
    MissingLeaderKey,
    /// A gRPC method this server does not have (as any gRPC server answers it).
    #[error("unknown method {0}")]
    UnknownMethod(String),
    /// A health check of a service this server does not have.
    #[error("unknown service")]
    UnknownService,
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

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Mvcc(m) => ApiError::Mvcc(m),
            ApplyError::Auth(a) => ApiError::Auth(a),
        }
    }
}

/// etcd's code and text for an auth refusal.
fn auth(a: &AuthError) -> Status {
    use AuthError as A;
    let (code, msg) = match a {
        A::RootUserNotExist => (Code::FailedPrecondition, "root user does not exist"),
        A::RootRoleNotExist => (Code::FailedPrecondition, "root user does not have root role"),
        A::UserAlreadyExist => (Code::FailedPrecondition, "user name already exists"),
        A::UserEmpty => (Code::InvalidArgument, "user name is empty"),
        A::UserNotFound => (Code::FailedPrecondition, "user name not found"),
        A::RoleAlreadyExist => (Code::FailedPrecondition, "role name already exists"),
        A::RoleNotFound => (Code::FailedPrecondition, "role name not found"),
        A::RoleEmpty => (Code::InvalidArgument, "role name is empty"),
        A::AuthFailed => {
            (Code::InvalidArgument, "authentication failed, invalid user ID or password")
        }
        A::PermissionNotGiven => (Code::InvalidArgument, "permission not given"),
        A::PermissionDenied => (Code::PermissionDenied, "permission denied"),
        A::RoleNotGranted => (Code::FailedPrecondition, "role is not granted to the user"),
        A::PermissionNotGranted => {
            (Code::FailedPrecondition, "permission is not granted to the role")
        }
        A::AuthNotEnabled => (Code::FailedPrecondition, "authentication is not enabled"),
        A::InvalidAuthToken => (Code::Unauthenticated, "invalid auth token"),
        A::InvalidAuthMgmt => (Code::InvalidArgument, "invalid auth management"),
        A::AuthOldRevision => (Code::InvalidArgument, "revision of auth store is old"),
        // etcd has no mapping for these: they reach clients as Unknown with their own text.
        A::NoPasswordUser | A::Hash(_) | A::VerifyOnly => {
            return Status::new(Code::Unknown, a.to_string())
        }
    };
    etcd(code, msg)
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

/// etcd's text for a store refusal (the store's own wording stays its own).
fn mvcc(m: &MvccError) -> Status {
    match m {
        MvccError::Compacted { .. } => {
            etcd(Code::OutOfRange, "mvcc: required revision has been compacted")
        }
        MvccError::FutureRevision => {
            etcd(Code::OutOfRange, "mvcc: required revision is a future revision")
        }
        MvccError::EmptyKey => etcd(Code::InvalidArgument, "key is not provided"),
        MvccError::KeyNotFound => etcd(Code::InvalidArgument, "key not found"),
        MvccError::ValueProvided => etcd(Code::InvalidArgument, "value is provided"),
        MvccError::LeaseProvided => etcd(Code::InvalidArgument, "lease is provided"),
        MvccError::DuplicateKey => {
            etcd(Code::InvalidArgument, "duplicate key given in txn request")
        }
        MvccError::Lease(l) => lease(l),
        MvccError::Closed => etcd(Code::Unavailable, "server stopped"),
        MvccError::NoSpace => etcd(Code::ResourceExhausted, "mvcc: database space exceeded"),
        MvccError::AlreadyApplied { .. }
        | MvccError::Engine(_)
        | MvccError::Corrupt(_)
        | MvccError::Failed(_) => Status::new(Code::Internal, m.to_string()),
    }
}

/// etcd's code and text for a replication refusal.
fn replication(r: &ReplicationError) -> Status {
    use ReplicationError as R;
    let (code, msg) = match r {
        R::NoLeader => (Code::Unavailable, "no leader"),
        // etcd sends these two with code Unknown (they are not rpctypes errors there).
        R::TooManyRequests => (Code::Unknown, "too many requests"),
        R::NotEnoughStartedMembers => {
            (Code::Unknown, "re-configuration failed due to not enough started members")
        }
        R::Unhealthy => (Code::Unavailable, "unhealthy cluster"),
        R::Timeout => (Code::Unavailable, "request timed out"),
        R::TimeoutLeaderFail => {
            (Code::Unavailable, "request timed out, possibly due to previous leader failure")
        }
        R::Stopped => (Code::Unavailable, "server stopped"),
        R::Removed => {
            (Code::Unavailable, "the member has been permanently removed from the cluster")
        }
        R::LeaderChanged => (Code::Unavailable, "leader changed"),
        R::MemberExists => (Code::FailedPrecondition, "member ID already exist"),
        R::PeerUrlExists => (Code::FailedPrecondition, "Peer URLs already exists"),
        R::MemberNotLearner => (Code::FailedPrecondition, "can only promote a learner member"),
        R::LearnerNotReady => (
            Code::FailedPrecondition,
            "can only promote a learner member which is in sync with leader",
        ),
        R::TooManyLearners => (Code::FailedPrecondition, "too many learner members in cluster"),
        R::BadLeaderTransferee => (Code::FailedPrecondition, "bad leader transferee"),
        R::NotLeader => (Code::FailedPrecondition, "not leader"),
        R::MemberNotFound | R::MemberRemoved => (Code::NotFound, "member not found"),
        R::Config(_) => (Code::InvalidArgument, "given member URLs are invalid"),
        R::Wal(_) | R::Raft(_) | R::StateMachine(_) | R::Corrupt { .. } | R::Io { .. } => {
            return Status::new(Code::Internal, r.to_string())
        }
    };
    etcd(code, msg)
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match &e {
            ApiError::Mvcc(m) => mvcc(m),
            ApiError::Replication(r) => replication(r),
            ApiError::TooManyOps => {
                etcd(Code::InvalidArgument, "too many operations in txn request")
            }
            ApiError::RequestTooLarge => etcd(Code::InvalidArgument, "request is too large"),
            ApiError::NoSpace => etcd(Code::ResourceExhausted, "mvcc: database space exceeded"),
            ApiError::AuthNotEnabled => {
                etcd(Code::FailedPrecondition, "authentication is not enabled")
            }
            ApiError::Auth(a) => auth(a),
            ApiError::AuthRaw(a) => Status::new(Code::Unknown, a.to_string()),
            // etcd's Lock and Election services answer through an in-process client: their
            // errors reach callers with code Unknown.
            ApiError::ElectionNotLeader => Status::new(Code::Unknown, "election: not leader"),
            ApiError::ElectionNoLeader => Status::new(Code::Unknown, "election: no leader"),
            ApiError::MissingLeaderKey => {
                Status::new(Code::Unknown, "\"leader\" field must be provided")
            }
            ApiError::UnknownService => Status::new(Code::NotFound, "unknown service"),
            ApiError::UnknownMethod(path) => {
                Status::new(Code::Unimplemented, format!("unknown method {path}"))
            }
            ApiError::Unsupported(m) => Status::new(Code::Unimplemented, *m),
            ApiError::Invalid(m) => Status::new(Code::InvalidArgument, m.clone()),
            ApiError::Internal(m) => Status::new(Code::Internal, m.clone()),
        }
    }
}

/// A state machine answer of the wrong kind for the request: a bug.
pub fn unexpected(out: impl std::fmt::Debug) -> ApiError {
    ApiError::Internal(format!("unexpected apply result {out:?}"))
}

/// grpc-go's refusal of a request message over the server's limit (clients match the words).
pub fn message_too_large(len: usize, limit: usize) -> Status {
    Status::new(
        Code::ResourceExhausted,
        format!("grpc: received message larger than max ({len} vs. {limit})"),
    )
}

/// A local failure (I/O, a task that did not finish) while serving a request.
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// A status as grpc-go prints it (`rpc error: code = PermissionDenied desc = ...`), which is
/// what etcd puts in a refused watch's cancel reason.
pub fn go_status_text(s: &Status) -> String {
    let code = match s.code() {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    };
    format!("rpc error: code = {code} desc = {}", s.message())
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn st(e: impl Into<ApiError>) -> (Code, String) {
        let s: Status = e.into().into();
        (s.code(), s.message().to_string())
    }

    #[test]
    fn etcds_codes_and_messages() {
        use ReplicationError as R;
        let cases: Vec<(ApiError, Code, &str)> = vec![
            (
                MvccError::Compacted { compact_revision: 3 }.into(),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                MvccError::FutureRevision.into(),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (MvccError::EmptyKey.into(), Code::InvalidArgument, "etcdserver: key is not provided"),
            (MvccError::KeyNotFound.into(), Code::InvalidArgument, "etcdserver: key not found"),
            (
                MvccError::Lease(LeaseError::NotFound).into(),
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                MvccError::Lease(LeaseError::TtlTooLarge).into(),
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                ApiError::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (R::NoLeader.into(), Code::Unavailable, "etcdserver: no leader"),
            (R::TooManyRequests.into(), Code::Unknown, "etcdserver: too many requests"),
            (R::MemberNotFound.into(), Code::NotFound, "etcdserver: member not found"),
            (
                R::PeerUrlExists.into(),
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                R::Removed.into(),
                Code::Unavailable,
                "etcdserver: the member has been permanently removed from the cluster",
            ),
            (
                ApiError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (ApiError::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (
                ApiError::AuthNotEnabled,
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            (ApiError::ElectionNotLeader, Code::Unknown, "election: not leader"),
            (ApiError::MissingLeaderKey, Code::Unknown, "\"leader\" field must be provided"),
        ];
        for (e, code, msg) in cases {
            assert_eq!(st(e), (code, msg.to_string()));
        }
    }

    #[test]
    fn store_failures_are_internal_and_say_why() {
        let (code, msg) = st(MvccError::Failed("flush failed: disk".into()));
        assert_eq!(code, Code::Internal);
        assert!(msg.contains("disk"), "{msg}");
        assert_eq!(st(unexpected(1)).0, Code::Internal);
    }
}
