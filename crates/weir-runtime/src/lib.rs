//! weir's runtime: sessions, continuous queries and the batch loop that runs them
//! exactly once from replayable sources to idempotent sinks.
//!
//! [`Session`] takes SQL statements; an `INSERT INTO ... SELECT` becomes a
//! [`StreamingQuery`] whose batches run in `runner`. The CLI, the shell and the Python
//! bindings are layers over these two types.

#![warn(missing_docs)]

pub mod error;
mod failpoint;
pub mod progress;
pub mod query;
mod runner;
pub mod session;

pub use error::{Result, WeirError};
pub use progress::{QueryListener, QueryProgress};
pub use query::{QueryStatus, StreamingQuery};
pub use session::{Executed, QueryOptions, Session, SessionConfig, TableDef, WatermarkPolicy};
pub use weir_sql::config::Trigger;
