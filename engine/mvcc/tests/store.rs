//! MVCC store behaviour beyond the model test: leases attached through puts and revoked
//! atomically, watchers (history replay, live events, slow consumers, compaction, filters),
//! and restarts.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rusted_mvcc::lease::LeaseError;
use rusted_mvcc::request::*;
use rusted_mvcc::{Applied, MvccError, Store, StoreOptions, WatchOptions, WatchResponse};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Option<Store>,
    index: u64,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        Fixture { _dir: dir, path, store: Some(store), index: 0 }
    }

    fn at(&mut self) -> Applied {
        self.index += 1;
        Applied { index: self.index, term: 1 }
    }

    fn put(&mut self, k: &str, v: &str, lease: i64) -> Result<PutResponse, MvccError> {
        let at = self.at();
        self.s()
            .put(at, &PutRequest { key: k.into(), value: v.into(), lease, ..Default::default() })
    }

    fn del(&mut self, k: &str) -> DeleteRangeResponse {
        let at = self.at();
        self.s()
            .delete_range(at, &DeleteRangeRequest { key: k.into(), ..Default::default() })
            .unwrap()
    }

    fn get(&self, k: &str) -> Option<rusted_mvcc::KeyValue> {
        self.s().get(k.as_bytes(), 0).unwrap()
    }

    fn s(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        let old = self.store.take().unwrap();
        old.close().unwrap();
        drop(old);
        self.store = Some(Store::open(&self.path, StoreOptions::default()).unwrap());
    }
}

#[test]
fn revisions_start_as_etcds() {
    let mut f = Fixture::new();
    assert_eq!(f.s().current_revision(), 1, "an empty store is at revision 1");
    assert_eq!(f.put("a", "1", 0).unwrap().revision, 2);
    let r = f.put("a", "2", 0).unwrap();
    assert_eq!(r.revision, 3);
    let kv = f.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(f.del("zzz").deleted, 0);
    assert_eq!(f.s().current_revision(), 3, "deleting nothing takes no revision");
    f.del("a");
    f.put("a", "3", 0).unwrap();
    let kv = f.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.version), (5, 1), "recreated: version starts over");
    let e = f.s().compact(Applied::default(), 9).unwrap_err();
    assert!(matches!(e, MvccError::FutureRevision));
    f.s().compact(Applied::default(), 4).unwrap();
    let e = f.s().get(b"a", 3).unwrap_err();
    assert_eq!(e.to_string(), "mvcc: required revision has been compacted");
    assert!(f.s().get(b"a", 4).is_ok(), "the compacted revision itself stays readable");
    assert!(matches!(
        f.s().compact(Applied::default(), 4),
        Err(MvccError::Compacted { compact_revision: 4 })
    ));
}

#[test]
fn applied_entries_are_refused_twice() {
    let mut f = Fixture::new();
    f.put("a", "1", 0).unwrap();
    let again = f.s().put(
        Applied { index: 1, term: 1 },
        &PutRequest { key: b"a".to_vec(), ..Default::default() },
    );
    assert!(matches!(again, Err(MvccError::AlreadyApplied { index: 1, applied: 1 })));
    f.reopen();
    assert_eq!(f.s().applied(), Applied { index: 1, term: 1 });
}

