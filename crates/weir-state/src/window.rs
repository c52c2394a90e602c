//! The event-time `WindowAggregate` operator: a streaming GROUP BY in Spark's append mode.
//! Each group holds partial aggregates, and a group is written once, when the watermark
//! reaches the moment it closes, then dropped.
//!
//! Groups are keyed by every GROUP BY column; one of them, the *time key*, says when a group
//! closes: `window_end`, `window_start` plus the window's size, or the watermarked event time
//! itself (grouping by the raw timestamp). The state is a map from that moment (milliseconds,
//! rounded up, so `t <= watermark` holds exactly when the rounded value does) to the groups
//! closing then, each with DataFusion's group values and one `GroupsAccumulator` per
//! aggregate: the vectorized accumulators DataFusion runs its own hash aggregation with.
//!
//! A batch runs as follows:
//! - [`WindowAggregate::process`], per chunk: a row whose group closes at or below the
//!   previous batch's watermark is late (a (row, window) pair of a hopping window is a row
//!   here) and dropped; `numRowsDroppedByWatermark` counts the batch's late groups, as Spark
//!   does (it drops them after aggregating the batch). The others update this batch's own
//!   accumulators.
//! - At the batch's end the batch's partial aggregates (`GroupsAccumulator::state`) are the
//!   version's delta, sorted by closing moment, and are merged into the state
//!   (`merge_batch`). The state is only ever built by merging such partials, whether the query
//!   runs on or restarts from the deltas, so a restart gives the very bits a run that never
//!   stopped would have (float sums included).
//! - Then every group closing at or below this batch's watermark is evaluated, output and
//!   removed, in order of closing moment; the delta records the removal.
//!
//! State files: `bucket` (the closing moment), `removed` (true: that moment's groups were
//! emitted and dropped), the group columns, then each aggregate's state fields.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array, new_null_array};
use arrow::compute::{cast, filter, filter_record_batch, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::dedup::Place;
use crate::error::{Result, StateError};
use crate::operator::{OperatorMetrics, StatefulOperator};

/// What the operator computes, over its input's columns.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// The GROUP BY expressions over the input, and their output names.
    pub group_exprs: Vec<(Arc<dyn PhysicalExpr>, String)>,
    /// The group column that says when a group closes (a timestamp), and what to add to it
    /// (ms): 0 for `window_end` or the event time, the window's size for `window_start`.
    pub time_key: usize,
    /// See `time_key`.
    pub time_offset_ms: i64,
    /// The aggregates.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Each aggregate's `FILTER (WHERE ...)`, if any.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The output: the group columns, then the aggregates' values.
    pub output_schema: SchemaRef,
    /// When late rows are kept for a late-rows table: their schema (the input's columns).
    pub late_schema: Option<SchemaRef>,
}

/// Groups and their partial aggregates.
struct Groups {
    values: Box<dyn GroupValues>,
    accs: Vec<Box<dyn GroupsAccumulator>>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups").field("len", &self.values.len()).finish_non_exhaustive()
    }
}

impl Groups {
    fn new(key_schema: &SchemaRef, aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Self> {
        let values = new_group_values(Arc::clone(key_schema), &GroupOrdering::None).map_err(df_err)?;
        let accs = aggregates.iter().map(new_accumulator).collect::<Result<_>>()?;
        Ok(Self { values, accs })
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn size(&self) -> usize {
        self.values.size() + self.accs.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Merges partial aggregates `states[a]` (one per aggregate) of the groups `keys`.
    fn merge(&mut self, keys: &[ArrayRef], states: &[Vec<ArrayRef>], scratch: &mut Vec<usize>) -> Result<()> {
        scratch.clear();
        self.values.intern(keys, scratch).map_err(df_err)?;
        let total = self.values.len();
        for (acc, state) in self.accs.iter_mut().zip(states) {
            acc.merge_batch(state, scratch, total).map_err(df_err)?;
        }
        Ok(())
    }

    /// Takes every group's keys and partial aggregates out; the groups are left empty.
    fn take_states(&mut self) -> Result<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
        let keys = self.values.emit(EmitTo::All).map_err(df_err)?;
        // Emitting all does not empty every kind of group values' hash table (DataFusion's
        // aggregation clears it after): clear it, so the groups can be filled again.
        self.values.clear_shrink(0);
        let states = self.accs.iter_mut().map(|a| a.state(EmitTo::All).map_err(df_err)).collect::<Result<_>>()?;
        Ok((keys, states))
    }
}

fn new_accumulator(aggregate: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
    if aggregate.groups_accumulator_supported() {
        return aggregate.create_groups_accumulator().map_err(df_err);
    }
    let aggregate = Arc::clone(aggregate);
    Ok(Box::new(GroupsAccumulatorAdapter::new(move || aggregate.create_accumulator())))
}

/// The operator; see the module docs.
pub struct WindowAggregate {
    spec: WindowSpec,
    key_schema: SchemaRef,
    state_schema: SchemaRef,
    /// How many state columns each aggregate has.
    state_widths: Vec<usize>,
    /// Groups by closing moment.
    state: BTreeMap<i64, Groups>,
    /// Groups in `state`.
    state_rows: u64,
    /// This batch's partial aggregates, and each of its groups' closing moment.
    batch: Option<Groups>,
    batch_buckets: Vec<i64>,
    /// The groups of this batch's late rows (Spark counts late groups, not rows: it drops
    /// them after aggregating the batch).
    late_groups: Option<Box<dyn GroupValues>>,
    /// Delta rows ready to be written.
    deltas: VecDeque<RecordBatch>,
    late_rows: Vec<RecordBatch>,
    metrics: OperatorMetrics,
    scratch: Vec<usize>,
}

impl std::fmt::Debug for WindowAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregate").field("buckets", &self.state.len()).field("groups", &self.state_rows).finish_non_exhaustive()
    }
}

