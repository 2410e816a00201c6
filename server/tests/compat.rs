//! The compatibility suite: the same etcdctl, JSON-gateway and python etcd3 scripts run against
//! Debian's etcd and against rusted, and their outputs (ids and timings normalized) must be
//! equal. Needs etcd, etcdctl and python's etcd3 module (`.ci/run` installs them); fails, with
//! the reason, when they are missing.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command;

#[test]
fn etcdctl_gateway_and_python_client_see_what_etcd_shows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let out = Command::new("bash")
        .arg(dir.join("run.sh"))
        .env("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted"))
        .output()
        .expect("cannot run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "compatibility suite failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
}
