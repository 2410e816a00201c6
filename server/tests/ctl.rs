//! rustedctl against etcdctl: the commands of `tests/ctl/commands.txt` run through Debian's
//! etcdctl 3.4 and through rustedctl, each against a fresh server, must print the same (ids,
//! sizes, timings and versions normalized). Once against rusted, once against Debian's etcd 3.4
//! (so rustedctl is shown to be a true etcd client). Needs etcdctl and etcd (`.ci/run`
//! installs them).
#![forbid(unsafe_code)]

mod common;

#[test]
fn rustedctl_prints_what_etcdctl_prints() {
    common::run_script(
        "ctl/compare.sh",
        &[
            ("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted")),
            ("RUSTEDCTL_BIN", env!("CARGO_BIN_EXE_rustedctl")),
        ],
        "rustedctl differs from etcdctl",
    );
}

#[test]
fn rustedctl_is_an_etcd_client() {
    common::run_script(
        "ctl/compare.sh",
        &[
            ("SERVER", "etcd"),
            // Its own address: the two tests run at the same time.
            ("ADDR", "127.0.0.5"),
            ("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted")),
            ("RUSTEDCTL_BIN", env!("CARGO_BIN_EXE_rustedctl")),
        ],
        "rustedctl differs from etcdctl against etcd",
    );
}
