//! rustedctl against etcdctl: the commands of `tests/ctl/commands.txt` run through Debian's
//! etcdctl 3.4 and through rustedctl, each against a fresh rusted, must print the same (ids,
//! sizes, timings and versions normalized). Needs etcdctl (`.ci/run` installs it).
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command;

#[test]
fn rustedctl_prints_what_etcdctl_prints() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ctl/compare.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("RUSTED_BIN", env!("CARGO_BIN_EXE_rusted"))
        .env("RUSTEDCTL_BIN", env!("CARGO_BIN_EXE_rustedctl"))
        .output()
        .expect("cannot run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rustedctl differs from etcdctl ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
}
