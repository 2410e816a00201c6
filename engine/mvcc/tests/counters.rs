//! What the store counts for metrics: operations and their bytes, leases, watch streams and
//! the events they hold, compaction and hash events.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusted_mvcc::request::*;
use rusted_mvcc::{Applied, EventObserver, Store, StoreEvent, StoreOptions, WatchOptions};

fn at(i: &mut u64) -> Applied {
    *i += 1;
    Applied { index: *i, term: 1 }
}

fn put(s: &Store, i: &mut u64, k: &str, v: &str) {
    s.put(at(i), &PutRequest { key: k.into(), value: v.into(), ..Default::default() }).unwrap();
}

#[test]
fn operations_leases_and_compactions_are_counted_and_told() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let opts = StoreOptions {
        on_event: EventObserver(Some(Arc::new(move |e| s2.lock().unwrap().push(e)))),
        ..StoreOptions::default()
    };
    let s = Store::open(dir.path().join("db"), opts).unwrap();
    let mut i = 0;
    put(&s, &mut i, "a", "12345");
    put(&s, &mut i, "a", "6");
    put(&s, &mut i, "bb", "");
    s.lease_promote(Duration::ZERO);
    s.lease_grant(at(&mut i), 7, 30).unwrap();
    s.lease_renew(7).unwrap();
    s.lease_revoke(at(&mut i), 7).unwrap();
    let ops = s.op_counts();
    assert_eq!(ops.puts.load(Relaxed), 3);
    assert_eq!(ops.put_bytes.load(Relaxed), (1 + 5) + (1 + 1) + 2);
    assert_eq!(ops.leases_granted.load(Relaxed), 1);
    assert_eq!(ops.leases_renewed.load(Relaxed), 1);
    assert_eq!(ops.leases_revoked.load(Relaxed), 1);
    let rev = s.current_revision();
    s.compact(at(&mut i), rev).unwrap();
    assert!(s.wait_compacted(rev, Duration::from_secs(10)));
    // Revision 2 ("a" = "12345") is gone; "a" at 3 and "bb" stay.
    assert_eq!(ops.compacted_keys.load(Relaxed), 1);
    s.hash().unwrap();
    s.hash_kv(0).unwrap();
    let seen = seen.lock().unwrap().clone();
    let has = |f: fn(&StoreEvent) -> bool| seen.iter().any(f);
    assert!(seen.contains(&StoreEvent::LeaseGranted(30)), "{seen:?}");
    assert!(has(|e| matches!(e, StoreEvent::IndexCompaction(_))), "{seen:?}");
    assert!(has(|e| matches!(e, StoreEvent::CompactionBatch(_))), "{seen:?}");
    assert_eq!(seen.iter().filter(|e| matches!(e, StoreEvent::CompactionDone(_))).count(), 1);
    assert!(has(|e| matches!(e, StoreEvent::Hash(_))), "{seen:?}");
    assert!(has(|e| matches!(e, StoreEvent::HashKv(_))), "{seen:?}");
}

#[test]
fn watch_streams_count_their_watchers_and_the_events_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
    let mut i = 0;
    let hub = s.watch_hub().clone();
    assert_eq!(hub.stats().streams, 0);
    let (mut ws, mut rx) = s.watch_stream(16);
    ws.watch(0, WatchOptions { key: b"k".to_vec(), ..Default::default() }).unwrap();
    ws.watch(0, WatchOptions { key: b"k".to_vec(), range_end: vec![0], ..Default::default() })
        .unwrap();
    let st = hub.stats();
    assert_eq!((st.streams, st.watchers), (1, 2));
    put(&s, &mut i, "k", "1");
    put(&s, &mut i, "k", "2");
    // Two watchers, two events each, none taken yet.
    let st = hub.stats();
    assert_eq!((st.events_sent, st.events_pending), (4, 4), "{st:?}");
    rx.try_recv().unwrap();
    assert_eq!(hub.stats().events_pending, 3);
    // What nobody will take is no longer pending once the receiver goes.
    drop(rx);
    let st = hub.stats();
    assert_eq!((st.events_sent, st.events_pending), (4, 0), "{st:?}");
    drop(ws);
    let st = hub.stats();
    assert_eq!((st.streams, st.watchers), (0, 0), "{st:?}");
}
