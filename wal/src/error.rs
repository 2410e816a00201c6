//! The WAL's error type.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// Everything that can go wrong in the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error outside the write path (listing, reading, creating files).
    #[error("wal: i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Damage before the tail of the log (or anywhere, in a segment that is not the last).
    #[error("wal: corrupt segment {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged segment.
        path: PathBuf,
        /// Byte offset of the first bad byte sequence within it.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A segment is missing from the middle of the sequence.
    #[error("wal: missing segment between sequence {before} and {after} in {dir}")]
    MissingSegment {
        /// The directory.
        dir: PathBuf,
        /// Last sequence number seen.
        before: u64,
        /// Next sequence number seen.
        after: u64,
    },
    /// A write or fdatasync of the log failed earlier: the log accepts nothing more and must be
    /// reopened (the data of an failed fsync cannot be trusted to be on disk: no retry).
    #[error("wal: log failed and is closed to writes: {0}")]
    Poisoned(String),
    /// The WAL was closed.
    #[error("wal: closed")]
    Closed,
    /// An appended entry does not continue the log.
    #[error("wal: entry index {index} does not continue the log (first {first}, last {last})")]
    IndexGap {
        /// The offending index.
        index: u64,
        /// First index held.
        first: u64,
        /// Last index held.
        last: u64,
    },
    /// An index above [`crate::record::MAX_INDEX`].
    #[error("wal: index {0} exceeds the maximum log index")]
    IndexTooLarge(u64),
    /// A record is larger than the configured maximum or than a segment can hold.
    #[error("wal: record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Entries asked for are no longer in the log (released) or before its start.
    #[error("wal: requested index {0} is compacted")]
    Compacted(u64),
    /// Entries asked for are past the end of the log.
    #[error("wal: requested index {0} is unavailable")]
    Unavailable(u64),
    /// Invalid options.
    #[error("wal: invalid option: {0}")]
    InvalidOption(String),
}

/// Result alias for the WAL.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| WalError::Io { path: path.to_path_buf(), source })
    }
}
