//! A rusted store written as etcd's backend file (a bbolt database with etcd 3.4's buckets and
//! encodings), which is what etcd's Maintenance.Snapshot streams, so that `etcdctl snapshot
//! status` and `snapshot restore` read rusted's snapshots as they read etcd's.
//!
//! Buckets and encodings (etcd 3.4):
//!
//! | bucket            | key                                        | value                                   |
//! |-------------------|--------------------------------------------|-----------------------------------------|
//! | `key`             | main rev (8, BE) `_` sub rev (8, BE) [`t`] | mvccpb.KeyValue (a tombstone: key only) |
//! | `meta`            | `consistent_index`                         | applied index (8, BE)                   |
//! | `meta`            | `scheduledCompactRev`, `finishedCompactRev`| revision as a `key` bucket key (17)     |
//! | `lease`           | lease ID (8, BE)                           | leasepb.Lease {ID, TTL, RemainingTTL}   |
//! | `members`         | member ID in hex                           | JSON {"peerURLs":[...],"isLearner"?}    |
//! | `members_removed` | member ID in hex                           | `removed`                               |
//! | `cluster`         | `clusterVersion`                           | cluster version (`3.5.0`)               |
//! | `auth`            | `authEnabled` (once auth was enabled)      | 1 byte: 1 enabled, 0 disabled           |
//! | `auth`            | `authRevision`                             | auth revision (8, BE)                   |
//! | `authUsers`       | user name                                  | authpb.User (password: bcrypt hash)     |
//! | `authRoles`       | role name                                  | authpb.Role                             |
//! | `alarm`           | mvccpb-style AlarmMember                   | empty                                   |
#![forbid(unsafe_code)]

use prost::Message;
use rusted_bbolt::{BoltBucket, BucketStream};
use rusted_mvcc::export::ExportStream;
use rusted_mvcc::MvccError;
use rusted_replication::membership::ClusterRecord;

use crate::apply::alarm::Alarms;
use crate::auth::store::State as AuthState;
use crate::CLUSTER_VERSION;
use rusted_proto::etcdserverpb::{AlarmMember, AlarmType};
use rusted_proto::mvccpb;

/// etcd's leasepb.Lease.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeasePb {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// A revision as etcd's `key` bucket spells it (rusted-mvcc's key encoding is etcd's).
fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    rusted_mvcc::Revision { main, sub }.to_key(tombstone)
}

#[derive(serde::Serialize)]
struct RaftAttributes<'a> {
    #[serde(rename = "peerURLs")]
    peer_urls: &'a [String],
    #[serde(rename = "isLearner", skip_serializing_if = "std::ops::Not::not")]
    is_learner: bool,
}

fn bucket(name: &str, mut items: Vec<(Vec<u8>, Vec<u8>)>) -> BoltBucket {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    BoltBucket { name: name.as_bytes().to_vec(), items }
}

/// etcd's buckets for a store's contents, membership and alarms, the `key` bucket read from the
/// store's read transaction as it is written (memory stays bounded whatever the store's size).
pub fn streams<'a>(
    store: &'a ExportStream,
    cluster: &ClusterRecord,
    alarms: &Alarms,
    auth: &AuthState,
) -> Result<Vec<BucketStream<'a>>, MvccError> {
    let keys = store.revisions()?.map(|r| {
        let r = r.map_err(std::io::Error::other)?;
        let kv = if r.tombstone {
            mvccpb::KeyValue { key: r.kv.key, ..Default::default() }
        } else {
            crate::apply::convert::kv_out(r.kv)
        };
        Ok((rev_key(r.rev.main, r.rev.sub, r.tombstone), kv.encode_to_vec()))
    });
    let mut meta = vec![(b"consistent_index".to_vec(), store.applied.index.to_be_bytes().to_vec())];
    if store.scheduled_compact >= 0 {
        meta.push((b"scheduledCompactRev".to_vec(), rev_key(store.scheduled_compact, 0, false)));
    }
    if store.finished_compact >= 0 {
        meta.push((b"finishedCompactRev".to_vec(), rev_key(store.finished_compact, 0, false)));
    }
    let leases = store
        .leases()?
        .iter()
        .map(|l| {
            let v = LeasePb { id: l.id, ttl: l.ttl, remaining_ttl: l.remaining_ttl };
            ((l.id as u64).to_be_bytes().to_vec(), v.encode_to_vec())
        })
        .collect();
    let members = cluster
        .members
        .values()
        .map(|m| {
            let attrs = RaftAttributes { peer_urls: &m.peer_urls, is_learner: m.is_learner };
            (format!("{:x}", m.id).into_bytes(), serde_json::to_vec(&attrs).unwrap_or_default())
        })
        .collect();
    let removed = cluster
        .removed
        .iter()
        .map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec()))
        .collect();
    let alarm = alarms
        .members(AlarmType::None)
        .into_iter()
        .map(|a| {
            (AlarmMember { member_id: a.member_id, alarm: a.alarm }.encode_to_vec(), Vec::new())
        })
        .collect();
    let small =
        |b: BoltBucket| BucketStream { name: b.name, items: Box::new(b.items.into_iter().map(Ok)) };
    Ok(vec![
        small(bucket("alarm", alarm)),
        small(bucket("auth", {
            let mut items = vec![(b"authRevision".to_vec(), auth.revision.to_be_bytes().to_vec())];
            if auth.enable_recorded {
                items.push((b"authEnabled".to_vec(), vec![u8::from(auth.enabled)]));
            }
            items
        })),
        small(bucket(
            "authRoles",
            auth.roles.iter().map(|(n, r)| (n.as_bytes().to_vec(), r.encode_to_vec())).collect(),
        )),
        small(bucket(
            "authUsers",
            auth.users.iter().map(|(n, u)| (n.as_bytes().to_vec(), u.encode_to_vec())).collect(),
        )),
        small(bucket(
            "cluster",
            vec![(b"clusterVersion".to_vec(), CLUSTER_VERSION.as_bytes().to_vec())],
        )),
        BucketStream { name: b"key".to_vec(), items: Box::new(keys) },
        small(bucket("lease", leases)),
        small(bucket("members", members)),
        small(bucket("members_removed", removed)),
        small(bucket("meta", meta)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_spelled_as_etcd_spells_them() {
        assert_eq!(
            rev_key(2, 0, false),
            vec![0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(rev_key(3, 1, true).len(), 18);
        let l = LeasePb { id: 1, ttl: 30, remaining_ttl: 0 };
        assert_eq!(l.encode_to_vec(), vec![0x08, 1, 0x10, 30]);
    }
}
