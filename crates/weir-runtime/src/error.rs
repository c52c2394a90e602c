//! The error type of the runtime and everything it drives.

use weir_checkpoint::CheckpointError;
use weir_connectors::ConnectorError;
use weir_sql::SqlError;

/// Anything that stops a statement or a query.
#[derive(Debug, thiserror::Error)]
pub enum WeirError {
    /// A statement is malformed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// A statement is well-formed but cannot be carried out (unknown table, bad query, a
    /// sink that does not fit); `line` is the statement's line in its script.
    #[error("line {line}: {message}")]
    Statement {
        /// Line of the statement.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A setting of the session is invalid.
    #[error("{0}")]
    Config(String),
    /// The checkpoint cannot be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A batch failed; nothing of it was committed.
    #[error("batch {batch_id}: {message}")]
    Batch {
        /// The batch.
        batch_id: u64,
        /// What failed (names the file and line, or the table).
        message: String,
    },
    /// Operator state could not be loaded (names the state file).
    #[error(transparent)]
    State(#[from] weir_state::StateError),
    /// A connector failed outside a batch.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The query ended with an error reported earlier (see `StreamingQuery::exception`).
    #[error("{0}")]
    Terminated(String),
}

impl WeirError {
    pub(crate) fn at(line: usize, message: impl std::fmt::Display) -> Self {
        Self::Statement { line, message: message.to_string() }
    }
}

/// Result alias of this crate.
pub type Result<T, E = WeirError> = std::result::Result<T, E>;
