//! Authentication and authorization, as etcd 3.5's auth store: users with bcrypt password
//! hashes, roles with key-range permissions, the root user and role, the enabled flag and the
//! auth revision ([`store`]); simple tokens ([`token`]); and the checks every API handler makes
//! against a merged range-permission cache ([`perm`]).
//!
//! **Where it runs.** Every change is a raft proposal applied by the state machine on every
//! member ([`Auth::apply`]), and persisted as one meta blob of the page store (`x-auth`,
//! [`store::State`]) beside the applied index, so snapshots and restarts carry it; snapshots
//! written for etcd hold it in etcd's `auth`, `authUsers` and `authRoles` buckets. Passwords are
//! hashed and checked before proposing (bcrypt is slow; applying stays cheap and the WAL never
//! holds a plain password). Handlers check permissions when a request arrives; the proposal
//! carries the auth revision of that check, and applying refuses it if the auth store changed
//! since ([`Auth::check_proposer`]).
//!
//! **Invariants.** With auth disabled every check passes and tokens are ignored. A user holding
//! the root role passes every key check. Refusals never say whether a key exists.
#![forbid(unsafe_code)]

pub mod error;
pub mod jwt;
pub mod perm;
pub mod store;
pub mod token;

use std::sync::RwLock;
use std::time::{Duration, Instant};

use rusted_proto::etcdserverpb as pb;
use rusted_proto::rustedpb::proposal::Request;
use rusted_proto::rustedpb::Proposer;

pub use error::AuthError;
use perm::PermCache;
use store::{has_root_role, State};
use token::SimpleTokens;

/// The page-store meta key of the persisted auth state.
pub const AUTH_KEY: &[u8] = b"x-auth";
/// etcd's default bcrypt cost (`--bcrypt-cost`).
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// Who is asking, as a request's token (or certificate) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// The user name.
    pub user: String,
    /// The auth revision the identity was read at.
    pub revision: u64,
}

/// What applying an auth change produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOut {
    /// Done (a header only).
    Done,
    /// Authenticate: the token.
    Token(String),
}

#[derive(Debug)]
struct Inner {
    state: State,
    cache: PermCache,
}

impl Inner {
    fn new(state: State) -> Self {
        let cache = PermCache::build(state.users.values(), &state.roles);
        Inner { state, cache }
    }
}

/// What applying a change gave, and the new persisted state if it changed.
pub type Applied = (AuthOut, Option<Vec<u8>>);

/// A member's auth store.
#[derive(Debug)]
pub struct Auth {
    inner: RwLock<Inner>,
    tokens: RwLock<SimpleTokens>,
    provider: jwt::Provider,
    bcrypt_cost: u32,
}

impl Auth {
    /// The auth store holding `state`, handing out `provider`'s tokens.
    pub fn new(
        state: State,
        token_ttl: Duration,
        bcrypt_cost: u32,
        provider: jwt::Provider,
    ) -> Self {
        let cost = if (4..=31).contains(&bcrypt_cost) { bcrypt_cost } else { DEFAULT_BCRYPT_COST };
        Auth {
            inner: RwLock::new(Inner::new(state)),
            tokens: RwLock::new(SimpleTokens::new(token_ttl)),
            provider,
            bcrypt_cost: cost,
        }
    }

    /// Are tokens JWTs (stateless: nothing to wait for before checking one)?
    pub fn is_jwt(&self) -> bool {
        matches!(self.provider, jwt::Provider::Jwt(_))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn tokens(&self) -> std::sync::RwLockWriteGuard<'_, SimpleTokens> {
        self.tokens.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the whole state (a snapshot was installed).
    pub fn replace(&self, state: State) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Inner::new(state);
    }

    /// Is auth enabled?
    pub fn enabled(&self) -> bool {
        self.read().state.enabled
    }

    /// The auth revision.
    pub fn revision(&self) -> u64 {
        self.read().state.revision
    }

    /// A copy of the state (user and role reads).
    pub fn state(&self) -> State {
        self.read().state.clone()
    }