impl WindowAggregate {
    /// An operator with empty state; [`StatefulOperator::restore`] loads a checkpoint's.
    pub fn new(spec: WindowSpec) -> Result<Self> {
        let key_fields: Vec<Field> = spec
            .group_exprs
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let f = spec.output_schema.field(i);
                Field::new(format!("k{i}"), f.data_type().clone(), true)
            })
            .collect();
        let key_schema = Arc::new(Schema::new(key_fields.clone()));
        let mut fields = vec![Field::new("bucket", DataType::Int64, false), Field::new("removed", DataType::Boolean, false)];
        fields.extend(key_fields);
        let mut state_widths = Vec::with_capacity(spec.aggregates.len());
        for (a, aggregate) in spec.aggregates.iter().enumerate() {
            let state_fields = aggregate.state_fields().map_err(df_err)?;
            state_widths.push(state_fields.len());
            for (j, f) in state_fields.iter().enumerate() {
                fields.push(Field::new(format!("a{a}_{j}"), f.data_type().clone(), true));
            }
        }
        if spec.time_key >= spec.group_exprs.len() || spec.filters.len() != spec.aggregates.len() {
            return Err(StateError::Data("internal: a window's time key or filters do not match its groups and aggregates".into()));
        }
        Ok(Self {
            spec,
            key_schema,
            state_schema: Arc::new(Schema::new(fields)),
            state_widths,
            state: BTreeMap::new(),
            state_rows: 0,
            batch: None,
            batch_buckets: Vec::new(),
            late_groups: None,
            deltas: VecDeque::new(),
            late_rows: Vec::new(),
            metrics: OperatorMetrics::default(),
            scratch: Vec::new(),
        })
    }

    /// Bytes the state takes in memory (group values and accumulators).
    pub fn memory_bytes(&self) -> usize {
        self.state.values().map(Groups::size).sum()
    }

    /// Groups in state.
    pub fn len(&self) -> u64 {
        self.state_rows
    }

    /// Whether no group is in state.
    pub fn is_empty(&self) -> bool {
        self.state_rows == 0
    }

    fn process_batch(&mut self, batch: &RecordBatch, late_watermark_ms: i64) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let evaluate = |e: &Arc<dyn PhysicalExpr>| e.evaluate(batch).and_then(|v| v.into_array(rows)).map_err(df_err);
        let mut keys: Vec<ArrayRef> = self.spec.group_exprs.iter().map(|(e, _)| evaluate(e)).collect::<Result<_>>()?;
        let mut args: Vec<Vec<ArrayRef>> =
            self.spec.aggregates.iter().map(|a| a.expressions().iter().map(evaluate).collect::<Result<Vec<_>>>()).collect::<Result<_>>()?;
        let mut filters: Vec<Option<ArrayRef>> =
            self.spec.filters.iter().map(|f| f.as_ref().map(evaluate).transpose()).collect::<Result<_>>()?;
        let mut buckets = closing_ms(&keys[self.spec.time_key], self.spec.time_offset_ms)?;

        // Late: the group closes at or below the previous batch's watermark (or never: no time).
        let on_time: BooleanArray = buckets.iter().map(|b| Some(b.is_some_and(|b| b > late_watermark_ms))).collect();
        let late = rows - on_time.true_count();
        if late > 0 {
            let late_mask = arrow::compute::not(&on_time).map_err(arrow_err)?;
            let late_keys: Vec<ArrayRef> = keys.iter().map(|k| filter(k.as_ref(), &late_mask).map_err(arrow_err)).collect::<Result<_>>()?;
            let late_groups = match &mut self.late_groups {
                Some(g) => g,
                None => self.late_groups.insert(new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None).map_err(df_err)?),
            };
            self.scratch.clear();
            late_groups.intern(&late_keys, &mut self.scratch).map_err(df_err)?;
            if let Some(schema) = &self.spec.late_schema {
                let rows = filter_record_batch(batch, &late_mask).map_err(arrow_err)?;
                self.late_rows.push(RecordBatch::try_new(Arc::clone(schema), rows.columns().to_vec()).map_err(arrow_err)?);
            }
            if late == rows {
                return Ok(());
            }
            let keep = |a: &ArrayRef| filter(a.as_ref(), &on_time).map_err(arrow_err);
            keys = keys.iter().map(keep).collect::<Result<_>>()?;
            args = args.iter().map(|a| a.iter().map(keep).collect::<Result<_>>()).collect::<Result<_>>()?;
            filters = filters.iter().map(|f| f.as_ref().map(keep).transpose()).collect::<Result<_>>()?;
            buckets = filter(&buckets, &on_time).map_err(arrow_err)?.as_any().downcast_ref::<Int64Array>().expect("filtered Int64").clone();
        }

        let groups = match &mut self.batch {
            Some(g) => g,
            None => self.batch.insert(Groups::new(&self.key_schema, &self.spec.aggregates)?),
        };
        self.scratch.clear();
        groups.values.intern(&keys, &mut self.scratch).map_err(df_err)?;
        let total = groups.values.len();
        // Group ids are given in order of first appearance: a new group's first row is where
        // its closing moment is learnt.
        for (row, &g) in self.scratch.iter().enumerate() {
            if g == self.batch_buckets.len() {
                self.batch_buckets.push(buckets.value(row));
            }
        }
        for ((acc, values), f) in groups.accs.iter_mut().zip(&args).zip(&filters) {
            let f = f.as_ref().map(|f| f.as_any().downcast_ref::<BooleanArray>().cloned().ok_or_else(|| StateError::Data("an aggregate's FILTER is not a boolean".into()))).transpose()?;
            acc.update_batch(values, &self.scratch, f.as_ref(), total).map_err(df_err)?;
        }
        Ok(())
    }

    /// The batch's partial aggregates become the version's delta and merge into the state.
    fn fold_batch(&mut self) -> Result<()> {
        if let Some(late) = self.late_groups.take() {
            self.metrics.num_rows_dropped_by_watermark += late.len() as u64;
        }
        let Some(mut batch) = self.batch.take() else { return Ok(()) };
        let buckets = std::mem::take(&mut self.batch_buckets);
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        self.metrics.num_rows_updated += n as u64;
        let (keys, states) = batch.take_states()?;
        // By closing moment, then in order of first appearance.
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&g| buckets[g as usize]);
        let order = UInt32Array::from(order);
        let sorted = |a: &ArrayRef| take(a.as_ref(), &order, None).map_err(arrow_err);
        let keys: Vec<ArrayRef> = keys.iter().map(sorted).collect::<Result<_>>()?;
        let states: Vec<Vec<ArrayRef>> = states.iter().map(|s| s.iter().map(sorted).collect::<Result<_>>()).collect::<Result<_>>()?;
        let buckets: Vec<i64> = order.values().iter().map(|&g| buckets[g as usize]).collect();
        self.deltas.push_back(self.state_batch(&buckets, false, &keys, &states)?);
        self.merge_runs(&buckets, &keys, &states)
    }

    /// Merges rows of partial aggregates into the state, a run of one closing moment at a time.
    fn merge_runs(&mut self, buckets: &[i64], keys: &[ArrayRef], states: &[Vec<ArrayRef>]) -> Result<()> {
        let mut start = 0;
        while start < buckets.len() {
            let bucket = buckets[start];
            let end = start + buckets[start..].iter().take_while(|&&b| b == bucket).count();
            let slice = |a: &ArrayRef| a.slice(start, end - start);
            let keys: Vec<ArrayRef> = keys.iter().map(slice).collect();
            let states: Vec<Vec<ArrayRef>> = states.iter().map(|s| s.iter().map(slice).collect()).collect();
            let groups = match self.state.entry(bucket) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(Groups::new(&self.key_schema, &self.spec.aggregates)?),
            };
            let before = groups.len();
            groups.merge(&keys, &states, &mut self.scratch)?;
            self.state_rows += (groups.len() - before) as u64;
            start = end;
        }
        Ok(())
    }

    /// Rows of a state file.
    fn state_batch(&self, buckets: &[i64], removed: bool, keys: &[ArrayRef], states: &[Vec<ArrayRef>]) -> Result<RecordBatch> {
        let n = buckets.len();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(buckets.to_vec())), Arc::new(BooleanArray::from(vec![removed; n]))];
        let fields = self.state_schema.fields();
        if keys.is_empty() {
            columns.extend(fields[2..].iter().map(|f| new_null_array(f.data_type(), n)));
        } else {
            columns.extend(keys.iter().cloned());
            columns.extend(states.iter().flatten().cloned());
        }
        RecordBatch::try_new(Arc::clone(&self.state_schema), columns).map_err(|e| StateError::Data(format!("internal: window state rows: {e}")))
    }

    /// Evaluates, outputs and drops the groups of the earliest closing moment at or below
    /// `watermark_ms`.
    fn emit_next(&mut self, watermark_ms: i64) -> Result<Option<RecordBatch>> {
        let Some(mut entry) = self.state.first_entry().filter(|e| *e.key() <= watermark_ms) else { return Ok(None) };
        let bucket = *entry.key();
        let groups = entry.get_mut();
        let n = groups.len();
        let mut columns = groups.values.emit(EmitTo::All).map_err(df_err)?;
        for acc in &mut groups.accs {
            columns.push(acc.evaluate(EmitTo::All).map_err(df_err)?);
        }
        entry.remove();
        self.state_rows -= n as u64;
        self.metrics.num_rows_removed += n as u64;
        self.deltas.push_back(self.state_batch(&[bucket], true, &[], &[])?);
        let schema = &self.spec.output_schema;
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { cast(&c, f.data_type()).map_err(arrow_err) })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(Arc::clone(schema), columns).map(Some).map_err(|e| StateError::Data(format!("internal: window output: {e}")))
    }
}

