//! The narrow network interface between replicas, and the snapshot file directory both sides
//! of a snapshot transfer use.
//!
//! A replica hands outgoing raft messages to its [`Transport`]; whatever delivers them calls
//! [`Mailbox::step`] on the receiving replica. A `MsgSnapshot` travels with the state machine
//! file it names: the sender reads it from its [`SnapDir`] (`outgoing`), the receiver writes it
//! fully into its own (`incoming`) before stepping the message, then the sender reports the
//! outcome with [`Mailbox::report_snapshot`]. Implementations: [`crate::sim::SimNet`] (in
//! process, with injected faults) and the gRPC transport in the server crate.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use raft::eraftpb::Message;

use crate::error::{IoAt, Result};

/// Sends raft messages to peers. Must not block the caller for long (queue and return).
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// Queues messages for their `to` members.
    fn send(&self, msgs: Vec<Message>);
    /// A member's peer URLs became known or changed.
    fn set_peer(&self, id: u64, peer_urls: &[String]);
    /// A member left the cluster.
    fn remove_peer(&self, id: u64);
    /// Since when the link to member `id` has been up (`None`: down or unknown), as etcd's
    /// transport's ActiveSince; the strict reconfiguration check reads it.
    fn active_since(&self, id: u64) -> Option<Instant>;
}

/// Inputs the raft loop accepts from outside (transport and timers).
#[derive(Debug)]
pub(crate) enum NetInput {
    Step(Message),
    Unreachable(u64),
    SnapshotDone { to: u64, ok: bool },
}

/// A replica's inbox for the transport: cheap to clone.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub(crate) id: u64,
    pub(crate) tx: Sender<crate::node::Input>,
    pub(crate) snaps: SnapDir,
}

impl Mailbox {
    /// A mailbox for member `id` (its snapshot files in `snap_dir`) and the inbox its replica
    /// reads, made before the replica starts ([`crate::Replica::start_with_mailbox`]).
    pub fn new(id: u64, snap_dir: &Path) -> Result<(Mailbox, Inbox)> {
        let snaps = SnapDir::open(snap_dir)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((Mailbox { id, tx, snaps }, Inbox { rx }))
    }

    /// The member this mailbox belongs to.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Delivers a message from a peer (a `MsgSnapshot` only once its file is in
    /// [`SnapDir::incoming`]). Returns false when the replica has stopped.
    pub fn step(&self, m: Message) -> bool {
        self.tx.send(crate::node::Input::Net(NetInput::Step(m))).is_ok()
    }

    /// The peer could not be reached (raft slows down probing it).
    pub fn report_unreachable(&self, to: u64) {
        let _ = self.tx.send(crate::node::Input::Net(NetInput::Unreachable(to)));
    }

    /// A peer refused this member's messages because the cluster removed it.
    pub fn report_removed(&self) {
        let _ = self.tx.send(crate::node::Input::Removed);
    }

    /// How sending a snapshot to `to` ended.
    pub fn report_snapshot(&self, to: u64, ok: bool) {
        let _ = self.tx.send(crate::node::Input::Net(NetInput::SnapshotDone { to, ok }));
    }

    /// The replica's snapshot directory.
    pub fn snaps(&self) -> &SnapDir {
        &self.snaps
    }
}

/// What a replica reads its mailbox from: made with the [`Mailbox`], consumed by the replica.
#[derive(Debug)]
pub struct Inbox {
    pub(crate) rx: Receiver<crate::node::Input>,
}

/// The directory of snapshot files: `out-<term>-<index>.db` written by the state machine for
/// followers, `in-<term>-<index>.db` received from a leader (`.part` while incomplete).
///
/// Only the newest file of each kind is kept unless `--max-snapshots` is 0 (keep every one):
/// these are whole copies of the store, written only to bring a follower up, so one of each is
/// within any maximum etcd's flag sets.
#[derive(Debug, Clone)]
pub struct SnapDir {
    dir: PathBuf,
    keep_all: Arc<AtomicBool>,
}

impl SnapDir {
    /// Opens (creating) the directory and drops partial downloads.
    pub fn open(dir: &Path) -> Result<SnapDir> {
        std::fs::create_dir_all(dir).at(dir)?;
        for e in std::fs::read_dir(dir).at(dir)?.flatten() {
            if e.file_name().to_string_lossy().ends_with(".part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(SnapDir { dir: dir.to_path_buf(), keep_all: Arc::new(AtomicBool::new(false)) })
    }

    /// Applies `--max-snapshots` (0: unlimited, any other maximum: the newest file only).
    pub fn set_max_files(&self, max: u64) {
        self.keep_all.store(max == 0, Ordering::Relaxed);
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A snapshot this member wrote at `index`/`term`, for sending.
    pub fn outgoing(&self, index: u64, term: u64) -> PathBuf {
        self.dir.join(format!("out-{term:016x}-{index:016x}.db"))
    }

    /// A snapshot received from the leader, complete.
    pub fn incoming(&self, index: u64, term: u64) -> PathBuf {
        self.dir.join(format!("in-{term:016x}-{index:016x}.db"))
    }

    /// Where a snapshot being received is written until complete.
    pub fn incoming_part(&self, index: u64, term: u64) -> PathBuf {
        self.dir.join(format!("in-{term:016x}-{index:016x}.db.part"))
    }

    /// Deletes snapshot files other than `keep` whose names start with `prefix`.
    pub fn prune(&self, prefix: &str, keep: &Path) {
        if self.keep_all.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p != keep && e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_snapshots_zero_keeps_every_file_and_any_other_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapDir::open(dir.path()).unwrap();
        let write = |i: u64| {
            let p = s.outgoing(i, 1);
            std::fs::write(&p, b"x").unwrap();
            p
        };
        let count = || std::fs::read_dir(dir.path()).unwrap().count();
        s.set_max_files(0);
        for i in 1..=3 {
            let p = write(i);
            s.prune("out-", &p);
        }
        assert_eq!(count(), 3, "0: unlimited");
        s.set_max_files(5);
        let p = write(4);
        s.prune("out-", &p);
        assert_eq!(count(), 1);
        assert!(p.exists());
    }
}
