//! Leases (etcd's lessor): the in-memory state machine that grants, renews, expires, checkpoints
//! and revokes leases. It knows nothing of storage or raft, and never reads the clock: every
//! method that depends on time takes `now`, so all decisions are deterministic.
//!
//! **Roles.** Every member applies the same replicated operations: [`Lessor::grant`],
//! [`Lessor::revoke`], [`Lessor::attach`], [`Lessor::detach`], [`Lessor::checkpoint`]. Only the
//! primary lessor (the raft leader's) tracks deadlines: it renews leases, reports the expired ones
//! (the caller proposes their revocation) and the checkpoints due (the caller proposes them). A
//! lessor that is not primary holds no deadlines, so its leases never expire;
//! [`Lessor::promote`] gives every lease a deadline, [`Lessor::demote`] drops them.
//!
//! **The caller's duties.**
//! - Every [`LESSOR_TICK`] on the primary: propose a revoke for each id of
//!   `expired(now, revoke_rate / 2)`, as etcd's lessor loop does, and propose the checkpoints
//!   `due_checkpoints(now, MAX_LEASE_CHECKPOINT_BATCH_SIZE)` returns. (etcd proposes them as
//!   one entry, repeating up to [`LEASE_CHECKPOINT_RATE`] / 2 batches; rusted's server
//!   proposes one checkpoint per entry, since the store records one per index.)
//! - Before [`Lessor::renew`]: when [`Lessor::needs_checkpoint_clear`] says so, propose
//!   checkpoint(id, 0) through raft and wait until it is applied, so no member keeps a stale
//!   remaining TTL that a later promotion would use.
//! - When `renew` answers [`LeaseError::Expired`]: wait until the lease is revoked (then answer
//!   "lease not found") or the lessor is demoted (then "not a primary lessor"), as etcd's renew
//!   blocks on exactly those two events.
//! - Persist [`LeaseRecord`]s: on grant ([`LeaseInfo::record`]), on checkpoint (the returned
//!   record), and delete the record in the same write transaction that deletes the keys
//!   [`Lessor::revoke`] returns. On restart, [`Lessor::restore`] the records, then attach each
//!   leased key while rebuilding the key index.
//!
//! **Stored record**: [`record`] (its byte layout, format version 1).
//!
//! **Invariants** (checked by `check_invariants` in the tests).
//! - Lease ids are nonzero, and every lease's TTL is at least the minimum TTL (grant and restore
//!   raise shorter ones).
//! - A key is attached to at most one lease; the key → lease map and the leases' key sets mirror
//!   each other exactly.
//! - Primary: every lease has a deadline and exactly one live entry in the expiry queue, due at
//!   its deadline or, after [`Lessor::expired`] returned it, at a later retry time. Not primary:
//!   no deadlines and both queues empty.
//! - A lease has at most one live entry in the checkpoint queue.
//! - Queue entries of revoked, renewed or rescheduled leases are stale and skipped (lazy
//!   deletion); a queue is rebuilt whenever its stale entries outnumber twice its live ones, so
//!   memory stays proportional to the number of leases however often they are renewed.
//!
//! **Where this differs from etcd** (behaviour only; no etcd code is used here).
//! - `renew` of a lease past its deadline answers [`LeaseError::Expired`] at once instead of
//!   blocking (see the caller's duties above).
//! - A key attached to a second lease is moved (detached from the first); etcd's callers always
//!   detach first, and etcd would otherwise leave the key in both leases.
//! - The checkpoint queue keeps one entry per lease (a reschedule replaces the pending one),
//!   where etcd may queue duplicates and propose the same lease twice.
//! - `restore` always leaves the lessor not primary (etcd's recovery leaves a primary lessor
//!   with leases that never expire until the next promotion).
//! - Remaining times are computed with integer nanoseconds, where etcd uses floats.
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// A lease id. The caller generates them; 0 means "no lease".
pub type LeaseId = i64;