impl StatefulOperator for WindowAggregate {
    fn name(&self) -> &str {
        "stateStoreSave"
    }

    fn state_schema(&self) -> SchemaRef {
        Arc::clone(&self.state_schema)
    }

    fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let buckets = batch.column(0).as_any().downcast_ref::<Int64Array>().ok_or_else(|| StateError::Data("bad bucket column".into()))?;
        let removed = batch.column(1).as_any().downcast_ref::<BooleanArray>().ok_or_else(|| StateError::Data("bad removed column".into()))?;
        let nkeys = self.spec.group_exprs.len();
        let mut start = 0;
        while start < batch.num_rows() {
            let (bucket, gone) = (buckets.value(start), removed.value(start));
            let end = start + (start..batch.num_rows()).take_while(|&i| buckets.value(i) == bucket && removed.value(i) == gone).count();
            if gone {
                if let Some(groups) = self.state.remove(&bucket) {
                    self.state_rows -= groups.len() as u64;
                }
            } else {
                let rows = batch.slice(start, end - start);
                let keys: Vec<ArrayRef> = rows.columns()[2..2 + nkeys].to_vec();
                let mut at = 2 + nkeys;
                let mut states = Vec::with_capacity(self.state_widths.len());
                for width in &self.state_widths {
                    states.push(rows.columns()[at..at + width].to_vec());
                    at += width;
                }
                self.merge_runs(&vec![bucket; end - start], &keys, &states)?;
            }
            start = end;
        }
        Ok(())
    }

    fn has_watermark(&self) -> bool {
        true
    }

    fn process(&mut self, input: &[RecordBatch], _place: Place, late_watermark_ms: i64) -> Result<()> {
        // Rows come in a fixed order (the plan keeps it), so the partial aggregates, floats
        // included, are the same on every run: the place is not needed.
        for batch in input {
            self.process_batch(batch, late_watermark_ms)?;
        }
        Ok(())
    }

    fn take_late_rows(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.late_rows)
    }

    fn next_output(&mut self, watermark_ms: i64) -> Result<Option<RecordBatch>> {
        self.fold_batch()?;
        self.emit_next(watermark_ms)
    }

    fn next_delta(&mut self, _max_rows: usize, all: bool) -> Result<Option<RecordBatch>> {
        // A batch's delta holds one row per group it touched (not per input row): small
        // next to the input, so it is written once the output is out.
        if !all {
            return Ok(None);
        }
        Ok(self.deltas.pop_front())
    }

    fn snapshot(&mut self, _max_rows: usize) -> Box<dyn Iterator<Item = Result<RecordBatch>> + Send + '_> {
        let buckets: Vec<i64> = self.state.keys().copied().collect();
        let mut next = 0;
        Box::new(std::iter::from_fn(move || {
            let bucket = *buckets.get(next)?;
            next += 1;
            // Taking a group's partial aggregates empties it: they are merged straight back,
            // which is what a restart from this snapshot does too.
            let result = (|| {
                let groups = self.state.get_mut(&bucket).expect("a bucket of the state");
                let (keys, states) = groups.take_states()?;
                groups.merge(&keys, &states, &mut self.scratch)?;
                self.state_batch(&vec![bucket; keys.first().map_or(0, |k| k.len())], false, &keys, &states)
            })();
            Some(result)
        }))
    }

    fn take_metrics(&mut self) -> OperatorMetrics {
        let mut m = std::mem::take(&mut self.metrics);
        m.num_rows_total = self.state_rows;
        m.memory_used_bytes = self.memory_bytes() as u64;
        m
    }
}

