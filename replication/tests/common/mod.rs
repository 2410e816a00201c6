//! Test kit: a key-value state machine over the MVCC store, and in-process clusters over the
//! fault-injecting network.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusted_mvcc::request::{DeleteRangeRequest, PutRequest, RangeRequest};
use rusted_mvcc::{Applied, Store, StoreOptions, StoreSlot};
use rusted_replication::membership::{bootstrap_record, ClusterRecord};
use rusted_replication::sim::SimNet;
use rusted_replication::{Bootstrap, Replica, ReplicaConfig, ReplicationError, StateMachine};
use rusted_wal::{Prealloc, WalOptions};

/// Puts and deletes over the MVCC store: `[0][key len u32 LE][key][value]` puts, `[1][key]`
/// deletes. The output is the new revision.
#[derive(Debug)]
pub struct KvMachine {
    slot: StoreSlot,
    /// The names of the threads client entries were applied on, without their member suffix
    /// ("raft", "apply").
    pub applied_on: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

pub fn enc_put(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend((key.len() as u32).to_le_bytes());
    v.extend(key);
    v.extend(value);
    v
}

pub fn enc_del(key: &[u8]) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend(key);
    v
}

fn sm_err(e: impl std::fmt::Display) -> ReplicationError {
    ReplicationError::StateMachine(e.to_string())
}

impl KvMachine {
    pub fn open(path: &Path) -> Arc<KvMachine> {
        Arc::new(KvMachine {
            slot: StoreSlot::open(path, StoreOptions::default()).unwrap(),
            applied_on: Default::default(),
        })
    }

    pub fn store(&self) -> Arc<Store> {
        self.slot.get()
    }

    pub fn close(&self) {
        let _ = self.store().close();
    }

    /// Every live key with its value and version.
    pub fn dump(&self) -> BTreeMap<Vec<u8>, (Vec<u8>, i64)> {
        let r = self
            .store()
            .range(&RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() })
            .unwrap();
        r.kvs.into_iter().map(|kv| (kv.key, (kv.value, kv.version))).collect()
    }
}

impl StateMachine for KvMachine {
    type Output = Result<i64, String>;

    fn applied(&self) -> u64 {
        self.store().applied().index
    }

    fn apply(
        &self,
        index: u64,
        term: u64,
        data: &[u8],
    ) -> rusted_replication::Result<Self::Output> {
        let at = Applied { index, term };
        let s = self.store();
        let thread = std::thread::current().name().unwrap_or("").to_string();
        let kind = thread.split('-').next().unwrap_or("").to_string();
        self.applied_on.lock().unwrap().insert(kind);
        Ok(match data.first() {
            Some(0) if data.len() >= 5 => {
                let n = u32::from_le_bytes(data[1..5].try_into().unwrap()) as usize;
                let (key, value) = data[5..].split_at(n.min(data.len() - 5));
                let req =
                    PutRequest { key: key.to_vec(), value: value.to_vec(), ..Default::default() };
                s.put(at, &req).map(|r| r.revision).map_err(|e| e.to_string())
            }
            Some(1) => {
                let req = DeleteRangeRequest { key: data[1..].to_vec(), ..Default::default() };
                s.delete_range(at, &req).map(|r| r.revision).map_err(|e| e.to_string())
            }
            _ => {
                let _ = s.apply_noop(at);
                Err("bad command".into())
            }
        })
    }

    fn apply_noop(&self, index: u64, term: u64) -> rusted_replication::Result<()> {
        self.store().apply_noop(Applied { index, term }).map_err(sm_err)
    }

    fn apply_cluster(
        &self,
        index: u64,
        term: u64,
        record: &[u8],
    ) -> rusted_replication::Result<()> {
        self.store().apply_cluster(Applied { index, term }, record).map_err(sm_err)
    }

    fn cluster(&self) -> rusted_replication::Result<Option<Vec<u8>>> {
        self.store().cluster().map_err(sm_err)
    }

    fn sync(&self) -> rusted_replication::Result<()> {
        self.store().sync().map_err(sm_err)
    }

    fn write_snapshot(
        &self,
        path: &Path,
    ) -> rusted_replication::Result<(u64, u64, Option<Vec<u8>>)> {
        let info = self.store().write_snapshot(path).map_err(sm_err)?;
        Ok((info.applied.index, info.applied.term, info.cluster))
    }

    fn restore(&self, path: &Path) -> rusted_replication::Result<()> {
        self.slot.restore(path).map_err(sm_err)
    }
}

/// Test timing: fast ticks so elections take ~0.2 s.
pub fn test_config(id: u64, dir: &Path, bootstrap: Bootstrap) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(id, dir, bootstrap);
    c.heartbeat = Duration::from_millis(20);
    c.election = Duration::from_millis(200);
    c.request_timeout = Duration::from_secs(3);
    c.snapshot_count = 300;
    c.catchup_entries = 50;
    c.wal = WalOptions {
        segment_size: 1 << 20,
        prealloc: Prealloc::Fallocate,
        ..WalOptions::default()
    };
    c
}

