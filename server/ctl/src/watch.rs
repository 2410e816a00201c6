//! `watch`: one key, a range or a prefix, from a revision, with the previous pairs; an exec
//! mode (`watch k -- cmd args`) that runs a command per event with `ETCD_WATCH_*` set; and
//! the interactive mode (`watch -i`) reading `watch ...` and `progress` lines from stdin. As
//! etcdctl 3.4, it runs until the server cancels the watch (exit 5) or the process is stopped.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;

use clap::{Args, Parser};
use tokio::sync::mpsc;

use super::kv;
use super::print::{self, Format};
use super::{Ctl, CtlError, CtlResult};
use rusted_proto::etcdserverpb as pb;
use rusted_proto::etcdserverpb::watch_client::WatchClient;
use rusted_proto::keys::prefix_end;
use rusted_proto::mvccpb;

const ERR_ARGS: &str = "bad number of arguments";
const ERR_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const ERR_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";

/// `watch`.
#[derive(Debug, Args, Clone, Default)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// The key and optionally the range end.
    pub args: Vec<String>,
    /// A command to run for every event (after `--`).
    #[arg(last = true)]
    pub exec: Vec<String>,
}

/// One interactive line: `watch [flags] key [range_end] [-- cmd ...]`.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct InteractiveLine {
    #[command(flatten)]
    watch: WatchArgs,
}

/// A watch to create and the command to run for its events.
struct Spec {
    req: pb::WatchCreateRequest,
    exec: Vec<String>,
}

fn env_key() -> CtlResult<(String, String)> {
    let key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if key.is_empty() && !range.is_empty() {
        return Err(CtlError::args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            print::go_quote(&range)
        )));
    }
    Ok((key, range))
}

/// The watch request for arguments `a` (with the environment's key, if any).
fn spec(a: &WatchArgs, env: &(String, String)) -> CtlResult<Spec> {
    let mut args = Vec::new();
    if !env.0.is_empty() {
        args.push(env.0.clone());
        if !env.1.is_empty() {
            args.push(env.1.clone());
        }
    }
    args.extend(a.args.iter().cloned());
    // As etcdctl: two arguments are a range; with three or more, only the first is watched.
    let (key, mut range_end) = match args.as_slice() {
        [] => return Err(CtlError::args(ERR_ARGS)),
        [k, e] => {
            if a.prefix {
                return Err(CtlError::args("`range_end` and `--prefix` are mutually exclusive"));
            }
            (k.as_bytes().to_vec(), e.as_bytes().to_vec())
        }
        [k, ..] => (k.as_bytes().to_vec(), Vec::new()),
    };
    if a.prefix {
        range_end = if key.is_empty() { vec![0] } else { prefix_end(&key) };
    }
    let key = if a.prefix && key.is_empty() { vec![0] } else { key };
    Ok(Spec {
        req: pb::WatchCreateRequest {
            key,
            range_end,
            start_revision: a.rev,
            prev_kv: a.prev_kv,
            ..Default::default()
        },
        exec: a.exec.clone(),
    })
}

/// Runs `watch`.
pub async fn run(ctl: &Ctl, a: &WatchArgs) -> CtlResult {
    let env = env_key()?;
    if a.interactive {
        return interactive(ctl, env).await;
    }
    // clap drops a trailing `--`; etcdctl refuses it.
    let raw: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let after = raw.iter().position(|s| s == "watch").map_or(&raw[..0], |i| &raw[i + 1..]);
    if after.last().is_some_and(|s| s == "--") {
        return Err(CtlError::args(ERR_SEPARATOR));
    }
    if !env.0.is_empty() && !a.args.is_empty() {
        return Err(CtlError::args(ERR_CONFLICT_ENV));
    }
    let spec = spec(a, &env)?;
    let (tx, rx) = mpsc::channel(16);
    let mut session = Session::open(ctl, rx).await?;
    session.create(&tx, spec).await?;
    session.print_until_canceled(ctl).await?;
    Err(CtlError {
        message: "watch is canceled by the server".into(),
        code: super::EXIT_INTERRUPTED,
    })
}