/// The id meaning "no lease" (etcd's NoLease).
pub const NO_LEASE: LeaseId = 0;
/// The largest TTL a lease can be granted, in seconds (etcd's MaxLeaseTTL).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// Leases revoked per second at most, by default (etcd's defaultLeaseRevokeRate).
pub const DEFAULT_LEASE_REVOKE_RATE: usize = 1000;
/// Lease checkpoints proposed per second at most (etcd's leaseCheckpointRate).
pub const LEASE_CHECKPOINT_RATE: usize = 1000;
/// How often a long lease's remaining TTL is checkpointed, by default (etcd's
/// defaultLeaseCheckpointInterval).
pub const DEFAULT_LEASE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Checkpoints batched into one proposal at most (etcd's maxLeaseCheckpointBatchSize).
pub const MAX_LEASE_CHECKPOINT_BATCH_SIZE: usize = 1000;
/// How long an expired lease that was reported but not yet revoked waits before it is reported
/// again, by default (etcd's defaultExpiredleaseRetryInterval).
pub const DEFAULT_EXPIRED_LEASE_RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// How often the primary looks for expired leases and due checkpoints (etcd's lessor loop).
pub const LESSOR_TICK: Duration = Duration::from_millis(500);

const NANOS_PER_SEC: i128 = 1_000_000_000;

pub mod record;
pub use record::{
    record_id, record_key, LeaseRecord, RecordError, LEASE_RECORD_BYTES, LEASE_RECORD_FORMAT,
};

/// Lease refusals; the messages are etcd's lease package errors where etcd has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No lease with that id (also: a grant of id 0, as etcd).
    #[error("lease not found")]
    NotFound,
    /// A grant of an id that is already in use.
    #[error("lease already exists")]
    Exists,
    /// A grant with a TTL above [`MAX_LEASE_TTL`].
    #[error("too large lease TTL")]
    TtlTooLarge,
    /// Renew or time-to-live asked of a lessor that is not primary (forward to the leader).
    #[error("not a primary lessor")]
    NotPrimary,
    /// Renew of a lease past its deadline whose revocation is pending. etcd has no error for
    /// this (its renew waits); the caller waits for the revoke or a demotion.
    #[error("lease expired, revocation pending")]
    Expired,
}

/// The lessor's tunables; [`LessorConfig::new`] gives etcd's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LessorConfig {
    /// Shortest TTL granted, seconds; shorter requests are raised to it.
    pub min_ttl: i64,
    /// Leases revoked per second at most; `promote` spreads deadlines to respect it.
    pub revoke_rate: usize,
    /// How often the remaining TTL of a lease longer than this is checkpointed.
    pub checkpoint_interval: Duration,
    /// How long an expired lease reported by `expired` waits before it is reported again.
    pub expired_retry_interval: Duration,
}

impl LessorConfig {
    /// etcd's defaults with the given minimum TTL.
    pub fn new(min_ttl: i64) -> Self {
        LessorConfig {
            min_ttl,
            revoke_rate: DEFAULT_LEASE_REVOKE_RATE,
            checkpoint_interval: DEFAULT_LEASE_CHECKPOINT_INTERVAL,
            expired_retry_interval: DEFAULT_EXPIRED_LEASE_RETRY_INTERVAL,
        }
    }
}

/// A lease as [`Lessor::lookup`] and [`Lessor::grant`] report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease.
    pub id: LeaseId,
    /// Granted TTL, seconds (after raising to the minimum).
    pub ttl: i64,
    /// Last checkpointed remaining TTL, seconds; 0 when unset.
    pub remaining_ttl: i64,
    /// When it expires; `None` when the lessor is not primary (never).
    pub deadline: Option<Instant>,
}

impl LeaseInfo {
    /// What the store persists of it.
    pub fn record(&self) -> LeaseRecord {
        LeaseRecord { id: self.id, ttl: self.ttl, remaining_ttl: self.remaining_ttl }
    }
}

/// The answer to a time-to-live request (etcd's LeaseTimeToLiveResponse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// The lease.
    pub id: LeaseId,
    /// Granted TTL, seconds.
    pub granted_ttl: i64,
    /// Seconds left, truncated toward zero (as etcd); 0 or negative once past the deadline.
    pub ttl: i64,
    /// Attached keys, sorted.
    pub keys: Vec<Vec<u8>>,
}

