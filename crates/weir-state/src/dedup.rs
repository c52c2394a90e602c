//! The streaming `Deduplicate` operator and its state: the first row seen for a key is
//! emitted, later rows with that key are dropped. With a watermark, a key's entry expires at
//! `first event time + delay` (Spark's `dropDuplicatesWithinWatermark`) and is evicted once
//! the watermark reaches it; a later row with the key is then emitted again.
//!
//! In the batch loop: `process` runs after the stateless part below the operator (late rows
//! filtered with the previous batch's watermark), and hands the keys it adds to the version's
//! delta (`take_added`); then `evict` with this batch's watermark hands over the keys it
//! removes, a slice at a time.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Int64Array};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::error::{Result, StateError};
use crate::key::{Key, encode_column};
use crate::table::Walk;

pub use crate::table::DedupMap;

/// Which columns of the operator's input play which part.
#[derive(Debug, Clone)]
pub struct DedupSpec {
    /// Columns of the key.
    pub key_columns: Vec<usize>,
    /// The event-time column and the delay (ms), when the input has a watermark.
    pub event_time: Option<(usize, i64)>,
    /// Columns that make the output, in order.
    pub output_columns: Vec<usize>,
    /// The output schema.
    pub output_schema: SchemaRef,
    /// When late rows are kept (for a dead-letter table): their columns and schema.
    pub late: Option<(Vec<usize>, SchemaRef)>,
}

/// Counters of one batch, and the state's size after it (Spark's state operator metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupMetrics {
    /// Keys in state after the batch.
    pub num_rows_total: u64,
    /// Keys added by the batch.
    pub num_rows_updated: u64,
    /// Keys evicted by the watermark in the batch.
    pub num_rows_removed: u64,
    /// Input rows at or below the watermark (or without an event time), dropped.
    pub num_rows_dropped_by_watermark: u64,
    /// Input rows dropped as duplicates.
    pub num_dropped_duplicate_rows: u64,
    /// Bytes the state takes in memory (table slots and out-of-line keys).
    pub memory_used_bytes: u64,
}

/// The operator; see the module docs.
#[derive(Debug)]
pub struct Deduplicate {
    spec: DedupSpec,
    state: DedupMap,
    added: Vec<(Key, i64)>,
    late_rows: Vec<RecordBatch>,
    metrics: DedupMetrics,
    /// Scratch: the encoded key of each row of the batch at hand.
    key_bufs: Vec<Vec<u8>>,
}

impl Deduplicate {
    /// An operator over `state` (as loaded from the store).
    pub fn new(spec: DedupSpec, state: DedupMap) -> Self {
        Self {
            spec,
            state,
            added: Vec::new(),
            late_rows: Vec::new(),
            metrics: DedupMetrics::default(),
            key_bufs: Vec::new(),
        }
    }

    /// Keeps the first row of each new key; drops late rows (`event time <= late_watermark_ms`
    /// once a watermark exists) and duplicates.
    pub fn process(&mut self, batches: &[RecordBatch], late_watermark_ms: i64) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(batches.len());
        // One key buffer per row, kept with their capacity from batch to batch.
        let mut bufs = std::mem::take(&mut self.key_bufs);
        for batch in batches {
            let rows = batch.num_rows();
            if rows == 0 {
                continue;
            }
            let times = match self.spec.event_time {
                Some((col, delay)) => Some((event_time_ms(batch, col)?, delay)),
                None => None,
            };
            bufs.truncate(rows);
            bufs.iter_mut().for_each(Vec::clear);
            bufs.resize_with(rows, Vec::new);
            for &c in &self.spec.key_columns {
                encode_column(batch.column(c), &mut bufs);
            }
            let mut keep = Vec::with_capacity(rows);
            let mut late = Vec::new();
            for (row, buf) in bufs.iter().enumerate() {
                let expires = match &times {
                    Some((t, delay)) => {
                        if t.is_null(row) || (late_watermark_ms > 0 && t.value(row) <= late_watermark_ms) {
                            self.metrics.num_rows_dropped_by_watermark += 1;
                            keep.push(false);
                            if self.spec.late.is_some() {
                                late.resize(row, false);
                                late.push(true);
                            }
                            continue;
                        }
                        t.value(row).saturating_add(*delay)
                    }
                    None => i64::MAX,
                };
                if !self.state.insert_new(buf, expires) {
                    self.metrics.num_dropped_duplicate_rows += 1;
                    keep.push(false);
                    continue;
                }
                self.added.push((Key::new(buf), expires));
                self.metrics.num_rows_updated += 1;
                keep.push(true);
            }
            if let Some((columns, schema)) = &self.spec.late
                && !late.is_empty()
            {
                late.resize(rows, false);
                let rows = filter_record_batch(batch, &BooleanArray::from(late)).map_err(|e| StateError::Data(e.to_string()))?;
                let columns = columns.iter().map(|&c| Arc::clone(rows.column(c))).collect();
                self.late_rows.push(RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| StateError::Data(e.to_string()))?);
            }
            let kept = filter_record_batch(batch, &BooleanArray::from(keep))
                .map_err(|e| StateError::Data(e.to_string()))?;
            if kept.num_rows() > 0 {
                let columns = self.spec.output_columns.iter().map(|&c| Arc::clone(kept.column(c))).collect();
                out.push(
                    RecordBatch::try_new(Arc::clone(&self.spec.output_schema), columns)
                        .map_err(|e| StateError::Data(e.to_string()))?,
                );
            }
        }
        self.key_bufs = bufs;
        Ok(out)
    }

    /// Starts evicting every key whose expiry is at or below `watermark_ms` (this batch's
    /// watermark). The keys come out a slice at a time ([`Eviction::next_keys`]) so that they
    /// can go to the version's delta as they come: a batch that evicts millions of keys never
    /// holds them all. Take the batch's added keys first ([`Self::take_added`]): a key added
    /// and evicted by one batch must reach the delta in that order.
    pub fn evict(&mut self, watermark_ms: i64) -> Eviction<'_> {
        debug_assert!(self.added.is_empty(), "added keys go to the delta before evicted ones");
        let done = self.spec.event_time.is_none() || watermark_ms <= 0;
        Eviction { op: self, watermark_ms, walk: Walk::default(), done }
    }

    /// This batch's metrics; resets the counters for the next batch.
    pub fn take_metrics(&mut self) -> DedupMetrics {
        let mut m = std::mem::take(&mut self.metrics);
        m.num_rows_total = self.state.len() as u64;
        m.memory_used_bytes = self.memory_bytes() as u64;
        m
    }

    /// The late rows kept since the last call (only when `spec.late` is set).
    pub fn take_late_rows(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.late_rows)
    }

    /// How many keys were added since they were last taken.
    pub fn added_len(&self) -> usize {
        self.added.len()
    }

    /// The keys added since the last call (part of this version's delta), so that a big
    /// batch can write them out as it goes.
    pub fn take_added(&mut self) -> Vec<(Key, i64)> {
        std::mem::take(&mut self.added)
    }

    /// The whole state, for snapshots.
    pub fn state(&self) -> &DedupMap {
        &self.state
    }

    /// Bytes the state takes in memory (see [`DedupMap::memory_bytes`]).
    pub fn memory_bytes(&self) -> usize {
        self.state.memory_bytes()
    }

    /// Whether eviction depends on the watermark.
    pub fn has_watermark(&self) -> bool {
        self.spec.event_time.is_some()
    }
}

