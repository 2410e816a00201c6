//! Logs as etcd 3.5 writes them, so the pipelines and alerts built on etcd's logs read ours:
//! one JSON object per line (zap's encoder with etcd's settings) with the keys `level`, `ts`
//! (UTC, microseconds), `caller` (`dir/file.rs:line`) and `msg`, then the event's fields; never
//! colour codes. Written to every `--log-outputs` target (`default` and `stderr` are stderr,
//! `stdout`, or a file path appended to), at `--log-level` (`RUST_LOG`, when set, wins); one file
//! target may be rotated by size as etcd's lumberjack does (`--enable-log-rotation`,
//! `--log-rotation-config-json`).
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// etcd's refusal of rotation without exactly one file output.
pub const ROTATION_NEEDS_ONE_FILE: &str =
    "--log-outputs requires a single file path when --log-rotate-config-json is defined";

/// `--log-rotation-config-json`, as lumberjack reads it (unknown keys ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Rotation {
    /// Megabytes a file may reach before it is rotated (0: lumberjack's 100).
    pub maxsize: i64,
    /// Days a rotated file is kept (0: no limit).
    pub maxage: i64,
    /// Rotated files kept (0: all).
    pub maxbackups: i64,
    /// Rotated files are named in local time (rusted names them in UTC either way).
    pub localtime: bool,
    /// gzip rotated files (refused: not built).
    pub compress: bool,
}

impl Rotation {
    /// etcd's checks of the rotation flags against the outputs.
    pub fn parse(outputs: &[&str], json: &str) -> Result<Rotation, String> {
        let files = outputs.iter().filter(|o| !matches!(**o, "default" | "stderr" | "stdout"));
        let files = files.count();
        if (outputs.len() == 1 && files == 0) || files > 1 {
            return Err(ROTATION_NEEDS_ONE_FILE.into());
        }
        let r: Rotation = serde_json::from_str(json).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                format!("improperly formatted log rotation config: {e}")
            } else {
                format!("invalid log rotation config: {e}")
            }
        })?;
        if r.compress {
            return Err(
                "--log-rotation-config-json with \"compress\": true is not supported yet by rusted"
                    .into(),
            );
        }
        Ok(r)
    }

    /// The rotation `--enable-log-rotation` asks for (`None` without it), checked as etcd's.
    pub fn from_flags(
        enabled: bool,
        outputs: &str,
        json: &str,
    ) -> Result<Option<Rotation>, String> {
        if !enabled {
            return Ok(None);
        }
        let outputs: Vec<&str> = outputs.split(',').map(str::trim).collect();
        Rotation::parse(&outputs, json).map(Some)
    }

    fn max_bytes(&self) -> u64 {
        let mb = if self.maxsize <= 0 { 100 } else { self.maxsize as u64 };
        mb * 1024 * 1024
    }
}

/// A file target, rotated when `rotation` is set: at the size limit it is renamed to
/// `name-<UTC time>.ext` beside itself and a new one begun; old backups beyond `maxbackups`
/// or `maxage` are deleted.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Option<Rotation>,
}