/// One lease's state.
#[derive(Debug, Clone)]
struct Lease {
    ttl: i64,
    remaining_ttl: i64,
    /// `None`: never expires (not primary).
    deadline: Option<Instant>,
    /// Sequence number of its live expiry queue entry.
    expiry_entry: Option<u64>,
    /// Sequence number of its live checkpoint queue entry.
    checkpoint_entry: Option<u64>,
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    /// The TTL a refresh starts from: the checkpointed remaining TTL when set, else the TTL.
    fn refresh_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    fn info(&self, id: LeaseId) -> LeaseInfo {
        LeaseInfo { id, ttl: self.ttl, remaining_ttl: self.remaining_ttl, deadline: self.deadline }
    }
}

/// A min-queue entry: (due time, lease, sequence number); earliest first, then lowest id.
type Entry = Reverse<(Instant, LeaseId, u64)>;

/// The lease state machine; see the module documentation.
#[derive(Debug, Clone)]
pub struct Lessor {
    cfg: LessorConfig,
    primary: bool,
    leases: BTreeMap<LeaseId, Lease>,
    key_lease: HashMap<Vec<u8>, LeaseId>,
    expiry: BinaryHeap<Entry>,
    checkpoints: BinaryHeap<Entry>,
    /// Leases with a live checkpoint entry.
    scheduled: usize,
    next_seq: u64,
}

/// `now` shifted by `ns` nanoseconds (either way), saturating at what `Instant` can hold.
fn shift(now: Instant, ns: i128) -> Instant {
    let mag = ns.unsigned_abs();
    let nanos_per_sec = NANOS_PER_SEC.unsigned_abs();
    let secs = u64::try_from(mag / nanos_per_sec).unwrap_or(u64::MAX);
    let sub = u32::try_from(mag % nanos_per_sec).unwrap_or(0);
    let mut d = Duration::new(secs, sub);
    loop {
        let t = if ns >= 0 { now.checked_add(d) } else { now.checked_sub(d) };
        if let Some(t) = t {
            return t;
        }
        d /= 2; // reaches zero, which always succeeds
    }
}

/// Signed nanoseconds from `now` to `t`.
fn until(t: Instant, now: Instant) -> i128 {
    let ns = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    if t >= now {
        ns(t - now)
    } else {
        -ns(now - t)
    }
}

fn secs_ns(secs: i64) -> i128 {
    i128::from(secs) * NANOS_PER_SEC
}

