//! Crash points in the batch loop; see `weir_checkpoint::failpoint`.

pub use weir_connectors::failpoint::{fail, hit};
