//! weir's runtime: sessions, continuous queries and the batch loop that runs them
//! exactly once from replayable sources to idempotent sinks.
//!
//! [`Session`] takes SQL statements; an `INSERT INTO ... SELECT` becomes a
//! [`StreamingQuery`] whose batches run in `runner`; a `SELECT` over streams becomes a live
//! [`Preview`], one over static tables a batch query; `SHOW TABLES`, `DESCRIBE` and
//! `DROP TABLE` work on the session's catalog. The CLI, the shell and the Python bindings
//! are layers over these types.

#![warn(missing_docs)]

pub mod catalog;
pub mod error;
mod failpoint;
pub mod inspect;
pub mod metrics;
mod operators;
pub mod preview;
pub mod progress;
pub mod query;
mod registry;
mod runner;
pub mod session;
mod static_tables;

pub use catalog::TableDescription;
pub use error::{Result, WeirError};
pub use metrics::Metrics;
pub use preview::Preview;
pub use weir_connectors::channel::PreviewBatch;
/// Upkeep of Delta tables: compaction and VACUUM (`weir optimize`, `weir vacuum`).
pub use weir_connectors::delta_upkeep;
pub use progress::{QueryListener, QueryProgress};
pub use query::{QueryStatus, StreamingQuery};
pub use weir_connectors::foreach_batch::BatchFunction;
pub use session::{Executed, QueryOptions, Session, SessionConfig, TableDef, WatermarkPolicy};
pub use weir_sql::config::Trigger;
