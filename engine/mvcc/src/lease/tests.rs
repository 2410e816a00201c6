//! The lessor's tests: unit cases and a property test against a simple model.

use super::*;
use proptest::prelude::*;

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn primary(min_ttl: i64, now: Instant) -> Lessor {
    let mut l = Lessor::new(min_ttl);
    l.promote(Duration::ZERO, now);
    l
}

#[test]
fn grant_raises_to_min_ttl_and_refuses_bad_requests() {
    let t0 = Instant::now();
    let mut l = Lessor::new(5);
    assert_eq!(l.grant(1, 2, t0).unwrap().ttl, 5);
    assert_eq!(l.grant(2, -3, t0).unwrap().ttl, 5);
    assert_eq!(l.grant(3, 7, t0).unwrap().ttl, 7);
    assert_eq!(l.grant(4, MAX_LEASE_TTL + 1, t0), Err(LeaseError::TtlTooLarge));
    assert_eq!(l.grant(4, MAX_LEASE_TTL, t0).unwrap().ttl, MAX_LEASE_TTL);
    assert_eq!(l.grant(1, 10, t0), Err(LeaseError::Exists));
    assert_eq!(l.grant(NO_LEASE, 10, t0), Err(LeaseError::NotFound));
    assert_eq!(l.lookup(1).unwrap().deadline, None, "not primary: never expires");
    assert_eq!(l.leases(), vec![1, 2, 3, 4]);
    assert_eq!(l.len(), 4);
    assert_eq!(LeaseError::TtlTooLarge.to_string(), "too large lease TTL");
    assert_eq!(LeaseError::NotPrimary.to_string(), "not a primary lessor");
    l.check_invariants();
    // A primary lessor gives deadlines; the largest TTL does not overflow.
    l.promote(Duration::ZERO, t0);
    assert_eq!(l.lookup(3).unwrap().deadline, Some(t0 + s(7)));
    assert_eq!(l.lookup(4).unwrap().deadline, Some(t0 + s(MAX_LEASE_TTL as u64)));
    assert_eq!(l.grant(5, 1, t0).unwrap().deadline, Some(t0 + s(5)));
    l.check_invariants();
}

#[test]
fn expired_in_deadline_order_limited_and_retried() {
    let t0 = Instant::now();
    let mut l = primary(1, t0);
    for (id, ttl) in [(1, 30), (2, 10), (3, 20), (4, 10)] {
        l.grant(id, ttl, t0).unwrap();
    }
    assert!(l.expired(t0 + s(9), 10).is_empty());
    assert!(l.expired(t0 + s(25), 0).is_empty(), "limit 0: none");
    let now = t0 + s(25);
    assert_eq!(l.expired(now, 2), vec![2, 4], "earliest first, ties by id, at most 2");
    assert_eq!(l.expired(now, 2), vec![3], "the rest on the next call");
    assert!(l.expired(now + s(2), 10).is_empty(), "reported ones wait for the retry");
    l.revoke(4).unwrap();
    assert_eq!(l.expired(now + s(3), 10), vec![2, 3], "retried after 3 s unless revoked");
    assert_eq!(l.expired(now + s(5), 10), vec![1]);
    assert_eq!(l.renew(2, now), Err(LeaseError::Expired), "expired: not renewable");
    l.check_invariants();
    // Not primary: nothing expires.
    l.demote();
    assert!(l.expired(now + s(1000), 10).is_empty());
    l.check_invariants();
}

#[test]
fn leases_are_listed_soonest_deadline_first() {
    let t0 = Instant::now();
    let mut l = Lessor::new(1);
    l.grant(1, 600, t0).unwrap();
    l.grant(2, 30, t0).unwrap();
    l.grant(3, 60, t0).unwrap();
    assert_eq!(l.leases_by_deadline(), vec![1, 2, 3], "no deadlines off the leader: by id");
    l.promote(Duration::ZERO, t0);
    assert_eq!(l.leases_by_deadline(), vec![2, 3, 1]);
    l.renew(2, t0 + s(20)).unwrap();
    assert_eq!(l.leases_by_deadline(), vec![2, 3, 1], "2 now ends at 50 s, 3 at 60 s");
    l.renew(2, t0 + s(40)).unwrap();
    assert_eq!(l.leases_by_deadline(), vec![3, 2, 1], "2 now ends at 70 s");
}