    /// Applies an auth change at raft `index`. Returns the outcome and, when the state
    /// changed, its new persisted form. `None` for requests that are not auth changes.
    pub fn apply(&self, req: &Request, index: u64) -> Option<Result<Applied, AuthError>> {
        if !is_auth_change(req) {
            return None;
        }
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.state.clone();
        let r = match req {
            Request::AuthEnable(_) => next.enable(),
            Request::AuthDisable(_) => {
                next.disable();
                self.tokens().clear();
                Ok(())
            }
            Request::Authenticate(a) => {
                // The password was checked before proposing; the user may have gone since.
                let r = if !next.enabled {
                    Err(AuthError::AuthNotEnabled)
                } else {
                    match next.users.get(&a.name) {
                        None => Err(AuthError::AuthFailed),
                        Some(u) if u.options.as_ref().is_some_and(|o| o.no_password) => {
                            Err(AuthError::AuthFailed)
                        }
                        Some(_) => Ok(()),
                    }
                };
                let r = r.and_then(|()| match &self.provider {
                    jwt::Provider::Simple => {
                        Ok(self.tokens().assign(&a.simple_token, index, &a.name, Instant::now()))
                    }
                    jwt::Provider::Jwt(j) => j.assign(&a.name, next.revision),
                });
                return Some(r.map(|t| (AuthOut::Token(t), None)));
            }
            Request::UserAdd(r) => next.user_add(r),
            Request::UserDelete(r) => next.user_delete(&r.name).inspect(|()| {
                self.tokens().invalidate_user(&r.name);
            }),
            Request::UserChangePassword(r) => next.user_change_password(r).inspect(|()| {
                self.tokens().invalidate_user(&r.name);
            }),
            Request::UserGrantRole(r) => next.user_grant_role(&r.user, &r.role),
            Request::UserRevokeRole(r) => next.user_revoke_role(&r.name, &r.role),
            Request::RoleAdd(r) => next.role_add(&r.name),
            Request::RoleDelete(r) => next.role_delete(&r.role),
            Request::RoleGrantPermission(r) => next.role_grant_permission(&r.name, r.perm.as_ref()),
            Request::RoleRevokePermission(r) => {
                next.role_revoke_permission(&r.role, &r.key, &r.range_end)
            }
            _ => return None,
        };
        Some(r.map(|()| {
            let blob = (next != guard.state).then(|| next.encode());
            if blob.is_some() {
                *guard = Inner::new(next);
            }
            (AuthOut::Done, blob)
        }))
    }

    /// Applying a client request, as etcd's auth applier checks it against the state it is
    /// applied to: an auth change needs the root role then; a key write (put, delete, txn,
    /// lease revoke) needs a user, and is refused if the auth store changed since its
    /// permissions were checked (`auth_revision` is the revision of the state checked).
    /// Other requests pass (the member's own proposals carry no proposer).
    pub fn check_proposer(&self, p: Option<&Proposer>, req: &Request) -> Result<(), AuthError> {
        let Some(p) = p else { return Ok(()) };
        if !self.enabled() {
            return Ok(());
        }
        let info = AuthInfo { user: p.username.clone(), revision: p.auth_revision };
        if is_auth_change(req) && !matches!(req, Request::Authenticate(_)) {
            return self.admin_permitted(Some(&info));
        }
        if matches!(
            req,
            Request::Put(_) | Request::DeleteRange(_) | Request::Txn(_) | Request::LeaseRevoke(_)
        ) {
            if p.username.is_empty() {
                return Err(AuthError::UserEmpty);
            }
            if p.auth_revision < self.revision() {
                return Err(AuthError::AuthOldRevision);
            }
        }
        Ok(())
    }

