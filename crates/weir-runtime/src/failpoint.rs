//! Crash points in the batch loop; see `weir_connectors::failpoint`.

pub use weir_connectors::failpoint::hit;