#[test]
fn renew_resets_the_deadline_and_clears_the_checkpoint() {
    let t0 = Instant::now();
    let mut l = Lessor::new(1);
    l.grant(1, 600, t0).unwrap();
    assert_eq!(l.renew(1, t0), Err(LeaseError::NotPrimary));
    l.promote(Duration::ZERO, t0);
    assert_eq!(l.renew(9, t0), Err(LeaseError::NotFound));
    let rec = l.checkpoint(1, 200, t0 + s(400)).unwrap();
    assert_eq!(rec, LeaseRecord { id: 1, ttl: 600, remaining_ttl: 200 });
    assert_eq!(l.lookup(1).unwrap().deadline, Some(t0 + s(600)), "checkpoint keeps it");
    assert!(l.needs_checkpoint_clear(1));
    assert_eq!(l.renew(1, t0 + s(401)), Ok(600));
    let info = l.lookup(1).unwrap();
    assert_eq!((info.remaining_ttl, info.deadline), (0, Some(t0 + s(1001))));
    assert!(!l.needs_checkpoint_clear(1));
    assert!(l.expired(t0 + s(1000), 10).is_empty(), "the old deadline is gone");
    assert_eq!(l.expired(t0 + s(1001), 10), vec![1]);
    l.check_invariants();
    assert!(l.checkpoint(9, 5, t0).is_none(), "checkpoint of a missing lease is ignored");
}

#[test]
fn checkpoints_are_scheduled_for_long_leases() {
    let t0 = Instant::now();
    let mut l = primary(1, t0);
    l.grant(1, 600, t0).unwrap();
    l.grant(2, 300, t0).unwrap(); // not longer than the interval: never checkpointed
    l.grant(3, 900, t0).unwrap();
    assert!(l.due_checkpoints(t0 + s(299), 10).is_empty());
    assert_eq!(l.due_checkpoints(t0 + s(300), 1), vec![(1, 300)]);
    // Lease 3 was renewed half a second ago: remaining rounds up to its TTL, no checkpoint.
    l.renew(3, t0 + ms(299_500)).unwrap();
    assert!(l.due_checkpoints(t0 + s(300), 10).is_empty());
    // Applying the checkpoint reschedules only while the remaining TTL exceeds the interval.
    l.checkpoint(1, 300, t0 + s(300)).unwrap();
    assert!(l.due_checkpoints(t0 + s(10_000), 10).is_empty());
    l.grant(4, 1000, t0).unwrap();
    l.checkpoint(4, 700, t0 + s(300)).unwrap(); // replaces the schedule made by grant
    assert!(l.due_checkpoints(t0 + s(599), 10).is_empty());
    assert_eq!(l.due_checkpoints(t0 + ms(600_100), 10), vec![(4, 400)], "rounded up");
    assert!(l.due_checkpoints(t0 + s(10_000), 10).is_empty(), "one entry per lease");
    l.check_invariants();
    l.demote();
    l.check_invariants();
    assert!(l.due_checkpoints(t0 + s(10_000), 10).is_empty());
}

#[test]
fn promote_demote_promote_extends() {
    let t0 = Instant::now();
    let mut l = Lessor::new(1);
    l.grant(1, 10, t0).unwrap();
    l.grant(2, 10, t0).unwrap();
    l.checkpoint(2, 4, t0).unwrap();
    l.promote(s(5), t0);
    assert!(l.is_primary());
    assert_eq!(l.lookup(1).unwrap().deadline, Some(t0 + s(15)));
    assert_eq!(l.lookup(2).unwrap().deadline, Some(t0 + s(9)), "checkpointed remaining");
    l.check_invariants();
    l.demote();
    assert!(!l.is_primary());
    assert_eq!(l.lookup(1).unwrap().deadline, None);
    assert!(l.expired(t0 + s(100), 10).is_empty());
    l.check_invariants();
    let t1 = t0 + s(100);
    l.promote(s(2), t1);
    assert_eq!(l.lookup(1).unwrap().deadline, Some(t1 + s(12)));
    assert!(l.expired(t1 + s(5), 10).is_empty(), "the new leader extends every lease");
    assert_eq!(l.expired(t1 + s(12), 10), vec![2, 1]);
    l.check_invariants();
}