    /// etcd's IsAdminPermitted: auth disabled, or a user holding the root role.
    pub fn admin_permitted(&self, info: Option<&AuthInfo>) -> Result<(), AuthError> {
        let g = self.read();
        if !g.state.enabled {
            return Ok(());
        }
        let info = info.ok_or(AuthError::UserEmpty)?;
        if info.user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let u = g.state.users.get(&info.user).ok_or(AuthError::UserNotFound)?;
        if has_root_role(u) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// A request that needs an identity but no particular permission (etcd's requireAuthInfo).
    pub fn identity_required(&self, info: Option<&AuthInfo>) -> Result<(), AuthError> {
        if self.enabled() && info.is_none() {
            return Err(AuthError::UserEmpty);
        }
        Ok(())
    }

    /// etcd's isOpPermitted: may the caller read (`write` false) or write all of
    /// `[key, range_end)`?
    pub fn op_permitted(
        &self,
        info: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), AuthError> {
        let g = self.read();
        if !g.state.enabled {
            return Ok(());
        }
        let info = info.ok_or(AuthError::UserEmpty)?;
        if info.revision < g.state.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let Some(u) = g.state.users.get(&info.user) else {
            return Err(AuthError::PermissionDenied);
        };
        if has_root_role(u) || g.cache.permitted(&info.user, key, range_end, write) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Is `user` a holder of the root role (bypassing key checks)?
    pub fn is_admin(&self, info: Option<&AuthInfo>) -> bool {
        let g = self.read();
        !g.state.enabled
            || info.is_some_and(|i| g.state.users.get(&i.user).is_some_and(has_root_role))
    }

    /// Checks a password (bcrypt: call off the async runtime). Returns the auth revision it
    /// was checked at.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        let (hash, revision) = {
            let g = self.read();
            if !g.state.enabled {
                return Err(AuthError::AuthNotEnabled);
            }
            let u = g.state.users.get(name).ok_or(AuthError::AuthFailed)?;
            if u.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(AuthError::NoPasswordUser);
            }
            (u.password.clone(), g.state.revision)
        };
        let hash = String::from_utf8(hash).map_err(|_| AuthError::AuthFailed)?;
        match bcrypt::verify(password, &hash) {
            Ok(true) => Ok(revision),
            _ => Err(AuthError::AuthFailed),
        }
    }

    /// A password's bcrypt hash, base64 as it travels in a proposal (call off the runtime).
    pub fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        use base64::Engine;
        let h = bcrypt::non_truncating_hash(password, self.bcrypt_cost).map_err(|e| match e {
            bcrypt::BcryptError::Truncation(_) => {
                AuthError::Hash("bcrypt: password length exceeds 72 bytes".into())
            }
            e => AuthError::Hash(e.to_string()),
        })?;
        Ok(base64::engine::general_purpose::STANDARD.encode(h.as_bytes()))
    }

    /// The identity a token carries: a simple token this member has registered (its index
    /// applied), or a valid JWT.
    pub fn token_info(&self, token: &str) -> Result<AuthInfo, AuthError> {
        if let jwt::Provider::Jwt(j) = &self.provider {
            // A JWT made at a revision this member has not applied yet is checked against
            // this member's state, so it counts as of that state: applying refuses the write
            // if the state moved on (never let a newer claim vouch for older permissions).
            let mut info = j.info(token)?;
            info.revision = info.revision.min(self.revision());
            return Ok(info);
        }
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        let user = tokens.user(token, Instant::now()).ok_or(AuthError::InvalidAuthToken)?;
        Ok(AuthInfo { user, revision: self.revision() })
    }

    /// Drops expired tokens (called now and then).
    pub fn expire_tokens(&self) {
        self.tokens().expire(Instant::now());
    }

    /// UserGet: the user's roles. Allowed to admins and to the user itself.
    pub fn user_get(&self, info: Option<&AuthInfo>, name: &str) -> Result<Vec<String>, AuthError> {
        if info.is_none_or(|i| i.user != name) {
            self.admin_permitted(info)?;
        }
        let g = self.read();
        g.state.users.get(name).map(|u| u.roles.clone()).ok_or(AuthError::UserNotFound)
    }

    /// RoleGet: the role's permissions. Allowed to admins and to holders of the role.
    pub fn role_get(
        &self,
        info: Option<&AuthInfo>,
        role: &str,
    ) -> Result<Vec<rusted_proto::authpb::Permission>, AuthError> {
        let holds = info.is_some_and(|i| {
            self.read().state.users.get(&i.user).is_some_and(|u| u.roles.iter().any(|r| r == role))
        });
        if !holds {
            self.admin_permitted(info)?;
        }
        let g = self.read();
        g.state.roles.get(role).map(|r| r.key_permission.clone()).ok_or(AuthError::RoleNotFound)
    }

    /// The proposer record a client request carries.
    pub fn proposer(&self, info: Option<&AuthInfo>) -> Proposer {
        match info {
            Some(i) => Proposer { username: i.user.clone(), auth_revision: i.revision },
            None => Proposer { username: String::new(), auth_revision: self.revision() },
        }
    }
}

