//! The auth state (users, roles, the enabled flag, the auth revision) and etcd's rules for
//! changing it. Pure: each change is checked and applied to a [`State`] the way etcd's auth
//! store applies it, on every member alike; persistence and tokens live in `mod.rs`.
//!
//! Invariants: user role lists and role permission lists are sorted; the revision starts at 1
//! and grows by one with every change that succeeds, except AuthEnable (as etcd).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use prost::Message;
use rusted_proto::authpb::{Permission, Role, User, UserAddOptions};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::rustedpb::AuthState;

use crate::auth::error::AuthError;

/// The root user and role names.
pub const ROOT: &str = "root";
/// The format version of the persisted [`AuthState`].
pub const STATE_VERSION: u32 = 1;

/// Users, roles and the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Auth is enabled.
    pub enabled: bool,
    /// etcd's auth revision.
    pub revision: u64,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
    /// Auth was enabled once: etcd's backend then holds an `authEnabled` key (a snapshot of a
    /// store that never had auth enabled has none, as etcd's).
    pub enable_recorded: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            enable_recorded: false,
        }
    }
}

fn name_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Does the user hold the root role?
pub fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT)
}

/// etcd's check of a permission's range: a key, and an end that is empty, after the key, or
/// `"\0"` (every key from the key on).
pub fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || range_end == [0])
}

impl State {
    /// Decodes the persisted form (`None`: a store that never had auth).
    pub fn decode(blob: Option<&[u8]>) -> Result<State, String> {
        let Some(b) = blob else { return Ok(State::default()) };
        let s = AuthState::decode(b).map_err(|e| format!("auth state: {e}"))?;
        if s.version != STATE_VERSION {
            return Err(format!("auth state: unknown format version {}", s.version));
        }
        Ok(State {
            enabled: s.enabled,
            revision: s.revision.max(1),
            users: s.users.into_iter().map(|u| (name_of(&u.name), u)).collect(),
            roles: s.roles.into_iter().map(|r| (name_of(&r.name), r)).collect(),
            enable_recorded: s.enable_recorded || s.enabled,
        })
    }

    /// The persisted form.
    pub fn encode(&self) -> Vec<u8> {
        AuthState {
            version: STATE_VERSION,
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
            enable_recorded: self.enable_recorded,
        }
        .encode_to_vec()
    }

    fn bump(&mut self) {
        self.revision += 1;
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User, AuthError> {
        self.users.get_mut(name).ok_or(AuthError::UserNotFound)
    }

    /// AuthEnable: needs the root user holding the root role; no revision change.
    pub fn enable(&mut self) -> Result<(), AuthError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(AuthError::RootRoleNotExist);
        }
        self.enabled = true;
        self.enable_recorded = true;
        Ok(())
    }

    /// AuthDisable.
    pub fn disable(&mut self) {
        if self.enabled {
            self.enabled = false;
            self.bump();
        }
    }

    /// UserAdd with the password already hashed (empty for a no-password user).
    pub fn user_add(&mut self, r: &pb::AuthUserAddRequest) -> Result<(), AuthError> {
        if r.name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let options = r.options.unwrap_or(UserAddOptions { no_password: false });
        let password =
            if options.no_password { Vec::new() } else { decode_hash(&r.hashed_password)? };
        let user = User {
            name: r.name.as_bytes().to_vec(),
            password,
            roles: Vec::new(),
            options: Some(options),
        };
        self.users.insert(r.name.clone(), user);
        self.bump();
        Ok(())
    }

    /// UserDelete (root cannot be deleted while auth is enabled).
    pub fn user_delete(&mut self, name: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        self.users.remove(name).ok_or(AuthError::UserNotFound)?;
        self.bump();
        Ok(())
    }

    /// UserChangePassword with the password already hashed.
    pub fn user_change_password(
        &mut self,
        r: &pb::AuthUserChangePasswordRequest,
    ) -> Result<(), AuthError> {
        let u = self.user_mut(&r.name)?;
        let no_password = u.options.as_ref().is_some_and(|o| o.no_password);
        if !no_password {
            u.password = decode_hash(&r.hashed_password)?;
        }
        self.bump();
        Ok(())
    }

    /// UserGrantRole (granting a role already held changes nothing).
    pub fn user_grant_role(&mut self, user: &str, role: &str) -> Result<(), AuthError> {
        if !self.users.contains_key(user) {
            return Err(AuthError::UserNotFound);
        }
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        let u = self.user_mut(user)?;
        match u.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            Ok(_) => return Ok(()),
            Err(i) => u.roles.insert(i, role.to_string()),
        }
        self.bump();
        Ok(())
    }

    /// UserRevokeRole (root keeps the root role while auth is enabled).
    pub fn user_revoke_role(&mut self, user: &str, role: &str) -> Result<(), AuthError> {
        if self.enabled && user == ROOT && role == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let u = self.user_mut(user)?;
        let i = u.roles.iter().position(|r| r == role).ok_or(AuthError::RoleNotGranted)?;
        u.roles.remove(i);
        self.bump();
        Ok(())
    }

    /// RoleAdd.
    pub fn role_add(&mut self, name: &str) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        let role = Role { name: name.as_bytes().to_vec(), key_permission: Vec::new() };
        self.roles.insert(name.to_string(), role);
        self.bump();
        Ok(())
    }

    /// RoleDelete: the role leaves every user too (root's stays while auth is enabled).
    pub fn role_delete(&mut self, name: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
        for u in self.users.values_mut() {
            u.roles.retain(|r| r != name);
        }
        self.bump();
        Ok(())
    }

    /// RoleGrantPermission: a permission with the same key and end has its type replaced;
    /// otherwise it is added, the list kept sorted by key.
    pub fn role_grant_permission(
        &mut self,
        name: &str,
        perm: Option<&Permission>,
    ) -> Result<(), AuthError> {
        let perm = perm.ok_or(AuthError::PermissionNotGiven)?;
        if !valid_permission_range(&perm.key, &perm.range_end) {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
        let perms = &mut role.key_permission;
        match perms.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
            Some(p) => p.perm_type = perm.perm_type,
            None => {
                let i = perms.partition_point(|p| p.key <= perm.key);
                perms.insert(i, perm.clone());
            }
        }
        self.bump();
        Ok(())
    }

    /// RoleRevokePermission: every permission with exactly this key and end goes.
    pub fn role_revoke_permission(
        &mut self,
        name: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission.retain(|p| !(p.key == key && p.range_end == range_end));
        if role.key_permission.len() == before {
            return Err(AuthError::PermissionNotGranted);
        }
        self.bump();
        Ok(())
    }
}