#[test]
fn promote_spreads_a_pile_up_of_expiries() {
    let t0 = Instant::now();
    let cfg = LessorConfig { revoke_rate: 4, ..LessorConfig::new(1) };
    let mut l = Lessor::with_config(cfg);
    for id in 1..=8 {
        l.grant(id, 10, t0).unwrap();
    }
    l.promote(s(1), t0);
    // 3 per second (three quarters of 4): the 4th lease gets 4/3 s, the 5th 5/3 s, ...
    let third = Duration::from_nanos(333_333_333);
    let want = [
        s(11),
        s(11),
        s(11),
        s(12) + third,
        s(12) + third * 2,
        s(13),
        s(13) + third,
        s(13) + third * 2,
    ];
    for (id, want) in (1..=8).zip(want) {
        assert_eq!(l.lookup(id).unwrap().deadline, Some(t0 + want), "lease {id}");
    }
    assert_eq!(l.expired(t0 + s(12), 100).len(), 3);
    l.check_invariants();
    // Fewer leases than the rate: no spreading.
    l.revoke(4).unwrap();
    l.revoke(8).unwrap();
    l.revoke(7).unwrap();
    l.revoke(6).unwrap();
    l.revoke(5).unwrap();
    l.promote(Duration::ZERO, t0);
    assert!((1..=3).all(|id| l.lookup(id).unwrap().deadline == Some(t0 + s(10))));
}

#[test]
fn revoke_returns_sorted_keys_and_attach_moves_keys() {
    let t0 = Instant::now();
    let mut l = Lessor::new(1);
    l.grant(1, 10, t0).unwrap();
    l.grant(2, 10, t0).unwrap();
    for k in [&b"c"[..], b"a", b"b"] {
        l.attach(1, k).unwrap();
    }
    l.attach(2, b"d").unwrap();
    assert_eq!(l.attach(3, b"x"), Err(LeaseError::NotFound));
    assert_eq!(l.detach(3, b"x"), Err(LeaseError::NotFound));
    l.attach(2, b"b").unwrap(); // moved
    l.detach(1, b"d").unwrap(); // not attached to 1: no effect
    assert_eq!(l.lease_of(b"b"), Some(2));
    assert_eq!(l.lease_of(b"d"), Some(2));
    l.detach(1, b"c").unwrap();
    assert_eq!(l.lease_of(b"c"), None);
    l.check_invariants();
    assert_eq!(l.revoke(1), Ok(vec![b"a".to_vec()]));
    assert_eq!(l.revoke(2), Ok(vec![b"b".to_vec(), b"d".to_vec()]));
    assert_eq!(l.revoke(2), Err(LeaseError::NotFound));
    assert!(l.is_empty() && l.lease_of(b"b").is_none());
    l.check_invariants();
}

#[test]
fn time_to_live_truncates_like_etcd() {
    let t0 = Instant::now();
    let mut l = Lessor::new(1);
    l.grant(1, 10, t0).unwrap();
    assert_eq!(l.time_to_live(1, t0), Err(LeaseError::NotPrimary));
    l.promote(Duration::ZERO, t0);
    l.attach(1, b"k").unwrap();
    let ttl = |l: &Lessor, at| l.time_to_live(1, at).unwrap().ttl;
    assert_eq!(ttl(&l, t0), 10);
    assert_eq!(ttl(&l, t0 + ms(500)), 9);
    assert_eq!(ttl(&l, t0 + ms(9_999)), 0);
    assert_eq!(ttl(&l, t0 + ms(10_500)), 0, "-0.5 s truncates to 0");
    assert_eq!(ttl(&l, t0 + ms(11_500)), -1);
    let full = l.time_to_live(1, t0).unwrap();
    assert_eq!((full.granted_ttl, full.keys), (10, vec![b"k".to_vec()]));
    assert_eq!(l.time_to_live(2, t0), Err(LeaseError::NotFound));
}

