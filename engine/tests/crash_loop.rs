//! Crash loop: a child process commits in a loop and is SIGKILLed at random moments. After
//! every reopen the store holds exactly the state of one commit, at or after the last synced
//! commit the child acknowledged, and its pages are consistent (none both free and reachable,
//! none leaked). The second loop also runs online defrags back to back beside the writer, so
//! kills land in every phase of a defrag (copy, catch-up, swap).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusted_engine::{Db, DbOptions};

const CHILD_ENV: &str = "RUSTED_ENGINE_CRASH_CHILD";
const DEFRAG_ENV: &str = "RUSTED_ENGINE_CRASH_DEFRAG";

/// The deterministic edits of commit `i`.
fn edits(i: u64) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::new();
    for _ in 0..(5 + i % 40) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("k{:04}", x % 3000).into_bytes();
        if x % 5 == 0 {
            v.push((key, None));
        } else {
            v.push((key, Some(vec![(x >> 8) as u8; (x % 700) as usize + 1])));
        }
    }
    v
}

fn model_upto(c: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    for i in 1..=c {
        for (k, v) in edits(i) {
            match v {
                Some(v) => m.insert(k, v),
                None => m.remove(&k),
            };
        }
    }
    m
}

fn opts() -> DbOptions {
    DbOptions { initial_mmap_size: 1 << 20, ..DbOptions::default() }
}

fn counter(db: &Db) -> u64 {
    let tx = db.begin_read().unwrap();
    if !tx.has_bucket(b"meta").unwrap() {
        return 0;
    }
    tx.get(b"meta", b"counter").unwrap().map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()))
}

/// The child: commits forever (until killed), printing "durable N" after each synced commit.
#[test]
#[ignore = "run by crash_loop_keeps_a_committed_state as a child process"]
fn crash_loop_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let db = std::sync::Arc::new(Db::open(&path, opts()).unwrap());
    if std::env::var_os(DEFRAG_ENV).is_some() {
        let db = db.clone();
        std::thread::spawn(move || loop {
            let r = db.defrag().unwrap();
            println!("defrag {} -> {} paused {:?}", r.before, r.after, r.paused);
        });
    }
    let mut i = counter(&db);
    loop {
        i += 1;
        let mut tx = db.begin_write().unwrap();
        tx.create_bucket_if_missing(b"data").unwrap();
        tx.create_bucket_if_missing(b"meta").unwrap();
        for (k, v) in edits(i) {
            match v {
                Some(v) => tx.put(b"data", &k, &v).unwrap(),
                None => {
                    tx.delete(b"data", &k).unwrap();
                }
            }
        }
        tx.put(b"meta", b"counter", &i.to_le_bytes()).unwrap();
        if i % 3 == 0 {
            tx.commit().unwrap();
            println!("durable {i}");
        } else {
            tx.commit_nosync().unwrap();
        }
    }
}

#[test]
fn crash_loop_keeps_a_committed_state() {
    crash_loop(false);
}

#[test]
fn crash_loop_during_defrags_keeps_a_committed_state() {
    crash_loop(true);
}

fn crash_loop(defrag: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x5EED_1234u64;
    let mut kills = 0;
    let mut total_defrags = 0;
    let started = Instant::now();
    while kills < 25 && started.elapsed() < Duration::from_secs(60) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Command::new(&exe)
            .args(["crash_loop_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env(if defrag { DEFRAG_ENV } else { "RUSTED_ENGINE_CRASH_NONE" }, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut last, mut defrags) = (0u64, 0u64);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("durable ") {
                    last = n.trim().parse().unwrap();
                }
                defrags += u64::from(line.starts_with("defrag "));
            }
            (last, defrags)
        });
        std::thread::sleep(Duration::from_millis(30 + seed % 300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (acked, defrags) = reader.join().unwrap();
        kills += 1;
        total_defrags += defrags;

        let db = Db::open(&path, opts()).unwrap();
        let c = counter(&db);
        assert!(c >= acked, "store at commit {c}, but commit {acked} was acknowledged durable");
        let report = db.check().unwrap();
        assert!(report.problems.is_empty(), "after kill {kills}: {:?}", report.problems);
        eprintln!("kill {kills}: acked {acked}, recovered {c}, {defrags} defrags done");
        let want = model_upto(c);
        let tx = db.begin_read().unwrap();
        if c > 0 {
            let mut got = BTreeMap::new();
            tx.scan(b"data", b"", b"", |k, v| {
                got.insert(k.to_vec(), v.to_vec());
                true
            })
            .unwrap();
            assert!(got == want, "after kill {kills}: contents are not those of commit {c}");
        }
    }
    assert!(kills >= 5, "only {kills} crash rounds ran");
    assert!(!defrag || total_defrags > 0, "no defrag finished between kills");
}
