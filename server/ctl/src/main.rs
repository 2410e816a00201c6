//! `rustedctl`: etcdctl's command line for rusted and etcd (the v3 gRPC API only).
#![forbid(unsafe_code)]

use rusted_ctl::{parse, run};

fn main() -> std::process::ExitCode {
    let ctl = match parse() {
        Ok(c) => c,
        Err(code) => return std::process::ExitCode::from(code),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    std::process::ExitCode::from(rt.block_on(run(ctl)))
}
