//! weir's checkpoint: the write-ahead log of offsets and commits that makes replays exact,
//! over `object_store` so it can live on local disk or in an object store.

#![warn(missing_docs)]

pub mod durable;
pub mod error;
pub mod failpoint;
pub mod lease;
pub mod log;
pub mod storage;

pub use durable::LocalDisk;
pub use error::{CheckpointError, Result};
pub use log::{Checkpoint, CommitEntry, EntryWriter, FORMAT_VERSION, Metadata, OffsetsEntry, SourceOffsets, StateOperatorSpec, StateSize};
pub use storage::{ALLOW_UNSAFE_RENAME, Location, StorageOptions};
