//! Errors of the state store and stateful operators.

/// What can go wrong with state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] weir_checkpoint::CheckpointError),
    /// A state file is missing or unreadable; never silently reset.
    #[error("state file {path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Input rows could not be processed.
    #[error("{0}")]
    Data(String),
}

/// Result alias of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
