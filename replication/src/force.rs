//! `--force-new-cluster`: a member of a cluster that lost its quorum restarts as the only
//! member, keeping its data. As etcd does, the change goes through the log: one committed
//! conf change per other member (removing it) is appended to this member's WAL, so every
//! later reader of the log — this member's apply, and members added afterwards through
//! snapshots — sees the same membership history.
//!
//! Unlike etcd, which drops the entries after the commit index its WAL recorded, rusted keeps
//! its whole log and commits it: its WAL records the commit index lazily, so an entry past the
//! recorded one may well have been committed and acknowledged; it is what this member would
//! commit had it won an election.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType};
use rusted_wal::{Record, Wal};

use crate::apply::ConfContext;
use crate::error::{ReplicationError, Result};
use crate::membership::{ClusterRecord, Member};

fn corrupt(what: &'static str, e: impl ToString) -> ReplicationError {
    ReplicationError::Corrupt { what, detail: e.to_string() }
}

/// The members once every entry after `applied` in the log is applied to `rec`'s.
fn members_at_end(wal: &Wal, rec: &ClusterRecord, applied: u64) -> Result<BTreeSet<u64>> {
    let mut ids: BTreeSet<u64> = rec.members.keys().copied().collect();
    let last = wal.last_index();
    let mut next = applied.max(wal.first_index().saturating_sub(1)) + 1;
    while next <= last {
        let batch = wal.entries(next, last + 1, 64 << 20)?;
        let Some(end) = batch.last().map(|e| e.index) else { break };
        for we in batch {
            let e = Entry::parse_from_bytes(&we.data).map_err(|e| corrupt("raft entry", e))?;
            if e.get_entry_type() != EntryType::EntryConfChangeV2 {
                continue;
            }
            let Ok(cc) = ConfChangeV2::parse_from_bytes(&e.data) else { continue };
            for ch in cc.get_changes() {
                match ch.get_change_type() {
                    ConfChangeType::RemoveNode => ids.remove(&ch.node_id),
                    _ => ids.insert(ch.node_id),
                };
            }
        }
        next = end + 1;
    }
    Ok(ids)
}

/// Appends the conf changes that leave `id` the only member, all committed. Returns the IDs
/// removed.
pub(crate) fn rewrite_as_sole_member(
    wal: &Wal,
    id: u64,
    rec: &ClusterRecord,
    applied: u64,
) -> Result<Vec<u64>> {
    let hs = wal.hard_state().unwrap_or_default();
    let last = wal.last_index();
    let term = hs.term.max(wal.term(last).unwrap_or(0));
    let others: Vec<u64> =
        members_at_end(wal, rec, applied)?.into_iter().filter(|&m| m != id).collect();
    tracing::info!(
        cluster_id = %format!("{:x}", rec.cluster_id),
        local_member_id = %format!("{id:x}"),
        commit_index = last,
        removed = ?others.iter().map(|m| format!("{m:x}")).collect::<Vec<_>>(),
        "forcing restart member"
    );
    let mut bufs = Vec::with_capacity(others.len());
    for (i, &other) in others.iter().enumerate() {
        let member = Member {
            id: other,
            name: String::new(),
            peer_urls: Vec::new(),
            client_urls: Vec::new(),
            is_learner: false,
        };
        let mut ch = ConfChangeSingle::default();
        ch.set_change_type(ConfChangeType::RemoveNode);
        ch.node_id = other;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(ch);
        let ctx = serde_json::to_vec(&ConfContext { member, promote: false })
            .map_err(|e| corrupt("conf context", e))?;
        cc.set_context(ctx.into());
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChangeV2);
        e.term = term;
        e.index = last + 1 + i as u64;
        e.data = cc.write_to_bytes().map_err(|e| corrupt("conf change", e))?.into();
        bufs.push((e.index, e.write_to_bytes().map_err(|e| corrupt("raft entry", e))?));
    }
    let mut recs: Vec<Record<'_>> =
        bufs.iter().map(|(index, b)| Record::Entry { index: *index, term, data: b }).collect();
    recs.push(Record::HardState(rusted_wal::HardState {
        term,
        vote: hs.vote,
        commit: last + others.len() as u64,
    }));
    wal.append_sync(&recs)?;
    Ok(others)
}