impl LogFile {
    fn open(path: &Path, rotation: Option<Rotation>) -> std::io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile { path: path.to_owned(), file, size, rotation })
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Some(r) = &self.rotation {
            if self.size > 0 && self.size + line.len() as u64 > r.max_bytes() {
                self.rotate()?;
            }
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `(stem, ".ext")` of the log file's name, as lumberjack splits it.
    fn name_parts(&self) -> (String, String) {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        match name.rfind('.') {
            Some(i) if i > 0 => (name[..i].to_owned(), name[i..].to_owned()),
            _ => (name, String::new()),
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let (stem, ext) = self.name_parts();
        let stamp = backup_stamp(time::OffsetDateTime::now_utc());
        let backup = self.path.with_file_name(format!("{stem}-{stamp}{ext}"));
        std::fs::rename(&self.path, &backup)?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        self.prune(&stem, &ext);
        Ok(())
    }

    /// Deletes backups past the count or age limits (best effort: logging must go on).
    fn prune(&self, stem: &str, ext: &str) {
        let Some(r) = &self.rotation else { return };
        let dir =
            self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let prefix = format!("{stem}-");
        let mut backups: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stamp = name.strip_prefix(&prefix)?.strip_suffix(ext)?.to_owned();
                (stamp.len() == 23).then(|| (stamp, e.path()))
            })
            .collect();
        backups.sort();
        backups.reverse(); // newest first
        let cutoff = (r.maxage > 0).then(|| {
            backup_stamp(time::OffsetDateTime::now_utc() - time::Duration::days(r.maxage))
        });
        for (i, (stamp, path)) in backups.iter().enumerate() {
            let too_many = r.maxbackups > 0 && i as i64 >= r.maxbackups;
            let too_old = cutoff.as_ref().is_some_and(|c| stamp < c);
            if too_many || too_old {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A backup's time in its name, as lumberjack writes it: `2006-01-02T15-04-05.000` (UTC).
/// Names sort as their times do.
fn backup_stamp(t: time::OffsetDateTime) -> String {
    format!("{}.{:03}", date_time(t, '-'), t.millisecond())
}

/// `2006-01-02T15?04?05` with `sep` between the time's fields (UTC).
fn date_time(t: time::OffsetDateTime, sep: char) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}{sep}{:02}{sep}{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[derive(Debug)]
enum Target {
    Stderr,
    Stdout,
    File(Mutex<LogFile>),
}

/// Every output a log line goes to.
#[derive(Debug, Clone)]
pub struct Outputs(Arc<Vec<Target>>);

impl Outputs {
    /// The targets `--log-outputs` names (comma-separated), the file one rotated if asked.
    pub fn open(outputs: &str, rotation: Option<Rotation>) -> Result<Outputs, String> {
        let mut targets = Vec::new();
        for o in outputs.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            targets.push(match o {
                "default" | "stderr" => Target::Stderr,
                "stdout" => Target::Stdout,
                path => {
                    let f = LogFile::open(Path::new(path), rotation.clone())
                        .map_err(|e| format!("open {path}: {e}"))?;
                    Target::File(Mutex::new(f))
                }
            });
        }
        if targets.is_empty() {
            targets.push(Target::Stderr);
        }
        Ok(Outputs(Arc::new(targets)))
    }
}

/// Writes one formatted line to every target.
#[derive(Debug)]
pub struct LineWriter<'a>(&'a Outputs);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for t in self.0 .0.iter() {
            // A target that fails must not stop the others (nor the member).
            let _ = match t {
                Target::Stderr => std::io::stderr().lock().write_all(buf),
                Target::Stdout => std::io::stdout().lock().write_all(buf),
                Target::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write_line(buf),
            };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

/// zap's JSON encoding with etcd's keys (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdJson;

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

/// `dir/file.rs:line`, as zap's short caller encoder writes `pkg/file.go:line`.
fn short_caller(file: &str, line: Option<u32>) -> String {
    let mut parts = file.rsplitn(3, '/');
    let name = parts.next().unwrap_or(file);
    let caller = match parts.next() {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_owned(),
    };
    match line {
        Some(l) => format!("{caller}:{l}"),
        None => caller,
    }
}

/// The time as etcd writes it: `2006-01-02T15:04:05.000000Z`.
fn timestamp(t: time::OffsetDateTime) -> String {
    format!("{}.{:06}Z", date_time(t, ':'), t.microsecond())
}

/// An event's message and fields as JSON values, in the order they were given.
#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let s = format!("{value:?}");
        if field.name() == "message" {
            self.msg = s;
        } else {
            self.rest.push((field.name(), serde_json::Value::String(s)));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_owned();
        } else {
            self.rest.push((field.name(), value.into()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.rest.push((field.name(), value.to_string().into()));
    }
}

/// One event as etcd's JSON line (without the newline).
fn line(level: &Level, ts: time::OffsetDateTime, caller: &str, fields: &Fields) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = String::with_capacity(128);
    let _ = write!(
        out,
        "{{\"level\":\"{}\",\"ts\":\"{}\",\"caller\":{},\"msg\":{}",
        level_name(level),
        timestamp(ts),
        q(caller),
        q(&fields.msg)
    );
    for (k, v) in &fields.rest {
        let _ = write!(out, ",{}:{}", q(k), v);
    }
    out.push('}');
    out
}

impl<S, N> FormatEvent<S, N> for EtcdJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let caller = short_caller(meta.file().unwrap_or(meta.target()), meta.line());
        writeln!(
            writer,
            "{}",
            line(meta.level(), time::OffsetDateTime::now_utc(), &caller, &fields)
        )
    }
}

