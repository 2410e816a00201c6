//! The engine's error type.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// Everything that can go wrong in the page store.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An I/O error.
    #[error("engine: i/o error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a rusted page file, or was written by an unknown format version.
    #[error("engine: {path} is not a usable page file: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A page reachable from the meta is damaged.
    #[error("engine: corrupt page {page}: {reason}")]
    Corrupt {
        /// The page id.
        page: u64,
        /// What is wrong.
        reason: String,
    },
    /// The named bucket does not exist.
    #[error("engine: bucket {0:?} not found")]
    BucketNotFound(String),
    /// A bucket with that name exists already.
    #[error("engine: bucket {0:?} already exists")]
    BucketExists(String),
    /// Keys must be non-empty and at most [`crate::MAX_KEY_SIZE`] bytes; values at most
    /// [`crate::MAX_VALUE_SIZE`].
    #[error("engine: {0}")]
    InvalidArgument(String),
    /// A previous commit failed part-way: the store must be reopened.
    #[error("engine: store failed earlier and must be reopened: {0}")]
    Poisoned(String),
    /// Invalid options.
    #[error("engine: invalid option: {0}")]
    InvalidOption(String),
}

/// Result alias.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub trait IoContext<T> {
    /// The error as an [`EngineError::Io`] naming `path`.
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| EngineError::Io { path: path.to_path_buf(), source })
    }
}