/// A hashed password as it travels in a proposal (base64 of the bcrypt hash, as etcd 3.5's
/// `hashedPassword`).
fn decode_hash(b64: &str) -> Result<Vec<u8>, AuthError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| AuthError::NoPasswordUser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusted_proto::authpb::permission::Type;

    fn add(s: &mut State, name: &str) {
        use base64::Engine;
        let hashed_password = base64::engine::general_purpose::STANDARD.encode(b"$2a$04$x");
        let r = pb::AuthUserAddRequest { name: name.into(), hashed_password, ..Default::default() };
        s.user_add(&r).unwrap();
    }

    fn perm(k: &[u8], e: &[u8], t: Type) -> Permission {
        Permission { perm_type: t as i32, key: k.to_vec(), range_end: e.to_vec() }
    }

    #[test]
    fn etcds_revision_walk() {
        // fresh=1, user add root=2, role add root=3, grant=4, enable=4, disable=5
        let mut s = State::default();
        assert_eq!(s.revision, 1);
        assert_eq!(s.enable(), Err(AuthError::RootUserNotExist));
        add(&mut s, ROOT);
        assert_eq!(s.enable(), Err(AuthError::RootRoleNotExist));
        s.role_add(ROOT).unwrap();
        s.user_grant_role(ROOT, ROOT).unwrap();
        assert_eq!(s.revision, 4);
        s.user_grant_role(ROOT, ROOT).unwrap();
        assert_eq!(s.revision, 4, "a repeated grant changes nothing");
        s.enable().unwrap();
        assert_eq!(s.revision, 4);
        assert_eq!(s.user_delete(ROOT), Err(AuthError::InvalidAuthMgmt));
        assert_eq!(s.user_revoke_role(ROOT, ROOT), Err(AuthError::InvalidAuthMgmt));
        assert_eq!(s.role_delete(ROOT), Err(AuthError::InvalidAuthMgmt));
        s.disable();
        assert_eq!(s.revision, 5);
        let back = State::decode(Some(&s.encode())).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn refusals_in_etcds_order() {
        let mut s = State::default();
        add(&mut s, "a");
        let dup = pb::AuthUserAddRequest { name: "a".into(), ..Default::default() };
        assert_eq!(s.user_add(&dup), Err(AuthError::UserAlreadyExist));
        let empty = pb::AuthUserAddRequest::default();
        assert_eq!(s.user_add(&empty), Err(AuthError::UserEmpty));
        assert_eq!(s.user_grant_role("nobody", "r"), Err(AuthError::UserNotFound));
        assert_eq!(s.user_grant_role("a", "r"), Err(AuthError::RoleNotFound));
        assert_eq!(s.user_revoke_role("a", "r"), Err(AuthError::RoleNotGranted));
        assert_eq!(s.role_add(""), Err(AuthError::RoleEmpty));
        s.role_add("r").unwrap();
        assert_eq!(s.role_add("r"), Err(AuthError::RoleAlreadyExist));
        assert_eq!(s.role_grant_permission("r", None), Err(AuthError::PermissionNotGiven));
        let bad = perm(b"b", b"a", Type::Read);
        assert_eq!(s.role_grant_permission("r", Some(&bad)), Err(AuthError::InvalidAuthMgmt));
        let p = perm(b"k", b"", Type::Read);
        assert_eq!(s.role_grant_permission("x", Some(&p)), Err(AuthError::RoleNotFound));
        assert_eq!(s.role_revoke_permission("r", b"k", b""), Err(AuthError::PermissionNotGranted));
        let before = s.revision;
        assert!(s.role_add("r").is_err());
        assert_eq!(s.revision, before, "a refusal changes nothing");
    }

    #[test]
    fn permissions_replace_by_key_and_end_and_stay_sorted() {
        let mut s = State::default();
        s.role_add("r").unwrap();
        s.role_grant_permission("r", Some(&perm(b"m", b"", Type::Read))).unwrap();
        s.role_grant_permission("r", Some(&perm(b"a", b"\0", Type::Write))).unwrap();
        s.role_grant_permission("r", Some(&perm(b"m", b"", Type::Readwrite))).unwrap();
        let keys: Vec<_> = s.roles["r"].key_permission.iter().map(|p| p.key.clone()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"m".to_vec()]);
        assert_eq!(s.roles["r"].key_permission[1].perm_type, Type::Readwrite as i32);
        add(&mut s, "u");
        s.user_grant_role("u", "r").unwrap();
        s.role_delete("r").unwrap();
        assert!(s.users["u"].roles.is_empty(), "a deleted role leaves its users");
    }
}
