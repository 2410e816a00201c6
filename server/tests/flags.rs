//! etcd 3.5's whole server flag set: every flag is accepted with its default, as its ETCD_*
//! variable and as its configuration-file key; flags whose features rusted does not have yet
//! refuse the values that ask for them, naming the flag; kubeadm's command line is taken
//! unchanged.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod common;

use rusted_server::config::argv::{load, LoadError, Loaded};

/// etcd 3.5's server flags: name, default, configuration-file key (`-`: none).
const FLAGS: &[(&str, &str, &str)] = &[
    ("data-dir", "", "data-dir"),
    ("wal-dir", "", "wal-dir"),
    ("listen-peer-urls", "http://localhost:2380", "listen-peer-urls"),
    ("listen-client-urls", "http://localhost:2379", "listen-client-urls"),
    ("listen-client-http-urls", "", "listen-client-http-urls"),
    ("listen-metrics-urls", "", "listen-metrics-urls"),
    ("max-snapshots", "5", "max-snapshots"),
    ("max-wals", "5", "max-wals"),
    ("name", "default", "name"),
    ("snapshot-count", "100000", "snapshot-count"),
    ("heartbeat-interval", "100", "heartbeat-interval"),
    ("election-timeout", "1000", "election-timeout"),
    ("initial-election-tick-advance", "true", "initial-election-tick-advance"),
    ("quota-backend-bytes", "0", "quota-backend-bytes"),
    ("backend-bbolt-freelist-type", "", "backend-bbolt-freelist-type"),
    ("backend-batch-interval", "0s", "backend-batch-interval"),
    ("backend-batch-limit", "0", "backend-batch-limit"),
    ("max-txn-ops", "128", "max-txn-ops"),
    ("max-request-bytes", "1572864", "max-request-bytes"),
    ("grpc-keepalive-min-time", "5s", "grpc-keepalive-min-time"),
    ("grpc-keepalive-interval", "2h0m0s", "grpc-keepalive-interval"),
    ("grpc-keepalive-timeout", "20s", "grpc-keepalive-timeout"),
    ("socket-reuse-port", "false", "socket-options.reuse-port"),
    ("socket-reuse-address", "false", "socket-options.reuse-address"),
    ("max-concurrent-streams", "4294967295", "max-concurrent-streams"),
    ("raft-read-timeout", "5s", "-"),
    ("raft-write-timeout", "5s", "-"),
    ("initial-advertise-peer-urls", "http://localhost:2380", "initial-advertise-peer-urls"),
    ("advertise-client-urls", "http://localhost:2379", "advertise-client-urls"),
    ("discovery", "", "discovery"),
    ("discovery-fallback", "proxy", "discovery-fallback"),
    ("discovery-proxy", "", "discovery-proxy"),
    ("discovery-srv", "", "discovery-srv"),
    ("discovery-srv-name", "", "discovery-srv-name"),
    ("initial-cluster", "default=http://localhost:2380", "initial-cluster"),
    ("initial-cluster-token", "etcd-cluster", "initial-cluster-token"),
    ("initial-cluster-state", "new", "initial-cluster-state"),
    ("strict-reconfig-check", "true", "strict-reconfig-check"),
    ("pre-vote", "true", "pre-vote"),
    ("auto-compaction-retention", "0", "auto-compaction-retention"),
    ("auto-compaction-mode", "periodic", "auto-compaction-mode"),
    ("enable-grpc-gateway", "true", "enable-grpc-gateway"),
    ("enable-v2", "false", "enable-v2"),
    ("experimental-enable-v2v3", "", "experimental-enable-v2v3"),
    ("v2-deprecation", "", "v2-deprecation"),
    ("proxy", "off", "proxy"),
    ("proxy-failure-wait", "5000", "proxy-failure-wait"),
    ("proxy-refresh-interval", "30000", "proxy-refresh-interval"),
    ("proxy-dial-timeout", "1000", "proxy-dial-timeout"),
    ("proxy-write-timeout", "5000", "proxy-write-timeout"),
    ("proxy-read-timeout", "0", "proxy-read-timeout"),
    ("cert-file", "", "client-transport-security.cert-file"),
    ("key-file", "", "client-transport-security.key-file"),
    ("client-cert-file", "", "client-transport-security.client-cert-file"),
    ("client-key-file", "", "client-transport-security.client-key-file"),
    ("client-cert-auth", "false", "client-transport-security.client-cert-auth"),
    ("client-crl-file", "", "-"),
    ("client-cert-allowed-hostname", "", "client-transport-security.allowed-hostname"),
    ("trusted-ca-file", "", "client-transport-security.trusted-ca-file"),
    ("auto-tls", "false", "client-transport-security.auto-tls"),
    ("peer-cert-file", "", "peer-transport-security.cert-file"),
    ("peer-key-file", "", "peer-transport-security.key-file"),
    ("peer-client-cert-file", "", "peer-transport-security.client-cert-file"),
    ("peer-client-key-file", "", "peer-transport-security.client-key-file"),
    ("peer-client-cert-auth", "false", "peer-transport-security.client-cert-auth"),
    ("peer-trusted-ca-file", "", "peer-transport-security.trusted-ca-file"),
    ("peer-auto-tls", "false", "peer-transport-security.auto-tls"),
    ("self-signed-cert-validity", "1", "self-signed-cert-validity"),
    ("peer-crl-file", "", "-"),
    ("peer-cert-allowed-cn", "", "peer-transport-security.allowed-cn"),
    ("peer-cert-allowed-hostname", "", "peer-transport-security.allowed-hostname"),
    ("cipher-suites", "", "cipher-suites"),
    ("experimental-peer-skip-client-san-verification", "false", "-"),
    ("tls-min-version", "TLS1.2", "tls-min-version"),
    ("tls-max-version", "", "tls-max-version"),
    ("cors", "*", "cors"),
    ("host-whitelist", "*", "host-whitelist"),
    ("logger", "zap", "logger"),
    ("log-outputs", "default", "log-outputs"),
    ("log-level", "info", "log-level"),
    ("enable-log-rotation", "false", "enable-log-rotation"),
    (
        "log-rotation-config-json",
        r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#,
        "log-rotation-config-json",
    ),
    ("enable-pprof", "false", "enable-pprof"),
    ("metrics", "basic", "metrics"),
    ("experimental-enable-distributed-tracing", "false", "experimental-enable-distributed-tracing"),
    (
        "experimental-distributed-tracing-address",
        "localhost:4317",
        "experimental-distributed-tracing-address",
    ),
    (
        "experimental-distributed-tracing-service-name",
        "etcd",
        "experimental-distributed-tracing-service-name",
    ),
    (
        "experimental-distributed-tracing-instance-id",
        "",
        "experimental-distributed-tracing-instance-id",
    ),
    (
        "experimental-distributed-tracing-sampling-rate",
        "0",
        "experimental-distributed-tracing-sampling-rate",
    ),
    ("auth-token", "simple", "auth-token"),
    ("bcrypt-cost", "10", "bcrypt-cost"),
    ("auth-token-ttl", "300", "auth-token-ttl"),
    ("experimental-initial-corrupt-check", "false", "experimental-initial-corrupt-check"),
    ("experimental-corrupt-check-time", "0s", "experimental-corrupt-check-time"),
    ("experimental-compact-hash-check-enabled", "false", "experimental-compact-hash-check-enabled"),
    ("experimental-compact-hash-check-time", "1m0s", "experimental-compact-hash-check-time"),
    ("experimental-enable-lease-checkpoint", "false", "experimental-enable-lease-checkpoint"),
    (
        "experimental-enable-lease-checkpoint-persist",
        "false",
        "experimental-enable-lease-checkpoint-persist",
    ),
    ("experimental-compaction-batch-limit", "0", "experimental-compaction-batch-limit"),
    ("experimental-compaction-sleep-interval", "0s", "experimental-compaction-sleep-interval"),
    (
        "experimental-watch-progress-notify-interval",
        "0s",
        "experimental-watch-progress-notify-interval",
    ),
    ("experimental-downgrade-check-time", "5s", "experimental-downgrade-check-time"),
    ("experimental-warning-apply-duration", "100ms", "experimental-warning-apply-duration"),
    ("experimental-memory-mlock", "false", "experimental-memory-mlock"),
    (
        "experimental-txn-mode-write-with-shared-buffer",
        "true",
        "experimental-txn-mode-write-with-shared-buffer",
    ),
    (
        "experimental-stop-grpc-service-on-defrag",
        "false",
        "experimental-stop-grpc-service-on-defrag",
    ),
    (
        "experimental-bootstrap-defrag-threshold-megabytes",
        "0",
        "experimental-bootstrap-defrag-threshold-megabytes",
    ),
    ("experimental-snapshot-catchup-entries", "5000", "experimental-snapshot-catch-up-entries"),
    ("unsafe-no-fsync", "false", "unsafe-no-fsync"),
    ("force-new-cluster", "false", "force-new-cluster"),
];

