//! `lock` and `elect`: clientv3's concurrency recipes (a session lease kept alive, a mutex and
//! an election over keys under a prefix), written against the KV, Lease and Watch APIs as
//! etcdctl 3.4 runs them. Both hold until SIGINT or SIGTERM, then unlock or resign.
#![forbid(unsafe_code)]

use std::time::Duration;

use clap::Args;
use tokio::sync::{mpsc, watch};

use super::kv;
use super::{Conn, Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::kv_client::KvClient;
use rusted_proto::etcdserverpb::lease_client::LeaseClient;
use rusted_proto::etcdserverpb::watch_client::WatchClient;
use rusted_proto::keys::prefix_end;
use rusted_proto::mvccpb;

/// clientv3 concurrency's default session TTL, in seconds.
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// `lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value_t = 10)]
    pub ttl: i64,
    /// The lock name, then optionally a command to run while holding it (after `--` when it
    /// has flags of its own).
    pub args: Vec<String>,
}

/// `elect`.
#[derive(Debug, Args)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long)]
    pub listen: bool,
    /// The election name, then the proposal.
    pub args: Vec<String>,
}

/// A lease kept alive in the background; `done` turns true when it is lost.
struct Session {
    lease: i64,
    done: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn new(ctl: &Ctl, ch: &Conn, ttl: i64) -> CtlResult<Session> {
        let mut leases = LeaseClient::new(ch.clone());
        let g = ctl.timed(leases.lease_grant(pb::LeaseGrantRequest { ttl, id: 0 })).await?;
        let granted = g.into_inner();
        let lease = granted.id;
        let (done_tx, done) = watch::channel(false);
        let keeper = tokio::spawn(async move {
            // As clientv3: renew at a third of the granted TTL; when the stream breaks, open
            // another, and give the session up only when the lease is gone or its TTL has
            // passed since the last renewal.
            let mut ttl = granted.ttl.max(1);
            let mut deadline = tokio::time::Instant::now() + Duration::from_secs(ttl as u64);
            'session: while tokio::time::Instant::now() < deadline {
                let (req_tx, req_rx) = mpsc::channel(1);
                // Queued before the call: a Go server sends the response headers the call
                // waits for only with its first answer.
                let _ = req_tx.send(pb::LeaseKeepAliveRequest { id: lease }).await;
                let out = tokio_stream::wrappers::ReceiverStream::new(req_rx);
                if let Ok(resp) = leases.lease_keep_alive(out).await {
                    let mut resp = resp.into_inner();
                    let mut first = true;
                    loop {
                        if !std::mem::take(&mut first)
                            && req_tx.send(pb::LeaseKeepAliveRequest { id: lease }).await.is_err()
                        {
                            break;
                        }
                        match resp.message().await {
                            Ok(Some(r)) if r.ttl > 0 => {
                                ttl = r.ttl;
                                deadline =
                                    tokio::time::Instant::now() + Duration::from_secs(ttl as u64);
                            }
                            // The lease is gone (expired or revoked).
                            Ok(Some(_)) => break 'session,
                            _ => break,
                        }
                        tokio::time::sleep(Duration::from_millis(ttl as u64 * 1000 / 3)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let _ = done_tx.send(true);
        });
        Ok(Session { lease, done, keeper })
    }

    async fn lost(&mut self) {
        let _ = self.done.wait_for(|d| *d).await;
    }

    /// Stops renewing. As etcdctl, which never closes its session, the lease is left to
    /// expire after its TTL rather than revoked.
    fn close(self) {
        self.keeper.abort();
    }
}

/// SIGINT and SIGTERM, listened to from the start of a command, so a signal that comes while
/// the command is between two waits is not lost.
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(i), Ok(t)) => Signals(Some((i, t))),
            _ => Signals(None),
        }
    }

    /// Waits for SIGINT or SIGTERM.
    async fn recv(&mut self) {
        match self.0.as_mut() {
            Some((i, t)) => {
                tokio::select! { _ = i.recv() => {}, _ = t.recv() => {} }
            }
            None => std::future::pending().await,
        }
    }
}

