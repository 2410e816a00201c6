//! The raft state of a member as etcd shows it under `raft.status` in `/debug/vars`: term,
//! vote, commit, leader, role, applied index and, on a leader, each peer's progress.
#![forbid(unsafe_code)]

use raft::{ProgressState, RawNode, StateRole, Storage};

/// A follower's replication progress, as the leader tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgress {
    /// The peer.
    pub id: u64,
    /// Highest index known to be in its log.
    pub matched: u64,
    /// Next index to send it.
    pub next: u64,
    /// "StateProbe", "StateReplicate" or "StateSnapshot".
    pub state: &'static str,
}

/// A point-in-time view of the raft node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftStatus {
    /// This member.
    pub id: u64,
    /// Current term.
    pub term: u64,
    /// Who this member voted for in the term (0: nobody).
    pub vote: u64,
    /// Highest committed index.
    pub commit: u64,
    /// Known leader (0: none).
    pub lead: u64,
    /// "StateFollower", "StateCandidate", "StatePreCandidate" or "StateLeader".
    pub raft_state: &'static str,
    /// Highest applied index.
    pub applied: u64,
    /// Each member's progress, sorted by ID (a leader's only; empty elsewhere).
    pub progress: Vec<PeerProgress>,
    /// The member leadership is being transferred to (0: none).
    pub lead_transferee: u64,
}

impl RaftStatus {
    pub(crate) fn of<T: Storage>(raw: &RawNode<T>, applied: u64) -> RaftStatus {
        let r = &raw.raft;
        let raft_state = match r.state {
            StateRole::Follower => "StateFollower",
            StateRole::Candidate => "StateCandidate",
            StateRole::PreCandidate => "StatePreCandidate",
            StateRole::Leader => "StateLeader",
        };
        let mut progress = Vec::new();
        if r.state == StateRole::Leader {
            for (id, p) in r.prs().iter() {
                let state = match p.state {
                    ProgressState::Probe => "StateProbe",
                    ProgressState::Replicate => "StateReplicate",
                    ProgressState::Snapshot => "StateSnapshot",
                };
                progress.push(PeerProgress {
                    id: *id,
                    matched: p.matched,
                    next: p.next_idx,
                    state,
                });
            }
            progress.sort_by_key(|p| p.id);
        }
        RaftStatus {
            id: r.id,
            term: r.term,
            vote: r.vote,
            commit: r.raft_log.committed,
            lead: r.leader_id,
            raft_state,
            applied,
            progress,
            lead_transferee: r.lead_transferee.unwrap_or(0),
        }
    }
}
