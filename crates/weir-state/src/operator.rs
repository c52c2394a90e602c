//! What the batch loop asks of every stateful operator in a query's chain. The loop knows
//! no kind of operator: it feeds each one the rows of the stage below, asks for its output at
//! the batch's end, and writes the state changes and snapshots it hands over to
//! `state/<operator id>/` (see [`crate::StateFiles`]).
//!
//! One batch, for each operator in the chain from the sources up:
//!
//! ```text
//! process(chunk, place, late watermark)*        rows of the batch, chunk by chunk
//! next_output(watermark) until None             the batch's output; with next_delta(max, false)
//!                                               between, for state changes ready to go
//! next_delta(max, true) until None              the rest of the version's delta
//! snapshot_filter(watermark) (when one is due)  how to make the snapshot from the files
//! snapshot(max) (when that gives None)          the whole state, from memory
//! take_metrics()                                the batch's progress entry
//! ```
//!
//! Late rows are judged by the previous batch's watermark, state is evicted by this batch's
//! (Spark's `eventTimeWatermarkForLateEvents` and `eventTimeWatermarkForEviction`).

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::dedup::Place;
use crate::error::Result;

/// Of a record batch of state files (a snapshot's or a delta's), the rows a state still
/// holds; see [`StatefulOperator::snapshot_filter`].
pub type SnapshotFilter = Box<dyn Fn(&RecordBatch) -> Result<RecordBatch> + Send + Sync>;

/// One operator's counters for one batch, and its state's size after it: Spark's state
/// operator progress (`StateOperatorProgress`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorMetrics {
    /// Rows (keys, groups) in state after the batch.
    pub num_rows_total: u64,
    /// Rows the batch added or changed.
    pub num_rows_updated: u64,
    /// Rows the batch evicted (by the watermark) or emitted and dropped.
    pub num_rows_removed: u64,
    /// Input rows at or below the watermark, dropped.
    pub num_rows_dropped_by_watermark: u64,
    /// Bytes the state takes in memory.
    pub memory_used_bytes: u64,
    /// The operator's own counters (Spark's `customMetrics`).
    pub custom: BTreeMap<&'static str, u64>,
}

/// A stateful operator; see the module docs for the order of calls.
pub trait StatefulOperator: Send + std::fmt::Debug {
    /// Its name in progress (`dedupeWithinWatermark`, `dedupe`, `stateStoreSave`).
    fn name(&self) -> &str;

    /// The schema of its state files (deltas and snapshots alike).
    fn state_schema(&self) -> SchemaRef;

    /// Applies one record batch of a state file: a snapshot's, then each later delta's, in
    /// order. Called before the first batch only.
    fn restore(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Whether its state moves with the watermark: then a batch without new rows still runs
    /// when the watermark moves (a no-data batch), to emit and evict.
    fn has_watermark(&self) -> bool;

    /// Takes one chunk of the batch's input, at `place` in the batch (see [`Place`]).
    fn process(&mut self, input: &[RecordBatch], place: Place, late_watermark_ms: i64) -> Result<()>;

    /// Late rows kept since the last call, for a late-rows table.
    fn take_late_rows(&mut self) -> Vec<RecordBatch>;

    /// Before a chunk: about `rows` rows of the batch are still to come, the chunk's
    /// included, as its source estimates them. A hint for sizing state; nothing else.
    fn expect_rows(&mut self, _rows: u64) {}

    /// After the batch's last chunk: the next batch of output rows, `None` once all are out
    /// (the state has then taken the batch and evicted by `watermark_ms`). Called with the
    /// same watermark until it returns `None`.
    fn next_output(&mut self, watermark_ms: i64) -> Result<Option<RecordBatch>>;

    /// State changes of this batch for its delta, in [`Self::state_schema`]: at most about
    /// `max_rows`. With `all` false (while output is still coming), only when `max_rows` are
    /// ready; with `all` (after the output) whatever is left, until `None`.
    fn next_delta(&mut self, max_rows: usize, all: bool) -> Result<Option<RecordBatch>>;

    /// The whole state, `max_rows` at a time, in [`Self::state_schema`], such that restoring
    /// it gives this state.
    fn snapshot(&mut self, max_rows: usize) -> Box<dyn Iterator<Item = Result<RecordBatch>> + Send + '_>;

    /// Whether the state as of the batch just ended (its delta written, `watermark_ms` the
    /// watermark it evicted by) can be snapshotted from its files alone, off the batch loop:
    /// `Some(filter)` keeps, of each record batch of the newest snapshot before it and of
    /// every delta since, in order, the rows the state holds now, each row judged by itself
    /// (see [`crate::StateFiles::compact`]). `None`, the default: [`Self::snapshot`] writes it
    /// from memory before the batch commits.
    fn snapshot_filter(&self, _watermark_ms: i64) -> Option<SnapshotFilter> {
        None
    }

    /// This batch's metrics; resets the counters for the next batch.
    fn take_metrics(&mut self) -> OperatorMetrics;
}