pub struct Slot {
    pub id: u64,
    pub dir: PathBuf,
    pub sm: Option<Arc<KvMachine>>,
    pub replica: Option<Arc<Replica<KvMachine>>>,
}

pub struct Cluster {
    pub net: SimNet,
    pub slots: Vec<Slot>,
    pub record: ClusterRecord,
    pub rt: tokio::runtime::Runtime,
    pub base: tempfile::TempDir,
    /// --strict-reconfig-check for members started from now on.
    pub strict_reconfig_check: bool,
}

impl Cluster {
    pub fn new(n: usize, seed: u64) -> Cluster {
        let base = tempfile::tempdir().unwrap();
        let initial: Vec<(String, Vec<String>)> = (0..n)
            .map(|i| (format!("m{i}"), vec![format!("http://127.0.0.1:{}", 12380 + i)]))
            .collect();
        let record = bootstrap_record(&initial, "test-cluster").unwrap();
        let slots = record
            .members
            .keys()
            .map(|id| Slot {
                id: *id,
                dir: base.path().join(format!("{id:x}")),
                sm: None,
                replica: None,
            })
            .collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut c = Cluster {
            net: SimNet::new(seed),
            slots,
            record,
            rt,
            base,
            strict_reconfig_check: true,
        };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    pub fn start(&mut self, i: usize) {
        self.start_with(i, Bootstrap::New(self.record.clone()));
    }

    pub fn start_with(&mut self, i: usize, b: Bootstrap) {
        let s = &mut self.slots[i];
        std::fs::create_dir_all(&s.dir).unwrap();
        let sm = KvMachine::open(&s.dir.join("db"));
        let mut cfg = test_config(s.id, &s.dir, b);
        cfg.strict_reconfig_check = self.strict_reconfig_check;
        let r = Replica::start(cfg, sm.clone(), self.net.endpoint(s.id)).unwrap();
        self.net.register(r.mailbox());
        s.sm = Some(sm);
        s.replica = Some(Arc::new(r));
    }

    /// Stops a member abruptly: off the network, threads stopped, store closed.
    pub fn kill(&mut self, i: usize) {
        let s = &mut self.slots[i];
        self.net.unregister(s.id);
        if let Some(r) = s.replica.take() {
            r.stop();
        }
        if let Some(sm) = s.sm.take() {
            sm.close();
        }
    }

    /// A slot for a member added at runtime.
    pub fn add_slot(&mut self, id: u64) -> usize {
        let dir = self.base.path().join(format!("{id:x}"));
        self.slots.push(Slot { id, dir, sm: None, replica: None });
        self.slots.len() - 1
    }

    /// Publishes member `i`'s name and client URL (as the server does at start).
    pub fn publish(&self, i: usize) {
        let r = self.replica(i);
        let url = format!("http://127.0.0.1:{}", 2379 + i);
        self.rt.block_on(r.publish(&format!("m{i}"), vec![url])).unwrap();
    }

    pub fn replica(&self, i: usize) -> &Arc<Replica<KvMachine>> {
        self.slots[i].replica.as_ref().unwrap()
    }

    pub fn sm(&self, i: usize) -> &Arc<KvMachine> {
        self.slots[i].sm.as_ref().unwrap()
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|i| self.slots[*i].replica.is_some()).collect()
    }

    /// Waits until a running member leads and every running member agrees.
    pub fn wait_leader(&self, within: Duration) -> Option<usize> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let run = self.running();
            if let Some(l) = run.iter().find(|i| self.replica(**i).is_leader()) {
                let id = self.slots[*l].id;
                if run.iter().all(|i| self.replica(*i).leader() == id) {
                    return Some(*l);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Puts through member `i`.
    pub fn put(&self, i: usize, key: &str, value: &str) -> Result<i64, ReplicationError> {
        let r = self.replica(i);
        let out = self.rt.block_on(r.propose(&enc_put(key.as_bytes(), value.as_bytes())))?;
        out.map_err(ReplicationError::StateMachine)
    }

    /// Waits until every running member applied at least `index`.
    pub fn wait_applied(&self, index: u64, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.running().iter().all(|i| self.replica(*i).applied() >= index) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits until every running member has the same applied index and returns it.
    pub fn converge(&self, within: Duration) -> Option<u64> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let run = self.running();
            let a: Vec<u64> = run.iter().map(|i| self.replica(*i).applied()).collect();
            let c: Vec<u64> = run.iter().map(|i| self.replica(*i).status().committed).collect();
            if a.windows(2).all(|w| w[0] == w[1]) && a.first() == c.iter().max() {
                return a.first().copied();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.slots.len() {
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
