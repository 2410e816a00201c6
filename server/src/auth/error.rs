//! Why an auth operation or check was refused: etcd's auth errors, by name. The API edge maps
//! each to etcd's gRPC code and message once (`api/errors.rs`).
#![forbid(unsafe_code)]

/// An auth refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// AuthEnable without a root user.
    #[error("auth: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable with a root user lacking the root role.
    #[error("auth: root user does not have root role")]
    RootRoleNotExist,
    /// UserAdd of a name taken.
    #[error("auth: user already exists")]
    UserAlreadyExist,
    /// No user name (or no identity where one is needed).
    #[error("auth: user name is empty")]
    UserEmpty,
    /// No such user.
    #[error("auth: user not found")]
    UserNotFound,
    /// RoleAdd of a name taken.
    #[error("auth: role already exists")]
    RoleAlreadyExist,
    /// No such role.
    #[error("auth: role not found")]
    RoleNotFound,
    /// RoleAdd without a name.
    #[error("auth: role name is empty")]
    RoleEmpty,
    /// Wrong user or password.
    #[error("auth: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// A password given for a user that has none (certificate users).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// RoleGrantPermission without a permission.
    #[error("auth: permission not given")]
    PermissionNotGiven,
    /// The caller may not do this.
    #[error("auth: permission denied")]
    PermissionDenied,
    /// UserRevokeRole of a role the user lacks.
    #[error("auth: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role lacks.
    #[error("auth: permission is not granted to the role")]
    PermissionNotGranted,
    /// Authenticate while auth is disabled.
    #[error("auth: authentication is not enabled")]
    AuthNotEnabled,
    /// A token that is malformed, unknown or expired.
    #[error("auth: invalid auth token")]
    InvalidAuthToken,
    /// A change that would lock the root user out, or an invalid permission range.
    #[error("auth: invalid auth management")]
    InvalidAuthMgmt,
    /// Permissions were checked at an older auth revision than the one applying.
    #[error("auth: revision in header is old")]
    AuthOldRevision,
    /// Authenticate on a member whose JWT key can only verify.
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// bcrypt refused the password (e.g. longer than 72 bytes).
    #[error("{0}")]
    Hash(String),
}
