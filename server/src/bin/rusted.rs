//! `rusted`: an etcd-compatible member. With no flags it serves a single-member cluster on
//! 127.0.0.1:2379 (clients) and 127.0.0.1:2380 (peers), data in ./default.rusted.
#![forbid(unsafe_code)]

use rusted_server::config::argv::{load, LoadError};
use rusted_server::logging;
use rusted_server::member::Member;

fn main() -> std::process::ExitCode {
    let loaded = match load(std::env::args(), std::env::vars()) {
        Ok(l) => l,
        Err(LoadError::Usage(e)) => e.exit(),
        Err(LoadError::Invalid(e)) => {
            eprintln!("rusted: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cfg = loaded.cfg;
    let d = &cfg.deferred;
    let started = logging::Rotation::from_flags(
        d.enable_log_rotation,
        &d.log_outputs,
        &d.log_rotation_config_json,
    )
    .and_then(|rotation| logging::init(logging::level(&cfg.log_level), &d.log_outputs, rotation));
    if let Err(e) = started {
        eprintln!("rusted: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if let Some(path) = &cfg.config_file {
        tracing::info!(path = %path.display(), "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided");
    }
    for w in loaded.warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rusted: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        let member = match Member::start(cfg).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot watch SIGTERM: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
            _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
            why = member.failed() => {
                // No graceful stop: the store cannot be trusted to close cleanly, and the WAL
                // already holds every acknowledged write.
                tracing::error!(cause = %why, "fatal: the member stops");
                return std::process::ExitCode::FAILURE;
            }
        }
        member.stop().await;
        tracing::info!("stopped");
        std::process::ExitCode::SUCCESS
    });
    // The member has stopped: its WAL is synced and its store closed. Dropping the runtime
    // would wait for idle blocking-pool threads (seconds, for nothing); leave them.
    rt.shutdown_background();
    code
}
