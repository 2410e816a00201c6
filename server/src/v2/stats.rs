//! `/v2/stats/self`, `/v2/stats/leader` and `/v2/stats/store`, etcd 3.4's JSON (no newline
//! after it, as etcd's `json.Marshal`).
#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::http::method_not_allowed;
use super::members::{http_error, members_sorted, plain_json};
use super::node::rfc3339_nano;
use crate::api::ctx::Ctx;

/// `/v2/stats/self`.
pub async fn stats_self(State(ctx): State<Arc<Ctx>>, method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    let id = ctx.replica.id();
    let name = members_sorted(&ctx).into_iter().find(|m| m.id == id).map(|m| m.name);
    let started = ctx.machine.v2.started;
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
    };
    let state = if ctx.replica.is_leader() { "StateLeader" } else { "StateFollower" };
    let appends = ctx.metrics.peer.appends.view();
    // Since this member first saw the current leader append (or began appending itself);
    // before any append, since it started (as etcd's).
    let leader = ctx.replica.leader();
    let since = appends.leader.filter(|l| l.0 == leader).map_or(started, |l| l.1);
    let up = since.elapsed().unwrap_or_default();
    let mut v = json!({
        "name": name.unwrap_or_default(),
        "id": format!("{id:x}"),
        "state": state,
        "startTime": rfc3339_nano(nanos(started)),
        "leaderInfo": {
            "leader": format!("{leader:x}"),
            "uptime": rusted_proto::duration::format_go_duration(up),
            "startTime": rfc3339_nano(nanos(since)),
        },
        "recvAppendRequestCnt": appends.received,
    });
    // Rates only while appends flow (etcd's omitempty), each after its count.
    if let Value::Object(o) = &mut v {
        if let Some((pkts, bytes)) = appends.recv_rate {
            o.insert("recvPkgRate".into(), pkts.into());
            o.insert("recvBandwidthRate".into(), bytes.into());
        }
        o.insert("sendAppendRequestCnt".into(), appends.sent.into());
        if let Some((pkts, bytes)) = appends.send_rate {
            o.insert("sendPkgRate".into(), pkts.into());
            o.insert("sendBandwidthRate".into(), bytes.into());
        }
    }
    plain_json(&v)
}

/// `/v2/stats/leader`: the leader's view of its followers (403 elsewhere).
pub async fn stats_leader(State(ctx): State<Arc<Ctx>>, method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    if !ctx.replica.is_leader() {
        return http_error(&ctx, StatusCode::FORBIDDEN, "not current leader");
    }
    let me = ctx.replica.id();
    let mut followers = serde_json::Map::new();
    for m in members_sorted(&ctx).into_iter().filter(|m| m.id != me) {
        let (probes, secs, fails) = ctx.metrics.peer.link_stats(m.id);
        let avg_ms = if probes == 0 { 0.0 } else { secs * 1000.0 / probes as f64 };
        followers.insert(
            format!("{:x}", m.id),
            json!({
                "latency": {"current": avg_ms, "average": avg_ms, "standardDeviation": 0.0,
                            "minimum": avg_ms, "maximum": avg_ms},
                "counts": {"fail": fails, "success": probes},
            }),
        );
    }
    let v = json!({ "leader": format!("{me:x}"), "followers": followers });
    plain_json(&v)
}

/// `/v2/stats/store`: the v2 store's counters.
pub async fn stats_store(State(ctx): State<Arc<Ctx>>, method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    let v2 = &ctx.machine.v2;
    let mut o = serde_json::Map::new();
    for (name, n) in v2.stats.snapshot() {
        o.insert(name.into(), n.into());
    }
    o.insert("watchers".into(), v2.watchers.load(std::sync::atomic::Ordering::Relaxed).into());
    plain_json(&Value::Object(o))
}
