//! A real crash: a child process appends from several threads with group commit and is
//! SIGKILLed at random moments. After each kill, reopening yields a prefix of what was appended
//! that contains every record the child was told was durable, and appending continues.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the test failing
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rusted_wal::{IoMode, Record, Wal, WalOptions};

const CHILD_ENV: &str = "RUSTED_WAL_KILL_CHILD";

fn opts() -> WalOptions {
    WalOptions { segment_size: 256 * 1024, ..small_opts(IoMode::Auto) }
}

/// The child: 8 threads append entries (indexes assigned under a lock) until killed, printing
/// "acked N" once entry N is durable.
#[test]
#[ignore = "run by sigkill_keeps_every_acknowledged_record as a child process"]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let (w, _) = Wal::open(&dir, opts()).unwrap();
    let w = Arc::new(w);
    let next = Arc::new(Mutex::new(w.last_index() + 1));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (w, next, out) = (w.clone(), next.clone(), out.clone());
            std::thread::spawn(move || loop {
                let (i, h) = {
                    let mut n = next.lock().unwrap();
                    let p = payload(*n);
                    let h = w.append(&[Record::Entry { index: *n, term: 1, data: &p }]).unwrap();
                    *n += 1;
                    (*n - 1, h)
                };
                h.wait().unwrap();
                let mut o = out.lock().unwrap();
                writeln!(o, "acked {i}").unwrap();
                o.flush().unwrap();
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0xC0FF_EE11u64;
    for round in 0..12 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Command::new(&exe)
            .args(["kill_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut max = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("acked ") {
                    max = max.max(n.trim().parse().unwrap());
                }
            }
            max
        });
        std::thread::sleep(Duration::from_millis(50 + seed % 250));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        let (w, _) = Wal::open(dir.path(), opts()).unwrap();
        let got = all(&w);
        let last = got.last().map_or(0, |e| e.index);
        eprintln!("round {round}: acknowledged up to {acked}, recovered up to {last}");
        assert!(last >= acked, "round {round}: entry {acked} was acknowledged, log ends at {last}");
        assert_eq!(
            got,
            (1..=last).map(|i| entry(i, 1)).collect::<Vec<_>>(),
            "round {round}: not a prefix"
        );
    }
}
