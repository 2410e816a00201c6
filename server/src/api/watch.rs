//! The Watch service: one bidirectional stream carries many watchers (etcd's v3rpc/watch.go
//! shape). One task per stream reads the client's requests and the store's responses, so a
//! watcher's "created" answer always precedes its events. Large responses are split when the
//! watcher asked for fragments. When a snapshot install replaces the store, the stream's
//! watchers are re-created on the new store from the first revision they have not received.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rusted_mvcc::watch::{WatchError, STREAM_BUFFER};
use rusted_mvcc::{Event, Store, WatchOptions, WatchResponse, WatchStream};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::api::ctx::{Creds, Ctx};
use crate::api::errors::ApiError;
use crate::apply::convert::kv_out;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::watch_server::Watch;
use rusted_proto::mvccpb;

/// How often a watcher that asked for progress notifications gets one when it had no events
/// (etcd: 10 minutes).
pub const PROGRESS_REPORT_INTERVAL: Duration = Duration::from_secs(600);
/// Added to --max-request-bytes for the fragment threshold (etcd's grpcOverheadBytes).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// How often a stream checks whether the store was replaced by a snapshot install.
const STORE_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Responses queued toward the client before the stream stops reading the store (its watchers
/// then fall behind in the store, which bounds memory).
const OUT_BUFFER: usize = 64;

/// The Watch service.
#[derive(Debug, Clone)]
pub struct WatchService {
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

type WatchOut = crate::api::stream::Out<pb::WatchResponse>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchOut;

    async fn watch(
        &self,
        req: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let creds = Creds::of(&req);
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        tokio::spawn(serve(self.ctx.clone(), creds, req.into_inner(), tx));
        crate::api::stream::after_first(rx).await
    }
}

/// What the stream remembers of each watcher.
struct Watched {
    opts: WatchOptions,
    fragment: bool,
    progress_notify: bool,
    /// Events sent since the last progress tick.
    active: bool,
    /// First revision the client has not been told about.
    next_rev: i64,
}

/// The state of one client stream.
struct StreamState {
    ctx: Arc<Ctx>,
    /// The stream's credentials: its token is read again for each watch created, as etcd's.
    creds: Creds,
    store: Arc<Store>,
    ws: WatchStream,
    rx: rusted_mvcc::WatchReceiver,
    watched: HashMap<i64, Watched>,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    /// A progress request could not be answered yet (a watcher was catching up, or the
    /// store's channel was full): answered after the next delivered response that allows it.
    progress_pending: bool,
}

/// Serves one watch stream until the client goes away (or the store closes).
pub async fn serve<S>(
    ctx: Arc<Ctx>,
    creds: Creds,
    mut input: S,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
) where
    S: Stream<Item = Result<pb::WatchRequest, Status>> + Unpin,
{
    let store = ctx.store();
    let progress_every = ctx.limits.watch_progress_interval;
    let (ws, rx) = store.watch_stream(STREAM_BUFFER);
    let mut st = StreamState {
        ctx,
        creds,
        store,
        ws,
        rx,
        watched: HashMap::new(),
        out,
        progress_pending: false,
    };
    let mut progress = tokio::time::interval(progress_every);
    progress.tick().await;
    let mut check = tokio::time::interval(STORE_CHECK_INTERVAL);
    let mut reading = true;
    loop {
        let ok = tokio::select! {
            req = input.next(), if reading => match req {
                Some(Ok(r)) => st.request(r).await,
                // The client closed its sending side: as etcd, its watchers keep going until
                // the stream itself ends.
                None => {
                    reading = false;
                    true
                }
                // The stream broke: drop every watcher.
                Some(Err(_)) => false,
            },
            _ = st.out.closed() => false,
            resp = st.rx.recv() => match resp {
                Some(r) => st.deliver(r).await,
                None => false,
            },
            _ = progress.tick() => st.progress_tick(),
            _ = check.tick() => {
                st.retry_progress();
                st.follow_store().await
            }
        };
        if !ok {
            return;
        }
    }
}

impl StreamState {
    async fn send(&self, r: pb::WatchResponse) -> bool {
        self.out.send(Ok(r)).await.is_ok()
    }

    fn header(&self, rev: i64) -> Option<pb::ResponseHeader> {
        self.ctx.header(rev)
    }

    async fn request(&mut self, r: pb::WatchRequest) -> bool {
        use pb::watch_request::RequestUnion as U;
        // Act on the store that is current now (a snapshot install may have replaced it).
        if !self.follow_store().await {
            return false;
        }
        match r.request_union {
            Some(U::CreateRequest(c)) => self.create(c).await,
            Some(U::CancelRequest(c)) => {
                if self.ws.cancel(c.watch_id) {
                    self.watched.remove(&c.watch_id);
                    let rev = self.store.current_revision();
                    let resp = pb::WatchResponse {
                        header: self.header(rev),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    return self.send(resp).await;
                }
                true
            }
            Some(U::ProgressRequest(_)) => {
                // Answered through the store's channel, in order with events; while a watcher
                // is catching up the answer waits until it has.
                self.progress_pending = !self.ws.request_progress();
                true
            }
            None => true,
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> bool {
        use pb::watch_create_request::FilterType;
        let opts = WatchOptions {
            key: c.key,
            range_end: c.range_end,
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        };
        let rev = self.store.current_revision();
        // Permission to read the range, checked when the watch is created only (as etcd);
        // a refusal is a cancelled watch whose reason is the whole gRPC status, as etcd's.
        let key = if opts.key.is_empty() { vec![0] } else { opts.key.clone() };
        let allowed = match self.ctx.who_creds(&self.creds).await {
            Ok(who) => self.ctx.auth().op_permitted(who.as_ref(), &key, &opts.range_end, false),
            Err(ApiError::Auth(e)) => Err(e),
            Err(_) => Err(crate::auth::AuthError::InvalidAuthToken),
        };
        if let Err(e) = allowed {
            let st: Status = ApiError::Auth(e).into();
            let resp = pb::WatchResponse {
                header: self.header(rev),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: crate::api::errors::go_status_text(&st),
                ..Default::default()
            };
            return self.send(resp).await;
        }
        match self.ws.watch(c.watch_id, opts.clone()) {
            Ok(id) => {
                let next_rev = if opts.start_revision == 0 { rev + 1 } else { opts.start_revision };
                let w = Watched {
                    opts,
                    fragment: c.fragment,
                    progress_notify: c.progress_notify,
                    active: false,
                    next_rev,
                };
                self.watched.insert(id, w);
                let resp = pb::WatchResponse {
                    header: self.header(rev),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                };
                self.send(resp).await
            }
            Err(e) => {
                let reason = match e {
                    WatchError::Compacted => {
                        "etcdserver: mvcc: required revision has been compacted".to_string()
                    }
                    other => other.to_string(),
                };
                let resp = pb::WatchResponse {
                    header: self.header(rev),
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: reason,
                    ..Default::default()
                };
                self.send(resp).await
            }
        }
    }

    async fn deliver(&mut self, r: WatchResponse) -> bool {
        if r.watch_id != -1 && !self.watched.contains_key(&r.watch_id) {
            // Queued before its watcher was cancelled: etcd sends nothing after the cancel.
            return true;
        }
        self.retry_progress();
        if let Some(w) = self.watched.get_mut(&r.watch_id) {
            if let Some(last) = r.events.last() {
                w.next_rev = w.next_rev.max(last.kv.mod_revision + 1);
                w.active = true;
            } else if r.compact_revision == 0 {
                w.next_rev = w.next_rev.max(r.revision + 1);
            }
        } else if r.watch_id == -1 {
            for w in self.watched.values_mut() {
                w.next_rev = w.next_rev.max(r.revision + 1);
            }
        }
        let fragment = self.watched.get(&r.watch_id).is_some_and(|w| w.fragment);
        let canceled = r.compact_revision != 0;
        if canceled {
            self.watched.remove(&r.watch_id);
        }
        let resp = pb::WatchResponse {
            header: self.header(r.revision),
            watch_id: r.watch_id,
            created: false,
            canceled,
            compact_revision: r.compact_revision,
            cancel_reason: String::new(),
            fragment: false,
            events: r.events.into_iter().map(event_out).collect(),
        };
        if fragment {
            let limit = self.ctx.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
            for part in fragments(resp, limit) {
                if !self.send(part).await {
                    return false;
                }
            }
            true
        } else {
            self.send(resp).await
        }
    }

    fn progress_tick(&mut self) -> bool {
        for (id, w) in self.watched.iter_mut() {
            if w.progress_notify && !w.active {
                self.ws.progress(*id);
            }
            w.active = false;
        }
        true
    }

    /// A progress request that had to wait: answered once every watcher has caught up. Tried
    /// on each delivery and on every store check, since the last catch-up delivery can be
    /// handled before its watcher counts as synced (nothing else would come to retry it).
    fn retry_progress(&mut self) {
        if self.progress_pending {
            self.progress_pending = !self.ws.request_progress();
        }
    }

    /// A snapshot install replaced the store: re-create every watcher on the new one from the
    /// first revision it has not delivered (history replay covers the gap, or the watcher is
    /// told it was compacted, as etcd's restore does).
    async fn follow_store(&mut self) -> bool {
        let now = self.ctx.store();
        if Arc::ptr_eq(&now, &self.store) {
            return true;
        }
        let mut lost = Vec::new();
        let (mut ws, rx) = now.watch_stream(STREAM_BUFFER);
        let mut ids: Vec<i64> = self.watched.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(w) = self.watched.get_mut(&id) else { continue };
            let mut opts = w.opts.clone();
            opts.start_revision = w.next_rev;
            if let Err(e) = ws.watch(id, opts) {
                tracing::warn!(watch = id, error = %e, "cannot re-create a watcher on the restored store");
                self.watched.remove(&id);
                lost.push((id, e.to_string()));
            }
        }
        self.store = now;
        self.ws = ws;
        self.rx = rx;
        // A watcher that could not follow is cancelled, and the client told why.
        let rev = self.store.current_revision();
        for (id, reason) in lost {
            let resp = pb::WatchResponse {
                header: self.header(rev),
                watch_id: id,
                canceled: true,
                cancel_reason: reason,
                ..Default::default()
            };
            if !self.send(resp).await {
                return false;
            }
        }
        true
    }
}

fn event_out(e: Event) -> mvccpb::Event {
    use mvccpb::event::EventType;
    mvccpb::Event {
        r#type: if e.deleted { EventType::Delete } else { EventType::Put } as i32,
        kv: Some(kv_out(e.kv)),
        prev_kv: e.prev_kv.map(kv_out),
    }
}

/// Splits a response whose encoding reaches `limit` bytes into parts under it (each with at
/// least one event); every part but the last is marked `fragment`. Responses under the limit,
/// or with fewer than two events, go whole.
pub fn fragments(resp: pb::WatchResponse, limit: usize) -> Vec<pb::WatchResponse> {
    if resp.encoded_len() < limit || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut shell = resp.clone();
    shell.events = Vec::new();
    let base = shell.encoded_len();
    let mut parts = Vec::new();
    let mut cur = shell.clone();
    let mut size = base;
    for ev in resp.events {
        let n = ev.encoded_len();
        let add = 1 + prost::encoding::encoded_len_varint(n as u64) + n;
        if !cur.events.is_empty() && size + add >= limit {
            let mut done = std::mem::replace(&mut cur, shell.clone());
            done.fragment = true;
            parts.push(done);
            size = base;
        }
        size += add;
        cur.events.push(ev);
    }
    cur.fragment = false;
    parts.push(cur);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: usize, len: usize) -> mvccpb::Event {
        mvccpb::Event {
            r#type: 0,
            kv: Some(mvccpb::KeyValue {
                key: format!("k{i}").into_bytes(),
                value: vec![b'v'; len],
                mod_revision: i as i64 + 2,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn fragments_stay_under_the_limit_and_keep_every_event_in_order() {
        let resp = pb::WatchResponse {
            watch_id: 3,
            events: (0..50).map(|i| ev(i, 100 + i * 7)).collect(),
            ..Default::default()
        };
        let all = resp.events.clone();
        let limit = 1000;
        let parts = fragments(resp, limit);
        assert!(parts.len() > 1);
        let mut got = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.fragment, i + 1 < parts.len(), "only the last part is unmarked");
            assert!(p.encoded_len() < limit || p.events.len() == 1);
            assert_eq!(p.watch_id, 3);
            got.extend(p.events.iter().cloned());
        }
        assert_eq!(got, all);
    }

    #[test]
    fn small_or_single_event_responses_go_whole() {
        let one = pb::WatchResponse { events: vec![ev(0, 5000)], ..Default::default() };
        assert_eq!(fragments(one.clone(), 100), vec![one]);
        let small = pb::WatchResponse { events: vec![ev(0, 1), ev(1, 1)], ..Default::default() };
        assert_eq!(fragments(small.clone(), 1 << 20), vec![small]);
    }
}
