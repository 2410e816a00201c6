//! `rustedctl`: etcdctl's command line for rusted and etcd (the v3 gRPC API only).
#![forbid(unsafe_code)]

use clap::Parser;
use rusted_server::ctl::{run, Ctl};

fn main() -> std::process::ExitCode {
    let ctl = Ctl::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    std::process::ExitCode::from(rt.block_on(run(ctl)))
}
