//! Debugging endpoints on the client port, as etcd's: `/debug/vars` (always; JSON of the
//! member's state: command line, file descriptor limit, `raft.status`, and the process's
//! memory figures in place of Go's `memstats`), and with `--enable-pprof` a CPU profile at
//! `/debug/pprof/profile?seconds=N` (pprof's protobuf, which `go tool pprof` and `pprof` read),
//! heap figures at `/debug/pprof/heap`, the command line at `/debug/pprof/cmdline` and an index.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::api::ctx::Ctx;

/// A profile's length when the request names none or an invalid one (Go's default).
const DEFAULT_PROFILE_SECONDS: u64 = 30;
/// Samples per second of a CPU profile (Go's rate).
const PROFILE_HZ: i32 = 100;

/// The routes; the profiling ones only when `pprof` (`--enable-pprof`).
pub fn router(ctx: Arc<Ctx>, pprof: bool) -> Router {
    let r = Router::new().route("/debug/vars", get(vars));
    let r = if pprof {
        r.route("/debug/pprof/", get(index))
            .route("/debug/pprof/profile", get(profile))
            .route("/debug/pprof/heap", get(heap))
            .route("/debug/pprof/cmdline", get(cmdline))
            .route("/debug/pprof/{name}", get(unknown_profile))
    } else {
        r
    };
    r.with_state(ctx)
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

/// Memory figures of this process from /proc/self/status (kB lines), in bytes.
fn memory() -> Map<String, Value> {
    let mut out = Map::new();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines() {
        let Some((name, rest)) = line.split_once(':') else { continue };
        let mut it = rest.split_whitespace();
        if let (Some(n), Some("kB")) = (it.next().and_then(|n| n.parse::<u64>().ok()), it.next()) {
            if name.starts_with("Vm") || name.starts_with("Rss") {
                out.insert(name.to_owned(), json!(n * 1024));
            }
        }
    }
    out
}

fn fd_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn vars(State(ctx): State<Arc<Ctx>>) -> Response {
    let st = ctx.replica.raft_status().await;
    let progress: Map<String, Value> = st
        .progress
        .iter()
        .map(|p| (hex(p.id), json!({"match": p.matched, "next": p.next, "state": p.state})))
        .collect();
    let body = json!({
        "cmdline": crate::config::argv::process_args(),
        "file_descriptor_limit": fd_limit(),
        "memory": memory(),
        "raft.status": {
            "id": hex(st.id),
            "term": st.term,
            "vote": hex(st.vote),
            "commit": st.commit,
            "lead": hex(st.lead),
            "raftState": st.raft_state,
            "applied": st.applied,
            "progress": progress,
            "leadtransferee": hex(st.lead_transferee),
        },
    });
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], text + "\n").into_response()
}

async fn index() -> Response {
    let page = "<html>\n<head>\n<title>/debug/pprof/</title>\n</head>\n<body>\n/debug/pprof/<br>\n<br>\n\
        Profiles rusted serves:\n<ul>\n\
        <li><a href='profile?seconds=30'>profile</a>: CPU profile (pprof protobuf), ?seconds=N</li>\n\
        <li><a href='heap'>heap</a>: the process's memory figures</li>\n\
        <li><a href='cmdline'>cmdline</a>: the command line</li>\n\
        </ul>\n</body>\n</html>\n";
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

#[derive(serde::Deserialize, Default)]
struct ProfileQuery {
    seconds: Option<String>,
}

fn plain(code: StatusCode, text: String) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// A CPU profile of the whole process over `seconds` (one at a time).
async fn profile(Query(q): Query<ProfileQuery>) -> Response {
    let seconds = q
        .seconds
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_PROFILE_SECONDS);
    let guard = match pprof::ProfilerGuardBuilder::default().frequency(PROFILE_HZ).build() {
        Ok(g) => g,
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Could not enable CPU profiling: {e}\n"),
            )
        }
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let encoded = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        use pprof::protos::Message;
        let report = guard
            .report()
            .frames_post_processor(drop_profiler_frames)
            .build()
            .map_err(|e| e.to_string())?;
        let profile = report.pprof().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        profile.encode(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match encoded {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"profile\""),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("profile failed: {e}\n")),
    }
}

/// Drops the profiler's own frames (the signal handler taking the backtrace) from the top of a
/// sample's stack, so time lands on the code that was running.
fn drop_profiler_frames(f: &mut pprof::Frames) {
    let own = |frame: &Vec<pprof::Symbol>| {
        frame.first().is_none_or(|s| {
            let n = s.name();
            n.contains("backtrace::")
                || n.contains("pprof::")
                || n.contains("perf_signal_handler")
                || n == "__restore_rt"
        })
    };
    let keep = f.frames.iter().position(|frame| !own(frame)).unwrap_or(f.frames.len());
    f.frames.drain(..keep);
}

/// Heap figures: Go's heap profile has no equivalent without a profiling allocator; these are
/// the process's memory lines from /proc/self/status.
async fn heap() -> Response {
    let mut text = String::from("# rusted heap figures (bytes, from /proc/self/status)\n");
    for (k, v) in memory() {
        text.push_str(&format!("{k} {v}\n"));
    }
    plain(StatusCode::OK, text)
}

async fn cmdline() -> Response {
    plain(StatusCode::OK, crate::config::argv::process_args().join("\0"))
}

/// Go's answer for a profile it does not have (goroutine, block, mutex, ... are Go's).
async fn unknown_profile() -> Response {
    plain(StatusCode::NOT_FOUND, "Unknown profile\n".into())
}
