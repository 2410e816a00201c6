//! The peer transport's own runtime.
#![forbid(unsafe_code)]

/// The runtime of the peer transport (its listener, streams and senders): a thread of its own,
/// so that raft's messages do not queue behind client requests on the client runtime's
/// workers. A loaded leader's append otherwise waited up to a millisecond or more for a worker,
/// and every write waits for that round trip.
#[derive(Debug)]
pub(super) struct PeerRuntime {
    /// Taken by `drop`.
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl PeerRuntime {
    /// Worker threads of the peer runtime.
    const WORKERS: usize = 1;

    pub(super) fn new() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(Self::WORKERS)
            .thread_name("peer-io")
            .enable_all()
            .build()?;
        Ok(PeerRuntime { handle: rt.handle().clone(), rt: Some(rt) })
    }

    pub(super) fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }

    /// Shuts the runtime down, waiting (off the async runtime) up to `wait` for its tasks to
    /// be dropped: what they hold (the member's store among it) is released when this returns.
    pub(super) async fn shutdown(mut self, wait: std::time::Duration) {
        if let Some(rt) = self.rt.take() {
            let _ = tokio::task::spawn_blocking(move || rt.shutdown_timeout(wait)).await;
        }
    }
}

impl Drop for PeerRuntime {
    fn drop(&mut self) {
        // Not a blocking shutdown: a member may be dropped on the client runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
