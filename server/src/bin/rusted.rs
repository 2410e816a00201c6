//! `rusted`: an etcd-compatible member. With no flags it serves a single-member cluster on
//! 127.0.0.1:2379 (clients) and 127.0.0.1:2380 (peers), data in ./default.rusted.
//! Built with the `alloc-count` feature it counts its heap allocations (benchmarks).

#[cfg(feature = "alloc-count")]
#[path = "rusted/alloc_count.rs"]
mod alloc_count;

/// mimalloc: see server/Cargo.toml (with `alloc-count`, the counting wrapper around it).
#[cfg(not(feature = "alloc-count"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rusted_server::config::argv::{load, process_args, process_env, LoadError};
use rusted_server::discovery::proxy;
use rusted_server::logging;
use rusted_server::member::bootstrap::FallBackToProxy;
use rusted_server::member::Member;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "alloc-count")]
    rusted_server::metrics::process::count_allocations_with(alloc_count::allocations);
    let loaded = match load(process_args(), process_env()) {
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
        // etcd 3.4's v2 proxy: asked for, or what this data dir already is.
        let fresh = !cfg.member_dir().join("identity.json").exists();
        if fresh && (cfg.deferred.proxy != "off" || proxy::is_proxy_dir(&cfg)) {
            return run_proxy(cfg).await;
        }
        let member = match Member::start(cfg.clone()).await {
            Ok(m) => m,
            Err(e) if e.downcast_ref::<FallBackToProxy>().is_some() => {
                // Nothing was bootstrapped: the member dir holds no state, and a restart
                // must find a proxy's data dir (etcd 3.4 leaves both and then refuses to start).
                let _ = std::fs::remove_dir_all(cfg.member_dir());
                return run_proxy(cfg).await;
            }
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
            () = member.removed() => {
                tracing::warn!("the member has been permanently removed from the cluster");
                tracing::warn!(
                    "data-dir" = %cfg.data_dir().display(),
                    "data-dir used by this member must be removed"
                );
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

/// Runs as etcd 3.4's v2 proxy until SIGINT or SIGTERM.
async fn run_proxy(cfg: rusted_server::config::ServerConfig) -> std::process::ExitCode {
    let stop = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("proxy shutting down");
    };
    match proxy::run(cfg, stop).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("cannot start the proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
