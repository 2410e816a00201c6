//! Auto-compaction (etcd's --auto-compaction-mode / --auto-compaction-retention), run by the
//! leader only.
//!
//! - `periodic`: the retention is a duration ("1" alone means hours, or Go-style "30m",
//!   "1h30m", "10s"). The store's revision is sampled every tenth of the retention (at most an
//!   hour apart); every sample interval, the history older than the retention is compacted, i.e.
//!   to the newest revision sampled at least one retention ago.
//! - `revision`: every 5 minutes, compacts to `current revision - retention`.
//!
//! Compactions go through raft like a client's. "0" disables.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::ctx::Ctx;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::proto::rustedpb::proposal::Request as P;

/// How often revision mode compacts (etcd: 5 minutes).
pub const REVISION_INTERVAL: Duration = Duration::from_secs(300);

/// What the flags ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Off.
    Off,
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// Parses a Go duration ("1h30m", "10s", "500ms", "1.5h").
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Reads the two flags as etcd does.
pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
    let bad = || format!("invalid --auto-compaction-retention {retention:?} for mode {mode:?}");
    match mode {
        "periodic" => {
            let d = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => parse_go_duration(retention).ok_or_else(bad)?,
            };
            Ok(if d.is_zero() { AutoCompaction::Off } else { AutoCompaction::Periodic(d) })
        }
        "revision" => {
            let n: i64 = retention.parse().map_err(|_| bad())?;
            if n < 0 {
                return Err(bad());
            }
            Ok(if n == 0 { AutoCompaction::Off } else { AutoCompaction::Revision(n) })
        }
        other => Err(format!("unknown --auto-compaction-mode {other:?}")),
    }
}

/// The sampling interval of periodic mode: a tenth of the retention, at most an hour apart.
pub fn sample_interval(retention: Duration) -> Duration {
    (retention.min(Duration::from_secs(3600)) / 10).max(Duration::from_millis(100))
}

/// Revision samples for periodic mode.
#[derive(Debug, Default)]
pub struct Samples {
    list: VecDeque<(Instant, i64)>,
}

impl Samples {
    /// Records `rev` seen at `at`.
    pub fn push(&mut self, at: Instant, rev: i64) {
        self.list.push_back((at, rev));
    }

    /// The newest revision sampled at least `retention` before `now` (dropping older samples).
    pub fn due(&mut self, now: Instant, retention: Duration) -> Option<i64> {
        let mut found = None;
        while let Some(&(t, rev)) = self.list.front() {
            if now.duration_since(t) >= retention {
                found = Some(rev);
                self.list.pop_front();
            } else {
                break;
            }
        }
        found
    }
}

async fn compact(ctx: &Ctx, rev: i64, last: &mut i64) {
    if rev <= *last || rev <= ctx.store().compact_revision() {
        return;
    }
    match ctx.propose(P::Compaction(CompactionRequest { revision: rev, physical: false })).await {
        Ok(_) => {
            tracing::info!(revision = rev, "completed auto compaction");
            *last = rev;
        }
        Err(e) => tracing::warn!(revision = rev, error = %e, "failed auto compaction"),
    }
}

/// Runs auto-compaction until `stop`.
pub async fn run(ctx: Arc<Ctx>, mode: AutoCompaction, mut stop: watch::Receiver<bool>) {
    let every = match mode {
        AutoCompaction::Off => return,
        AutoCompaction::Periodic(r) => sample_interval(r),
        AutoCompaction::Revision(_) => REVISION_INTERVAL,
    };
    let mut samples = Samples::default();
    let mut last = 0;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !ctx.replica.is_leader() {
            // Only the leader compacts; a new leader starts sampling afresh.
            samples = Samples::default();
            continue;
        }
        let rev = ctx.store().current_revision();
        match mode {
            AutoCompaction::Periodic(retention) => {
                let now = Instant::now();
                samples.push(now, rev);
                if let Some(target) = samples.due(now, retention) {
                    compact(&ctx, target, &mut last).await;
                }
            }
            AutoCompaction::Revision(keep) => compact(&ctx, rev - keep, &mut last).await,
            AutoCompaction::Off => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_etcd_reads_them() {
        assert_eq!(parse("periodic", "0"), Ok(AutoCompaction::Off));
        assert_eq!(parse("periodic", "1"), Ok(AutoCompaction::Periodic(Duration::from_secs(3600))));
        assert_eq!(
            parse("periodic", "1h30m"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(5400)))
        );
        assert_eq!(parse("periodic", "10s"), Ok(AutoCompaction::Periodic(Duration::from_secs(10))));
        assert_eq!(parse("revision", "1000"), Ok(AutoCompaction::Revision(1000)));
        assert!(parse("revision", "1h").is_err());
        assert!(parse("periodic", "soon").is_err());
        assert!(parse("hourly", "1").is_err());
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn periodic_compacts_to_what_was_current_one_retention_ago() {
        let t0 = Instant::now();
        let r = Duration::from_secs(100);
        let mut s = Samples::default();
        for i in 0..10u64 {
            s.push(t0 + Duration::from_secs(i * 10), 10 + i as i64);
        }
        assert_eq!(s.due(t0 + Duration::from_secs(99), r), None);
        assert_eq!(s.due(t0 + Duration::from_secs(100), r), Some(10));
        assert_eq!(s.due(t0 + Duration::from_secs(125), r), Some(12));
        assert_eq!(s.due(t0 + Duration::from_secs(125), r), None, "samples are used once");
        assert_eq!(sample_interval(Duration::from_secs(7200)), Duration::from_secs(360));
        assert_eq!(sample_interval(Duration::from_secs(100)), Duration::from_secs(10));
    }
}
