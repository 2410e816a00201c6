//! The client port's gRPC metrics: go-grpc-prometheus's `grpc_server_*` (labels, codes and
//! the pre-created series for every method etcd serves) and etcd's
//! `etcd_network_client_grpc_*_bytes_total` and `etcd_server_client_requests_total`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Services whose calls are counted by name.
const KNOWN_SERVICES: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3lockpb.Lock",
    "v3electionpb.Election",
    "grpc.health.v1.Health",
];

/// The methods whose series exist from the start (go-grpc-prometheus creates them for every
/// method registered on etcd's gRPC server), by service.
const METHODS: &[(&str, &[&str])] = &[
    ("etcdserverpb.KV", &["Range", "Put", "DeleteRange", "Txn", "Compact"]),
    ("etcdserverpb.Watch", &["Watch"]),
    (
        "etcdserverpb.Lease",
        &["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"],
    ),
    (
        "etcdserverpb.Cluster",
        &["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"],
    ),
    (
        "etcdserverpb.Maintenance",
        &["Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader"],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
    ("grpc.health.v1.Health", &["Check", "Watch"]),
];

/// Methods whose calls are streams, by gRPC type label.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot")
        | ("v3electionpb.Election", "Observe")
        | ("grpc.health.v1.Health", "Watch") => "server_stream",
        ("rustedpb.Peer", "Send") | ("rustedpb.Peer", "Snapshot") => "client_stream",
        _ => "unary",
    }
}

/// gRPC's code names, by number.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The labels of one gRPC method: type, service, method (go-grpc-prometheus's).
pub fn grpc_labels(path: &str) -> [&str; 3] {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (mut service, mut method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // Only the services this server has: a client must not create series at will.
    if !KNOWN_SERVICES.contains(&service) || method.is_empty() || method.len() > 64 {
        (service, method) = ("unknown", "unknown");
    }
    [grpc_type(service, method), service, method]
}

/// One method's series, looked up once (at start for every method etcd serves) rather than
/// by label on every call.
#[derive(Debug)]
struct MethodSeries {
    unary: bool,
    started: IntCounter,
    msgs_in: IntCounter,
    msgs_out: IntCounter,
    /// By code number (`CODES`).
    handled: Vec<IntCounter>,
    handling: Option<Histogram>,
}

/// Where a call's end is counted.
#[derive(Debug, Clone)]
enum Ending {
    /// A method etcd serves: its series, resolved at start.
    Known(Arc<MethodSeries>),
    /// Any other (rare): by label, so that only the codes it ends with get series.
    Other { labels: Arc<[String; 3]>, handled: IntCounterVec, handling: Option<HistogramVec> },
}

/// The counters one call feeds while its messages flow, and when it ends.
#[derive(Debug, Clone)]
pub struct CallCounters {
    /// Messages received on this call's method.
    pub msgs_in: IntCounter,
    /// Messages sent on this call's method.
    pub msgs_out: IntCounter,
    ending: Ending,
}

impl CallCounters {
    /// Counts the call as finished, answered `code` after `took` (the handling histogram
    /// exists with `--metrics=extensive` only).
    pub fn handled(&self, code: i32, took: Duration) {
        let i = usize::try_from(code).ok().filter(|c| *c < CODES.len()).unwrap_or(UNKNOWN_CODE);
        match &self.ending {
            Ending::Known(series) => {
                series.handled[i].inc();
                if let Some(h) = &series.handling {
                    h.observe(took.as_secs_f64());
                }
            }
            Ending::Other { labels, handled, handling } => {
                let [t, service, method] = labels.as_ref().each_ref().map(String::as_str);
                handled.with_label_values(&[t, service, method, CODES[i]]).inc();
                if let Some(h) = handling {
                    h.with_label_values(&[t, service, method]).observe(took.as_secs_f64());
                }
            }
        }
    }
}

/// `CODES`' index of "Unknown", for codes outside it.
const UNKNOWN_CODE: usize = 2;

/// The client port's gRPC metrics.
#[derive(Debug)]
pub struct GrpcMetrics {
    handled: IntCounterVec,
    started: IntCounterVec,
    /// With `--metrics=extensive` only, as etcd's.
    handling: Option<HistogramVec>,
    msg_received: IntCounterVec,
    msg_sent: IntCounterVec,
    client_requests: IntCounterVec,
    /// By path ("/package.Service/Method"): every method etcd serves.
    methods: HashMap<String, Arc<MethodSeries>>,
    /// etcd_server_client_requests_total for clients that send no version (unary, stream),
    /// made at the first such call (as etcd's).
    no_version: [OnceLock<IntCounter>; 2],
    /// Bytes received from gRPC clients.
    pub client_received: IntCounter,
    /// Bytes sent to gRPC clients.
    pub client_sent: IntCounter,
}

const LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];