/// When each row's group closes: the time key in milliseconds, rounded up, plus `offset_ms`.
fn closing_ms(column: &ArrayRef, offset_ms: i64) -> Result<Int64Array> {
    let (per_ms, times_ms) = match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => (1, 1000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => (1, 1),
        DataType::Timestamp(TimeUnit::Microsecond, _) => (1000, 1),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => (1_000_000, 1),
        other => return Err(StateError::Data(format!("a window's time column is {other}, not a timestamp"))),
    };
    let raw = cast(column, &DataType::Int64).map_err(arrow_err)?;
    let raw = raw.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
    Ok(raw
        .iter()
        .map(|v| {
            v.map(|v| {
                let ms = v.div_euclid(per_ms) + i64::from(v.rem_euclid(per_ms) != 0);
                ms.saturating_mul(times_ms).saturating_add(offset_ms)
            })
        })
        .collect())
}

fn df_err(e: datafusion::error::DataFusionError) -> StateError {
    StateError::Data(e.to_string())
}

fn arrow_err(e: arrow::error::ArrowError) -> StateError {
    StateError::Data(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;
    use weir_checkpoint::Checkpoint;

    use crate::store::StateFiles;

    fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("window_end", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]))
    }

    /// `SELECT window_end, k, count(v), sum(v) ... GROUP BY window_end, k`.
    fn spec(late: bool) -> WindowSpec {
        let schema = input_schema();
        let aggregate = |f, name: &str| {
            Arc::new(AggregateExprBuilder::new(f, vec![col("v", &schema).unwrap()]).schema(Arc::clone(&schema)).alias(name).build().unwrap())
        };
        WindowSpec {
            group_exprs: vec![(col("window_end", &schema).unwrap(), "window_end".into()), (col("k", &schema).unwrap(), "k".into())],
            time_key: 0,
            time_offset_ms: 0,
            aggregates: vec![aggregate(count_udaf(), "n"), aggregate(sum_udaf(), "s")],
            filters: vec![None, None],
            output_schema: Arc::new(Schema::new(vec![
                Field::new("__o0", DataType::Timestamp(TimeUnit::Millisecond, None), true),
                Field::new("__o1", DataType::Utf8, true),
                Field::new("__o2", DataType::Int64, true),
                Field::new("__o3", DataType::Float64, true),
            ])),
            late_schema: late.then(input_schema),
        }
    }

    /// Rows (window end in seconds, key, value).
    fn batch(rows: &[(i64, &str, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            input_schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(rows.iter().map(|r| r.0 * 1000).collect::<Vec<_>>())),
                Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    /// Batches of many groups and float values whose sum depends on the order of addition.
    fn batches() -> Vec<(Vec<RecordBatch>, i64)> {
        (0..12i64)
            .map(|b| {
                let rows: Vec<(i64, String, f64)> =
                    (0..500).map(|i| (if i % 50 == 0 { b * 3 } else { 10 + b * 3 + (i % 7) }, format!("k{}", (i * 7 + b) % 13), 0.1 * (i as f64) + 1e-9 * (b as f64))).collect();
                let rows: Vec<(i64, &str, f64)> = rows.iter().map(|(t, k, v)| (*t, k.as_str(), *v)).collect();
                let (first, second) = rows.split_at(200);
                // The watermark this batch evicts by, in ms: it trails the data.
                (vec![batch(first), batch(second)], (b * 3 + 5) * 1000)
            })
            .collect()
    }

    /// Runs the batches, restarting from the state files before each one when `restart`;
    /// returns the output rows, as text, batch by batch, and the metrics.
    async fn run(restart: bool) -> (Vec<Vec<String>>, Vec<OperatorMetrics>) {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path().to_str().unwrap()).unwrap();
        let mut op = WindowAggregate::new(spec(false)).unwrap();
        let files = StateFiles::new("window-0", 4, op.state_schema());
        let (mut out, mut metrics) = (Vec::new(), Vec::new());
        let mut late_watermark = 0;
        for (version, (input, watermark)) in batches().into_iter().enumerate() {
            let version = version as u64;
            if restart {
                op = WindowAggregate::new(spec(false)).unwrap();
                let previous = version.checked_sub(1);
                files.load(&cp, previous, &mut |b: &RecordBatch| op.restore(b)).await.unwrap();
            }
            for (i, chunk) in input.iter().enumerate() {
                op.process(std::slice::from_ref(chunk), Place { source: 0, part: 0, seq: i as u32 }, late_watermark).unwrap();
            }
            let mut rows = Vec::new();
            while let Some(b) = op.next_output(watermark).unwrap() {
                let text = arrow::util::pretty::pretty_format_batches(&[b]).unwrap().to_string();
                rows.extend(text.lines().map(str::to_string));
            }
            let mut delta = files.delta_writer(&cp, version).unwrap();
            while let Some(d) = op.next_delta(1000, true).unwrap() {
                delta.write(&d).await.unwrap();
            }
            delta.finish().await.unwrap();
            if files.snapshot_due(version) {
                let mut snapshot = files.snapshot_writer(&cp, version).unwrap();
                for b in op.snapshot(1000) {
                    snapshot.write(&b.unwrap()).await.unwrap();
                }
                snapshot.finish().await.unwrap();
            }
            out.push(rows);
            let mut m = op.take_metrics();
            m.memory_used_bytes = 0;
            metrics.push(m);
            late_watermark = watermark;
        }
        (out, metrics)
    }

    #[tokio::test]
    async fn a_restart_before_every_batch_gives_the_same_output_bits() {
        let (continuous, metrics) = run(false).await;
        let (restarted, restarted_metrics) = run(true).await;
        assert_eq!(continuous, restarted);
        assert_eq!(metrics, restarted_metrics);
        assert!(continuous.iter().filter(|rows| !rows.is_empty()).count() > 5, "windows are emitted along the way");
        assert!(metrics.iter().map(|m| m.num_rows_removed).sum::<u64>() > 0);
        assert!(metrics.iter().map(|m| m.num_rows_dropped_by_watermark).sum::<u64>() > 0, "some rows come late");
    }

    #[test]
    fn late_rows_are_dropped_and_counted_per_group_and_windows_close_with_the_watermark() {
        let mut op = WindowAggregate::new(spec(true)).unwrap();
        op.process(&[batch(&[(10, "a", 1.0), (10, "a", 2.0), (15, "b", 4.0)])], Place::default(), 0).unwrap();
        assert!(op.next_output(9_999).unwrap().is_none(), "no window has closed");
        while op.next_delta(100, true).unwrap().is_some() {}
        let m = op.take_metrics();
        assert_eq!((m.num_rows_total, m.num_rows_updated, m.num_rows_removed), (2, 2, 0));
        // Late by the previous batch's watermark (10 s): three rows of two groups.
        op.process(&[batch(&[(10, "a", 8.0), (10, "a", 16.0), (9, "c", 1.0), (15, "a", 32.0)])], Place::default(), 10_000).unwrap();
        assert_eq!(op.take_late_rows().iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        let emitted = op.next_output(10_000).unwrap().expect("the window ending at 10 s closes");
        assert!(op.next_output(10_000).unwrap().is_none());
        let text = arrow::util::pretty::pretty_format_batches(&[emitted]).unwrap().to_string();
        assert!(text.contains("| 1970-01-01T00:00:10 | a    | 2    | 3.0  |"), "{text}");
        let m = op.take_metrics();
        assert_eq!((m.num_rows_total, m.num_rows_updated, m.num_rows_removed, m.num_rows_dropped_by_watermark), (2, 1, 1, 2));
    }
}