#[test]
fn restore_brings_leases_back_without_keys() {
    let t0 = Instant::now();
    let mut l = primary(5, t0);
    l.grant(9, 100, t0).unwrap();
    l.attach(9, b"gone").unwrap();
    let records = [
        LeaseRecord { id: 1, ttl: 60, remaining_ttl: 0 },
        LeaseRecord { id: 2, ttl: 2, remaining_ttl: 0 },
        LeaseRecord { id: 3, ttl: 600, remaining_ttl: 42 },
    ];
    l.restore(records);
    assert!(!l.is_primary());
    assert_eq!(l.leases(), vec![1, 2, 3]);
    assert_eq!(l.lookup(2).unwrap().ttl, 5, "raised to the minimum");
    assert_eq!(l.lease_of(b"gone"), None);
    l.attach(1, b"k").unwrap();
    l.check_invariants();
    l.promote(Duration::ZERO, t0);
    assert_eq!(l.lookup(3).unwrap().deadline, Some(t0 + s(42)));
    assert_eq!(l.lookup(1).unwrap().record(), records[0]);
    l.check_invariants();
}

#[test]
fn queues_stay_bounded_under_renewals_and_promotions() {
    let t0 = Instant::now();
    let mut l = primary(1, t0);
    l.grant(1, 1000, t0).unwrap();
    l.grant(2, 1000, t0).unwrap();
    for i in 0..10_000 {
        l.renew(1, t0 + ms(i)).unwrap();
        if i % 10 == 0 {
            l.promote(Duration::ZERO, t0 + ms(i));
        }
    }
    assert!(l.expiry.len() <= 6, "expiry queue holds {}", l.expiry.len());
    assert!(l.checkpoints.len() <= 6, "checkpoint queue holds {}", l.checkpoints.len());
    l.check_invariants();
    l.revoke(1).unwrap();
    l.revoke(2).unwrap();
    assert!(l.expiry.is_empty() && l.checkpoints.is_empty());
}

#[test]
fn records_encode_and_refuse_damage() {
    let r = LeaseRecord { id: 0x0102, ttl: 60, remaining_ttl: 7 };
    let b = r.encode();
    assert_eq!(b.len(), LEASE_RECORD_BYTES);
    assert_eq!(LeaseRecord::decode(&b), Ok(r));
    assert_eq!(LeaseRecord::decode(&[]), Err(RecordError::Empty));
    assert_eq!(LeaseRecord::decode(&b[..24]), Err(RecordError::Length { expected: 25, got: 24 }));
    let mut bad = b.clone();
    bad[0] = 2;
    assert_eq!(LeaseRecord::decode(&bad), Err(RecordError::Version(2)));
    let zero = LeaseRecord { id: 0, ..r }.encode();
    assert_eq!(LeaseRecord::decode(&zero), Err(RecordError::ZeroId));
    assert_eq!(record_key(0x0102), [0, 0, 0, 0, 0, 0, 1, 2]);
    assert!(record_key(1) < record_key(256), "big-endian keys sort by id");
    assert_eq!(record_id(&record_key(-5)), Ok(-5));
    assert_eq!(record_id(b"short"), Err(RecordError::Key(5)));
}

proptest! {
    #[test]
    fn record_round_trips(id in any::<i64>().prop_filter("nonzero", |&i| i != 0),
                          ttl in any::<i64>(), remaining_ttl in any::<i64>()) {
        let r = LeaseRecord { id, ttl, remaining_ttl };
        prop_assert_eq!(LeaseRecord::decode(&r.encode()), Ok(r));
        prop_assert_eq!(record_id(&record_key(id)), Ok(id));
    }

    #[test]
    fn record_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = LeaseRecord::decode(&b);
        let _ = record_id(&b);
    }
}

// ---- Model test ----

const MODEL_MIN_TTL: i64 = 2;
const MODEL_INTERVAL: u64 = 4;
const MODEL_RETRY: u64 = 3;

#[derive(Debug, Clone)]
struct MLease {
    ttl: i64,
    remaining: i64,
    deadline: Option<Instant>,
    /// When `expired` may report it next.
    report_at: Option<Instant>,
    checkpoint_at: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
}

impl MLease {
    fn refresh_ttl(&self) -> i64 {
        if self.remaining > 0 {
            self.remaining
        } else {
            self.ttl
        }
    }
}

/// The obvious implementation: scan everything, no queues.
#[derive(Debug, Default)]
struct Model {
    primary: bool,
    leases: BTreeMap<LeaseId, MLease>,
}