fn args(a: &[&str]) -> Vec<String> {
    std::iter::once("rusted").chain(a.iter().copied()).map(String::from).collect()
}

fn load_args(a: &[&str]) -> Result<Loaded, String> {
    load(args(a), Vec::<(String, String)>::new()).map_err(|e| match e {
        LoadError::Usage(e) => e.to_string(),
        LoadError::Invalid(e) => e,
    })
}

/// What an explicitly set flag needs beside it to be a valid command line.
fn companions(flag: &str) -> Vec<String> {
    match flag {
        "listen-client-urls" => vec!["--advertise-client-urls=http://localhost:2379".into()],
        _ => vec![],
    }
}

#[test]
fn every_flag_is_accepted_with_its_default() {
    assert!(FLAGS.len() >= 110, "{} flags", FLAGS.len());
    for (flag, default, _) in FLAGS {
        let mut a = vec![format!("--{flag}={default}")];
        a.extend(companions(flag));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let l = load_args(&a).unwrap_or_else(|e| panic!("--{flag}={default}: {e}"));
        l.cfg.check().unwrap_or_else(|e| panic!("--{flag}={default}: {e}"));
    }
}

#[test]
fn every_flag_has_its_etcd_variable() {
    for (flag, default, _) in FLAGS {
        let var = format!("ETCD_{}", flag.to_uppercase().replace(['-', '.'], "_"));
        let mut env = vec![(var.clone(), default.to_string())];
        if *flag == "listen-client-urls" {
            env.push(("ETCD_ADVERTISE_CLIENT_URLS".into(), "http://localhost:2379".into()));
        }
        let l = load(args(&[]), env).unwrap_or_else(|_| panic!("{var}={default}"));
        assert!(
            !l.warnings.iter().any(|w| w.contains(&var)),
            "{var} is not read: {:?}",
            l.warnings
        );
    }
}

