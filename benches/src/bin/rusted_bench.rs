//! `rusted-bench`: etcd's benchmark tool's command line over the etcd v3 gRPC API, for etcd
//! and rusted alike (see `rusted_benches::load`).
#![forbid(unsafe_code)]

use clap::Parser;
use rusted_benches::load::{run, Bench};

fn main() -> std::process::ExitCode {
    let b = Bench::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(run(&b)) {
        Ok((report, took)) => {
            if b.json {
                println!("{}", report.json(took));
            } else {
                println!("{}", report.text(took, b.precise));
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(1)
        }
    }
}
