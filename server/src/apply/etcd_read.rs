//! The reverse of [`super::etcd_backend`]: an etcd backend file (a bbolt database written by
//! etcd 3.4/3.5's `snapshot save`, or by rusted's) read into what a rusted store holds — every
//! revision, the leases, compaction state, users and roles, alarms. Membership (`members`,
//! `members_removed`) and etcd's own bookkeeping (`consistent_index`, `term`, `confState`,
//! `clusterVersion`) are left out: a restore starts a new cluster. The file is untrusted: every
//! problem is an error, never a panic.
#![forbid(unsafe_code)]

use std::path::Path;

use prost::Message;
use rusted_bbolt::read::{BoltEvent, BoltReader};
use rusted_mvcc::export::{Export, StoredRevision};
use rusted_mvcc::lease::LeaseRecord;
use rusted_mvcc::{KeyValue, Revision};

use crate::apply::alarm::Alarms;
use crate::apply::etcd_backend::LeasePb;
use crate::auth::store::State as AuthState;
use rusted_proto::authpb::{Role, User};
use rusted_proto::etcdserverpb::AlarmMember;
use rusted_proto::mvccpb;

/// What an etcd backend file holds that a restored store keeps.
#[derive(Debug, Default)]
pub struct Backend {
    /// Revisions, leases and compaction state (the applied index is left at zero).
    pub store: Export,
    /// Users, roles, whether auth is on, its revision.
    pub auth: AuthState,
    /// Raised alarms.
    pub alarms: Alarms,
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Reads the backend file at `path`; refuses one whose pages do not check out.
pub fn read(path: &Path) -> Result<Backend, String> {
    let r = BoltReader::open(path).map_err(|e| e.to_string())?;
    let mut out = Backend::default();
    out.store.scheduled_compact = -1;
    out.store.finished_compact = -1;
    let mut auth_enabled = None;
    let mut first_error: Option<String> = None;
    let problems = r
        .scan(|ev| {
            let BoltEvent::Item(item) = ev else { return };
            if item.depth != 1 || first_error.is_some() {
                return;
            }
            let Some(v) = item.value else { return };
            if let Err(e) = take(&mut out, &mut auth_enabled, item.bucket, item.key, v) {
                first_error = Some(e);
            }
        })
        .map_err(|e| e.to_string())?;
    if let Some(e) = rusted_bbolt::read::integrity_error(&problems) {
        return Err(e);
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(on) = auth_enabled {
        out.auth.enabled = on;
        out.auth.enable_recorded = true;
    }
    Ok(out)
}

fn take(
    out: &mut Backend,
    auth_enabled: &mut Option<bool>,
    bucket: &[u8],
    key: &[u8],
    v: &[u8],
) -> Result<(), String> {
    let bad = |what: &str| {
        format!("snapshot: bad {what} in bucket {:?}", String::from_utf8_lossy(bucket))
    };
    match bucket {
        b"key" => {
            let (rev, tombstone) = Revision::from_key(key).ok_or_else(|| bad("revision key"))?;
            let pb = mvccpb::KeyValue::decode(v).map_err(|_| bad("key-value"))?;
            let kv = KeyValue {
                key: pb.key,
                create_revision: pb.create_revision,
                mod_revision: rev.main,
                version: pb.version,
                value: pb.value,
                lease: pb.lease,
            };
            out.store.revisions.push(StoredRevision { rev, tombstone, kv });
        }
        b"meta" => {
            let rev = || Revision::from_key(v).map(|(r, _)| r.main).ok_or_else(|| bad("revision"));
            match key {
                b"scheduledCompactRev" => out.store.scheduled_compact = rev()?,
                b"finishedCompactRev" => out.store.finished_compact = rev()?,
                _ => {}
            }
        }
        b"lease" => {
            let l = LeasePb::decode(v).map_err(|_| bad("lease"))?;
            out.store.leases.push(LeaseRecord {
                id: l.id,
                ttl: l.ttl,
                remaining_ttl: l.remaining_ttl,
            });
        }
        b"auth" => match key {
            b"authEnabled" => *auth_enabled = Some(v.first().is_some_and(|&b| b == 1)),
            b"authRevision" => out.auth.revision = be_u64(v).ok_or_else(|| bad("revision"))?,
            _ => {}
        },
        b"authUsers" => {
            let u = User::decode(v).map_err(|_| bad("user"))?;
            out.auth.users.insert(String::from_utf8_lossy(key).into_owned(), u);
        }
        b"authRoles" => {
            let r = Role::decode(v).map_err(|_| bad("role"))?;
            out.auth.roles.insert(String::from_utf8_lossy(key).into_owned(), r);
        }
        b"alarm" => {
            let a = AlarmMember::decode(key).map_err(|_| bad("alarm"))?;
            out.alarms.activate(a.member_id, a.alarm);
        }
        _ => {}
    }
    Ok(())
}