/// Is `req` one the auth store applies?
fn is_auth_change(req: &Request) -> bool {
    matches!(
        req,
        Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::Authenticate(_)
            | Request::UserAdd(_)
            | Request::UserDelete(_)
            | Request::UserChangePassword(_)
            | Request::UserGrantRole(_)
            | Request::UserRevokeRole(_)
            | Request::RoleAdd(_)
            | Request::RoleDelete(_)
            | Request::RoleGrantPermission(_)
            | Request::RoleRevokePermission(_)
    )
}

/// The request with a password replaced by its hash (UserAdd, UserChangePassword), as 3.5
/// proposes them.
pub fn hashed_user_add(
    auth: &Auth,
    mut r: pb::AuthUserAddRequest,
) -> Result<pb::AuthUserAddRequest, AuthError> {
    let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
    if !no_password {
        r.hashed_password = auth.hash_password(&r.password)?;
    }
    r.password.clear();
    Ok(r)
}

/// See [`hashed_user_add`].
pub fn hashed_change_password(
    auth: &Auth,
    mut r: pb::AuthUserChangePasswordRequest,
) -> Result<pb::AuthUserChangePasswordRequest, AuthError> {
    if !r.password.is_empty() {
        r.hashed_password = auth.hash_password(&r.password)?;
    }
    r.password.clear();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusted_proto::authpb::permission::Type;
    use rusted_proto::authpb::Permission;

    fn auth_with_root() -> Auth {
        let a = Auth::new(State::default(), Duration::from_secs(60), 4, jwt::Provider::Simple);
        let add = |name: &str, pw: &str| {
            let r = pb::AuthUserAddRequest {
                name: name.into(),
                password: pw.into(),
                ..Default::default()
            };
            let r = hashed_user_add(&a, r).unwrap();
            a.apply(&Request::UserAdd(r), 1).unwrap().unwrap();
        };
        add("root", "rpw");
        add("alice", "apw");
        for req in [
            Request::RoleAdd(pb::AuthRoleAddRequest { name: "root".into() }),
            Request::UserGrantRole(pb::AuthUserGrantRoleRequest {
                user: "root".into(),
                role: "root".into(),
            }),
            Request::RoleAdd(pb::AuthRoleAddRequest { name: "r".into() }),
            Request::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
                name: "r".into(),
                perm: Some(Permission {
                    perm_type: Type::Read as i32,
                    key: b"a".to_vec(),
                    range_end: b"c".to_vec(),
                }),
            }),
            Request::UserGrantRole(pb::AuthUserGrantRoleRequest {
                user: "alice".into(),
                role: "r".into(),
            }),
            Request::AuthEnable(pb::AuthEnableRequest {}),
        ] {
            a.apply(&req, 2).unwrap().unwrap();
        }
        a
    }

    #[test]
    fn checks_as_etcd_makes_them() {
        let a = auth_with_root();
        assert!(a.enabled());
        let alice = AuthInfo { user: "alice".into(), revision: a.revision() };
        let root = AuthInfo { user: "root".into(), revision: a.revision() };
        assert_eq!(a.op_permitted(Some(&alice), b"b", b"", false), Ok(()));
        assert_eq!(a.op_permitted(Some(&alice), b"b", b"", true), Err(AuthError::PermissionDenied));
        assert_eq!(
            a.op_permitted(Some(&alice), b"a", b"d", false),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(a.op_permitted(None, b"b", b"", false), Err(AuthError::UserEmpty));
        assert_eq!(a.op_permitted(Some(&root), b"zzz", b"\0", true), Ok(()));
        let ghost = AuthInfo { user: "ghost".into(), revision: a.revision() };
        assert_eq!(
            a.op_permitted(Some(&ghost), b"b", b"", false),
            Err(AuthError::PermissionDenied),
            "no hint that the user does not exist"
        );
        assert_eq!(a.admin_permitted(Some(&alice)), Err(AuthError::PermissionDenied));
        assert_eq!(a.admin_permitted(Some(&root)), Ok(()));
        let old = AuthInfo { user: "alice".into(), revision: a.revision() - 1 };
        assert_eq!(a.op_permitted(Some(&old), b"b", b"", false), Err(AuthError::AuthOldRevision));
        let p = |u: &str, rev| Proposer { username: u.into(), auth_revision: rev };
        let put = Request::Put(pb::PutRequest { key: b"b".to_vec(), ..Default::default() });
        let add = Request::RoleAdd(pb::AuthRoleAddRequest { name: "x".into() });
        let old = p("alice", a.revision() - 1);
        assert_eq!(a.check_proposer(Some(&old), &put), Err(AuthError::AuthOldRevision));
        assert_eq!(a.check_proposer(Some(&p("", a.revision())), &put), Err(AuthError::UserEmpty));
        assert_eq!(a.check_proposer(None, &put), Ok(()), "the member's own proposals");
        let alice_now = p("alice", a.revision());
        assert_eq!(a.check_proposer(Some(&alice_now), &add), Err(AuthError::PermissionDenied));
        assert_eq!(a.check_proposer(Some(&p("root", 1)), &add), Ok(()), "admin: no revision check");
        assert_eq!(a.user_get(Some(&alice), "alice"), Ok(vec!["r".to_string()]));
        assert_eq!(a.user_get(Some(&alice), "root"), Err(AuthError::PermissionDenied));
        assert!(a.role_get(Some(&alice), "r").is_ok());
        assert_eq!(a.role_get(Some(&alice), "root"), Err(AuthError::PermissionDenied));
    }

    #[test]
    fn passwords_and_tokens() {
        let a = auth_with_root();
        assert_eq!(a.check_password("alice", "wrong"), Err(AuthError::AuthFailed));
        assert_eq!(a.check_password("nobody", "x"), Err(AuthError::AuthFailed));
        assert!(a.check_password("alice", "apw").is_ok());
        let auth = rusted_proto::rustedpb::Authenticate {
            name: "alice".into(),
            simple_token: "abcdefghijklmnop".into(),
        };
        let (out, blob) = a.apply(&Request::Authenticate(auth), 42).unwrap().unwrap();
        assert_eq!(out, AuthOut::Token("abcdefghijklmnop.42".into()));
        assert!(blob.is_none(), "tokens are not persisted");
        assert_eq!(a.token_info("abcdefghijklmnop.42").unwrap().user, "alice");
        // A password change drops the user's tokens.
        let r = pb::AuthUserChangePasswordRequest {
            name: "alice".into(),
            password: "new".into(),
            ..Default::default()
        };
        let r = hashed_change_password(&a, r).unwrap();
        a.apply(&Request::UserChangePassword(r), 43).unwrap().unwrap();
        assert_eq!(a.token_info("abcdefghijklmnop.42"), Err(AuthError::InvalidAuthToken));
        assert!(a.check_password("alice", "new").is_ok());
        // Disabling drops every token and refuses Authenticate.
        a.apply(&Request::AuthDisable(pb::AuthDisableRequest {}), 44).unwrap().unwrap();
        assert_eq!(a.check_password("alice", "new"), Err(AuthError::AuthNotEnabled));
    }
}
