//! TLS as etcd serves it: `tests/compat/tls.sh` runs one-way and mutual TLS (good, missing and
//! foreign client certificates), auto TLS, the JSON gateway and snapshot save over TLS, http
//! and https listeners at once, and a metrics URL, against Debian's etcd and against rusted
//! with etcdctl, and their normalized outputs must be equal. Needs etcd, etcdctl, openssl,
//! curl and python (`.ci/run` installs them).
#![forbid(unsafe_code)]

mod common;

#[test]
fn tls_scenarios_match_etcd() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    common::run_script(
        "compat/tls.sh",
        &[
            ("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted")),
            ("PYTHON", &python),
            ("TARGETS", "etcd rusted"),
        ],
        "TLS scenarios differ from etcd's",
    );
}
