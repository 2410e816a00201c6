//! The compatibility suite: the same etcdctl, JSON-gateway and python etcd3 scripts run against
//! Debian's etcd and against rusted, and their outputs (ids and timings normalized) must be
//! equal. Needs etcd, etcdctl and python's etcd3 module (`.ci/run` installs them); fails, with
//! the reason, when they are missing. `compat/replace.sh` runs the documented member
//! replacement on three members of each, `compat/recover.sh` the recovery from a lost
//! quorum; `compat/metrics.sh` compares their metrics.
#![forbid(unsafe_code)]

mod common;

#[test]
fn etcdctl_gateway_and_python_client_see_what_etcd_shows() {
    common::run_script(
        "compat/run.sh",
        &[("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted"))],
        "compatibility suite failed",
    );
}

/// Every etcd metric is exported as etcd's or listed in README's table with why not; etcd's
/// mixin queries answer with data on rusted whenever they do on etcd (Prometheus evaluates them).
#[test]
fn metrics_match_etcds_and_its_mixin_queries_have_data() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    common::run_script(
        "compat/metrics.sh",
        &[("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted")), ("PYTHON", &python)],
        "metrics differ from etcd's",
    );
}

/// The documented recovery from a lost quorum (--force-new-cluster, then members added back).
#[test]
fn recovering_from_a_lost_quorum_works_as_on_etcd() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    common::run_script(
        "compat/recover.sh",
        &[("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted")), ("PYTHON", &python)],
        "recovery differs from etcd's",
    );
}

#[test]
fn the_documented_member_replacement_works_as_on_etcd() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    common::run_script(
        "compat/replace.sh",
        &[("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted")), ("PYTHON", &python)],
        "member replacement differs from etcd's",
    );
}

/// etcd's v2 API (`--enable-v2`): the ETCDCTL_API=2 commands and raw /v2 answers as etcd 3.4's.
#[test]
fn the_v2_api_answers_as_etcd_with_enable_v2() {
    common::run_script(
        "compat/v2.sh",
        &[("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted"))],
        "the v2 API differs from etcd's",
    );
}

/// Bootstrap by etcd's v2 discovery through an etcd 3.4 service and a rusted one: the cluster
/// forms, a fourth member is told the cluster is full, reused tokens and bad flags are refused.
#[test]
fn discovery_bootstraps_as_on_etcd() {
    common::run_script(
        "compat/discovery.sh",
        &[("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted"))],
        "discovery differs from etcd's",
    );
}

/// DNS SRV discovery through a local dnsmasq: https peers from `-ssl` records as etcd 3.4
/// (with etcdctl and rustedctl finding the cluster by `--discovery-srv`), then http-only
/// records, which etcd 3.4 cannot use.
#[test]
fn dns_srv_discovery_bootstraps_as_on_etcd() {
    // rustedctl is built beside rusted by `cargo test --workspace`.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rusted"));
    let ctl = bin.with_file_name("rustedctl").to_string_lossy().into_owned();
    let mut env = vec![("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted").to_string())];
    if std::path::Path::new(&ctl).exists() {
        env.push(("RUSTEDCTL_BIN", ctl));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::run_script("compat/srv.sh", &env, "DNS SRV discovery differs from etcd's");
}
