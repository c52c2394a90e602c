//! weir's planner: a continuous query compiled once into a DataFusion physical plan whose
//! source leaves read the rows of the current micro-batch.
//!
//! It knows nothing of connectors or checkpoints: the runtime hands it source schemas and
//! the sink's schema, then feeds it one batch of rows at a time.

#![warn(missing_docs)]

pub mod aggregate;
pub mod batch;
pub mod chain;
pub mod compile;
pub mod dedup;
pub mod error;
pub mod slot;
pub mod static_side;
pub mod window_tvf;

pub use aggregate::WindowPlan;
pub use chain::OperatorPlan;
pub use compile::{CompiledQuery, SourceDef, compile};
pub use dedup::DedupPlan;
pub use error::{PlanError, Result};
pub use static_side::{StaticDef, StaticRows};
