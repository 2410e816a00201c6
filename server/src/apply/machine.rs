//! The replicated state machine: raft entries (a `rustedpb.Proposal` each) applied to the MVCC
//! store, in the replication layer's [`StateMachine`] terms.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prost::Message;
use rusted_mvcc::request as eng;
use rusted_mvcc::{
    Applied, FailureObserver, LeaseGrant, MvccError, Store, StoreOptions, StoreSlot,
};
use rusted_replication::{ReplicationError, StateMachine};

use crate::apply::alarm::{Alarms, ALARM_KEY};
use crate::apply::convert;
use crate::auth::store::State as AuthState;
use crate::auth::{Auth, AuthError, AuthOut, AUTH_KEY};
use rusted_proto::etcdserverpb::{alarm_request::AlarmAction, AlarmMember, AlarmType};
use rusted_proto::rustedpb::{proposal::Request, Proposal, Proposer};

/// What applying an entry produced.
#[derive(Debug)]
pub enum ApplyOut {
    /// A put.
    Put(eng::PutResponse),
    /// A delete.
    Delete(eng::DeleteRangeResponse),
    /// A txn.
    Txn(eng::TxnResponse),
    /// A compaction (the store revision after it).
    Compact(i64),
    /// A lease grant.
    LeaseGrant(LeaseGrant),
    /// A lease revoke (the revision after it).
    LeaseRevoke(i64),
    /// A lease checkpoint.
    Done,
    /// An alarm change: the alarms it raised or cleared.
    Alarm(Vec<AlarmMember>),
    /// An auth change (or Authenticate's token).
    Auth(AuthOut),
    /// A v2 keys request's answer (a SYNC has none).
    V2(Option<crate::v2::V2Result>),
}

/// The result a proposer gets.
pub type ApplyResult = Result<ApplyOut, ApplyError>;

/// Why applying an entry refused it (the same on every member).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store refused it.
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// The auth store refused it.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// The MVCC store (replaced whole when a snapshot is installed).
#[derive(Debug)]
pub struct EtcdMachine {
    slot: StoreSlot,
    /// The raised alarms (mirrors the store's `x-alarm` blob).
    alarms: Mutex<Alarms>,
    /// Whether NOSPACE is among them (read by every write; kept with `alarms`).
    nospace: AtomicBool,
    /// Lease deadlines a new leader extends by (etcd: the election timeout).
    pub lease_extend: Duration,
    /// Why the store failed for good (a background flush or sync failed), once it has.
    failure: Arc<tokio::sync::watch::Sender<Option<String>>>,
    /// Applies slower than this are logged (--experimental-warning-apply-duration), in ns.
    warn_apply_nanos: std::sync::atomic::AtomicU64,
    /// Applies that took longer than that (etcd_server_slow_apply_total).
    pub slow_applies: std::sync::atomic::AtomicU64,
    /// Users, roles, tokens (mirrors the store's `x-auth` blob).
    pub auth: Auth,
    /// The v2 keys (mirrors the store's `x-v2` record and nodes).
    pub v2: crate::v2::V2Store,
}

/// etcd's --experimental-warning-apply-duration default.
pub const DEFAULT_WARNING_APPLY: Duration = Duration::from_millis(100);

/// A request's kind, for logs.
fn request_kind(r: &Request) -> &'static str {
    match r {
        Request::Put(_) => "put",
        Request::DeleteRange(_) => "delete_range",
        Request::Txn(_) => "txn",
        Request::LeaseGrant(_) => "lease_grant",
        Request::LeaseRevoke(_) => "lease_revoke",
        Request::LeaseCheckpoint(_) => "lease_checkpoint",
        Request::Compaction(_) => "compaction",
        Request::Alarm(_) => "alarm",
        Request::V2(_) => "v2",
        _ => "auth",
    }
}

/// `--auth-token`, `--auth-token-ttl` and `--bcrypt-cost`.
#[derive(Debug)]
pub struct AuthOptions {
    /// How long a simple token lives unused.
    pub token_ttl: Duration,
    /// bcrypt's cost for new password hashes.
    pub bcrypt_cost: u32,
    /// Which tokens Authenticate hands out.
    pub provider: crate::auth::jwt::Provider,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            token_ttl: crate::auth::token::DEFAULT_TTL,
            bcrypt_cost: crate::auth::DEFAULT_BCRYPT_COST,
            provider: crate::auth::jwt::Provider::Simple,
        }
    }
}

