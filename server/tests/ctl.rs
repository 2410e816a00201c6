//! rustedctl against etcdctl: the commands of `tests/ctl/commands.txt` run through Debian's
//! etcdctl 3.4 and through rustedctl, each against a fresh rusted, must print the same (ids,
//! sizes, timings and versions normalized). Needs etcdctl (`.ci/run` installs it).
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
