//! The error type of weir's SQL layer: every error carries the script line it is about.

/// A problem in a statement, with the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct SqlError {
    /// 1-based line in the script, when known.
    pub line: Option<usize>,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl SqlError {
    /// An error about `line`.
    pub fn at(line: usize, message: impl Into<String>) -> Self {
        Self { line: Some(line), message: message.into() }
    }

    /// An error with no particular line.
    pub fn new(message: impl Into<String>) -> Self {
        Self { line: None, message: message.into() }
    }
}

/// Result alias of this crate.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;