impl Model {
    fn schedule(l: &mut MLease, now: Instant) {
        if l.refresh_ttl() > MODEL_INTERVAL as i64 {
            l.checkpoint_at = Some(now + s(MODEL_INTERVAL));
        }
    }

    fn grant(&mut self, id: LeaseId, ttl: i64, now: Instant) -> Result<i64, LeaseError> {
        if id == 0 {
            return Err(LeaseError::NotFound);
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let ttl = ttl.max(MODEL_MIN_TTL);
        let mut l = MLease {
            ttl,
            remaining: 0,
            deadline: None,
            report_at: None,
            checkpoint_at: None,
            keys: BTreeSet::new(),
        };
        if self.primary {
            l.deadline = Some(now + s(ttl as u64));
            l.report_at = l.deadline;
            Self::schedule(&mut l, now);
        }
        self.leases.insert(id, l);
        Ok(ttl)
    }

    fn revoke(&mut self, id: LeaseId) -> Result<Vec<Vec<u8>>, LeaseError> {
        let l = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        Ok(l.keys.into_iter().collect())
    }

    fn attach(&mut self, id: LeaseId, key: &[u8]) -> Result<(), LeaseError> {
        if !self.leases.contains_key(&id) {
            return Err(LeaseError::NotFound);
        }
        for l in self.leases.values_mut() {
            l.keys.remove(key);
        }
        self.leases.get_mut(&id).unwrap().keys.insert(key.to_vec());
        Ok(())
    }

    fn detach(&mut self, id: LeaseId, key: &[u8]) -> Result<(), LeaseError> {
        self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?.keys.remove(key);
        Ok(())
    }

    fn renew(&mut self, id: LeaseId, now: Instant) -> Result<i64, LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let l = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if l.deadline.unwrap() <= now {
            return Err(LeaseError::Expired);
        }
        l.remaining = 0;
        l.deadline = Some(now + s(l.ttl as u64));
        l.report_at = l.deadline;
        Ok(l.ttl)
    }