async fn interactive(ctl: &Ctl, env: (String, String)) -> CtlResult {
    let (tx, rx) = mpsc::channel(16);
    let mut session = Session::open(ctl, rx).await?;
    session.interactive = true;
    let (line_tx, mut lines) = mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut l = String::new();
            let r = match stdin.read_line(&mut l) {
                Ok(0) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF")),
                Ok(_) => Ok(l),
                Err(e) => Err(e),
            };
            let end = r.is_err();
            if line_tx.blocking_send(r).is_err() || end {
                return;
            }
        }
    });
    loop {
        tokio::select! {
            line = lines.recv() => {
                let line = match line {
                    Some(Ok(l)) => l,
                    Some(Err(e)) => return Err(CtlError {
                        message: format!("Error reading watch request line: {e}"),
                        code: super::EXIT_INVALID_INPUT,
                    }),
                    None => return Ok(()),
                };
                let l = line.strip_suffix('\n').unwrap_or(&line).to_string();
                interactive_line(&mut session, &tx, &l, &env).await?;
            }
            r = session.next(ctl) => {
                if !r? {
                    return Ok(());
                }
            }
        }
    }
}

async fn interactive_line(
    session: &mut Session,
    tx: &mpsc::Sender<pb::WatchRequest>,
    l: &str,
    env: &(String, String),
) -> CtlResult {
    let args = super::txn::split_args(l).unwrap_or_default();
    match args.first().map(String::as_str) {
        None => eprintln!("Invalid command: {l} (watch and progress supported)"),
        Some("watch") => {
            if args.len() < 2 && env.0.is_empty() {
                eprintln!("Invalid command {l} (command type or key is not provided)");
                return Ok(());
            }
            if args.last().is_some_and(|s| s == "--") {
                return Err(CtlError::args(ERR_SEPARATOR));
            }
            let parsed = InteractiveLine::try_parse_from(&args[1..])
                .map_err(|e| CtlError::args(e.kind().to_string()))?;
            let a = parsed.watch;
            if a.exec.is_empty() && env.0.is_empty() && a.args.is_empty() {
                return Err(CtlError::args(ERR_ARGS));
            }
            if a.exec.is_empty() && !a.args.is_empty() && !env.0.is_empty() {
                return Err(CtlError::args(ERR_CONFLICT_ENV));
            }
            match spec(&a, env) {
                Ok(s) => session.create(tx, s).await?,
                Err(e) => eprintln!("Invalid command {l} ({})", e.message),
            }
        }
        Some("progress") => {
            let req = pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                    pb::WatchProgressRequest {},
                )),
            };
            tx.send(req).await.map_err(|_| CtlError::failed("watch stream closed"))?;
        }
        Some(_) => eprintln!("Invalid command {l} (only support watch)"),
    }
    Ok(())
}

type Opening = tokio::task::JoinHandle<Result<tonic::Streaming<pb::WatchResponse>, tonic::Status>>;

/// One watch stream and its watchers.
struct Session {
    /// The call, until its response headers come: a Go server sends them only with its first
    /// answer, so requests must be able to go out before.
    opening: Option<Opening>,
    stream: Option<tonic::Streaming<pb::WatchResponse>>,
    /// Exec commands of watchers asked for and not yet created, in order.
    pending: VecDeque<Vec<String>>,
    /// Exec command of each created watcher.
    exec: HashMap<i64, Vec<String>>,
    /// Events of a fragmented response, until its last part.
    partial: HashMap<i64, Vec<mvccpb::Event>>,
    /// `watch -i`: the session outlives its watchers.
    interactive: bool,
}

