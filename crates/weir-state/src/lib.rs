//! weir's stateful operators and their state: the [`StatefulOperator`] contract the batch
//! loop drives, the streaming `Deduplicate` operator with its compact keys, the event-time
//! `WindowAggregate`, and the state files in the checkpoint (snapshots plus per-batch deltas,
//! versioned by batch id, one directory per operator).

#![warn(missing_docs)]

pub mod dedup;
pub mod error;
pub mod key;
pub mod operator;
pub mod pages;
mod spill;
pub mod store;
pub mod table;
pub mod window;

pub use dedup::{DedupMetrics, DedupOperator, DedupSpec, Deduplicate, Eviction, Place, Settle};
pub use operator::{OperatorMetrics, SnapshotFilter, StatefulOperator};
pub use window::{WindowAggregate, WindowSpec};
pub use error::{Result, StateError};
pub use store::{StateFiles, StateWriter};
