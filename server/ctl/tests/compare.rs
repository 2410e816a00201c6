//! rustedctl against etcdctl: the commands of `tests/ctl/commands.txt` run through Debian's
//! etcdctl 3.4 and through rustedctl, each against a fresh server, must print the same (ids,
//! sizes, timings and versions normalized). Once against rusted, once against Debian's etcd 3.4
//! (so rustedctl is shown to be a true etcd client). Needs etcdctl and etcd (`.ci/run`
//! installs them).
//!
//! The rusted server binary is `RUSTED_BIN` if set, else `rusted` beside `rustedctl` in the
//! target directory: `cargo test --workspace` builds both; with `-p rusted-ctl` alone, build it
//! first (`cargo build -p rusted-server --bin rusted`).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `rusted` binary to test against.
fn rusted_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RUSTED_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_BIN_EXE_rustedctl")).with_file_name("rusted");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p rusted-server --bin rusted` or set RUSTED_BIN",
        p.display()
    );
    p
}

/// Runs `tests/<script>` with `env`; panics with `what` and the script's output on failure.
fn run_script(script: &str, env: &[(&str, &str)], what: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let rusted = rusted_bin();
    let out = Command::new("bash")
        .arg(path)
        .env("RUSTED_BIN", &rusted)
        .envs(env.iter().copied())
        .output()
        .expect("cannot run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} ({}):\n{stdout}\n{stderr}", out.status);
    println!("{stdout}");
}

#[test]
fn rustedctl_prints_what_etcdctl_prints() {
    run_script(
        "ctl/compare.sh",
        &[("RUSTEDCTL_BIN", env!("CARGO_BIN_EXE_rustedctl"))],
        "rustedctl differs from etcdctl",
    );
}

#[test]
fn rustedctl_is_an_etcd_client() {
    run_script(
        "ctl/compare.sh",
        &[
            ("SERVER", "etcd"),
            // Its own address: the two tests run at the same time.
            ("ADDR", "127.0.0.5"),
            ("RUSTEDCTL_BIN", env!("CARGO_BIN_EXE_rustedctl")),
        ],
        "rustedctl differs from etcdctl against etcd",
    );
}

/// Runs one of rusted-server's compatibility scripts with rustedctl as the client too.
fn compat_script_with_rustedctl(name: &str, what: &str) {
    compat_script(name, "etcd rustedctl", what)
}

/// Runs one of rusted-server's compatibility scripts on `targets`, with rustedctl at hand.
fn compat_script(name: &str, targets: &str, what: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/compat").join(name);
    let rusted = rusted_bin();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new("bash")
        .arg(script)
        .env("RUSTED_BIN", &rusted)
        .env("RUSTEDCTL_BIN", env!("CARGO_BIN_EXE_rustedctl"))
        .env("TARGETS", targets)
        .env("PYTHON", python)
        .output()
        .expect("cannot run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} ({}):\n{stdout}\n{stderr}", out.status);
    println!("{stdout}");
}

/// etcd's snapshot restored by `rustedctl snapshot restore` onto three rusted members, and
/// rusted's by etcdctl onto three etcd members, serve what their source served; both restore
/// tools refuse bad snapshots alike.
#[test]
fn snapshots_restore_across_etcd_and_rusted() {
    compat_script("restore.sh", "etcd rusted", "restoring differs between etcd and rusted");
}

/// `rustedctl make-mirror` from a running etcd into rusted, under writes, ends as etcdctl's
/// from etcd into etcd: the same keys, the same count printed.
#[test]
fn make_mirror_copies_and_follows_as_etcdctls() {
    compat_script("mirror.sh", "etcd rusted", "make-mirror differs from etcdctl's");
}

#[test]
fn rustedctl_speaks_tls_as_etcdctl() {
    // The same TLS scenarios as rusted-server's tests/tls.rs, with rustedctl as the client.
    compat_script_with_rustedctl("tls.sh", "rustedctl over TLS differs from etcdctl");
}

#[test]
fn rustedctl_speaks_auth_as_etcdctl() {
    // rusted-server's tests/auth.rs scenarios: user, role and auth commands, --user.
    compat_script_with_rustedctl("auth.sh", "rustedctl's auth commands differ from etcdctl's");
}
