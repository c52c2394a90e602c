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

/// Turns off the LIFO slot of the runtime `builder` makes, where a task woken by the running
/// one waits for it and no other worker may steal it (tokio-rs/tokio#4941).
///
/// The batch loop wakes the tasks that feed it (the file source's read-ahead, which then
/// starts the next decodes) and goes on working on a chunk for milliseconds: with the slot,
/// those tasks waited behind it while the other worker ran out of work and slept, and Linux
/// then often queued the next thread it woke behind a busy one. Without it the engines job's
/// 2M-row batch keeps 1.81-1.83 cores busy instead of 1.76-1.78, in 4% less time (three sets of
/// ten alternating runs, one binary with the slot on and off; Kafka and the latency job the
/// same). tokio's switch is unstable: `.cargo/config.toml` sets `--cfg tokio_unstable`, and a
/// build without it (a `RUSTFLAGS` of its own replaces the config's) keeps the slot.
pub fn without_lifo_slot(builder: &mut tokio::runtime::Builder) {
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    #[cfg(not(tokio_unstable))]
    let _ = builder;
}