#[test]
fn leases_attach_detach_and_revoke_in_one_revision() {
    let mut f = Fixture::new();
    f.s().lease_promote(Duration::ZERO);
    let at = f.at();
    let g = f.s().lease_grant(at, 7, 1).unwrap();
    assert_eq!(g.ttl, 2, "TTL below the minimum is raised to it");
    let e = f.put("x", "1", 8).unwrap_err();
    assert_eq!(e.to_string(), "lease not found");
    assert!(matches!(e, MvccError::Lease(LeaseError::NotFound)));
    for k in ["a", "b", "c"] {
        f.put(k, "v", 7).unwrap();
    }
    f.put("c", "w", 0).unwrap(); // a put without the lease detaches c
    let ttl = f.s().lease_time_to_live(7).unwrap();
    assert_eq!(ttl.keys, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(f.get("a").unwrap().lease, 7);
    // ignore_lease keeps it; ignore_value keeps the value.
    let at = f.at();
    f.s()
        .put(
            at,
            &PutRequest {
                key: b"a".to_vec(),
                ignore_lease: true,
                value: b"n".to_vec(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(f.get("a").unwrap().lease, 7);
    let at = f.at();
    let e = f
        .s()
        .put(at, &PutRequest { key: b"nope".to_vec(), ignore_value: true, ..Default::default() })
        .unwrap_err();
    assert_eq!(e.to_string(), "key not found");

    f.reopen();
    f.s().lease_promote(Duration::ZERO);
    assert_eq!(f.s().lease_time_to_live(7).unwrap().keys.len(), 2, "attachments survive");
    let before = f.s().current_revision();
    let at = f.at();
    let rev = f.s().lease_revoke(at, 7).unwrap();
    assert_eq!(rev, before + 1, "every key of the lease goes in one revision");
    assert!(f.get("a").is_none() && f.get("b").is_none());
    assert!(f.get("c").is_some());
    let changes = f.s().changes(&[0], &[0], rev, rev, 0).unwrap();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|(kv, deleted)| *deleted && kv.mod_revision == rev));
    assert!(!f.s().lease_exists(7));
    f.reopen();
    assert!(!f.s().lease_exists(7), "the revoke is persisted");
}

#[test]
fn lease_expiry_and_checkpoint() {
    let mut f = Fixture::new();
    f.s().lease_promote(Duration::ZERO);
    let at = f.at();
    f.s().lease_grant(at, 1, 2).unwrap();
    let at = f.at();
    f.s().lease_grant(at, 2, 600).unwrap();
    assert!(f.s().expired_leases(10).is_empty());
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(f.s().expired_leases(10), vec![1], "only the 2 s lease expired");
    assert!(f.s().expired_leases(10).is_empty(), "not handed out again before the retry");
    let at = f.at();
    f.s().lease_checkpoint(at, 2, 100).unwrap();
    f.reopen();
    f.s().lease_promote(Duration::ZERO);
    let ttl = f.s().lease_time_to_live(2).unwrap();
    assert_eq!(ttl.granted_ttl, 600);
    assert!(
        ttl.ttl <= 100 && ttl.ttl >= 98,
        "the checkpointed remaining TTL survives: {}",
        ttl.ttl
    );
}

/// Collects responses until `done` holds for them (or 20 s pass: then the caller's assertions
/// fail), then a little longer to catch anything extra.
fn recv_until(
    rx: &mut rusted_mvcc::WatchReceiver,
    done: impl Fn(&[WatchResponse]) -> bool,
) -> Vec<WatchResponse> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done(&out) && std::time::Instant::now() < deadline {
        match rx.try_recv() {
            Ok(r) => out.push(r),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    std::thread::sleep(Duration::from_millis(150));
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    out
}

fn events(rs: &[WatchResponse]) -> usize {
    rs.iter().map(|r| r.events.len()).sum()
}

#[test]
fn watch_replays_history_then_live_events() {
    let mut f = Fixture::new();
    f.put("a", "1", 0).unwrap(); // 2
    f.put("b", "1", 0).unwrap(); // 3
    f.del("a"); // 4
    let (mut ws, mut rx) = f.s().watch_stream(16);
    let all = ws
        .watch(
            0,
            WatchOptions {
                key: b"a".to_vec(),
                range_end: vec![0],
                start_revision: 2,
                prev_kv: true,
                ..Default::default()
            },
        )
        .unwrap();
    let only_b = ws
        .watch(0, WatchOptions { key: b"b".to_vec(), no_delete: true, ..Default::default() })
        .unwrap();
    assert_ne!(all, only_b);
    let at = f.at();
    f.s()
        .txn(
            at,
            &TxnRequest {
                success: vec![
                    RequestOp::Put(PutRequest {
                        key: b"b".to_vec(),
                        value: b"2".to_vec(),
                        ..Default::default()
                    }),
                    RequestOp::DeleteRange(DeleteRangeRequest {
                        key: b"b".to_vec(),
                        range_end: b"c".to_vec(),
                        ..Default::default()
                    }),
                ],
                ..Default::default()
            },
        )
        .unwrap_err(); // put and delete of one key: duplicate key
    f.put("b", "2", 0).unwrap(); // 5
    let got = recv_until(&mut rx, |rs| events(rs) >= 5);
    let revs = |id| -> Vec<(i64, bool)> {
        got.iter()
            .filter(|r| r.watch_id == id)
            .flat_map(|r| r.events.iter().map(|e| (e.kv.mod_revision, e.deleted)))
            .collect()
    };
    assert_eq!(revs(all), vec![(2, false), (3, false), (4, true), (5, false)]);
    assert_eq!(revs(only_b), vec![(5, false)], "from now on only");
    let last =
        got.iter().filter(|r| r.watch_id == all).flat_map(|r| r.events.clone()).last().unwrap();
    assert_eq!(last.prev_kv.unwrap().value, b"1", "prev_kv of b at 5 is its value at 3");
}

#[test]
fn slow_consumers_never_block_writers_and_miss_nothing() {
    let mut f = Fixture::new();
    let (mut ws, mut rx) = f.s().watch_stream(2);
    ws.watch(
        0,
        WatchOptions { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() },
    )
    .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = f.s().clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let key = format!("k{t}-{}", i % 17).into_bytes();
                    store
                        .put(
                            Applied::default(),
                            &PutRequest { key, value: vec![1], ..Default::default() },
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap(); // the stream holds 2 responses: writers would block here if it blocked them
    }
    let (_, unsynced) = f.s().watch_hub().counts();
    assert_eq!(unsynced, 1, "the watcher fell behind instead of blocking");
    let last = f.s().current_revision();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.last() != Some(&last) && std::time::Instant::now() < deadline {
        match rx.try_recv() {
            Ok(r) => seen.extend(r.events.iter().map(|e| e.kv.mod_revision)),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    let want: Vec<i64> = (2..=last).collect();
    assert_eq!(seen, want, "every event once, in order");
    f.put("k-live", "x", 0).unwrap();
    let more = recv_until(&mut rx, |rs| events(rs) >= 1);
    assert_eq!(more.iter().map(|r| r.events.len()).sum::<usize>(), 1, "back in sync, live again");
    assert_eq!(f.s().watch_hub().counts(), (1, 0));
}

#[test]
fn a_watcher_whose_client_stopped_reading_costs_no_history_reads() {
    let mut f = Fixture::new();
    let (mut ws, _rx) = f.s().watch_stream(1);
    ws.watch(
        0,
        WatchOptions { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() },
    )
    .unwrap();
    for i in 0..20 {
        f.put(&format!("k{i}"), "v", 0).unwrap();
    }
    // Behind, its stream full: the catch-up thread runs every 100 ms, writes keep coming,
    // and nothing is read for it.
    std::thread::sleep(Duration::from_millis(300));
    let before = f.s().watch_hub().stats().history_reads;
    for i in 0..10 {
        f.put(&format!("k{i}"), "w", 0).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(f.s().watch_hub().counts(), (0, 1), "the watcher is behind");
    assert_eq!(f.s().watch_hub().stats().history_reads, before, "history read for a full stream");
}

#[test]
fn watch_from_a_compacted_revision_is_cancelled() {
    let mut f = Fixture::new();
    for i in 0..5 {
        f.put("a", &i.to_string(), 0).unwrap();
    }
    f.s().compact(Applied::default(), 4).unwrap();
    let (mut ws, mut rx) = f.s().watch_stream(4);
    let id = ws
        .watch(0, WatchOptions { key: b"a".to_vec(), start_revision: 3, ..Default::default() })
        .unwrap();
    let got = recv_until(&mut rx, |rs| !rs.is_empty());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].watch_id, got[0].canceled, got[0].compact_revision), (id, true, 4));
    assert!(ws.ids().is_empty());
    let id2 = ws
        .watch(0, WatchOptions { key: b"a".to_vec(), start_revision: 4, ..Default::default() })
        .unwrap();
    let got = recv_until(&mut rx, |rs| events(rs) >= 3);
    assert_eq!(got.iter().filter(|r| r.watch_id == id2).map(|r| r.events.len()).sum::<usize>(), 3);
    assert!(ws.request_progress(), "every watcher synced: progress is sent");
    let p = recv_until(&mut rx, |rs| !rs.is_empty());
    assert_eq!((p[0].watch_id, p[0].revision), (-1, 6));
}

#[test]
fn keyed_meta_entries_read_back_pending_flushed_and_after_a_restart() {
    let mut f = Fixture::new();
    let e = |k: &str, v: Option<&str>| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()));
    let want = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect::<Vec<_>>()
    };
    let at = f.at();
    let first = vec![e("x-t/a", Some("1")), e("x-t/b", Some("2")), e("x-u/a", Some("other"))];
    f.s().apply_meta_changes(at, &[(b"x-t", b"r1")], first).unwrap();
    // Not flushed yet.
    assert_eq!(f.s().meta_entries(b"x-t/").unwrap(), want(&[("x-t/a", "1"), ("x-t/b", "2")]));
    f.s().hash().unwrap(); // flushes
    let at = f.at();
    f.s().apply_meta_changes(at, &[], vec![e("x-t/a", None), e("x-t/c", Some("3"))]).unwrap();
    // Pending changes over flushed ones.
    let now = want(&[("x-t/b", "2"), ("x-t/c", "3")]);
    assert_eq!(f.s().meta_entries(b"x-t/").unwrap(), now);
    f.reopen();
    assert_eq!(f.s().meta_entries(b"x-t/").unwrap(), now);
    assert_eq!(f.s().meta_entries(b"x-u/").unwrap(), want(&[("x-u/a", "other")]));
    assert_eq!(f.s().meta_blob(b"x-t").unwrap().as_deref(), Some(&b"r1"[..]));
    // The entries are applied ones: the index moved with them.
    let at = Applied { index: f.index, term: 1 };
    assert!(matches!(
        f.s().apply_meta_changes(at, &[], vec![]),
        Err(MvccError::AlreadyApplied { .. })
    ));
}

