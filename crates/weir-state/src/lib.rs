//! weir's keyed state: compact keys, the streaming `Deduplicate` operator, and its state
//! files in the checkpoint (snapshots plus per-batch deltas, versioned by batch id).

#![warn(missing_docs)]

pub mod dedup;
pub mod error;
pub mod key;
pub mod pages;
pub mod store;
pub mod table;

pub use dedup::{DedupMetrics, DedupSpec, Deduplicate, Eviction, Place, Settle};
pub use error::{Result, StateError};
pub use store::{DeltaWriter, StateFiles};
