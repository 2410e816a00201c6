//! An in-process network for tests: replicas in one process exchange raft messages through it,
//! with faults injected from a seed — drops, duplicates, delays (and so reordering), and
//! partitions — so a failing run can be replayed.
//!
//! Snapshots travel as the real transport sends them: the sender's snapshot file is copied
//! into the receiver's [`SnapDir`] before the message is delivered, and the sender is told how
//! it went.
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use raft::eraftpb::{Message, MessageType};

use crate::transport::{Mailbox, Transport};

/// Which faults to inject; probabilities are per message.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Probability a message is dropped.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Each message is delayed by a uniform time in `[0, max_delay]` (so reordered).
    pub max_delay: Duration,
}

struct Delayed {
    at: Instant,
    seq: u64,
    from: u64,
    msg: Message,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// splitmix64: the seeded generator behind every injected fault (and test schedules).
#[derive(Debug, Clone, Default)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number below `n` (> 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[derive(Default)]
struct State {
    nodes: HashMap<u64, Mailbox>,
    faults: Faults,
    /// Pairs (from, to) that cannot talk.
    cut: HashSet<(u64, u64)>,
    /// When each member was connected, and when the partition last changed.
    registered: HashMap<u64, Instant>,
    links_changed: Option<Instant>,
    rng: SplitMix,
    seq: u64,
    queue: BinaryHeap<Reverse<Delayed>>,
    delivered: u64,
    dropped: u64,
}

impl State {
    fn next(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct Inner {
    state: Mutex<State>,
    cv: Condvar,
    stopped: AtomicBool,
}

/// The simulated network. Dropping it stops its delivery thread.
#[derive(Clone)]
pub struct SimNet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimNet")
    }
}

impl SimNet {
    /// A network whose faults are drawn from `seed`.
    pub fn new(seed: u64) -> SimNet {
        let inner = Arc::new(Inner {
            state: Mutex::new(State { rng: SplitMix(seed), ..State::default() }),
            cv: Condvar::new(),
            stopped: AtomicBool::new(false),
        });
        let bg = inner.clone();
        std::thread::Builder::new()
            .name("simnet".into())
            .spawn(move || deliver_loop(&bg))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "simnet thread"));
        SimNet { inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The transport a member with `id` sends through.
    pub fn endpoint(&self, id: u64) -> Arc<dyn Transport> {
        Arc::new(Endpoint { net: self.clone(), from: id })
    }

    /// Connects a running replica (its mailbox receives from now on).
    pub fn register(&self, mb: Mailbox) {
        let mut st = self.lock();
        st.registered.insert(mb.id(), Instant::now());
        st.nodes.insert(mb.id(), mb);
    }

    /// Disconnects a member (it was killed): messages to and from it vanish.
    pub fn unregister(&self, id: u64) {
        let mut st = self.lock();
        st.registered.remove(&id);
        st.nodes.remove(&id);
    }

    /// Sets the faults.
    pub fn set_faults(&self, f: Faults) {
        self.lock().faults = f;
    }

    /// Splits the members into groups that cannot reach each other.
    pub fn partition(&self, groups: &[Vec<u64>]) {
        let mut st = self.lock();
        st.cut.clear();
        st.links_changed = Some(Instant::now());
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for x in a {
                        for y in b {
                            st.cut.insert((*x, *y));
                        }
                    }
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&self) {
        let mut st = self.lock();
        st.cut.clear();
        st.links_changed = Some(Instant::now());
    }

    /// Messages delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.delivered, st.dropped)
    }

    fn send(&self, from: u64, msgs: Vec<Message>) {
        let now = Instant::now();
        let mut st = self.lock();
        for m in msgs {
            let (dup, drop_p) = (st.faults.duplicate, st.faults.drop);
            // Raft delivers a client proposal at most once (raft thesis §6.3: exactly-once needs
            // client sessions); the gRPC transport never resends one, so neither does this.
            let dupable = m.get_msg_type() != MessageType::MsgPropose;
            let copies = if dupable && st.chance(dup) { 2 } else { 1 };
            if m.get_msg_type() != MessageType::MsgSnapshot && st.chance(drop_p) {
                st.dropped += 1;
                continue;
            }
            for _ in 0..copies {
                let max = st.faults.max_delay.as_micros() as u64;
                let delay = if max == 0 { 0 } else { st.next() % (max + 1) };
                st.seq += 1;
                let seq = st.seq;
                st.queue.push(Reverse(Delayed {
                    at: now + Duration::from_micros(delay),
                    seq,
                    from,
                    msg: m.clone(),
                }));
            }
        }
        drop(st);
        self.inner.cv.notify_one();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

fn deliver_loop(inner: &Arc<Inner>) {
    loop {
        // Stop once only this thread holds the network.
        if Arc::strong_count(inner) == 1 || inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let due = st.queue.peek().is_some_and(|d| d.0.at <= now);
        if !due {
            let wait = st
                .queue
                .peek()
                .map_or(Duration::from_millis(20), |d| d.0.at.saturating_duration_since(now))
                .min(Duration::from_millis(20));
            let _ = inner.cv.wait_timeout(st, wait);
            continue;
        }
        let Some(Reverse(d)) = st.queue.pop() else { continue };
        let to = d.msg.to;
        let cut = st.cut.contains(&(d.from, to));
        let (src, dst) = (st.nodes.get(&d.from).cloned(), st.nodes.get(&to).cloned());
        if cut || src.is_none() || dst.is_none() {
            st.dropped += 1;
            drop(st);
            if let Some(s) = src {
                if d.msg.get_msg_type() == MessageType::MsgSnapshot {
                    s.report_snapshot(to, false);
                }
                s.report_unreachable(to);
            }
            continue;
        }
        st.delivered += 1;
        drop(st);
        let (Some(src), Some(dst)) = (src, dst) else { continue };
        if d.msg.get_msg_type() == MessageType::MsgSnapshot {
            let meta = d.msg.get_snapshot().get_metadata();
            let (i, t) = (meta.index, meta.term);
            let part = dst.snaps().incoming_part(i, t);
            let ok = std::fs::copy(src.snaps().outgoing(i, t), &part)
                .and_then(|_| std::fs::rename(&part, dst.snaps().incoming(i, t)))
                .is_ok();
            if ok {
                dst.step(d.msg);
            }
            src.report_snapshot(to, ok);
        } else {
            dst.step(d.msg);
        }
    }
}

#[derive(Debug)]
struct Endpoint {
    net: SimNet,
    from: u64,
}

impl Transport for Endpoint {
    fn send(&self, msgs: Vec<Message>) {
        self.net.send(self.from, msgs);
    }

    fn set_peer(&self, _id: u64, _peer_urls: &[String]) {}

    fn remove_peer(&self, _id: u64) {}

    fn active_since(&self, id: u64) -> Option<Instant> {
        let st = self.net.lock();
        if st.cut.contains(&(self.from, id)) || st.cut.contains(&(id, self.from)) {
            return None;
        }
        let (a, b) = (st.registered.get(&self.from)?, st.registered.get(&id)?);
        Some((*a).max(*b).max(st.links_changed.unwrap_or(*a)))
    }
}