impl GrpcMetrics {
    pub(super) fn new(registry: &Registry, extensive: bool) -> Result<Self, prometheus::Error> {
        let vec = |name: &str, help: &str, labels: &[&str]| -> Result<_, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let handled = vec(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        let started = vec(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            &LABELS,
        )?;
        let msg_received = vec(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            &LABELS,
        )?;
        let msg_sent = vec(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            &LABELS,
        )?;
        let client_requests = vec(
            "etcd_server_client_requests_total",
            "The total number of client requests per client version.",
            &["type", "client_api_version"],
        )?;
        let handling = if extensive {
            let h = HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                ),
                &LABELS,
            )?;
            registry.register(Box::new(h.clone()))?;
            Some(h)
        } else {
            None
        };
        let counter = |name: &str, help: &str| -> Result<_, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let client_sent = counter(
            "etcd_network_client_grpc_sent_bytes_total",
            "The total number of bytes sent to grpc clients.",
        )?;
        let client_received = counter(
            "etcd_network_client_grpc_received_bytes_total",
            "The total number of bytes received from grpc clients.",
        )?;
        let mut m = GrpcMetrics {
            handled,
            started,
            handling,
            msg_received,
            msg_sent,
            client_requests,
            methods: HashMap::new(),
            no_version: Default::default(),
            client_received,
            client_sent,
        };
        // Every method's series exist before its first call, as go-grpc-prometheus makes them:
        // rates and "errors / all" queries have data from the first scrape.
        for (service, methods) in METHODS {
            for method in *methods {
                let labels = [grpc_type(service, method), service, method];
                let series = Arc::new(m.series(labels));
                m.methods.insert(format!("/{service}/{method}"), series);
            }
        }
        Ok(m)
    }

    /// The series of the method labelled `labels`, created if need be.
    fn series(&self, labels: [&str; 3]) -> MethodSeries {
        let [t, service, method] = labels;
        MethodSeries {
            unary: t == "unary",
            started: self.started.with_label_values(&labels),
            msgs_in: self.msg_received.with_label_values(&labels),
            msgs_out: self.msg_sent.with_label_values(&labels),
            handled: CODES
                .iter()
                .map(|code| self.handled.with_label_values(&[t, service, method, code]))
                .collect(),
            handling: self.handling.as_ref().map(|h| h.with_label_values(&labels)),
        }
    }

    /// Counts one call to `path` ("/package.Service/Method") as started, from a client that
    /// said its API version (the `client-api-version` header) or not. Returns the counters
    /// its messages and its end feed.
    pub fn started(&self, path: &str, api_version: Option<&str>) -> CallCounters {
        let (counters, unary) = match self.methods.get(path) {
            Some(series) => {
                series.started.inc();
                let c = CallCounters {
                    msgs_in: series.msgs_in.clone(),
                    msgs_out: series.msgs_out.clone(),
                    ending: Ending::Known(series.clone()),
                };
                (c, series.unary)
            }
            // A method etcd does not serve (of a known service, or "unknown").
            None => {
                let labels = grpc_labels(path);
                self.started.with_label_values(&labels).inc();
                let c = CallCounters {
                    msgs_in: self.msg_received.with_label_values(&labels),
                    msgs_out: self.msg_sent.with_label_values(&labels),
                    ending: Ending::Other {
                        labels: Arc::new(labels.map(str::to_owned)),
                        handled: self.handled.clone(),
                        handling: self.handling.clone(),
                    },
                };
                (c, labels[0] == "unary")
            }
        };
        let kind = if unary { "unary" } else { "stream" };
        // A version is a short dotted number; anything else would let clients make series.
        let version = api_version
            .filter(|v| v.len() <= 16 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
        match version {
            None => self.no_version[usize::from(!unary)]
                .get_or_init(|| self.client_requests.with_label_values(&[kind, "unknown"]))
                .inc(),
            Some(v) => self.client_requests.with_label_values(&[kind, v]).inc(),
        }
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_services_and_methods_share_one_series() {
        assert_eq!(grpc_labels("/etcdserverpb.KV/Range"), ["unary", "etcdserverpb.KV", "Range"]);
        assert_eq!(
            grpc_labels("/etcdserverpb.Watch/Watch"),
            ["bidi_stream", "etcdserverpb.Watch", "Watch"]
        );
        assert_eq!(grpc_labels("/evil.Service/X"), ["unary", "unknown", "unknown"]);
        assert_eq!(CODES[16], "Unauthenticated");
        assert_eq!(CODES[UNKNOWN_CODE], "Unknown");
    }

    #[test]
    fn every_method_has_series_before_its_first_call() {
        let r = Registry::new();
        let m = GrpcMetrics::new(&r, false).expect("metrics");
        let families = r.gather();
        let count = |name: &str| {
            families.iter().find(|f| f.name() == name).map_or(0, |f| f.get_metric().len())
        };
        let methods: usize = METHODS.iter().map(|(_, m)| m.len()).sum();
        assert_eq!(methods, 41, "etcd 3.4 registers 41 methods");
        assert_eq!(count("grpc_server_started_total"), methods);
        assert_eq!(count("grpc_server_handled_total"), methods * CODES.len());
        let c = m.started("/etcdserverpb.KV/Put", Some("3.4"));
        c.msgs_in.inc();
        m.started("/etcdserverpb.Watch/Watch", Some("<script>"));
        let families = r.gather();
        let requests = families
            .iter()
            .find(|f| f.name() == "etcd_server_client_requests_total")
            .expect("client requests");
        let labels: Vec<Vec<String>> = requests
            .get_metric()
            .iter()
            .map(|m| m.get_label().iter().map(|l| l.value().to_owned()).collect())
            .collect();
        assert!(labels.contains(&vec!["3.4".to_owned(), "unary".to_owned()]), "{labels:?}");
        assert!(labels.contains(&vec!["unknown".to_owned(), "stream".to_owned()]), "{labels:?}");
    }

    #[test]
    fn a_method_etcd_does_not_serve_gets_series_for_the_codes_it_ends_with_only() {
        let r = Registry::new();
        let m = GrpcMetrics::new(&r, false).expect("metrics");
        let handled = |r: &Registry| -> Vec<(String, u64)> {
            let families = r.gather();
            let f = families.iter().find(|f| f.name() == "grpc_server_handled_total");
            f.map(|f| {
                f.get_metric()
                    .iter()
                    .filter(|m| m.get_label().iter().any(|l| l.value() == "Nope"))
                    .map(|m| {
                        let code = m.get_label().iter().find(|l| l.name() == "grpc_code");
                        let code = code.map(|l| l.value().to_owned()).unwrap_or_default();
                        (code, m.get_counter().get_value() as u64)
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        let c = m.started("/etcdserverpb.KV/Nope", None);
        assert!(handled(&r).is_empty(), "no series before the call ends");
        // 12: what a server answers a method it does not have.
        c.handled(12, Duration::from_millis(1));
        assert_eq!(handled(&r), vec![(CODES[12].to_owned(), 1)]);
        // A known method's end is counted in its pre-made series.
        m.started("/etcdserverpb.KV/Put", None).handled(0, Duration::from_millis(1));
        m.started("/etcdserverpb.KV/Put", None).handled(99, Duration::from_millis(1));
        let families = r.gather();
        let f = families.iter().find(|f| f.name() == "grpc_server_handled_total").expect("family");
        let put = |code: &str| {
            f.get_metric()
                .iter()
                .find(|m| {
                    m.get_label().iter().any(|l| l.value() == "Put")
                        && m.get_label().iter().any(|l| l.value() == code)
                })
                .map(|m| m.get_counter().get_value() as u64)
        };
        assert_eq!((put("OK"), put("Unknown"), put("Internal")), (Some(1), Some(1), Some(0)));
    }
}
