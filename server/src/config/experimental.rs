//! etcd 3.5's `--experimental-*` server flags, with their ETCD_* variables and defaults.
//!
//! Each is implemented, accepted because rusted already behaves as the flag asks, or — when
//! it asks for something rusted does not do yet — refused at start by [`ExperimentalFlags::check`]
//! with "not supported yet", never silently ignored. The README's flag table says which.
#![forbid(unsafe_code)]

use std::time::Duration;

use clap::{ArgAction, Args};

use crate::config::flags::go_duration;

/// The `--experimental-*` flags.
#[derive(Debug, Clone, Args)]
pub struct ExperimentalFlags {
    /// Duration of periodic watch progress notifications.
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m0s",
        value_parser = go_duration
    )]
    pub watch_progress_notify_interval: Duration,
    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(long = "experimental-initial-corrupt-check", env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub initial_corrupt_check: bool,
    /// Duration of time between cluster corruption check passes (0: never).
    #[arg(long = "experimental-corrupt-check-time", env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME",
          default_value = "0s", value_parser = go_duration)]
    pub corrupt_check_time: Duration,
    /// Enable leader-driven checks of the hashes of compacted revisions.
    #[arg(long = "experimental-compact-hash-check-enabled", env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_ENABLED",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub compact_hash_check_enabled: bool,
    /// Interval between compact hash checks.
    #[arg(long = "experimental-compact-hash-check-time", env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_TIME",
          default_value = "1m0s", value_parser = go_duration)]
    pub compact_hash_check_time: Duration,
    /// Let the leader checkpoint lease remaining TTLs to followers.
    #[arg(long = "experimental-enable-lease-checkpoint", env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub enable_lease_checkpoint: bool,
    /// Persist lease checkpoints (with --experimental-enable-lease-checkpoint).
    #[arg(long = "experimental-enable-lease-checkpoint-persist", env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT_PERSIST",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub enable_lease_checkpoint_persist: bool,
    /// Revisions deleted per compaction batch (0: no limit).
    #[arg(
        long = "experimental-compaction-batch-limit",
        env = "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub compaction_batch_limit: i64,
    /// Pause between compaction batches.
    #[arg(long = "experimental-compaction-sleep-interval", env = "ETCD_EXPERIMENTAL_COMPACTION_SLEEP_INTERVAL",
          default_value = "0s", value_parser = go_duration)]
    pub compaction_sleep_interval: Duration,
    /// How often a downgrade's completion is checked.
    #[arg(long = "experimental-downgrade-check-time", env = "ETCD_EXPERIMENTAL_DOWNGRADE_CHECK_TIME",
          default_value = "5s", value_parser = go_duration)]
    pub downgrade_check_time: Duration,
    /// Applies slower than this are logged as a warning.
    #[arg(long = "experimental-warning-apply-duration", env = "ETCD_EXPERIMENTAL_WARNING_APPLY_DURATION",
          default_value = "100ms", value_parser = go_duration)]
    pub warning_apply_duration: Duration,
    /// Lock the process's memory (no swapping).
    #[arg(long = "experimental-memory-mlock", env = "ETCD_EXPERIMENTAL_MEMORY_MLOCK",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub memory_mlock: bool,
    /// Let write transactions share the read buffer.
    #[arg(long = "experimental-txn-mode-write-with-shared-buffer", env = "ETCD_EXPERIMENTAL_TXN_MODE_WRITE_WITH_SHARED_BUFFER",
          default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub txn_mode_write_with_shared_buffer: bool,
    /// Report the gRPC health service as not serving while defragmenting.
    #[arg(long = "experimental-stop-grpc-service-on-defrag", env = "ETCD_EXPERIMENTAL_STOP_GRPC_SERVICE_ON_DEFRAG",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub stop_grpc_service_on_defrag: bool,
    /// Defragment at start when at least this many MiB would be freed (0: never).
    #[arg(
        long = "experimental-bootstrap-defrag-threshold-megabytes",
        env = "ETCD_EXPERIMENTAL_BOOTSTRAP_DEFRAG_THRESHOLD_MEGABYTES",
        default_value_t = 0
    )]
    pub bootstrap_defrag_threshold_megabytes: u64,
    /// Entries kept after a snapshot for slow followers to catch up from.
    #[arg(
        long = "experimental-snapshot-catchup-entries",
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = rusted_replication::config::DEFAULT_CATCHUP_ENTRIES
    )]
    pub snapshot_catchup_entries: u64,
    /// Accept a peer's client certificate whatever its subject alternative names.
    #[arg(long = "experimental-peer-skip-client-san-verification", env = "ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub peer_skip_client_san_verification: bool,
    /// Enable OpenTelemetry tracing.
    #[arg(long = "experimental-enable-distributed-tracing", env = "ETCD_EXPERIMENTAL_ENABLE_DISTRIBUTED_TRACING",
          default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = crate::config::flags::go_bool)]
    pub enable_distributed_tracing: bool,
    /// Where traces go (with --experimental-enable-distributed-tracing).
    #[arg(
        long = "experimental-distributed-tracing-address",
        env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_ADDRESS",
        default_value = "localhost:4317"
    )]
    pub distributed_tracing_address: String,
    /// Service name of the traces.
    #[arg(
        long = "experimental-distributed-tracing-service-name",
        env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SERVICE_NAME",
        default_value = "etcd"
    )]
    pub distributed_tracing_service_name: String,
    /// Instance ID of the traces.
    #[arg(
        long = "experimental-distributed-tracing-instance-id",
        env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_INSTANCE_ID",
        default_value = ""
    )]
    pub distributed_tracing_instance_id: String,
    /// Sampled spans per million.
    #[arg(
        long = "experimental-distributed-tracing-sampling-rate",
        env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SAMPLING_RATE",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub distributed_tracing_sampling_rate: i64,
}

impl ExperimentalFlags {
    /// etcd's start-time checks of these flags, and refusals of what rusted does not do yet.
    pub fn check(&self) -> Result<(), String> {
        if self.compact_hash_check_time.is_zero() {
            return Err(format!(
                "--experimental-compact-hash-check-time must be >0 (set to {:?})",
                self.compact_hash_check_time
            ));
        }
        if self.enable_lease_checkpoint_persist && !self.enable_lease_checkpoint {
            return Err("setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint".into());
        }
        if self.enable_distributed_tracing
            && !(0..=1_000_000).contains(&self.distributed_tracing_sampling_rate)
        {
            return Err(
                "--experimental-distributed-tracing-sampling-rate must be 0 to 1000000".into()
            );
        }
        let unsupported: [(bool, &str); 3] = [
            (!self.corrupt_check_time.is_zero(), "--experimental-corrupt-check-time"),
            (self.compact_hash_check_enabled, "--experimental-compact-hash-check-enabled"),
            (self.enable_distributed_tracing, "--experimental-enable-distributed-tracing"),
        ];
        match unsupported.iter().find(|(set, _)| *set) {
            Some((_, flag)) => Err(super::deferred::not_supported(flag)),
            None => Ok(()),
        }
    }
}