fn range_first_or_last(prefix: &[u8], ascend: bool, max_create: i64) -> pb::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: if ascend { SortOrder::Ascend } else { SortOrder::Descend } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    }
}

/// Waits until `key` is deleted, watching from `rev`.
async fn wait_delete(ch: &Conn, key: &[u8], rev: i64) -> CtlResult {
    let mut w = watch_from(ch, key.to_vec(), Vec::new(), rev).await?;
    while let Some(r) = w.events.message().await.map_err(CtlError::from)? {
        if r.canceled {
            return Err(CtlError::failed("lost watcher waiting for delete"));
        }
        if r.events.iter().any(|e| e.r#type == mvccpb::event::EventType::Delete as i32) {
            return Ok(());
        }
    }
    Err(CtlError::failed("lost watcher waiting for delete"))
}

/// A watch and its request side: the call lives while both are held, and dropping both ends
/// it (the request stream's end cancels the server's watcher).
struct Watching {
    events: tonic::Streaming<pb::WatchResponse>,
    _requests: mpsc::Sender<pb::WatchRequest>,
}

async fn watch_from(ch: &Conn, key: Vec<u8>, range_end: Vec<u8>, rev: i64) -> CtlResult<Watching> {
    let req = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest { key, range_end, start_revision: rev, ..Default::default() },
        )),
    };
    let (tx, rx) = mpsc::channel(1);
    // Sent before the call: a Go server answers the call's headers only with its first message.
    let _ = tx.send(req).await;
    let out = tokio_stream::wrappers::ReceiverStream::new(rx);
    let s = WatchClient::new(ch.clone()).watch(out).await.map_err(CtlError::from)?;
    Ok(Watching { events: s.into_inner(), _requests: tx })
}

/// Waits until every key under `prefix` created at or before `max_create` is gone.
async fn wait_deletes(ch: &Conn, prefix: &[u8], max_create: i64) -> CtlResult<pb::ResponseHeader> {
    let mut kvc = KvClient::new(ch.clone());
    loop {
        let r = kvc.range(range_first_or_last(prefix, false, max_create)).await?.into_inner();
        let Some(last) = r.kvs.first() else {
            return Ok(r.header.unwrap_or_default());
        };
        let rev = r.header.as_ref().map_or(0, |h| h.revision);
        wait_delete(ch, &last.key, rev).await?;
    }
}

/// Creates `key` with `value` on the session's lease unless it exists. Returns the header,
/// whether it was created, and its create revision (and value) when it already existed.
async fn create_once(
    ch: &Conn,
    key: &[u8],
    value: &[u8],
    lease: i64,
    also: Option<pb::RangeRequest>,
) -> CtlResult<pb::TxnResponse> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    use pb::request_op::Request;
    let cmp = pb::Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(0)),
        ..Default::default()
    };
    let put =
        pb::PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    let get = pb::RangeRequest { key: key.to_vec(), ..Default::default() };
    let op = |r: Request| pb::RequestOp { request: Some(r) };
    let mut success = vec![op(Request::RequestPut(put))];
    let mut failure = vec![op(Request::RequestRange(get))];
    if let Some(a) = also {
        success.push(op(Request::RequestRange(a.clone())));
        failure.push(op(Request::RequestRange(a)));
    }
    let t = pb::TxnRequest { compare: vec![cmp], success, failure };
    Ok(KvClient::new(ch.clone()).txn(t).await?.into_inner())
}

fn range_of(r: &pb::TxnResponse, i: usize) -> Vec<mvccpb::KeyValue> {
    match r.responses.get(i).and_then(|o| o.response.as_ref()) {
        Some(pb::response_op::Response::ResponseRange(g)) => g.kvs.clone(),
        _ => Vec::new(),
    }
}