#[test]
fn restart_rebuilds_index_and_resumes_compaction() {
    let mut f = Fixture::new();
    for i in 0..200 {
        f.put(&format!("k{}", i % 20), &i.to_string(), 0).unwrap();
    }
    f.del("k3");
    let rev = f.s().current_revision();
    let hash = f.s().hash_kv(0).unwrap();
    let at = f.at();
    f.s().compact(at, rev - 10).unwrap();
    let hash_c = f.s().hash_kv(0).unwrap();
    f.reopen();
    assert_eq!(f.s().current_revision(), rev);
    assert_eq!(f.s().compact_revision(), rev - 10);
    assert_eq!(f.s().hash_kv(0).unwrap(), hash_c);
    assert_eq!(hash.hash_revision, hash_c.hash_revision);
    assert!(f.s().wait_compacted(rev - 10, Duration::from_secs(10)));
    assert_eq!(f.s().key_count(), 19);
    let r = f
        .s()
        .range(&RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (5, 19, true));
}

#[test]
fn watch_ids_are_not_reused_at_once_and_negative_starts_are_compacted() {
    let f = Fixture::new();
    let (mut ws, _rx) = f.s().watch_stream(4);
    let a = ws.watch(0, WatchOptions { key: b"a".to_vec(), ..Default::default() }).unwrap();
    assert!(ws.cancel(a));
    let b = ws.watch(0, WatchOptions { key: b"a".to_vec(), ..Default::default() }).unwrap();
    assert_ne!(a, b, "queued responses of a cancelled watcher must not look like the new one's");
    let e =
        ws.watch(0, WatchOptions { key: b"a".to_vec(), start_revision: -1, ..Default::default() });
    assert_eq!(e, Err(rusted_mvcc::watch::WatchError::Compacted));
    let e = ws.watch(b, WatchOptions { key: b"a".to_vec(), ..Default::default() });
    assert_eq!(e, Err(rusted_mvcc::watch::WatchError::DuplicateId));
}