fn load_auth(s: &Store) -> Result<AuthState, MvccError> {
    AuthState::decode(s.meta_blob(AUTH_KEY)?.as_deref()).map_err(MvccError::Corrupt)
}

fn load_v2(s: &Store) -> Result<crate::v2::store::Tree, MvccError> {
    use crate::v2::codec::{decode, NODE_PREFIX, V2_KEY};
    decode(s.meta_blob(V2_KEY)?.as_deref(), s.meta_entries(NODE_PREFIX)?)
        .map_err(MvccError::Corrupt)
}

fn load_alarms(s: &Store) -> Result<Alarms, MvccError> {
    Alarms::decode(s.meta_blob(ALARM_KEY)?.as_deref()).map_err(MvccError::Corrupt)
}

/// Does applying `r` add data (what the NOSPACE alarm refuses, as etcd's capped applier)?
fn adds_data(r: &Request) -> bool {
    match r {
        Request::Put(_) | Request::LeaseGrant(_) => true,
        Request::Txn(t) => convert::txn_cost(t) > 0,
        _ => false,
    }
}

fn sm_err(e: impl std::fmt::Display) -> ReplicationError {
    ReplicationError::StateMachine(e.to_string())
}

/// Is `e` a failure of the store itself (the member must stop), rather than a refusal every
/// member makes alike (a compare, a missing lease, a compacted revision, ...)?
pub fn is_fatal(e: &MvccError) -> bool {
    matches!(
        e,
        MvccError::Engine(_)
            | MvccError::Corrupt(_)
            | MvccError::Failed(_)
            | MvccError::Closed
            | MvccError::AlreadyApplied { .. }
    )
}

/// A refusal as the proposer's answer; a store failure as the replica's fatal error.
fn answer(r: ApplyResult) -> rusted_replication::Result<ApplyResult> {
    match r {
        Err(ApplyError::Mvcc(e)) if is_fatal(&e) => Err(sm_err(e)),
        r => Ok(r),
    }
}

impl EtcdMachine {
    /// Opens the store at `path` (its failure observer is the machine's own).
    pub fn open(
        path: &Path,
        mut opts: StoreOptions,
        lease_extend: Duration,
        auth: AuthOptions,
    ) -> Result<Self, MvccError> {
        let failure = Arc::new(tokio::sync::watch::channel(None).0);
        let tx = failure.clone();
        let theirs = opts.on_failure.0.take();
        opts.on_failure = FailureObserver(Some(Arc::new(move |e: &MvccError| {
            tx.send_replace(Some(e.to_string()));
            if let Some(f) = &theirs {
                f(e);
            }
        })));
        let slot = StoreSlot::open(path, opts)?;
        let alarms = load_alarms(&slot.get())?;
        let nospace = AtomicBool::new(alarms.has(AlarmType::Nospace));
        let auth =
            Auth::new(load_auth(&slot.get())?, auth.token_ttl, auth.bcrypt_cost, auth.provider);
        let v2 = crate::v2::V2Store::new(load_v2(&slot.get())?);
        Ok(EtcdMachine {
            slot,
            alarms: Mutex::new(alarms),
            nospace,
            lease_extend,
            failure,
            warn_apply_nanos: std::sync::atomic::AtomicU64::new(
                DEFAULT_WARNING_APPLY.as_nanos() as u64
            ),
            slow_applies: Default::default(),
            auth,
            v2,
        })
    }

    /// Applies slower than `d` are logged as etcd logs them.
    pub fn set_warning_apply_duration(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.warn_apply_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Waits until the store fails for good (a background flush or sync failed); returns why.
    pub async fn failed(&self) -> String {
        let mut rx = self.failure.subscribe();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => String::from("state machine dropped"),
        };
        why
    }

    /// The raised alarms.
    pub fn alarms(&self) -> MutexGuard<'_, Alarms> {
        self.alarms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Is the space quota alarm raised (writes that add data are refused)?
    pub fn nospace(&self) -> bool {
        self.nospace.load(Ordering::Acquire)
    }

