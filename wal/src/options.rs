//! How a log is opened ([`WalOptions`]) and what its writer counts ([`Stats`]).
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::io::{IoBackend, IoMode, SyncStyle};
use crate::segment::Prealloc;

/// Builds an I/O backend for the writer (tests wrap one to inject faults).
pub type BackendFactory = Arc<dyn Fn() -> std::io::Result<Box<dyn IoBackend>> + Send + Sync>;

/// Told how long each durable write group took (written and synced), for latency metrics.
pub type SyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Called before each segment file is preallocated; an error is taken as the preallocation's
/// own (fault injection: a full disk).
pub type PreallocHook = Arc<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>;

/// Default segment size, as etcd's (64 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Default largest record payload.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 32 << 20;
/// Segments kept after release by default (etcd's `--max-wals` default).
pub const DEFAULT_MAX_FILES: usize = 5;
/// Largest segment size (frame `batch` offsets are 32-bit).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 31;
/// How to open a log.
#[derive(Clone)]
pub struct WalOptions {
    /// Segment size; a new segment is started when the next record would not fit.
    pub segment_size: u64,
    /// Largest record payload accepted (and read back).
    pub max_record_bytes: u32,
    /// Write backend.
    pub io: IoMode,
    /// Open segments with O_DIRECT (aligned 4 KiB writes, no page cache).
    pub direct_io: bool,
    /// How a group is made durable.
    pub sync: SyncStyle,
    /// How new segments get their space.
    pub prealloc: Prealloc,
    /// Truncate the log at damage instead of refusing to open.
    pub repair: bool,
    /// Segments kept even once released (etcd's `--max-wals`); 0 keeps every segment. Only
    /// entries above the latest snapshot marker are indexed in memory. The live segment is
    /// always kept.
    pub max_files: usize,
    /// Appenders wait while this many bytes are pending (bounded memory).
    pub max_pending_bytes: usize,
    /// Overrides `io` with a custom backend (fault injection).
    pub backend_factory: Option<BackendFactory>,
    /// Called after each group is durable, with the time it took.
    pub on_sync: Option<SyncObserver>,
    /// Fault injection before each preallocation.
    pub prealloc_hook: Option<PreallocHook>,
}

impl std::fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalOptions")
            .field("segment_size", &self.segment_size)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("io", &self.io)
            .field("direct_io", &self.direct_io)
            .field("sync", &self.sync)
            .field("prealloc", &self.prealloc)
            .field("repair", &self.repair)
            .field("max_files", &self.max_files)
            .field("max_pending_bytes", &self.max_pending_bytes)
            .field("backend_factory", &self.backend_factory.is_some())
            .field("on_sync", &self.on_sync.is_some())
            .field("prealloc_hook", &self.prealloc_hook.is_some())
            .finish()
    }
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            io: IoMode::Auto,
            direct_io: true,
            sync: SyncStyle::Dsync,
            prealloc: Prealloc::ZeroFill,
            repair: false,
            max_files: DEFAULT_MAX_FILES,
            max_pending_bytes: 64 << 20,
            backend_factory: None,
            on_sync: None,
            prealloc_hook: None,
        }
    }
}

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct Stats {
    groups: AtomicU64,
    chunks: AtomicU64,
    bytes: AtomicU64,
    records: AtomicU64,
    sync_nanos: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Write groups completed (each ended with one fdatasync per segment it touched).
    pub groups: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Records appended and made durable.
    pub records: u64,
    /// Total time spent writing and syncing groups.
    pub write_sync_time: Duration,
}

impl Stats {
    pub(crate) fn record_group(&self, chunks: usize, bytes: u64, took: Duration) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.chunks.fetch_add(chunks as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.sync_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_records(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            groups: self.groups.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            write_sync_time: Duration::from_nanos(self.sync_nanos.load(Ordering::Relaxed)),
        }
    }
}