#[test]
fn txn_checks_puts_before_ranges_as_etcd() {
    let mut f = Fixture::new();
    let at = f.at();
    let e = f
        .s()
        .txn(
            at,
            &TxnRequest {
                success: vec![
                    RequestOp::Range(RangeRequest {
                        key: b"a".to_vec(),
                        revision: 99,
                        ..Default::default()
                    }),
                    RequestOp::Put(PutRequest {
                        key: b"b".to_vec(),
                        lease: 5,
                        ..Default::default()
                    }),
                ],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, MvccError::Lease(LeaseError::NotFound)), "{e}");
    assert_eq!(f.s().current_revision(), 1, "a refused txn writes nothing");
    assert_eq!(f.s().applied().index, 1, "but its entry counts as applied");
}

/// etcd's `etcd_mvcc_*_total` counts: every range, put and deletion (inside txns too), and the
/// txns that ran more than one operation.
#[test]
fn operations_are_counted_as_etcd_counts_them() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut f = Fixture::new();
    f.put("a", "1", 0).unwrap();
    f.del("a");
    f.s().range(&RangeRequest { key: b"a".to_vec(), ..Default::default() }).unwrap();
    let put = |k: &[u8]| RequestOp::Put(PutRequest { key: k.to_vec(), ..Default::default() });
    let range = |k: &[u8]| RequestOp::Range(RangeRequest { key: k.to_vec(), ..Default::default() });
    let at = f.at();
    f.s()
        .txn(at, &TxnRequest { success: vec![put(b"b"), range(b"b")], ..Default::default() })
        .unwrap();
    let at = f.at();
    f.s().txn(at, &TxnRequest { success: vec![put(b"c")], ..Default::default() }).unwrap();
    let c = f.s().op_counts();
    let got = [&c.ranges, &c.puts, &c.deletes, &c.txns].map(|n| n.load(Relaxed));
    assert_eq!(got, [2, 3, 1, 1], "ranges, puts, deletes, txns");
}