    /// Replaces the alarm list (and the NOSPACE flag with it).
    fn set_alarms(&self, guard: &mut MutexGuard<'_, Alarms>, next: Alarms) {
        self.nospace.store(next.has(AlarmType::Nospace), Ordering::Release);
        **guard = next;
    }

    fn apply_alarm(
        &self,
        s: &Store,
        at: Applied,
        r: &rusted_proto::etcdserverpb::AlarmRequest,
    ) -> ApplyResult {
        let mut alarms = self.alarms();
        let mut next = alarms.clone();
        let changed = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Activate) if r.alarm != AlarmType::None as i32 => {
                next.activate(r.member_id, r.alarm)
            }
            Ok(AlarmAction::Deactivate) => next.deactivate(r.member_id, r.alarm),
            _ => false,
        };
        if !changed {
            s.apply_noop(at)?;
            return Ok(ApplyOut::Alarm(Vec::new()));
        }
        s.apply_meta_blob(at, ALARM_KEY, &next.encode())?;
        if r.alarm == AlarmType::Nospace as i32 {
            tracing::warn!(member = %format!("{:x}", r.member_id), raised = next.has(AlarmType::Nospace), "NOSPACE alarm changed");
        }
        self.set_alarms(&mut alarms, next);
        Ok(ApplyOut::Alarm(vec![AlarmMember { member_id: r.member_id, alarm: r.alarm }]))
    }

    /// The current store (replaced only when a snapshot is installed).
    pub fn store(&self) -> Arc<Store> {
        self.slot.get()
    }

    /// etcd's check at apply of the keys already on a lease that a put attaches to or a
    /// revoke deletes: the proposer must be able to write every one (unless root). Attaching
    /// keys changes no auth revision, so the check the handler made may be stale.
    fn lease_keys_writable(
        &self,
        s: &Store,
        proposer: Option<&Proposer>,
        req: &Request,
    ) -> Result<(), AuthError> {
        use rusted_proto::etcdserverpb::request_op::Request as Q;
        let Some(p) = proposer else { return Ok(()) };
        let who = crate::auth::AuthInfo { user: p.username.clone(), revision: p.auth_revision };
        if !self.auth.enabled() || self.auth.is_admin(Some(&who)) {
            return Ok(());
        }
        let check = |lease: i64| -> Result<(), AuthError> {
            if lease == 0 {
                return Ok(());
            }
            for k in s.lease_keys(lease).unwrap_or_default() {
                self.auth.op_permitted(Some(&who), &k, b"", true)?;
            }
            Ok(())
        };
        fn txn_leases(t: &rusted_proto::etcdserverpb::TxnRequest, out: &mut Vec<i64>) {
            for op in t.success.iter().chain(&t.failure) {
                match &op.request {
                    Some(Q::RequestPut(p)) => out.push(p.lease),
                    Some(Q::RequestTxn(n)) => txn_leases(n, out),
                    _ => {}
                }
            }
        }
        match req {
            Request::Put(put) => check(put.lease),
            Request::LeaseRevoke(r) => check(r.id),
            Request::Txn(t) => {
                let mut leases = Vec::new();
                txn_leases(t, &mut leases);
                leases.into_iter().try_for_each(check)
            }
            _ => Ok(()),
        }
    }

    /// Applies one request at `at` (`proposer`: the client it came from, if any).
    fn apply_request(
        &self,
        s: &Store,
        at: Applied,
        req: Request,
        proposer: Option<&Proposer>,
    ) -> ApplyResult {
        // etcd's auth applier wraps the quota applier: its refusals come first.
        if let Err(e) = self
            .auth
            .check_proposer(proposer, &req)
            .and_then(|()| self.lease_keys_writable(s, proposer, &req))
        {
            s.apply_noop(at)?;
            return Err(e.into());
        }
        if adds_data(&req) && self.nospace() {
            s.apply_noop(at)?;
            return Err(MvccError::NoSpace.into());
        }
        if let Some(r) = self.auth.apply(&req, at.index) {
            return match r {
                Ok((out, Some(blob))) => {
                    s.apply_meta_blob(at, AUTH_KEY, &blob)?;
                    Ok(ApplyOut::Auth(out))
                }
                Ok((out, None)) => {
                    s.apply_noop(at)?;
                    Ok(ApplyOut::Auth(out))
                }
                Err(e) => {
                    s.apply_noop(at)?;
                    Err(e.into())
                }
            };
        }
        Ok(match req {
            Request::Alarm(a) => return self.apply_alarm(s, at, &a),
            Request::V2(r) => {
                // The tree changes before it is stored: a store that cannot take the write
                // has failed for good, and the member stops (it never answers from a tree
                // its disk does not hold).
                let (out, save) = self.v2.apply(&r);
                match save {
                    Some(v) => {
                        let record = [(crate::v2::codec::V2_KEY, v.meta.as_slice())];
                        s.apply_meta_changes(at, &record, v.nodes)?
                    }
                    None => s.apply_noop(at)?,
                }
                ApplyOut::V2(out)
            }
            Request::Put(p) => ApplyOut::Put(s.put(at, &convert::put_in(&p))?),
            Request::DeleteRange(d) => {
                ApplyOut::Delete(s.delete_range(at, &convert::delete_in(&d))?)
            }
            Request::Txn(t) => ApplyOut::Txn(s.txn(at, &convert::txn_in(&t))?),
            Request::Compaction(c) => ApplyOut::Compact(s.compact(at, c.revision)?),
            Request::LeaseGrant(g) => ApplyOut::LeaseGrant(s.lease_grant(at, g.id, g.ttl)?),
            Request::LeaseRevoke(r) => ApplyOut::LeaseRevoke(s.lease_revoke(at, r.id)?),
            // rusted proposes one checkpoint per entry (the store records one per index).
            Request::LeaseCheckpoint(c) => {
                match c.checkpoints.first() {
                    Some(cp) => s.lease_checkpoint(at, cp.id, cp.remaining_ttl)?,
                    None => s.apply_noop(at)?,
                }
                ApplyOut::Done
            }
            // Handled by the auth store above.
            _ => {
                s.apply_noop(at)?;
                ApplyOut::Done
            }
        })
    }

    /// The store, unless it has failed for good (then applying anything more is fatal).
    fn usable_store(&self) -> rusted_replication::Result<Arc<Store>> {
        let s = self.store();
        match s.failure() {
            Some(why) => Err(sm_err(format!("the store failed earlier: {why}"))),
            None => Ok(s),
        }
    }

    /// Encodes a proposal (`proposer`: the client's identity, for client requests) into a
    /// buffer for `Replica::propose_buf`.
    pub fn encode(r: Request, proposer: Option<Proposer>) -> Vec<u8> {
        let p = Proposal { request: Some(r), proposer };
        let mut buf = rusted_replication::proposal_buf(p.encoded_len());
        // A Vec grows as needed: encoding into it cannot fail.
        let _ = p.encode(&mut buf);
        buf
    }
}