    fn expired(&mut self, now: Instant, limit: usize) -> Vec<LeaseId> {
        let mut due: Vec<(Instant, LeaseId)> = self
            .leases
            .iter()
            .filter_map(|(&id, l)| l.report_at.filter(|&t| t <= now).map(|t| (t, id)))
            .collect();
        due.sort();
        due.truncate(limit);
        for (_, id) in &due {
            self.leases.get_mut(id).unwrap().report_at = Some(now + s(MODEL_RETRY));
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    fn checkpoint(&mut self, id: LeaseId, rem: i64, now: Instant) -> Option<LeaseRecord> {
        let primary = self.primary;
        let l = self.leases.get_mut(&id)?;
        l.remaining = rem;
        if primary {
            Self::schedule(l, now);
        }
        Some(LeaseRecord { id, ttl: l.ttl, remaining_ttl: rem })
    }

    fn due_checkpoints(&mut self, now: Instant, limit: usize) -> Vec<(LeaseId, i64)> {
        let mut due: Vec<(Instant, LeaseId)> = self
            .leases
            .iter()
            .filter_map(|(&id, l)| l.checkpoint_at.filter(|&t| t <= now).map(|t| (t, id)))
            .collect();
        due.sort();
        let mut out = Vec::new();
        for (_, id) in due {
            if out.len() >= limit {
                break;
            }
            let l = self.leases.get_mut(&id).unwrap();
            l.checkpoint_at = None;
            let d = l.deadline.unwrap();
            if d <= now {
                continue;
            }
            let rem = (d - now).as_nanos().div_ceil(1_000_000_000) as i64;
            if rem < l.ttl {
                out.push((id, rem));
            }
        }
        out
    }

    fn promote(&mut self, extend: Duration, now: Instant) {
        self.primary = true;
        for l in self.leases.values_mut() {
            l.deadline = Some(now + extend + s(l.refresh_ttl() as u64));
            l.report_at = l.deadline;
            Self::schedule(l, now);
        }
    }

    fn demote(&mut self) {
        self.primary = false;
        for l in self.leases.values_mut() {
            (l.deadline, l.report_at, l.checkpoint_at) = (None, None, None);
        }
    }

    fn time_to_live(&self, id: LeaseId, now: Instant) -> Result<(i64, i64), LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let l = self.leases.get(&id).ok_or(LeaseError::NotFound)?;
        let d = l.deadline.unwrap();
        let left =
            if d >= now { (d - now).as_secs() as i64 } else { -((now - d).as_secs() as i64) };
        Ok((l.ttl, left))
    }
}

#[derive(Debug, Clone)]
enum Op {
    Grant(LeaseId, i64),
    Revoke(LeaseId),
    Attach(LeaseId, u8),
    Detach(LeaseId, u8),
    Renew(LeaseId),
    Advance(u64),
    Expired(usize),
    Checkpoint(LeaseId, i64),
    Due(usize),
    Promote(u64),
    Demote,
    TimeToLive(LeaseId),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..6i64;
    prop_oneof![
        3 => (id.clone(), -1..12i64).prop_map(|(i, t)| Op::Grant(i, t)),
        1 => id.clone().prop_map(Op::Revoke),
        2 => (id.clone(), 0..4u8).prop_map(|(i, k)| Op::Attach(i, k)),
        1 => (id.clone(), 0..4u8).prop_map(|(i, k)| Op::Detach(i, k)),
        2 => id.clone().prop_map(Op::Renew),
        3 => (0..4000u64).prop_map(Op::Advance),
        2 => (0..4usize).prop_map(Op::Expired),
        1 => (id.clone(), -1..12i64).prop_map(|(i, r)| Op::Checkpoint(i, r)),
        1 => (0..4usize).prop_map(Op::Due),
        1 => (0..3000u64).prop_map(Op::Promote),
        1 => Just(Op::Demote),
        1 => id.prop_map(Op::TimeToLive),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lessor_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let cfg = LessorConfig {
            min_ttl: MODEL_MIN_TTL,
            revoke_rate: DEFAULT_LEASE_REVOKE_RATE, // never reached: no spreading
            checkpoint_interval: s(MODEL_INTERVAL),
            expired_retry_interval: s(MODEL_RETRY),
        };
        let mut l = Lessor::with_config(cfg);
        let mut m = Model::default();
        let mut now = Instant::now();
        for op in ops {
            match op {
                Op::Grant(id, ttl) => {
                    prop_assert_eq!(l.grant(id, ttl, now).map(|i| i.ttl), m.grant(id, ttl, now));
                }
                Op::Revoke(id) => prop_assert_eq!(l.revoke(id), m.revoke(id)),
                Op::Attach(id, k) => prop_assert_eq!(l.attach(id, &[k]), m.attach(id, &[k])),
                Op::Detach(id, k) => prop_assert_eq!(l.detach(id, &[k]), m.detach(id, &[k])),
                Op::Renew(id) => prop_assert_eq!(l.renew(id, now), m.renew(id, now)),
                Op::Advance(d) => now += ms(d),
                Op::Expired(n) => prop_assert_eq!(l.expired(now, n), m.expired(now, n)),
                Op::Checkpoint(id, r) => {
                    prop_assert_eq!(l.checkpoint(id, r, now), m.checkpoint(id, r, now));
                }
                Op::Due(n) => {
                    prop_assert_eq!(l.due_checkpoints(now, n), m.due_checkpoints(now, n));
                }
                Op::Promote(e) => {
                    l.promote(ms(e), now);
                    m.promote(ms(e), now);
                }
                Op::Demote => {
                    l.demote();
                    m.demote();
                }
                Op::TimeToLive(id) => {
                    let got = l.time_to_live(id, now).map(|t| (t.granted_ttl, t.ttl));
                    prop_assert_eq!(got, m.time_to_live(id, now));
                }
            }
            l.check_invariants();
            prop_assert_eq!(l.is_primary(), m.primary);
            prop_assert_eq!(l.leases(), m.leases.keys().copied().collect::<Vec<_>>());
            for (&id, ml) in &m.leases {
                let info = l.lookup(id).unwrap();
                prop_assert_eq!((info.ttl, info.remaining_ttl), (ml.ttl, ml.remaining));
                prop_assert_eq!(info.deadline, ml.deadline);
                prop_assert_eq!(l.needs_checkpoint_clear(id), ml.remaining > 0);
            }
            for k in 0..4u8 {
                let owner = m.leases.iter().find(|(_, ml)| ml.keys.contains(&[k][..]));
                prop_assert_eq!(l.lease_of(&[k]), owner.map(|(&id, _)| id));
            }
        }
    }
}
