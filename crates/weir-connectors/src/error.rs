//! Errors of sources and sinks.

use weir_checkpoint::CheckpointError;

/// What can go wrong in a connector. Messages say what and where (file and line, table path).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The table's settings cannot work (fatal; fix the SQL).
    #[error("{0}")]
    Config(String),
    /// A record could not be read; the message names the file and line.
    #[error("{0}")]
    BadData(String),
    /// The source's system cannot be reached now (a broker down); the batch loop retries.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed (may succeed when retried).
    #[error("{0}")]
    Io(String),
    /// The Delta table refused a write or could not be read.
    #[error("{0}")]
    Delta(String),
    /// The checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl ConnectorError {
    /// Whether retrying the same operation may succeed (storage hiccups), as opposed to an
    /// error that needs a person (bad data, bad settings).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io(_) | Self::Unavailable(_))
    }
}

/// Result alias of this crate.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