impl Session {
    async fn open(ctl: &Ctl, rx: mpsc::Receiver<pb::WatchRequest>) -> CtlResult<Self> {
        let mut c = WatchClient::new(ctl.dial().await?);
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        // As clientv3.WithRequireLeader: the member ends the stream when it loses its leader.
        req.metadata_mut().insert("hasleader", tonic::metadata::MetadataValue::from_static("true"));
        let opening = tokio::spawn(async move { c.watch(req).await.map(|r| r.into_inner()) });
        Ok(Session {
            opening: Some(opening),
            stream: None,
            pending: VecDeque::new(),
            exec: HashMap::new(),
            partial: HashMap::new(),
            interactive: false,
        })
    }

    async fn create(&mut self, tx: &mpsc::Sender<pb::WatchRequest>, s: Spec) -> CtlResult {
        self.pending.push_back(s.exec);
        let req = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(s.req)),
        };
        tx.send(req).await.map_err(|_| CtlError::failed("watch stream closed"))
    }

    async fn print_until_canceled(&mut self, ctl: &Ctl) -> CtlResult {
        while self.next(ctl).await? {}
        Ok(())
    }

    /// Handles the next response; false when the stream or the (only) watcher ended.
    async fn next(&mut self, ctl: &Ctl) -> CtlResult<bool> {
        if let Some(opening) = self.opening.as_mut() {
            let s = opening.await.map_err(|e| CtlError::failed(e.to_string()))??;
            self.opening = None;
            self.stream = Some(s);
        }
        let Some(stream) = self.stream.as_mut() else { return Ok(false) };
        let mut r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(false),
            // As clientv3 closing its watchers with the stream's error (the member lost its
            // leader, or the connection broke): etcdctl reports the watch canceled. (clientv3
            // would first retry a transient failure; rustedctl does not reconnect.)
            Err(e) => {
                eprintln!("watch was canceled ({})", CtlError::from(e).message);
                return Ok(false);
            }
        };
        if r.created {
            let exec = self.pending.pop_front().unwrap_or_default();
            self.exec.insert(r.watch_id, exec);
            // clientv3 does not hand "created" to the caller, unless it also failed.
            if !r.canceled {
                return Ok(true);
            }
        }
        if r.fragment {
            self.partial.entry(r.watch_id).or_default().append(&mut r.events);
            return Ok(true);
        }
        if let Some(mut first) = self.partial.remove(&r.watch_id) {
            first.append(&mut r.events);
            r.events = first;
        }
        if r.canceled && !r.created && r.compact_revision == 0 {
            // clientv3 just closes a watcher the server cancels for another reason.
            self.exec.remove(&r.watch_id);
            return Ok(self.interactive || !self.exec.is_empty());
        }
        if r.canceled {
            eprintln!("watch was canceled ({})", cancel_error(&r));
        }
        let progress = r.events.is_empty()
            && !r.canceled
            && !r.created
            && r.compact_revision == 0
            && r.header.as_ref().is_some_and(|h| h.revision != 0);
        // clientv3 hands a stream-wide progress report (watch ID -1) to every watcher.
        let copies = if progress && r.watch_id == -1 { self.exec.len().max(1) } else { 1 };
        for _ in 0..copies {
            if progress {
                println!("progress notify: {}", r.header.as_ref().map_or(0, |h| h.revision));
            }
            show(ctl, &r)?;
        }
        let exec = self.exec.get(&r.watch_id).cloned().unwrap_or_default();
        if !exec.is_empty() {
            run_exec(&exec, &r)?;
        }
        if r.canceled {
            self.exec.remove(&r.watch_id);
            // A lone watcher's channel closes and etcdctl ends; with several, or in the
            // interactive mode, the others (and the reading of commands) go on.
            return Ok(self.interactive || !self.exec.is_empty());
        }
        Ok(true)
    }
}

/// clientv3's WatchResponse.Err() text for a canceled watch.
fn cancel_error(r: &pb::WatchResponse) -> String {
    if r.compact_revision != 0 {
        "etcdserver: mvcc: required revision has been compacted".into()
    } else if !r.cancel_reason.is_empty() {
        r.cancel_reason.clone()
    } else {
        "etcdserver: mvcc: required revision is a future revision".into()
    }
}

