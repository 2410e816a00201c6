//! etcd's late-heartbeat detector: a leader that sends a follower two heartbeats more than
//! twice the heartbeat interval apart is overloaded (most often by a slow disk); each such
//! heartbeat is logged with etcd's wording and counted
//! (`etcd_server_heartbeat_send_failures_total`).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use raft::eraftpb::{Message, MessageType};

/// When each follower last got a heartbeat.
#[derive(Debug)]
pub(crate) struct HeartbeatWatch {
    interval: Duration,
    last: HashMap<u64, Instant>,
}

impl HeartbeatWatch {
    pub fn new(interval: Duration) -> Self {
        HeartbeatWatch { interval, last: HashMap::new() }
    }

    /// Forgets every follower (leadership changed).
    pub fn reset(&mut self) {
        self.last.clear();
    }

    /// Looks at messages about to go out at `now`; returns the heartbeats among them that
    /// went out late.
    pub fn observe(&mut self, msgs: &[Message], now: Instant) -> u64 {
        let max = self.interval * 2;
        let mut late = 0;
        for m in msgs.iter().filter(|m| m.get_msg_type() == MessageType::MsgHeartbeat) {
            if let Some(prev) = self.last.insert(m.to, now) {
                let exceeded = now.saturating_duration_since(prev).saturating_sub(max);
                if !exceeded.is_zero() {
                    late += 1;
                    tracing::warn!(
                        to = %format!("{:x}", m.to),
                        heartbeat_interval = ?self.interval,
                        expected_duration = ?max,
                        exceeded_duration = ?exceeded,
                        "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk"
                    );
                }
            }
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(to: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.to = to;
        m
    }

    #[test]
    fn a_heartbeat_later_than_twice_the_interval_counts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = HeartbeatWatch::new(ms(100));
        assert_eq!(w.observe(&[hb(2), hb(3)], t0), 0, "first heartbeats set the clock");
        assert_eq!(w.observe(&[hb(2)], t0 + ms(200)), 0, "exactly twice the interval is on time");
        assert_eq!(w.observe(&[hb(2), hb(3)], t0 + ms(450)), 2);
        let mut append = Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        append.to = 2;
        assert_eq!(w.observe(&[append], t0 + ms(2000)), 0, "only heartbeats count");
        w.reset();
        assert_eq!(w.observe(&[hb(2)], t0 + ms(5000)), 0, "a new leadership starts over");
    }
}