/// Runs `lock`.
pub async fn lock(ctl: &Ctl, a: &LockArgs) -> CtlResult {
    let Some(name) = a.args.first() else {
        return Err(CtlError::args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    let mut sig = Signals::new();
    let ch = ctl.dial().await?;
    let mut s = Session::new(ctl, &ch, a.ttl).await?;
    let prefix = format!("{name}/").into_bytes();
    let my_key = [prefix.clone(), format!("{:x}", s.lease).into_bytes()].concat();
    let locked = async {
        let r =
            create_once(&ch, &my_key, b"", s.lease, Some(range_first_or_last(&prefix, true, 0)))
                .await?;
        let mut hdr = r.header.unwrap_or_default();
        let my_rev = if r.succeeded {
            hdr.revision
        } else {
            range_of(&r, 0).first().map_or(hdr.revision, |kv| kv.create_revision)
        };
        let owner = range_of(&r, 1);
        if owner.first().is_some_and(|o| o.create_revision != my_rev) {
            hdr = wait_deletes(&ch, &prefix, my_rev - 1).await?;
        }
        Ok::<_, CtlError>(hdr)
    };
    let hdr = tokio::select! {
        h = locked => h?,
        _ = sig.recv() => {
            unlock(ctl, &ch, &my_key).await;
            s.close();
            return Err(CtlError::failed("context canceled"));
        }
    };
    let rest = &a.args[1..];
    if !rest.is_empty() {
        let status = tokio::process::Command::new(&rest[0])
            .args(&rest[1..])
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&my_key).as_ref())
            .env("ETCD_LOCK_REV", hdr.revision.to_string())
            .status()
            .await;
        unlock(ctl, &ch, &my_key).await;
        s.close();
        return match status {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => Err(CtlError::failed(match st.code() {
                Some(c) => format!("exit status {c}"),
                None => "signal: killed".to_string(),
            })),
            Err(e) => Err(CtlError::failed(format!(
                "exec: {}: executable file not found in $PATH ({e})",
                super::print::go_quote(&rest[0])
            ))),
        };
    }
    let mut kvc = KvClient::new(ch.clone());
    let got = ctl
        .timed(kvc.range(pb::RangeRequest { key: my_key.clone(), ..Default::default() }))
        .await?;
    let got = got.into_inner();
    if got.kvs.is_empty() {
        return Err(CtlError::failed("lock lost on init"));
    }
    kv::simple_get(ctl, &got, false);
    let lost = tokio::select! {
        _ = sig.recv() => false,
        _ = s.lost() => true,
    };
    if lost {
        return Err(CtlError::failed("session expired"));
    }
    unlock(ctl, &ch, &my_key).await;
    s.close();
    Ok(())
}

async fn unlock(ctl: &Ctl, ch: &Conn, key: &[u8]) {
    let mut kvc = KvClient::new(ch.clone());
    let _ = ctl
        .timed(kvc.delete_range(pb::DeleteRangeRequest { key: key.to_vec(), ..Default::default() }))
        .await;
}

/// Runs `elect`.
pub async fn elect(ctl: &Ctl, a: &ElectArgs) -> CtlResult {
    match (a.args.as_slice(), a.listen) {
        ([name], true) => observe(ctl, name).await,
        ([_], false) => Err(CtlError::args("no proposal argument but -l not set")),
        ([_, _], true) => Err(CtlError::args("proposal given but -l is set")),
        ([name, prop], false) => campaign(ctl, name, prop).await,
        _ => Err(CtlError::args(
            "elect takes one election name argument and an optional proposal argument",
        )),
    }
}