fn clamp_i64(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

impl Lessor {
    /// An empty lessor, not primary, with etcd's defaults and minimum TTL `min_ttl` seconds.
    pub fn new(min_ttl: i64) -> Self {
        Self::with_config(LessorConfig::new(min_ttl))
    }

    /// An empty lessor, not primary.
    pub fn with_config(cfg: LessorConfig) -> Self {
        Lessor {
            cfg,
            primary: false,
            leases: BTreeMap::new(),
            key_lease: HashMap::new(),
            expiry: BinaryHeap::new(),
            checkpoints: BinaryHeap::new(),
            scheduled: 0,
            next_seq: 0,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &LessorConfig {
        &self.cfg
    }

    /// Does this lessor track deadlines (is it the leader's)?
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// No leases?
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// All lease ids, ascending.
    pub fn leases(&self) -> Vec<LeaseId> {
        self.leases.keys().copied().collect()
    }

    /// All lease ids, soonest deadline first (leases without one last, by id), as etcd lists
    /// them.
    pub fn leases_by_deadline(&self) -> Vec<LeaseId> {
        let mut v: Vec<(Option<Instant>, LeaseId)> =
            self.leases.iter().map(|(&id, l)| (l.deadline, id)).collect();
        v.sort_unstable_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// The lease `id`, if it exists.
    pub fn lookup(&self, id: LeaseId) -> Option<LeaseInfo> {
        self.leases.get(&id).map(|l| l.info(id))
    }

    /// The keys attached to lease `id` (on every member, primary or not), if it exists.
    pub fn keys(&self, id: LeaseId) -> Option<Vec<Vec<u8>>> {
        self.leases.get(&id).map(|l| l.keys.iter().cloned().collect())
    }

    /// The lease `key` is attached to (etcd's GetLease).
    pub fn lease_of(&self, key: &[u8]) -> Option<LeaseId> {
        self.key_lease.get(key).copied()
    }

    /// Grants lease `id` (nonzero; generated by the caller) of `ttl` seconds, raised to the
    /// minimum TTL. When primary it expires `ttl` seconds after `now`, otherwise never (until a
    /// promotion).
    pub fn grant(&mut self, id: LeaseId, ttl: i64, now: Instant) -> Result<LeaseInfo, LeaseError> {
        if id == NO_LEASE {
            return Err(LeaseError::NotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let lease = Lease {
            ttl: ttl.max(self.cfg.min_ttl),
            remaining_ttl: 0,
            deadline: None,
            expiry_entry: None,
            checkpoint_entry: None,
            keys: BTreeSet::new(),
        };
        self.leases.insert(id, lease);
        if self.primary {
            self.refresh(id, 0, now);
        }
        self.settle();
        self.lookup(id).ok_or(LeaseError::NotFound)
    }

    /// Revokes lease `id`; returns its keys, sorted, for the caller to delete in one revision
    /// (together with the lease's record).
    pub fn revoke(&mut self, id: LeaseId) -> Result<Vec<Vec<u8>>, LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        if lease.checkpoint_entry.is_some() {
            self.scheduled -= 1;
        }
        for k in &lease.keys {
            let owner = self.key_lease.remove(k);
            debug_assert_eq!(owner, Some(id), "key map mirrors the lease's keys");
        }
        self.settle();
        Ok(lease.keys.into_iter().collect())
    }

    /// Attaches `key` to lease `id` (moving it off any other lease).
    pub fn attach(&mut self, id: LeaseId, key: &[u8]) -> Result<(), LeaseError> {
        if !self.leases.contains_key(&id) {
            return Err(LeaseError::NotFound);
        }
        if let Some(old) = self.key_lease.insert(key.to_vec(), id) {
            if old != id {
                if let Some(l) = self.leases.get_mut(&old) {
                    l.keys.remove(key);
                }
            }
        }
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
        Ok(())
    }

    /// Detaches `key` from lease `id` (nothing happens when it is not attached to it).
    pub fn detach(&mut self, id: LeaseId, key: &[u8]) -> Result<(), LeaseError> {
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if lease.keys.remove(key) {
            let owner = self.key_lease.remove(key);
            debug_assert_eq!(owner, Some(id), "key map mirrors the lease's keys");
        }
        Ok(())
    }

    /// Must checkpoint(id, 0) go through raft before `renew(id)`? True when the lease has a
    /// checkpointed remaining TTL (etcd clears it on renew so a later promotion uses the TTL).
    pub fn needs_checkpoint_clear(&self, id: LeaseId) -> bool {
        self.leases.get(&id).is_some_and(|l| l.remaining_ttl > 0)
    }

    /// Renews lease `id` (primary only): clears its checkpointed remaining TTL and moves its
    /// deadline to `now` + TTL; returns the TTL. A lease already past its deadline is not
    /// renewed: [`LeaseError::Expired`].
    pub fn renew(&mut self, id: LeaseId, now: Instant) -> Result<i64, LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if lease.deadline.is_some_and(|d| d <= now) {
            return Err(LeaseError::Expired);
        }
        lease.remaining_ttl = 0;
        let ttl = lease.ttl;
        let deadline = shift(now, secs_ns(ttl));
        self.set_deadline(id, deadline);
        self.settle();
        Ok(ttl)
    }

    /// Granted TTL, seconds left and keys of lease `id` (primary only, as etcd answers it only
    /// on the leader).
    pub fn time_to_live(&self, id: LeaseId, now: Instant) -> Result<TimeToLive, LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = self.leases.get(&id).ok_or(LeaseError::NotFound)?;
        let left = lease.deadline.map_or(i128::MAX, |d| until(d, now) / NANOS_PER_SEC);
        Ok(TimeToLive {
            id,
            granted_ttl: lease.ttl,
            ttl: clamp_i64(left),
            keys: lease.keys.iter().cloned().collect(),
        })
    }

    /// Leases past their deadline, earliest first, at most `limit` of them (0: none); empty
    /// when not primary. Each one returned is not returned again before `now` + the retry
    /// interval unless it is revoked meanwhile (then never).
    pub fn expired(&mut self, now: Instant, limit: usize) -> Vec<LeaseId> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(&Reverse((at, id, seq))) = self.expiry.peek() else { break };
            let Some(lease) = self.leases.get(&id).filter(|l| l.expiry_entry == Some(seq)) else {
                self.expiry.pop(); // stale
                continue;
            };
            if at > now {
                break;
            }
            self.expiry.pop();
            let deadline = lease.deadline;
            match deadline {
                Some(d) if d <= now => out.push(id),
                Some(d) => {
                    // Cannot happen (entries are never due before the deadline); requeue.
                    debug_assert!(false, "expiry entry due before its lease's deadline");
                    self.push_expiry(id, d);
                }
                None => debug_assert!(false, "a live expiry entry of a lease without deadline"),
            }
        }
        // Requeued after the loop so a zero retry interval cannot return a lease twice.
        let retry_ns = i128::try_from(self.cfg.expired_retry_interval.as_nanos());
        let retry = shift(now, retry_ns.unwrap_or(i128::MAX));
        for &id in &out {
            self.push_expiry(id, retry);
        }
        self.settle();
        out
    }

    /// Applies a checkpoint that came through raft: records `remaining_ttl` (0 clears it), which
    /// the next promotion starts from. As in etcd the deadline is left alone; when primary, the
    /// next checkpoint is scheduled if the lease still needs one. Returns the record to persist,
    /// or `None` when the lease does not exist (ignored, as etcd).
    pub fn checkpoint(
        &mut self,
        id: LeaseId,
        remaining_ttl: i64,
        now: Instant,
    ) -> Option<LeaseRecord> {
        let lease = self.leases.get_mut(&id)?;
        lease.remaining_ttl = remaining_ttl;
        let record = lease.info(id).record();
        if self.primary {
            self.schedule_checkpoint(id, now);
        }
        self.settle();
        Some(record)
    }

    /// Checkpoints the primary should propose now, at most `limit` (0: none): leases whose
    /// checkpoint is due, with their remaining TTL in seconds rounded up. As etcd, a lease
    /// already past its deadline, or with a remaining TTL not below its TTL (just renewed), is
    /// dropped from the schedule without a checkpoint; the next one is scheduled when the
    /// proposed checkpoint is applied.
    pub fn due_checkpoints(&mut self, now: Instant, limit: usize) -> Vec<(LeaseId, i64)> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(&Reverse((at, id, seq))) = self.checkpoints.peek() else { break };
            let Some(lease) = self.leases.get_mut(&id).filter(|l| l.checkpoint_entry == Some(seq))
            else {
                self.checkpoints.pop(); // stale
                continue;
            };
            if at > now {
                break;
            }
            self.checkpoints.pop();
            lease.checkpoint_entry = None;
            self.scheduled -= 1;
            let Some(deadline) = lease.deadline.filter(|&d| d > now) else { continue };
            let left = until(deadline, now);
            let remaining = clamp_i64((left + NANOS_PER_SEC - 1) / NANOS_PER_SEC);
            if remaining < lease.ttl {
                out.push((id, remaining));
            }
        }
        self.settle();
        out
    }

    /// Becomes primary: every lease expires `extend` plus its remaining TTL (checkpointed, else
    /// its TTL) after `now`. When there are at least as many leases as the revoke rate, deadlines
    /// closer than one second to each other are spread (as etcd) so that at most three quarters
    /// of the revoke rate expire in any such window.
    pub fn promote(&mut self, extend: Duration, now: Instant) {
        self.primary = true;
        let extend = i128::try_from(extend.as_nanos()).unwrap_or(i128::MAX);
        let ids = self.leases();
        for &id in &ids {
            self.refresh(id, extend, now);
        }
        self.spread(extend, now);
        self.settle();
    }

    /// Stops being primary: no lease expires until the next promotion.
    pub fn demote(&mut self) {
        self.primary = false;
        for lease in self.leases.values_mut() {
            lease.deadline = None;
            lease.expiry_entry = None;
            lease.checkpoint_entry = None;
        }
        self.expiry.clear();
        self.checkpoints.clear();
        self.scheduled = 0;
    }

    /// Replaces all state with the stored `records` (restart or snapshot): leases without keys
    /// (the caller attaches them while rebuilding the key index), TTLs raised to the minimum,
    /// and the lessor not primary. Records of id 0 are skipped; a repeated id keeps the last.
    pub fn restore(&mut self, records: impl IntoIterator<Item = LeaseRecord>) {
        self.demote();
        self.leases.clear();
        self.key_lease.clear();
        for r in records {
            debug_assert_ne!(r.id, NO_LEASE, "decode refuses id 0");
            if r.id == NO_LEASE {
                continue;
            }
            let lease = Lease {
                ttl: r.ttl.max(self.cfg.min_ttl),
                remaining_ttl: r.remaining_ttl,
                deadline: None,
                expiry_entry: None,
                checkpoint_entry: None,
                keys: BTreeSet::new(),
            };
            self.leases.insert(r.id, lease);
        }
    }

    /// Sets lease `id`'s deadline to `now` + `extra_ns` + its refresh TTL, and schedules its next
    /// checkpoint when it needs one (etcd's refresh, plus what every caller of it does).
    fn refresh(&mut self, id: LeaseId, extra_ns: i128, now: Instant) {
        let Some(lease) = self.leases.get(&id) else { return };
        let deadline = shift(now, extra_ns.saturating_add(secs_ns(lease.refresh_ttl())));
        self.set_deadline(id, deadline);
        self.schedule_checkpoint(id, now);
    }

    fn set_deadline(&mut self, id: LeaseId, deadline: Instant) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.deadline = Some(deadline);
        }
        self.push_expiry(id, deadline);
    }

    /// Makes (`at`, `id`) the lease's live expiry entry.
    fn push_expiry(&mut self, id: LeaseId, at: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.expiry_entry = Some(seq);
            self.expiry.push(Reverse((at, id, seq)));
        }
    }

    /// Schedules lease `id`'s next checkpoint one interval after `now` (replacing a pending
    /// one) when its refresh TTL is longer than the interval; otherwise leaves it as it is.
    fn schedule_checkpoint(&mut self, id: LeaseId, now: Instant) {
        let interval = i64::try_from(self.cfg.checkpoint_interval.as_secs()).unwrap_or(i64::MAX);
        let at = shift(
            now,
            i128::try_from(self.cfg.checkpoint_interval.as_nanos()).unwrap_or(i128::MAX),
        );
        let seq = self.next_seq;
        let Some(lease) = self.leases.get_mut(&id) else { return };
        if lease.refresh_ttl() <= interval {
            return;
        }
        self.next_seq += 1;
        if lease.checkpoint_entry.replace(seq).is_none() {
            self.scheduled += 1;
        }
        self.checkpoints.push(Reverse((at, id, seq)));
    }

    /// etcd's rule against a pile-up of expiries after a promotion; `extend` as given to it.
    fn spread(&mut self, extend: i128, now: Instant) {
        let rate = self.cfg.revoke_rate;
        if self.leases.len() < rate {
            return; // fewer leases than one second of revocations: no pile-up possible
        }
        // Aim below the full rate so piled-up leases leave room for others.
        let target = i128::try_from((3 * rate / 4).max(1)).unwrap_or(i128::MAX);
        let mut order: Vec<(i128, LeaseId)> = self
            .leases
            .iter()
            .map(|(&id, l)| (l.deadline.map_or(i128::MAX, |d| until(d, now)), id))
            .collect();
        order.sort_unstable();
        let Some(&(first, _)) = order.first() else { return };
        let (mut base, mut window_end, mut expires) = (first, first + NANOS_PER_SEC, 0i128);
        for (left, id) in order {
            if left > window_end {
                // A new one-second window starts at this lease.
                base = left;
                window_end = base + NANOS_PER_SEC;
                expires = 1;
                continue;
            }
            expires += 1;
            if expires <= target {
                continue;
            }
            // Push this lease to where the window's rate allows it, counting the time it is
            // already past the window's start.
            let delay = NANOS_PER_SEC * expires / target - (left - base);
            window_end = base + delay;
            self.refresh(id, extend.saturating_add(delay), now);
        }
    }

    /// Rebuilds a queue whose stale entries outnumber twice its live ones.
    fn settle(&mut self) {
        let leases = &self.leases;
        let live = if self.primary { leases.len() } else { 0 };
        if self.expiry.len().saturating_sub(live) > 2 * live {
            self.expiry.retain(|Reverse((_, id, seq))| {
                leases.get(id).is_some_and(|l| l.expiry_entry == Some(*seq))
            });
        }
        if self.checkpoints.len().saturating_sub(self.scheduled) > 2 * self.scheduled {
            self.checkpoints.retain(|Reverse((_, id, seq))| {
                leases.get(id).is_some_and(|l| l.checkpoint_entry == Some(*seq))
            });
        }
        debug_assert!(self.primary || self.expiry.is_empty(), "only a primary queues expiries");
    }

    /// Checks every invariant of the module documentation (tests only: O(n log n)).
    #[cfg(test)]
    fn check_invariants(&self) {
        use std::collections::HashSet;
        let mut keys = 0;
        let mut scheduled = 0;
        let live_expiry: HashSet<u64> =
            self.leases.values().filter_map(|l| l.expiry_entry).collect();
        let live_checkpoint: HashSet<u64> =
            self.leases.values().filter_map(|l| l.checkpoint_entry).collect();
        for (&id, l) in &self.leases {
            assert_ne!(id, NO_LEASE);
            assert!(l.ttl >= self.cfg.min_ttl, "lease {id}: ttl {} below minimum", l.ttl);
            for k in &l.keys {
                assert_eq!(self.key_lease.get(k), Some(&id), "key map mirrors lease {id}");
            }
            keys += l.keys.len();
            if self.primary {
                let (deadline, seq) = (l.deadline.unwrap(), l.expiry_entry.unwrap());
                let entries: Vec<_> = self.expiry.iter().filter(|e| e.0 .2 == seq).collect();
                assert_eq!(entries.len(), 1, "lease {id}: one live expiry entry");
                assert_eq!(entries[0].0 .1, id);
                assert!(entries[0].0 .0 >= deadline, "lease {id}: entry due before deadline");
            } else {
                assert!(l.deadline.is_none() && l.expiry_entry.is_none());
                assert!(l.checkpoint_entry.is_none());
            }
            if let Some(seq) = l.checkpoint_entry {
                scheduled += 1;
                let n = self.checkpoints.iter().filter(|e| e.0 .2 == seq && e.0 .1 == id).count();
                assert_eq!(n, 1, "lease {id}: one live checkpoint entry");
            }
        }
        assert_eq!(keys, self.key_lease.len(), "key map holds only attached keys");
        assert_eq!(scheduled, self.scheduled);
        if !self.primary {
            assert!(self.expiry.is_empty() && self.checkpoints.is_empty());
        }
        let stale_e = self.expiry.iter().filter(|e| !live_expiry.contains(&e.0 .2)).count();
        assert!(stale_e <= 2 * live_expiry.len(), "expiry queue: {stale_e} stale entries");
        let stale_c =
            self.checkpoints.iter().filter(|e| !live_checkpoint.contains(&e.0 .2)).count();
        assert!(stale_c <= 2 * live_checkpoint.len(), "checkpoint queue: {stale_c} stale");
    }
}

#[cfg(test)]
mod tests;
