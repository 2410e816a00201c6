//! Shared by the script-driven suites: runs a bash script from `tests/` with environment
//! variables and fails with its whole output when it exits non-zero.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `tests/<script>` with `env`; panics with `what` and the script's output on failure.
pub fn run_script(script: &str, env: &[(&str, &str)], what: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let out =
        Command::new("bash").arg(path).envs(env.iter().copied()).output().expect("cannot run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} ({}):\n{stdout}\n{stderr}", out.status);
    println!("{stdout}");
}