impl StateMachine for EtcdMachine {
    type Output = ApplyResult;

    fn applied(&self) -> u64 {
        self.store().applied().index
    }

    fn apply(&self, index: u64, term: u64, data: &[u8]) -> rusted_replication::Result<ApplyResult> {
        let s = self.usable_store()?;
        let at = Applied { index, term };
        let (req, proposer) = match Proposal::decode(data) {
            Ok(Proposal { request: Some(r), proposer }) => (r, proposer),
            Ok(Proposal { request: None, .. }) | Err(_) => {
                // Keep the index moving; the entry carries nothing this version understands,
                // on every member alike: an answer, not a failure of this member.
                s.apply_noop(at).map_err(sm_err)?;
                let e = MvccError::Corrupt(format!("entry {index}: undecodable proposal"));
                return Ok(Err(e.into()));
            }
        };
        let start = std::time::Instant::now();
        let kind = request_kind(&req);
        let r = answer(self.apply_request(&s, at, req, proposer.as_ref()));
        let took = start.elapsed();
        let expected = Duration::from_nanos(self.warn_apply_nanos.load(Ordering::Relaxed));
        if took > expected {
            self.slow_applies.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(?took, expected_duration = ?expected, request = kind, index, "apply request took too long");
        }
        r
    }

    fn apply_noop(&self, index: u64, term: u64) -> rusted_replication::Result<()> {
        let s = self.usable_store()?;
        s.apply_noop(Applied { index, term }).map_err(sm_err)
    }