fn event_type(e: &mvccpb::Event) -> &'static str {
    if e.r#type == mvccpb::event::EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    }
}

/// Prints a response as etcdctl's display.Watch.
fn show(ctl: &Ctl, r: &pb::WatchResponse) -> CtlResult {
    match ctl.write_out {
        Format::Simple => {
            for e in &r.events {
                println!("{}", event_type(e));
                if let Some(p) = &e.prev_kv {
                    kv::simple_kv(ctl, false, p);
                }
                if let Some(k) = &e.kv {
                    kv::simple_kv(ctl, false, k);
                }
            }
        }
        Format::Fields => {
            kv::fields_header(&r.header);
            for e in &r.events {
                println!("\"Type\" : {}", event_type(e));
                if let Some(p) = &e.prev_kv {
                    kv::fields_kv("Prev", p);
                }
                if let Some(k) = &e.kv {
                    kv::fields_kv("", k);
                }
            }
        }
        Format::Json => {
            // clientv3.WatchResponse has no json tags: Go field names, nothing omitted.
            let events: Vec<serde_json::Value> = r
                .events
                .iter()
                .map(|e| {
                    let mut m = serde_json::Map::new();
                    if e.r#type != 0 {
                        m.insert("type".into(), e.r#type.into());
                    }
                    if let Some(k) = &e.kv {
                        m.insert("kv".into(), json_value(k));
                    }
                    if let Some(p) = &e.prev_kv {
                        m.insert("prev_kv".into(), json_value(p));
                    }
                    serde_json::Value::Object(m)
                })
                .collect();
            let v = serde_json::json!({
                "Header": json_value(&r.header.unwrap_or_default()),
                "Events": events,
                "CompactRevision": r.compact_revision,
                "Canceled": r.canceled,
                "Created": r.created,
            });
            println!("{v}");
        }
        Format::Protobuf => print::protobuf(&pb::WatchResponse {
            header: r.header,
            events: r.events.clone(),
            compact_revision: r.compact_revision,
            canceled: r.canceled,
            created: r.created,
            ..Default::default()
        }),
        Format::Table => return Err(super::unsupported(Format::Table)),
    }
    Ok(())
}

fn json_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::from_str(&print::json(v)).unwrap_or_default()
}

/// Runs the exec command once per event, with the event in `ETCD_WATCH_*`.
fn run_exec(exec: &[String], r: &pb::WatchResponse) -> CtlResult {
    let rev = r.header.as_ref().map_or(0, |h| h.revision);
    for e in &r.events {
        let k = e.kv.clone().unwrap_or_default();
        let status = std::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env("ETCD_WATCH_REVISION", rev.to_string())
            .env("ETCD_WATCH_EVENT_TYPE", print::go_quote(event_type(e)))
            .env("ETCD_WATCH_KEY", print::go_quote_bytes(&k.key))
            .env("ETCD_WATCH_VALUE", print::go_quote_bytes(&k.value))
            .status();
        let err = match status {
            Ok(s) if s.success() => continue,
            Ok(s) => match s.code() {
                Some(c) => format!("exit status {c}"),
                None => format!(
                    "signal: {}",
                    std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
                ),
            },
            Err(e) => format!("exec: {}: {}", print::go_quote(&exec[0]), go_exec_error(&e)),
        };
        let quoted: Vec<String> = exec.iter().map(|s| print::go_quote(s)).collect();
        eprintln!("command [{}] error ({err})", quoted.join(" "));
        return Err(CtlError::silent(super::EXIT_ERROR));
    }
    Ok(())
}

fn go_exec_error(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "executable file not found in $PATH",
        std::io::ErrorKind::PermissionDenied => "permission denied",
        _ => "cannot run",
    }
}