async fn campaign(ctl: &Ctl, name: &str, prop: &str) -> CtlResult {
    let mut sig = Signals::new();
    let ch = ctl.dial().await?;
    let mut s = Session::new(ctl, &ch, DEFAULT_SESSION_TTL).await?;
    let prefix = format!("{name}/").into_bytes();
    let key = [prefix.clone(), format!("{:x}", s.lease).into_bytes()].concat();
    let won = async {
        let r = create_once(&ch, &key, prop.as_bytes(), s.lease, None).await?;
        let mut rev = r.header.as_ref().map_or(0, |h| h.revision);
        if !r.succeeded {
            if let Some(kv) = range_of(&r, 0).first() {
                rev = kv.create_revision;
                if kv.value != prop.as_bytes() {
                    let put = pb::PutRequest {
                        key: key.clone(),
                        value: prop.as_bytes().to_vec(),
                        lease: s.lease,
                        ..Default::default()
                    };
                    KvClient::new(ch.clone()).put(put).await?;
                }
            }
        }
        wait_deletes(&ch, &prefix, rev - 1).await?;
        Ok::<_, CtlError>(())
    };
    tokio::select! {
        r = won => r?,
        _ = sig.recv() => {
            unlock(ctl, &ch, &key).await;
            s.close();
            return Err(CtlError::failed("context canceled"));
        }
    }
    let mut kvc = KvClient::new(ch.clone());
    let got =
        ctl.timed(kvc.range(pb::RangeRequest { key: key.clone(), ..Default::default() })).await?;
    kv::simple_get(ctl, &got.into_inner(), false);
    let lost = tokio::select! {
        _ = sig.recv() => false,
        _ = s.lost() => true,
    };
    if lost {
        return Err(CtlError::failed("elect: session expired"));
    }
    unlock(ctl, &ch, &key).await;
    s.close();
    Ok(())
}

async fn observe(ctl: &Ctl, name: &str) -> CtlResult {
    let mut sig = Signals::new();
    let ch = ctl.dial().await?;
    let s = Session::new(ctl, &ch, DEFAULT_SESSION_TTL).await?;
    let prefix = format!("{name}/").into_bytes();
    let r = tokio::select! {
        r = observe_loop(ctl, &ch, &prefix) => r,
        _ = sig.recv() => Ok(()),
    };
    s.close();
    r
}

fn show_leader(ctl: &Ctl, hdr: Option<pb::ResponseHeader>, kv: mvccpb::KeyValue) {
    let r = pb::RangeResponse { header: hdr, kvs: vec![kv], count: 1, more: false };
    kv::simple_get(ctl, &r, false);
}

/// Prints the leader's key and value, and again whenever the leader or its value changes.
async fn observe_loop(ctl: &Ctl, ch: &Conn, prefix: &[u8]) -> CtlResult {
    let lost = || CtlError::failed("elect: observer lost");
    let mut kvc = KvClient::new(ch.clone());
    loop {
        let r = kvc.range(range_first_or_last(prefix, true, 0)).await.map_err(|_| lost())?;
        let r = r.into_inner();
        let (hdr, leader) = match r.kvs.first() {
            Some(kv) => (r.header.unwrap_or_default(), kv.clone()),
            None => {
                let rev = r.header.as_ref().map_or(0, |h| h.revision);
                let mut w = watch_from(ch, prefix.to_vec(), prefix_end(prefix), rev).await?;
                let mut found = None;
                while found.is_none() {
                    let Ok(Some(wr)) = w.events.message().await else { return Err(lost()) };
                    if wr.canceled {
                        return Err(lost());
                    }
                    found = wr.events.into_iter().find_map(|e| {
                        (e.r#type == mvccpb::event::EventType::Put as i32).then_some(e.kv).flatten()
                    });
                }
                let kv = found.unwrap_or_default();
                let mut h = r.header.unwrap_or_default();
                h.revision = kv.mod_revision;
                (h, kv)
            }
        };
        show_leader(ctl, Some(hdr), leader.clone());
        let mut w = watch_from(ch, leader.key.clone(), Vec::new(), hdr.revision + 1).await?;
        'leader: loop {
            let Ok(Some(wr)) = w.events.message().await else { return Err(lost()) };
            if wr.canceled {
                return Err(lost());
            }
            for e in wr.events {
                if e.r#type == mvccpb::event::EventType::Delete as i32 {
                    break 'leader;
                }
                if let Some(kv) = e.kv {
                    show_leader(ctl, wr.header, kv);
                }
            }
        }
    }
}
