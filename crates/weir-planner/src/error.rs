//! Errors of the planner.

/// Why a query cannot be planned or a batch not executed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The SQL is wrong (unknown table or column, bad syntax, type errors).
    #[error("{0}")]
    Plan(String),
    /// The query is valid SQL but cannot run as a stream.
    #[error("{0}")]
    Unsupported(String),
    /// The query's output does not fit the sink.
    #[error("{0}")]
    SchemaMismatch(String),
    /// Executing a batch failed.
    #[error("{0}")]
    Execution(String),
}

/// Result alias of this crate.
pub type Result<T, E = PlanError> = std::result::Result<T, E>;