#[test]
fn variables_arrive_as_etcd_reads_them() {
    let env = |kv: &[(&str, &str)]| -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let l = load(
        args(&[]),
        env(&[
            ("ETCD_NAME", "infra9"),
            ("ETCD_SNAPSHOT_COUNT", "7"),
            ("ETCD_CLIENT_CERT_AUTH", "1"),
            ("ETCD_PRE_VOTE", "F"),
            // Empty variables are skipped, as etcd skips them (compose files' ${VAR}).
            ("ETCD_DATA_DIR", ""),
            ("ETCD_LISTEN_CLIENT_URLS", ""),
            ("ETCD_LOGGER", ""),
        ]),
    )
    .unwrap();
    assert_eq!((l.cfg.name.as_str(), l.cfg.snapshot_count), ("infra9", 7));
    assert!(l.cfg.tls.client_cert_auth && !l.cfg.pre_vote);
    assert_eq!(l.cfg.data_dir, None);
    l.cfg.check().unwrap();
    // A variable sets its flag as the command line does (etcd sets flags from variables).
    let e = load(args(&[]), env(&[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:2379")]));
    assert!(matches!(e, Err(LoadError::Invalid(m)) if m.contains("advertise-client-urls")));
    let l = load(
        args(&[]),
        env(&[
            ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:2379"),
            ("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:2379"),
        ]),
    )
    .unwrap();
    assert_eq!(l.cfg.listen_client_urls, "http://127.0.0.1:2379");
    // With a configuration file, the variables are not read at all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "name: fromfile\n").unwrap();
    let l = load(
        args(&[]),
        env(&[("ETCD_CONFIG_FILE", path.to_str().unwrap()), ("ETCD_NAME", "fromenv")]),
    )
    .unwrap();
    assert_eq!(l.cfg.name, "fromfile");
}

#[test]
fn go_flag_semantics() {
    // The last of a repeated flag wins; Go's bool spellings; a bare bool flag is true.
    let l =
        load_args(&["--data-dir=/a", "--data-dir=/b", "--pre-vote", "--enable-pprof=1"]).unwrap();
    assert_eq!(l.cfg.data_dir.as_deref(), Some(std::path::Path::new("/b")));
    assert!(l.cfg.pre_vote && l.cfg.deferred.enable_pprof);
    assert!(load_args(&["--pre-vote=yes"]).is_err());
}

#[test]
fn every_flag_has_its_configuration_key() {
    let dir = tempfile::tempdir().unwrap();
    for (_, default, key) in FLAGS {
        if *key == "-" {
            continue;
        }
        // Nested keys (`client-transport-security.cert-file`) as nested mappings.
        let yaml = match key.split_once('.') {
            Some((outer, inner)) => format!("{outer}:\n  {inner}: '{default}'\n"),
            None => format!("{key}: '{default}'\n"),
        };
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let l = load_args(&[&format!("--config-file={}", path.display())])
            .unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert!(l.warnings.is_empty(), "{yaml}: {:?}", l.warnings);
        l.cfg.check().unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}

#[test]
fn features_not_built_yet_are_refused_by_name() {
    let cases: &[(&str, &str)] = &[
        ("--experimental-corrupt-check-time=1m", "--experimental-corrupt-check-time"),
        ("--experimental-enable-distributed-tracing", "--experimental-enable-distributed-tracing"),
    ];
    for (arg, flag) in cases {
        let l = load_args(&[arg]).unwrap_or_else(|e| panic!("{arg}: {e}"));
        let e = l.cfg.check().expect_err(arg);
        assert_eq!(e, format!("{flag} is not supported yet by rusted"), "{arg}");
    }
    // What rusted already does is accepted.
    for ok in [
        "--discovery=https://discovery.etcd.io/x",
        "--discovery-srv=example.com",
        "--enable-v2=true",
        "--proxy=on",
        "--logger=zap",
        "--log-outputs=stderr",
        "--log-outputs=/var/log/etcd.log",
        "--metrics=basic",
        "--metrics=extensive",
        "--enable-pprof",
        "--force-new-cluster",
        "--grpc-keepalive-interval=1m",
        "--grpc-keepalive-min-time=1s",
        "--raft-read-timeout=2s",
        "--raft-write-timeout=1s",
        "--grpc-keepalive-timeout=5s",
        "--auth-token=simple",
        "--proxy=off",
    ] {
        load_args(&[ok]).unwrap().cfg.check().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn etcds_own_refusals() {
    let refused = |a: &[&str]| -> String {
        match load_args(a) {
            Err(e) => e,
            Ok(l) => l.cfg.check().expect_err(&a.join(" ")),
        }
    };
    assert!(refused(&["--logger=capnslog"]).contains("removed"));
    assert!(refused(&["--election-timeout=60000"]).contains("too long"));
    assert!(refused(&["--heartbeat-interval=300"]).contains("5 times"));
    assert!(refused(&["--listen-client-urls=http://127.0.0.1:2379"])
        .contains("--advertise-client-urls is required"));
    assert!(refused(&["--cors=https://example.com"]).contains("host:port"));
    assert!(refused(&["--max-wals=-1"]).contains("-1"));
    assert!(refused(&["--no-such-flag"]).contains("no-such-flag"));
    assert!(refused(&["--experimental-enable-lease-checkpoint-persist"]).contains("requires"));
    assert!(refused(&["--experimental-compact-hash-check-time=0s"]).contains("must be >0"));
    assert!(refused(&["--enable-v2", "--v2-deprecation=gone"]).contains("mutually exclusive"));
    let rotation_needs_a_file =
        "--log-outputs requires a single file path when --log-rotate-config-json is defined";
    assert_eq!(refused(&["--enable-log-rotation"]), rotation_needs_a_file);
    assert_eq!(
        refused(&["--enable-log-rotation", "--log-outputs=a.log,b.log"]),
        rotation_needs_a_file
    );
    let e =
        refused(&["--enable-log-rotation", "--log-outputs=a.log", "--log-rotation-config-json={"]);
    assert!(e.starts_with("improperly formatted log rotation config"), "{e}");
    let e = refused(&[
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-client-http-urls=http://127.0.0.1:2379",
    ]);
    assert!(e.contains("cannot be the same"), "{e}");
}

#[test]
fn a_shadowed_variable_is_refused_and_an_unknown_one_reported() {
    let env = vec![("ETCD_NAME".to_string(), "x".to_string())];
    let Err(LoadError::Invalid(e)) = load(args(&["--name=y"]), env) else { panic!("accepted") };
    assert!(e.contains("ETCD_NAME"), "{e}");
    let env = vec![("ETCD_NAMEE".to_string(), "x".to_string())];
    let l = load(args(&[]), env).unwrap();
    assert_eq!(l.warnings, vec!["unrecognized environment variable ETCD_NAMEE".to_string()]);
}

#[test]
fn go_style_single_dashes_and_legacy_flags() {
    let l = load_args(&["-name", "infra0", "-snapshot-count=42", "-v"]).unwrap();
    assert_eq!((l.cfg.name.as_str(), l.cfg.snapshot_count), ("infra0", 42));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
}

#[test]
fn kubeadms_command_line() {
    let l = load_args(&[
        "--advertise-client-urls=https://10.0.0.5:2379",
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
        "--initial-advertise-peer-urls=https://10.0.0.5:2380",
        "--initial-cluster=cp1=https://10.0.0.5:2380",
        "--key-file=/etc/kubernetes/pki/etcd/server.key",
        "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.5:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--listen-peer-urls=https://10.0.0.5:2380",
        "--name=cp1",
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
        "--peer-client-cert-auth=true",
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--snapshot-count=10000",
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
    ])
    .unwrap();
    l.cfg.check().unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert!(l.cfg.experimental.initial_corrupt_check && l.cfg.tls.client_cert_auth);
    assert_eq!(l.cfg.snapshot_count, 10000);
}

/// `tests/compat/flags.sh` against Debian's etcd and rusted: single-dash flags, --cors,
/// --host-whitelist, --enable-grpc-gateway=false, --strict-reconfig-check, and the exit codes
/// of refused command lines must be equal.
#[test]
fn flag_scenarios_match_etcd() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    common::run_script(
        "compat/flags.sh",
        &[("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted")), ("PYTHON", &python)],
        "flag scenarios differ from etcd's",
    );
}

/// etcd's rules for the bootstrap flags: one method at most (an explicit `--initial-cluster`
/// counts, its default does not), v2 and v3 discovery not mixed, a v3 token with endpoints.
#[test]
fn bootstrap_flags_are_checked_as_etcd() {
    let refused = |args: &[&str]| match load_args(args) {
        Err(e) => e,
        Ok(l) => l.cfg.check().expect_err(&args.join(" ")),
    };
    let multiple = "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"";
    assert!(refused(&["--discovery=http://d/x", "--initial-cluster=a=http://a:2380"])
        .contains(multiple));
    assert!(refused(&["--discovery=http://d/x", "--discovery-srv=example.com"]).contains(multiple));
    assert!(refused(&[
        "--discovery-token=t",
        "--discovery-endpoints=http://d:2379",
        "--discovery-srv=x"
    ])
    .contains("\"discovery-endpoints\""));
    assert!(refused(&[
        "--discovery-proxy=http://p:3128",
        "--discovery-token=t",
        "--discovery-endpoints=http://d:2379"
    ])
    .contains("both v2 discovery settings"));
    assert!(refused(&["--discovery-token=t"])
        .contains("both --discovery-token and --discovery-endpoints must be set"));
    assert!(refused(&["--discovery-token=t", "--discovery-endpoints=http://d:2379,"])
        .contains("--discovery-endpoints must not contain empty endpoints"));
    // The default --initial-cluster gives way to discovery.
    let l = load_args(&["--discovery=http://d/x"]).unwrap();
    assert_eq!(l.cfg.initial_cluster, "");
    l.cfg.check().unwrap();
}

/// Bytes that are not UTF-8 in the environment or on the command line do not stop the binary
/// (Go's strings carry any bytes; `std::env::vars` would panic): a variable no flag reads is
/// ignored, and an argument is read with replacement characters.
#[test]
fn the_binary_starts_with_bytes_that_are_not_utf8_around_it() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rusted"))
        .arg("--version")
        .env("RUSTED_TEST_BYTES", OsStr::from_bytes(b"\x90\xff"))
        .env(OsStr::from_bytes(b"NAME_\xff"), "x")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rusted "), "{out:?}");
    // An argument that is not UTF-8: refused by the flag parser with a message, not a panic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rusted"))
        .arg(OsStr::from_bytes(b"--nam\xe9=x"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
}