    fn apply_cluster(
        &self,
        index: u64,
        term: u64,
        record: &[u8],
    ) -> rusted_replication::Result<()> {
        let s = self.usable_store()?;
        let new = rusted_replication::membership::ClusterRecord::decode(record).map_err(sm_err)?;
        let old = match s.cluster().map_err(sm_err)? {
            Some(b) => {
                Some(rusted_replication::membership::ClusterRecord::decode(&b).map_err(sm_err)?)
            }
            None => None,
        };
        let v2 = self.v2.membership(old.as_ref(), &new);
        let blobs: [(&'static [u8], &[u8]); 2] =
            [(rusted_mvcc::CLUSTER, record), (crate::v2::codec::V2_KEY, &v2.meta)];
        s.apply_meta_changes(Applied { index, term }, &blobs, v2.nodes).map_err(sm_err)
    }

    fn cluster(&self) -> rusted_replication::Result<Option<Vec<u8>>> {
        self.store().cluster().map_err(sm_err)
    }

    fn sync(&self) -> rusted_replication::Result<()> {
        self.store().sync().map_err(sm_err)
    }

    fn write_snapshot(
        &self,
        path: &Path,
    ) -> rusted_replication::Result<(u64, u64, Option<Vec<u8>>)> {
        let info = self.store().write_snapshot(path).map_err(sm_err)?;
        Ok((info.applied.index, info.applied.term, info.cluster))
    }

    fn restore(&self, path: &Path) -> rusted_replication::Result<()> {
        self.slot.restore(path).map_err(sm_err)?;
        let loaded = load_alarms(&self.store()).map_err(sm_err)?;
        self.set_alarms(&mut self.alarms(), loaded);
        self.auth.replace(load_auth(&self.store()).map_err(sm_err)?);
        self.v2.replace(load_v2(&self.store()).map_err(sm_err)?);
        Ok(())
    }

    fn on_leader_change(&self, is_leader: bool) {
        let s = self.store();
        if is_leader {
            s.lease_promote(self.lease_extend);
        } else {
            s.lease_demote();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusted_engine::io::{FaultyIo, PageFaults};
    use rusted_proto::etcdserverpb as pb;

    fn machine(dir: &Path, faults: Arc<PageFaults>) -> EtcdMachine {
        let mut opts = StoreOptions::default();
        opts.db.io = Arc::new(FaultyIo::new(faults));
        opts.db.initial_mmap_size = 1 << 24;
        EtcdMachine::open(&dir.join("db"), opts, Duration::from_secs(1), AuthOptions::default())
            .unwrap()
    }

    /// An entry's data as the state machine gets it (without the kind byte `encode` leaves
    /// for the replica).
    fn put(k: &str) -> Vec<u8> {
        entry(Request::Put(pb::PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        }))
    }

    fn entry(r: Request) -> Vec<u8> {
        EtcdMachine::encode(r, None)[1..].to_vec()
    }

    #[test]
    fn refusals_are_answers_and_store_failures_are_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(PageFaults::default());
        let m = machine(dir.path(), faults.clone());
        assert!(matches!(m.apply(2, 1, &put("a")), Ok(Ok(ApplyOut::Put(_)))));
        let revoke = entry(Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 9 }));
        assert!(matches!(m.apply(3, 1, &revoke), Ok(Err(ApplyError::Mvcc(MvccError::Lease(_))))));
        assert!(matches!(
            m.apply(4, 1, b"\xff\xff"),
            Ok(Err(ApplyError::Mvcc(MvccError::Corrupt(_))))
        ));
        assert_eq!(m.applied(), 4, "a refused or undecodable entry still moves the index");

        faults.fail_now();
        assert!(matches!(m.apply(5, 1, &put("b")), Ok(Ok(_))), "buffered until the flush");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while m.store().failure().is_none() {
            assert!(std::time::Instant::now() < deadline, "the flush never failed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = m.apply(6, 1, &put("c")).unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let why = rt.block_on(m.failed());
        assert!(why.contains("injected"), "{why}");
    }
}