/// An eviction under way; see [`Deduplicate::evict`].
#[derive(Debug)]
pub struct Eviction<'a> {
    op: &'a mut Deduplicate,
    watermark_ms: i64,
    walk: Walk,
    done: bool,
}

impl Eviction<'_> {
    /// Evicts up to `max` more keys and returns them; empty once every expired key is gone.
    pub fn next_keys(&mut self, max: usize) -> Vec<Key> {
        let mut keys = Vec::new();
        if self.done {
            return keys;
        }
        let op = &mut *self.op;
        self.done = op.state.remove_expired(&mut self.walk, self.watermark_ms, max, |k| keys.push(Key::new(k)));
        op.metrics.num_rows_removed += keys.len() as u64;
        // Evictions leave the tables emptier (and tombstones that make them grow on the next
        // inserts). Rebuild them once they are less than half as full as they may be, so that
        // memory follows the live keys.
        if self.done && op.state.capacity() > op.state.len().max(1024) * 2 {
            op.state.shrink_to_fit();
        }
        keys
    }

    /// Evicts every expired key at once; returns how many went.
    pub fn run(mut self) -> usize {
        let mut n = 0;
        loop {
            match self.next_keys(usize::MAX).len() {
                0 => return n,
                k => n += k,
            }
        }
    }
}

/// The event-time column as milliseconds since the epoch.
fn event_time_ms(batch: &RecordBatch, col: usize) -> Result<Int64Array> {
    let column = batch.column(col);
    let ms = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))
        .and_then(|a| cast(&a, &DataType::Int64))
        .map_err(|e| StateError::Data(format!("event-time column: {e}")))?;
    Ok(ms.as_any().downcast_ref::<Int64Array>().expect("cast to Int64").clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(TimestampMillisecondArray::from(rows.iter().map(|r| r.1 * 1000).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    fn keys(out: &[RecordBatch]) -> Vec<String> {
        out.iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                (0..a.len()).map(|i| a.value(i).to_string()).collect::<Vec<_>>()
            })
            .collect()
    }

    /// REFERENCE.md's worked example of dropDuplicatesWithinWatermark (delay 2 s).
    #[test]
    fn spark_worked_example() {
        let schema = batch(&[]).schema();
        let spec = DedupSpec { key_columns: vec![0], event_time: Some((1, 2000)), output_columns: vec![0, 1], output_schema: schema, late: None };
        let mut op = Deduplicate::new(spec, DedupMap::default());
        // (input, late-row watermark = previous batch's, eviction watermark = this batch's, expected)
        type Step<'a> = (&'a [(&'a str, i64)], i64, i64, &'a [&'a str]);
        let steps: &[Step<'_>] = &[
            (&[("a", 17)], 0, 0, &["a"]),
            (&[("a", 16)], 0, 15_000, &[]),
            (&[("a", 13)], 15_000, 15_000, &[]),
            (&[("b", 22), ("c", 21)], 15_000, 15_000, &["b", "c"]),
            (&[], 15_000, 20_000, &[]), // the no-data batch evicts a (expires 19 s)
            (&[("a", 21)], 20_000, 20_000, &["a"]),
            (&[("d", 25)], 20_000, 20_000, &["d"]),
        ];
        let mut late = 0;
        for (input, late_wm, evict_wm, want) in steps {
            let out = op.process(&[batch(input)], *late_wm).unwrap();
            op.take_added();
            op.evict(*evict_wm).run();
            late += op.take_metrics().num_rows_dropped_by_watermark;
            assert_eq!(keys(&out), want.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        assert_eq!(late, 1, "a@13 was late");
        // d@25 moves the watermark to 23: c and the second a (both expire at 23) go; b (24)
        // and d (27) remain, as in Spark.
        assert_eq!(op.evict(23_000).run(), 2);
        assert_eq!(op.state().len(), 2);
    }
}