/// The tracing level of etcd's `--log-level` (zap's panic levels log as errors).
pub fn level(log_level: &str) -> &'static str {
    match log_level {
        "debug" => "debug",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        _ => "info",
    }
}

/// Installs the process's logger: etcd's JSON lines to `outputs` at `level` (`RUST_LOG` wins
/// when set). raft-rs's own chatter is kept to warnings.
pub fn init(level: &str, outputs: &str, rotation: Option<Rotation>) -> Result<(), String> {
    let outputs = Outputs::open(outputs, rotation)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},raft=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .event_format(EtcdJson)
        .with_writer(outputs)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_etcds_json_with_its_keys_first() {
        let ts = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .expect("a time");
        let fields = Fields {
            msg: "apply request took too long".into(),
            rest: vec![("took", "101ms".into()), ("count", 3u64.into()), ("quote", "a\"b".into())],
        };
        let l = line(&Level::WARN, ts, "etcdserver/util.go:166", &fields);
        assert_eq!(
            l,
            r#"{"level":"warn","ts":"2023-11-14T22:13:20.123456Z","caller":"etcdserver/util.go:166","msg":"apply request took too long","took":"101ms","count":3,"quote":"a\"b"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
        assert_eq!(v["level"], "warn");
    }

    #[test]
    fn callers_are_short_and_levels_are_zaps() {
        assert_eq!(short_caller("server/src/member/mod.rs", Some(12)), "member/mod.rs:12");
        assert_eq!(short_caller("lib.rs", Some(1)), "lib.rs:1");
        assert_eq!(short_caller("a/b", None), "a/b");
        assert_eq!(level_name(&Level::TRACE), "debug");
        assert_eq!(level_name(&Level::ERROR), "error");
    }

    #[test]
    fn rotation_needs_exactly_one_file_and_valid_json() {
        let ok = r#"{"maxsize": 1, "maxbackups": 2}"#;
        assert_eq!(Rotation::parse(&["stderr"], ok).unwrap_err(), ROTATION_NEEDS_ONE_FILE);
        assert_eq!(Rotation::parse(&["a.log", "b.log"], ok).unwrap_err(), ROTATION_NEEDS_ONE_FILE);
        assert_eq!(Rotation::parse(&["stderr", "a.log"], ok).expect("one file").maxbackups, 2);
        let bad = Rotation::parse(&["a.log"], "{").unwrap_err();
        assert!(bad.starts_with("improperly formatted log rotation config"), "{bad}");
        let bad = Rotation::parse(&["a.log"], r#"{"maxsize": "big"}"#).unwrap_err();
        assert!(bad.starts_with("invalid log rotation config"), "{bad}");
    }

    #[test]
    fn a_file_rotates_at_its_size_and_keeps_its_backups_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("etcd.log");
        let r = Rotation { maxsize: 1, maxbackups: 2, ..Default::default() };
        let mut f = LogFile::open(&path, Some(r)).expect("open");
        let line = vec![b'x'; 400 * 1024];
        for _ in 0..12 {
            f.write_line(&line).expect("write");
            // Distinct backup names (their time has milliseconds).
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let backups = names.iter().filter(|n| n.starts_with("etcd-") && n.ends_with(".log"));
        assert_eq!(backups.count(), 2, "{names:?}");
        let size = std::fs::metadata(&path).expect("stat").len();
        assert!(size <= 1024 * 1024, "{size}");
    }
}
