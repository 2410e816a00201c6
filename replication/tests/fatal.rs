//! A replica whose WAL fails stops and says why (`Replica::failed`): the owner (a member) can
//! then exit instead of staying up with a log it can no longer append to.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{test_config, KvMachine};
use rusted_replication::membership::bootstrap_record;
use rusted_replication::sim::SimNet;
use rusted_replication::{Bootstrap, Replica, ReplicaConfig};
use rusted_wal::{make_backend, FaultPlan, FaultyBackend, IoBackend, IoMode, SyncStyle};

/// A one-member replica in `dir` (its peer URL on `port`, never dialed), its configuration
/// changed by `tweak` before it starts.
fn one_member(
    dir: &std::path::Path,
    port: u16,
    tweak: impl FnOnce(&mut ReplicaConfig),
) -> (Replica<KvMachine>, Arc<KvMachine>, SimNet) {
    let url = format!("http://127.0.0.1:{port}");
    let rec = bootstrap_record(&[("m0".into(), vec![url])], "t").unwrap();
    let id = *rec.members.keys().next().unwrap();
    let mut cfg = test_config(id, dir, Bootstrap::New(rec));
    tweak(&mut cfg);
    let sm = KvMachine::open(&dir.join("db"));
    let net = SimNet::new(1);
    let r = Replica::start(cfg, sm.clone(), net.endpoint(id)).unwrap();
    net.register(r.mailbox());
    (r, sm, net)
}

#[test]
fn a_failed_wal_sync_stops_the_replica_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let p = plan.clone();
    let (r, sm, _net) = one_member(dir.path(), 12390, move |cfg| {
        cfg.wal.backend_factory = Some(Arc::new(move || -> std::io::Result<Box<dyn IoBackend>> {
            let io = make_backend(IoMode::Pwrite, SyncStyle::Dsync)?;
            Ok(Box::new(FaultyBackend::new(io, p.clone())))
        }));
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let put = |k: &str| rt.block_on(r.propose(&common::enc_put(k.as_bytes(), b"v")));
    let mut ok = 0;
    for i in 0..50 {
        if put(&format!("k{i}")).is_ok() {
            ok += 1;
        }
        if i == 5 {
            // Every later WAL sync fails, as on a dead disk.
            plan.fail_sync_at.store(plan.syncs() + 1, Ordering::Relaxed);
        }
        if r.failure().is_some() {
            break;
        }
    }
    assert!(ok >= 5, "the first writes succeed");
    let why = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), r.failed()).await })
        .expect("the replica did not report its failure");
    assert!(why.contains("wal"), "the cause names the WAL: {why}");
    assert!(r.is_stopped());
    assert!(put("after").is_err(), "a failed replica refuses proposals");
    r.stop();
    sm.close();
}

/// A raft message of a later term whose commit index runs past the end of this member's log
/// (etcd's raft panics on it too: the log was lost or corrupted). Addressed to another member
/// it is dropped; addressed to this one, raft-rs panics, and the replica stops with the panic
/// as its cause instead of staying up without a raft thread.
#[test]
fn a_message_past_the_log_is_dropped_when_for_another_and_stops_the_replica_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let (r, sm, _net) = one_member(dir.path(), 12391, |_| {});
    let id = r.id();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let put = |k: &str| rt.block_on(r.propose(&common::enc_put(k.as_bytes(), b"v")));
    assert!(put("before").is_ok());
    let heartbeat = |to: u64| {
        let mut h = raft::eraftpb::Message::default();
        h.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        (h.from, h.to, h.term, h.commit) = (id ^ 0x77, to, 1_000, 1_000_000);
        h
    };
    assert!(r.mailbox().step(heartbeat(id ^ 0x5a5a)));
    assert!(put("after a message for another member").is_ok());
    assert!(r.failure().is_none());

    assert!(r.mailbox().step(heartbeat(id)));
    let why = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), r.failed()).await })
        .expect("the replica did not report the panic");
    assert!(why.contains("raft thread panicked") && why.contains("out of range"), "{why}");
    assert!(r.is_stopped());
    assert!(put("after the panic").is_err(), "a stopped replica refuses proposals");
    r.stop();
    sm.close();
}
