//! Plain HTTP on the client port: /health, /livez, /readyz, /version and /metrics (Prometheus
//! text, with etcd's metric names). CORS and the host whitelist are `net::access`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::ctx::Ctx;
use crate::metrics::Metrics;
use crate::{CLUSTER_VERSION, SERVER_VERSION};

/// How long a health check waits for its linearizable read.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct HttpState {
    ctx: Arc<Ctx>,
    metrics: Arc<Metrics>,
}

/// The routes.
pub fn router(ctx: Arc<Ctx>, metrics: Arc<Metrics>) -> Router {
    let st = HttpState { ctx, metrics };
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(scrape))
        .with_state(st)
}

/// The health of this member: a leader, no alarm (NOSPACE excepted when the caller asks to
/// exclude it), and a linearizable read that completes.
async fn check(ctx: &Ctx, exclude: &[String]) -> Result<(), String> {
    let alarms = ctx.machine.alarms().members(rusted_proto::etcdserverpb::AlarmType::None);
    for a in alarms {
        let name = rusted_proto::etcdserverpb::AlarmType::try_from(a.alarm)
            .map(|t| t.as_str_name())
            .unwrap_or("UNKNOWN");
        if !exclude.iter().any(|e| e == name) {
            return Err(format!("ALARM {name}"));
        }
    }
    if ctx.replica.leader() == 0 {
        return Err("RAFT NO LEADER".into());
    }
    match tokio::time::timeout(HEALTH_TIMEOUT, ctx.linearize()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("QGET ERROR:{e}")),
        Err(_) => Err("QGET ERROR:timed out".into()),
    }
}

#[derive(serde::Deserialize, Default)]
struct HealthQuery {
    exclude: Option<String>,
}

/// etcd 3.4's /health: `{"health":"true"}`, or 503 with `{"health":"false"}` (the reason
/// goes to the log).
async fn health(State(st): State<HttpState>, Query(q): Query<HealthQuery>) -> Response {
    let exclude: Vec<String> = q.exclude.into_iter().collect();
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let checked = check(&st.ctx, &exclude).await;
    st.metrics.health_checked(checked.is_ok());
    match checked {
        Ok(()) => (StatusCode::OK, text, r#"{"health":"true"}"#).into_response(),
        Err(reason) => {
            tracing::warn!(reason = %reason, "serving /health false");
            (StatusCode::SERVICE_UNAVAILABLE, text, "{\"health\":\"false\"}\n").into_response()
        }
    }
}

/// Alive: the process serves HTTP.
async fn livez() -> Response {
    (StatusCode::OK, "ok").into_response()
}

/// Ready: it can serve reads and writes (a leader and a completed linearizable read).
async fn readyz(State(st): State<HttpState>) -> Response {
    match check(&st.ctx, &["NOSPACE".to_string()]).await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}")).into_response()
        }
    }
}

#[derive(serde::Serialize)]
struct Version {
    etcdserver: &'static str,
    etcdcluster: &'static str,
}

async fn version() -> Response {
    let v = Version { etcdserver: SERVER_VERSION, etcdcluster: CLUSTER_VERSION };
    let body = serde_json::to_string(&v).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn scrape(State(st): State<HttpState>) -> Response {
    // Reading the store's counters can wait on its writer: not on a runtime worker.
    let rendered = tokio::task::spawn_blocking(move || {
        let mut scrape = st.metrics.process.scrape();
        let r = st.metrics.render(&st.ctx);
        scrape.answered(if r.is_ok() { 200 } else { 500 });
        r
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match rendered {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// Go's `http.Error`: `text` as plain text, with `nosniff`, as every Go handler's error.
pub fn go_error(code: StatusCode, text: &'static str) -> Response {
    let h = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (code, h, text).into_response()
}

/// Go's plain 404, for paths nothing serves (the gateway's own prefixes answer differently,
/// see `json::not_found`).
pub async fn page_not_found() -> Response {
    go_error(StatusCode::NOT_FOUND, "404 page not found\n")
}
