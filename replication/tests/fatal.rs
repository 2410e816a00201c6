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
use rusted_replication::{Bootstrap, Replica};
use rusted_wal::{make_backend, FaultPlan, FaultyBackend, IoBackend, IoMode, SyncStyle};

#[test]
fn a_failed_wal_sync_stops_the_replica_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let rec =
        bootstrap_record(&[("m0".into(), vec!["http://127.0.0.1:12390".into()])], "t").unwrap();
    let id = *rec.members.keys().next().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let mut cfg = test_config(id, dir.path(), Bootstrap::New(rec));
    let p = plan.clone();
    cfg.wal.backend_factory = Some(Arc::new(move || -> std::io::Result<Box<dyn IoBackend>> {
        Ok(Box::new(FaultyBackend::new(make_backend(IoMode::Pwrite, SyncStyle::Dsync)?, p.clone())))
    }));
    let sm = KvMachine::open(&dir.path().join("db"));
    let net = SimNet::new(1);
    let r = Replica::start(cfg, sm.clone(), net.endpoint(id)).unwrap();
    net.register(r.mailbox());
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
