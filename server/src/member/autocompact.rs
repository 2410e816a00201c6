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

use crate::api::ctx::Ctx;
use rusted_proto::etcdserverpb::CompactionRequest;
use rusted_proto::rustedpb::proposal::Request as P;

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

/// Reads the two flags as etcd does.
pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
    let bad = || format!("invalid --auto-compaction-retention {retention:?} for mode {mode:?}");
    match mode {
        "periodic" => {
            let d = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours.checked_mul(3600).ok_or_else(bad)?),
                Err(_) => rusted_proto::duration::parse_go_duration(retention).ok_or_else(bad)?,
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

/// Periodic mode's schedule (etcd's): the revision is sampled every tenth of
/// `min(retention, 1h)`, keeping one retention's worth of samples. The first compaction comes
/// one retention after start, to the revision current at start; later ones every
/// `min(retention, 1h)`, each to the oldest sample kept (the revision current about one retention
/// ago). A failed attempt is retried at the next sample. Samples are taken even while not
/// leading, so a new leader has history to compact by.
#[derive(Debug)]
pub struct Periodic {
    /// Between samples.
    pub every: Duration,
    interval: Duration,
    window: usize,
    revs: VecDeque<i64>,
    last: Instant,
    wait: Duration,
}

impl Periodic {
    /// A schedule for `retention`, starting `now`.
    pub fn new(retention: Duration, now: Instant) -> Periodic {
        let interval = retention.min(Duration::from_secs(3600));
        let every = (interval / 10).max(Duration::from_millis(100));
        let window = (retention.as_nanos() / every.as_nanos()) as usize + 1;
        Periodic { every, interval, window, revs: VecDeque::new(), last: now, wait: retention }
    }

    /// A sample of `rev` at `now`: the revision to compact to, if one is due and `leading`.
    pub fn sample(&mut self, now: Instant, rev: i64, leading: bool) -> Option<i64> {
        self.revs.push_back(rev);
        while self.revs.len() > self.window {
            self.revs.pop_front();
        }
        if !leading || now.duration_since(self.last) < self.wait {
            return None;
        }
        self.wait = self.interval;
        self.revs.front().copied()
    }

    /// The compaction asked for succeeded at `now`.
    pub fn succeeded(&mut self, now: Instant) {
        self.last = now;
    }
}

/// Compacts to `rev` through raft; true when done (or already compacted that far).
async fn compact(ctx: &Ctx, rev: i64) -> bool {
    if rev <= 0 {
        return false;
    }
    if rev <= ctx.store().compact_revision() {
        return true;
    }
    match ctx.propose(P::Compaction(CompactionRequest { revision: rev, physical: false })).await {
        Ok(_) => {
            tracing::info!(revision = rev, "completed auto compaction");
            true
        }
        Err(crate::api::errors::ApiError::Mvcc(rusted_mvcc::MvccError::Compacted { .. })) => true,
        Err(e) => {
            tracing::warn!(revision = rev, error = %e, "failed auto compaction");
            false
        }
    }
}

/// Runs auto-compaction until `stop`.
pub async fn run(ctx: Arc<Ctx>, mode: AutoCompaction, mut stop: watch::Receiver<bool>) {
    let mut periodic = match mode {
        AutoCompaction::Off => return,
        AutoCompaction::Periodic(r) => Some(Periodic::new(r, Instant::now())),
        AutoCompaction::Revision(_) => None,
    };
    let every = periodic.as_ref().map_or(REVISION_INTERVAL, |p| p.every);
    let mut last_target = 0;
    // The first tick is immediate: the revision at start is the first sample.
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let rev = ctx.store().current_revision();
        let leading = ctx.replica.is_leader();
        match (&mut periodic, mode) {
            (Some(p), _) => {
                if let Some(target) = p.sample(Instant::now(), rev, leading) {
                    if compact(&ctx, target).await {
                        p.succeeded(Instant::now());
                    }
                }
            }
            (None, AutoCompaction::Revision(keep)) => {
                let target = rev - keep;
                if leading && target > 0 && target != last_target && compact(&ctx, target).await {
                    last_target = target;
                }
            }
            _ => return,
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
    }

    #[test]
    fn periodic_follows_etcds_schedule() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = Periodic::new(Duration::from_secs(100), t0);
        assert_eq!(p.every, Duration::from_secs(10));
        let mut got = Vec::new();
        for i in 0..=30u64 {
            // Revision 1000 + 10 per second; not leading for the first 20 s.
            if let Some(r) = p.sample(at(i * 10), 1000 + 100 * i as i64, i > 2) {
                got.push((i * 10, r));
                p.succeeded(at(i * 10));
            }
        }
        // First after one retention, to what was current a retention before; then every
        // min(retention, 1h) = 100 s.
        assert_eq!(got, vec![(100, 1000), (200, 2000), (300, 3000)]);
        let h = Periodic::new(Duration::from_secs(24 * 3600), t0);
        assert_eq!(h.every, Duration::from_secs(360));
    }
}
