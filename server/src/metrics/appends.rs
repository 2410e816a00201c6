//! The raft appends a member sent (as leader) and received (as follower), as etcd's v2 server
//! stats count them for `/v2/stats/self`: a count of each, and their rates over the last
//! [`WINDOW`] messages (messages and bytes per second, none once the last is over a second
//! old), as etcd's `statsQueue`. Also when the current leader was first seen, for
//! `leaderInfo.startTime` and `uptime`.
//!
//! Invariant: each window's byte total is the sum of the sizes it holds.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Messages a rate is computed over (etcd's `queueCapacity`).
pub const WINDOW: usize = 200;

/// A window's age past which it reads as idle (and is emptied), as etcd's.
const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Window {
    items: VecDeque<(Instant, usize)>,
    bytes: usize,
}

impl Window {
    fn insert(&mut self, at: Instant, size: usize) {
        if self.items.len() == WINDOW {
            if let Some((_, s)) = self.items.pop_front() {
                self.bytes -= s;
            }
        }
        self.items.push_back((at, size));
        self.bytes += size;
        debug_assert_eq!(self.bytes, self.items.iter().map(|i| i.1).sum::<usize>());
    }

    /// (messages/s, bytes/s): none when empty, idle (then emptied) or spanning no time.
    fn rate(&mut self, now: Instant) -> Option<(f64, f64)> {
        let (&(front, _), &(back, _)) = (self.items.front()?, self.items.back()?);
        if now.saturating_duration_since(back) > IDLE {
            *self = Window::default();
            return None;
        }
        let span = back.duration_since(front).as_secs_f64();
        (span > 0.0).then(|| (self.items.len() as f64 / span, self.bytes as f64 / span))
    }
}

#[derive(Debug, Default)]
struct Inner {
    sent: u64,
    received: u64,
    send: Window,
    recv: Window,
    leader: Option<(u64, SystemTime)>,
}

impl Inner {
    fn saw_leader(&mut self, id: u64) {
        if self.leader.is_none_or(|(l, _)| l != id) {
            self.leader = Some((id, SystemTime::now()));
        }
    }
}

/// What `/v2/stats/self` shows of the appends.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendsView {
    /// Appends sent.
    pub sent: u64,
    /// Appends received.
    pub received: u64,
    /// Sending (messages/s, bytes/s), if recent.
    pub send_rate: Option<(f64, f64)>,
    /// Receiving (messages/s, bytes/s), if recent.
    pub recv_rate: Option<(f64, f64)>,
    /// The leader last seen sending (or this member, sending) and since when.
    pub leader: Option<(u64, SystemTime)>,
}

/// The appends' counts and rates (shared by the transport, the peer service and the API).
#[derive(Debug, Clone, Default)]
pub struct Appends(Arc<Mutex<Inner>>);

impl Appends {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This member (`me`, so the leader) sent an append of `size` bytes.
    pub fn sent(&self, me: u64, size: usize) {
        let mut g = self.lock();
        g.sent += 1;
        g.send.insert(Instant::now(), size);
        g.saw_leader(me);
    }

    /// An append of `size` bytes came from `leader`.
    pub fn received(&self, leader: u64, size: usize) {
        let mut g = self.lock();
        g.received += 1;
        g.recv.insert(Instant::now(), size);
        g.saw_leader(leader);
    }

    /// The counts and current rates.
    pub fn view(&self) -> AppendsView {
        let now = Instant::now();
        let mut g = self.lock();
        AppendsView {
            sent: g.sent,
            received: g.received,
            send_rate: g.send.rate(now),
            recv_rate: g.recv.rate(now),
            leader: g.leader,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_over_the_window_then_none_when_idle() {
        let mut w = Window::default();
        let t0 = Instant::now();
        assert_eq!(w.rate(t0), None);
        w.insert(t0, 100);
        assert_eq!(w.rate(t0), None, "one message spans no time");
        w.insert(t0 + Duration::from_millis(500), 300);
        let (pkts, bytes) = w.rate(t0 + Duration::from_millis(600)).unwrap();
        assert!((pkts - 4.0).abs() < 1e-9 && (bytes - 800.0).abs() < 1e-9, "{pkts} {bytes}");
        assert_eq!(w.rate(t0 + Duration::from_millis(1600)), None);
        assert!(w.items.is_empty() && w.bytes == 0, "an idle window is emptied");
    }

    #[test]
    fn counts_and_the_leader_as_etcd_keeps_them() {
        let a = Appends::default();
        a.received(7, 10);
        a.received(7, 10);
        let since = a.view().leader.unwrap().1;
        a.received(7, 10);
        assert_eq!(a.view().leader, Some((7, since)), "the same leader keeps its start");
        a.sent(9, 5);
        let v = a.view();
        assert_eq!((v.sent, v.received, v.leader.map(|l| l.0)), (1, 3, Some(9)));
    }

    proptest! {
        /// The window holds the last WINDOW sizes and their sum (a model: a plain list).
        #[test]
        fn window_matches_a_list(sizes in proptest::collection::vec(0usize..10_000, 0..500)) {
            let mut w = Window::default();
            let t0 = Instant::now();
            for (i, s) in sizes.iter().enumerate() {
                w.insert(t0 + Duration::from_micros(i as u64), *s);
            }
            let keep = &sizes[sizes.len().saturating_sub(WINDOW)..];
            prop_assert_eq!(w.items.len(), keep.len());
            prop_assert_eq!(w.bytes, keep.iter().sum::<usize>());
        }
    }
}
