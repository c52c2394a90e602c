//! The streaming `Deduplicate` operator and its state: one row is kept for each key, later
//! rows with that key are dropped. With a watermark, a key's entry expires at
//! `kept row's event time + delay` (Spark's `dropDuplicatesWithinWatermark`) and is evicted
//! once the watermark reaches it; a later row with the key is then kept again.
//!
//! Which row a batch keeps for a key it sees for the first time is fixed by the rows alone,
//! never by how they were read: the first by the query's ORDER BY (`DISTINCT ON (k) ...
//! ORDER BY k, ts`, `ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) = 1`), ties broken by
//! the rows' place in the batch's input ([`Place`]: source, then file and line, or partition
//! and offset). A key kept by an earlier batch stays: later batches drop its rows.
//!
//! So a batch runs in two phases. [`Deduplicate::process`] takes each chunk of the batch's
//! input, in any order of chunks: late rows and keys held from earlier batches are dropped,
//! a new key becomes *pending* (see `table.rs`), and every row that is the best so far for
//! its pending key goes to a buffer of candidates (spilled to a temporary file beyond
//! [`CANDIDATES_IN_MEMORY`]). At the batch's end [`Deduplicate::settle`] reads the candidates
//! back in order and keeps, for each pending key, the one row still best; the key is then
//! held with that row's expiry and goes to the version's delta ([`Deduplicate::take_added`]).
//! Then [`Deduplicate::evict`] with this batch's watermark hands over the keys it removes, a
//! slice at a time.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, Int64Array};
use arrow::compute::{SortOptions, cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::error::{Result, StateError};
use crate::key::{Key, encode_column};
use crate::spill::{SpillReader, SpillWriter};
use crate::operator::{OperatorMetrics, SnapshotFilter, StatefulOperator};
use crate::table::{Probe, Walk};

pub use crate::table::DedupMap;

/// Which columns of the operator's input play which part.
#[derive(Debug, Clone)]
pub struct DedupSpec {
    /// Columns of the key.
    pub key_columns: Vec<usize>,
    /// The event-time column and the delay (ms), when the input has a watermark.
    pub event_time: Option<(usize, i64)>,
    /// The column the query orders each key's rows by, after the keys (`ORDER BY k, ts`), and
    /// how; `None`: the rows' place alone decides.
    pub order: Option<(usize, SortOptions)>,
    /// Columns that make the output, in order.
    pub output_columns: Vec<usize>,
    /// The output schema.
    pub output_schema: SchemaRef,
    /// When late rows are kept (for a dead-letter table): their columns and schema.
    pub late: Option<(Vec<usize>, SchemaRef)>,
}

/// Where a chunk of rows sits in the batch's input: the source (in the order the query reads
/// its sources), the part of it (a file of the batch's list, a Kafka partition, in a fixed
/// order) and the chunk's number in that part (chunks of a part are in record order). Rows
/// of a chunk are in order. Places compare in that order, whatever order chunks came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Place {
    /// The source's index among the query's sources.
    pub source: u32,
    /// The part of the source.
    pub part: u32,
    /// The chunk's number within its part.
    pub seq: u32,
}

/// How many rows ahead of its lookup a row's bucket is prefetched: enough lookups for the
/// fetches to overlap, few enough that the fetched lines are still in the cache.
const PREFETCH_AHEAD: usize = 8;

/// On-time rows a batch has seen before its rate of new keys is trusted to size the state
/// ahead ([`Deduplicate::expect_rows`]).
const GROW_AHEAD_FROM: u64 = 8_192;

/// Bytes of candidate rows a batch keeps in memory before it spills them to a file.
pub const CANDIDATES_IN_MEMORY: usize = 16 << 20;

/// [`CANDIDATES_IN_MEMORY`], or `WEIR_DEDUP_CANDIDATE_MEMORY` bytes when set (a tuning
/// knob: the tests set it small so that batches of a few MB spill across many of the
/// spill's blocks, to show that spilling changes no row).
fn candidates_in_memory() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| tuning_knob("WEIR_DEDUP_CANDIDATE_MEMORY", CANDIDATES_IN_MEMORY))
}

/// The number in the environment variable `name`, else `default`: the knobs the tests turn
/// to show that where and how candidates are stored changes no row. Read once by each
/// caller.
fn tuning_knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
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
    /// Bytes of the batch's candidate rows written to a temporary file, past the
    /// [`CANDIDATES_IN_MEMORY`] a batch holds in memory (0 when they all fitted).
    pub spilled_bytes: u64,
}

/// A key first seen in the batch at hand, and its best row so far.
#[derive(Debug, Clone, Copy)]
struct PendingKey {
    /// The best row's event time (`i64::MAX` without a watermark).
    event_time: i64,
    /// The best row's number among the batch's candidates.
    candidate: u64,
    /// The best row's chunk (an index into [`Batch::places`]) and row in it.
    chunk: u32,
    row: u32,
}

/// What the operator holds while a batch runs.
#[derive(Debug, Default)]
struct Batch {
    /// Pending keys, by the index their slot holds.
    pending: Vec<PendingKey>,
    /// The order value of each pending key's best row (row-format bytes), when the order is
    /// not the event time: a range of `order_bytes`.
    order_refs: Vec<(usize, u32)>,
    order_bytes: Vec<u8>,
    /// The place of each chunk processed.
    places: Vec<Place>,
    /// Candidate rows so far: the next candidate's number.
    candidate_rows: u64,
    candidates: CandidateWriter,
    /// Rows neither late nor without an event time.
    on_time_rows: u64,
    /// The rows of the batch still to come, this chunk's included, as the source estimates
    /// them ([`Deduplicate::expect_rows`]); 0 when it does not.
    expected_rows: u64,
}

/// The operator; see the module docs.
#[derive(Debug)]
pub struct Deduplicate {
    spec: DedupSpec,
    state: DedupMap,
    /// The keys the batch added, with their expiries, as rows of its delta
    /// ([`state_schema`]): the kept rows' key and expiry columns, as they come.
    added: Added,
    late_rows: Vec<RecordBatch>,
    metrics: DedupMetrics,
    /// Scratch: the encoded key of each row of the batch at hand, and its hash.
    key_bufs: Vec<Vec<u8>>,
    key_hashes: Vec<u64>,
    batch: Batch,
    /// Whether rows are ordered by a column other than the event time, whose values are
    /// compared in Arrow's row format; the converter is made from the first chunk's column.
    orders_by_bytes: bool,
    order_rows: Option<RowConverter>,
    candidate_builder: CandidateBuilder,
    /// Where a candidate's key and event time are among its output columns, when they all
    /// are: then the candidates hold the output columns alone, and a winner's key and expiry
    /// are made again from them as it is read back ([`Derived`]).
    derived: Option<Derived>,
    candidate_limit: usize,
    /// [`state_schema`], made once.
    delta_schema: SchemaRef,
}

impl Deduplicate {
    /// An operator over `state` (as loaded from the store).
    pub fn new(spec: DedupSpec, state: DedupMap) -> Self {
        let orders_by_bytes = spec.order.is_some_and(|(col, _)| spec.event_time.is_none_or(|(t, _)| t != col));
        let derived = Derived::of(&spec);
        let mut fields: Vec<Arc<Field>> = spec.output_schema.fields().iter().cloned().collect();
        if derived.is_none() {
            // Each candidate's expiry, were it to win, and its key.
            fields.push(Arc::new(Field::new("__weir_expires", DataType::Int64, false)));
            fields.push(Arc::new(Field::new("__weir_key", DataType::Binary, false)));
        }
        let candidate_schema = Arc::new(Schema::new(fields));
        let output_columns: Arc<[usize]> = spec.output_columns.clone().into();
        Self {
            spec,
            state,
            added: Added::default(),
            late_rows: Vec::new(),
            metrics: DedupMetrics::default(),
            key_bufs: Vec::new(),
            key_hashes: Vec::new(),
            batch: Batch::default(),
            orders_by_bytes,
            order_rows: None,
            candidate_builder: CandidateBuilder { schema: candidate_schema, output_columns },
            derived,
            candidate_limit: candidates_in_memory(),
            delta_schema: state_schema(),
        }
    }

    /// Takes one chunk of the batch's input, at `place`: drops late rows (`event time <=
    /// late_watermark_ms`, Spark's rule, from the first batch on) and rows of keys held from
    /// earlier batches, and keeps the rest that are the best so far for their key as
    /// candidates. Nothing is output before [`Self::settle`].
    pub fn process(&mut self, batches: &[RecordBatch], place: Place, late_watermark_ms: i64) -> Result<()> {
        let chunk = u32::try_from(self.batch.places.len()).map_err(|_| StateError::Data("a batch of more than 4 billion chunks".into()))?;
        self.batch.places.push(place);
        let mut kept = Vec::new();
        // One key buffer per row, kept with their capacity from batch to batch.
        let mut bufs = std::mem::take(&mut self.key_bufs);
        let mut row_in_chunk = 0u32;
        for batch in batches {
            let rows = batch.num_rows();
            if rows == 0 {
                continue;
            }
            // Room for the keys the rest of the batch will likely add, at the rate of new keys
            // among its on-time rows so far, taken when a table is about to grow anyway.
            if self.batch.expected_rows > 0 && self.batch.on_time_rows >= GROW_AHEAD_FROM {
                let new = self.state.pending() as u128;
                let more = u128::from(self.batch.expected_rows) * new / u128::from(self.batch.on_time_rows);
                self.state.grow_ahead(rows, usize::try_from(more).unwrap_or(usize::MAX));
            }
            self.batch.expected_rows = self.batch.expected_rows.saturating_sub(rows as u64);
            let first_row = row_in_chunk;
            row_in_chunk = u32::try_from(rows).ok().and_then(|r| row_in_chunk.checked_add(r)).ok_or_else(|| StateError::Data("a chunk of more than 4 billion rows".into()))?;
            let times = match self.spec.event_time {
                Some((col, delay)) => Some((event_time_ms(batch, col)?, delay)),
                None => None,
            };
            let orders = match self.spec.order {
                Some((col, options)) if self.orders_by_bytes => {
                    let column = batch.column(col);
                    let converter = match &mut self.order_rows {
                        Some(c) => c,
                        None => {
                            let field = SortField::new_with_options(column.data_type().clone(), options);
                            self.order_rows.insert(RowConverter::new(vec![field]).map_err(|e| StateError::Data(e.to_string()))?)
                        }
                    };
                    Some(converter.convert_columns(&[Arc::clone(column)]).map_err(|e| StateError::Data(e.to_string()))?)
                }
                _ => None,
            };
            encode_keys(batch, &self.spec.key_columns, &mut bufs);
            // Each row's key is looked up with its table's memory fetched some rows ahead
            // (`DedupMap::prefetch`): the lookups of a big state miss the cache.
            let mut hashes = std::mem::take(&mut self.key_hashes);
            hashes.clear();
            hashes.extend(bufs.iter().map(|b| self.state.hash(b)));
            hashes.iter().take(PREFETCH_AHEAD).for_each(|&h| self.state.prefetch(h));
            let mut keep = Vec::with_capacity(rows);
            let mut late = Vec::new();
            // The candidates' keys and expiries, when they cannot be made again from their
            // output columns.
            let stored = self.derived.is_none();
            let mut candidates = 0usize;
            let mut keys = BinaryBuilder::new();
            let mut expiries = arrow::array::Int64Builder::new();
            let delay = self.spec.event_time.map(|(_, d)| d);
            for (row, buf) in bufs.iter().enumerate() {
                if let Some(&h) = hashes.get(row + PREFETCH_AHEAD) {
                    self.state.prefetch(h);
                }
                let event_time = match &times {
                    Some((t, _)) => {
                        if t.is_null(row) || t.value(row) <= late_watermark_ms {
                            self.metrics.num_rows_dropped_by_watermark += 1;
                            keep.push(false);
                            if self.spec.late.is_some() {
                                late.resize(row, false);
                                late.push(true);
                            }
                            continue;
                        }
                        t.value(row)
                    }
                    None => i64::MAX,
                };
                self.batch.on_time_rows += 1;
                let candidate = self.batch.candidate_rows;
                let at = (chunk, first_row + row as u32);
                let order = orders.as_ref().map(|o| o.row(row));
                let index = u32::try_from(self.batch.pending.len())
                    .map_err(|_| StateError::Data("a batch with more than 4 billion new keys".into()))?;
                let better = match self.state.insert_pending_hashed(buf, hashes[row], index) {
                    Probe::Held(_) => false,
                    Probe::Inserted => {
                        self.batch.pending.push(PendingKey { event_time, candidate, chunk: at.0, row: at.1 });
                        if let Some(order) = order {
                            let start = self.batch.order_bytes.len();
                            self.batch.order_bytes.extend_from_slice(order.as_ref());
                            self.batch.order_refs.push((start, order.as_ref().len() as u32));
                        }
                        true
                    }
                    Probe::Pending(index) => {
                        let i = index as usize;
                        let best = self.batch.pending[i];
                        let by_order = match order {
                            Some(order) => {
                                let (start, len) = self.batch.order_refs[i];
                                order.as_ref().cmp(&self.batch.order_bytes[start..start + len as usize])
                            }
                            None if self.spec.order.is_some() => event_time.cmp(&best.event_time),
                            None => Ordering::Equal,
                        };
                        let by_place = || (place, at.1).cmp(&(self.batch.places[best.chunk as usize], best.row));
                        let better = by_order.then_with(by_place) == Ordering::Less;
                        if better {
                            self.batch.pending[i] = PendingKey { event_time, candidate, chunk: at.0, row: at.1 };
                            if let Some(order) = order {
                                // The old value's bytes stay behind until the batch ends.
                                let start = self.batch.order_bytes.len();
                                self.batch.order_bytes.extend_from_slice(order.as_ref());
                                self.batch.order_refs[i] = (start, order.as_ref().len() as u32);
                            }
                        }
                        better
                    }
                };
                keep.push(better);
                if better {
                    self.batch.candidate_rows += 1;
                    candidates += 1;
                    if stored {
                        keys.append_value(buf);
                        expiries.append_value(expiry(event_time, delay));
                    }
                }
            }
            if let Some((columns, schema)) = &self.spec.late
                && !late.is_empty()
            {
                late.resize(rows, false);
                let rows = filter_record_batch(batch, &BooleanArray::from(late)).map_err(|e| StateError::Data(e.to_string()))?;
                let columns = columns.iter().map(|&c| Arc::clone(rows.column(c))).collect();
                self.late_rows.push(RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| StateError::Data(e.to_string()))?);
            }
            self.key_hashes = hashes;
            if candidates > 0 {
                let stored = stored.then(|| (expiries.finish(), keys.finish()));
                kept.push(Kept { rows: batch.clone(), keep: BooleanArray::from(keep), candidates, stored });
            }
        }
        self.key_bufs = bufs;
        if !kept.is_empty() {
            self.batch.candidates.write(kept, &self.candidate_builder)?;
        }
        Ok(())
    }

    /// Says that about `rows` rows of the batch are still to come, those of the next chunk
    /// included (a source's estimate: a file source's from its files' sizes). Before each
    /// record batch, once the batch has seen [`GROW_AHEAD_FROM`] on-time rows, the state
    /// makes room for the new keys of those still to come in one step rather than doubling
    /// over and over ([`DedupMap::grow_ahead`]). Only the state's memory depends on it,
    /// never a row.
    pub fn expect_rows(&mut self, rows: u64) {
        self.batch.expected_rows = rows;
    }

    /// Runs a whole batch handed over as one chunk: [`Self::process`], then
    /// [`Self::settle`]; returns the rows kept. The added keys wait in [`Self::take_added`].
    pub fn process_batch(&mut self, batches: &[RecordBatch], late_watermark_ms: i64) -> Result<Vec<RecordBatch>> {
        self.process(batches, Place::default(), late_watermark_ms)?;
        let mut settle = self.settle()?;
        let mut out = Vec::new();
        while let Some(b) = settle.next_batch()? {
            out.push(b);
        }
        Ok(out)
    }

    /// Ends the batch's first phase: its candidates come back in order, and each pending
    /// key keeps its best row ([`Settle::next_batch`]). Once every batch is out, the keys are
    /// held and in [`Self::take_added`].
    pub fn settle(&mut self) -> Result<Settle<'_>> {
        let state = SettleState::start(self)?;
        Ok(Settle { op: self, state })
    }

    /// Starts evicting every key whose expiry is at or below `watermark_ms` (this batch's
    /// watermark). The keys come out a slice at a time ([`Eviction::next_keys`]) so that they
    /// can go to the version's delta as they come: a batch that evicts millions of keys never
    /// holds them all. Take the batch's added keys first ([`Self::take_added`]): a key added
    /// and evicted by one batch must reach the delta in that order.
    pub fn evict(&mut self, watermark_ms: i64) -> Eviction<'_> {
        debug_assert!(self.added.rows == 0, "added keys go to the delta before evicted ones");
        let state = EvictState::start(self, watermark_ms);
        Eviction { op: self, state }
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
        self.added.rows
    }

    /// The keys added since the last call with their expiries, as rows of this version's
    /// delta ([`state_schema`]), so that a big batch can write them out as it goes.
    pub fn take_added(&mut self) -> Vec<RecordBatch> {
        self.added.take_all()
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

    /// Keeps at most `bytes` of a batch's candidate rows in memory (default
    /// [`CANDIDATES_IN_MEMORY`], or `WEIR_DEDUP_CANDIDATE_MEMORY`); beyond, they go to a file. Set between batches.
    pub fn set_candidate_memory(&mut self, bytes: usize) {
        self.candidate_limit = bytes;
        if let CandidateWriter::Here(candidates) = &mut self.batch.candidates {
            candidates.limit = bytes;
        }
    }
}

/// The second phase of a batch; see [`Deduplicate::settle`].
#[derive(Debug)]
pub struct Settle<'a> {
    op: &'a mut Deduplicate,
    state: SettleState,
}

impl Settle<'_> {
    /// How many keys were settled since they were last taken.
    pub fn added_len(&self) -> usize {
        self.op.added.rows
    }

    /// The keys settled since the last call, with their expiries (see
    /// [`Deduplicate::take_added`]).
    pub fn take_added(&mut self) -> Vec<RecordBatch> {
        self.op.added.take_all()
    }

    /// The kept rows of the next buffered chunk, in the operator's output schema; `None`
    /// once every candidate was read (the batch's keys are then all held).
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        self.state.next_batch(self.op)
    }
}

/// Where the second phase of a batch is: the candidates being read back.
#[derive(Debug)]
struct SettleState {
    candidates: CandidateReader,
    next_candidate: u64,
    settled: u64,
    /// A bit per candidate: set when it is its key's best row, the one kept. Known from the
    /// pending keys alone, so no candidate needs its key looked up to know whether it won.
    winners: Vec<u64>,
    /// Whether the state's pending keys are settled all at once, by a walk of the tables.
    swept: bool,
    /// That walk, on a thread of its own while the candidates are read back (which needs no
    /// lookup once it is decided): it hands the state back when done.
    sweeping: Option<std::thread::JoinHandle<DedupMap>>,
}

impl SettleState {
    fn start(op: &mut Deduplicate) -> Result<Self> {
        let total = usize::try_from(op.batch.candidate_rows).map_err(|_| StateError::Data("too many candidates for this machine".into()))?;
        let pending = Arc::new(std::mem::take(&mut op.batch.pending));
        // Many new keys among the slots: walk the tables once instead of a lookup per key,
        // on another core while the kept rows go on to the sink. It starts first: the
        // winners' bits (a pass over every pending key) and the candidates' last writes
        // are made meanwhile, not on one core before it.
        let swept = op.state.pending() * 8 >= op.state.buckets();
        let sweeping = match swept {
            true => {
                let (mut state, pending, delay) = (std::mem::take(&mut op.state), Arc::clone(&pending), op.spec.event_time.map(|(_, d)| d));
                let walk = move || {
                    state.settle_all(|index| expiry(pending[index as usize].event_time, delay));
                    state
                };
                match std::thread::Builder::new().name("weir-settle".into()).spawn(walk) {
                    Ok(thread) => Some(thread),
                    // The closure, and the state in it, went with the error.
                    Err(e) => return Err(StateError::Data(format!("cannot start a thread: {e}"))),
                }
            }
            false => None,
        };
        let mut winners = vec![0u64; total.div_ceil(64)];
        for p in pending.iter() {
            winners[(p.candidate / 64) as usize] |= 1 << (p.candidate % 64);
        }
        drop(pending);
        let (candidates, spilled) = match std::mem::take(&mut op.batch.candidates).finish().and_then(Candidates::into_reader) {
            Ok(read) => read,
            Err(e) => {
                // The state comes back from the walk before the batch fails.
                if let Some(state) = sweeping.and_then(|walk| walk.join().ok()) {
                    op.state = state;
                }
                return Err(e);
            }
        };
        op.metrics.spilled_bytes += spilled;
        Ok(Self { candidates, next_candidate: 0, settled: 0, winners, swept, sweeping })
    }

    fn next_batch(&mut self, op: &mut Deduplicate) -> Result<Option<RecordBatch>> {
        loop {
            let Some(batch) = self.candidates.next()? else {
                self.finish(op)?;
                return Ok(None);
            };
            let mut keep = Vec::with_capacity(batch.num_rows());
            for _ in 0..batch.num_rows() {
                let candidate = self.next_candidate;
                self.next_candidate += 1;
                let word = self.winners.get((candidate / 64) as usize).ok_or_else(|| StateError::Data("internal: more candidates read back than written".into()))?;
                keep.push(word & (1 << (candidate % 64)) != 0);
            }
            let kept = filter_record_batch(&batch, &BooleanArray::from(keep)).map_err(|e| StateError::Data(e.to_string()))?;
            if kept.num_rows() == 0 {
                continue;
            }
            // The winners' keys and expiries: stored with them, or made again from their
            // output columns as `process` made them.
            let (output, expiries, keys): (Vec<ArrayRef>, ArrayRef, ArrayRef) = match &op.derived {
                None => {
                    let n = kept.num_columns();
                    (kept.columns()[..n - 2].to_vec(), Arc::clone(kept.column(n - 2)), Arc::clone(kept.column(n - 1)))
                }
                Some(derived) => {
                    let (expiries, keys) = derived.make(&kept, &mut op.key_bufs)?;
                    (kept.columns().to_vec(), Arc::new(expiries) as ArrayRef, Arc::new(keys) as ArrayRef)
                }
            };
            if !self.swept {
                // Each winner's key looked up again, its table's memory fetched some keys
                // ahead as `process` does: a lookup per key misses the cache.
                let (key_values, expiry_values) = (keys.as_any().downcast_ref::<BinaryArray>().expect("keys"), expiries.as_any().downcast_ref::<Int64Array>().expect("expiries"));
                let mut hashes = std::mem::take(&mut op.key_hashes);
                hashes.clear();
                hashes.extend(key_values.iter().map(|k| op.state.hash(k.expect("keys are never NULL"))));
                hashes.iter().take(PREFETCH_AHEAD).for_each(|&h| op.state.prefetch(h));
                for (row, &hash) in hashes.iter().enumerate() {
                    if let Some(&h) = hashes.get(row + PREFETCH_AHEAD) {
                        op.state.prefetch(h);
                    }
                    let expires = expiry_values.value(row);
                    if !op.state.settle_hashed(key_values.value(row), hash, |_| Some(expires)) {
                        return Err(StateError::Data("internal: a winning key was not pending".into()));
                    }
                }
                op.key_hashes = hashes;
            }
            self.settled += kept.num_rows() as u64;
            // The winners' keys and expiries are the delta's rows, as they are.
            let delta = RecordBatch::try_new(Arc::clone(&op.delta_schema), vec![keys, expiries]).map_err(|e| StateError::Data(e.to_string()))?;
            op.added.push(delta);
            return RecordBatch::try_new(Arc::clone(&op.spec.output_schema), output).map(Some).map_err(|e| StateError::Data(e.to_string()));
        }
    }

    fn finish(&mut self, op: &mut Deduplicate) -> Result<()> {
        if let Some(sweeping) = self.sweeping.take() {
            op.state = sweeping.join().map_err(|_| StateError::Data("internal: the walk settling the batch's keys failed".into()))?;
        }
        if op.state.pending() != 0 {
            return Err(StateError::Data(format!("internal: {} keys of the batch were not settled", op.state.pending())));
        }
        op.metrics.num_rows_updated += self.settled;
        op.metrics.num_dropped_duplicate_rows += op.batch.on_time_rows - self.settled;
        op.batch = Batch::default();
        op.batch.candidates = CandidateWriter::new(op.candidate_limit);
        Ok(())
    }
}

/// Where a candidate's key columns and event-time column sit among its output columns, when
/// every one of them does (`DISTINCT ON (k) *`, `dropDuplicates` of a table's own columns):
/// the candidates then leave out the encoded key and the expiry, 43% of their bytes for
/// `benches/engines`' rows (its 2M-row batch spilled 139 MB of candidates with them, 79 MB
/// without), and a winner's are made again from its output columns as it is read back, by
/// the same encoding and the same cast: the same bytes.
#[derive(Debug, Clone)]
struct Derived {
    key_columns: Vec<usize>,
    event_time: Option<(usize, i64)>,
}

impl Derived {
    fn of(spec: &DedupSpec) -> Option<Self> {
        let at = |c: usize| spec.output_columns.iter().position(|&o| o == c);
        let key_columns = spec.key_columns.iter().map(|&c| at(c)).collect::<Option<Vec<_>>>()?;
        let event_time = match spec.event_time {
            Some((c, delay)) => Some((at(c)?, delay)),
            None => None,
        };
        #[cfg(test)]
        if tests::STORE_CANDIDATE_KEYS.with(std::cell::Cell::get) {
            return None;
        }
        Some(Self { key_columns, event_time })
    }

    /// The expiries and encoded keys of `rows` (candidates, in the output schema).
    fn make(&self, rows: &RecordBatch, bufs: &mut Vec<Vec<u8>>) -> Result<(Int64Array, BinaryArray)> {
        let n = rows.num_rows();
        encode_keys(rows, &self.key_columns, bufs);
        let keys = BinaryArray::from_iter_values(bufs.iter());
        let expiries = match self.event_time {
            Some((c, delay)) => {
                let times = event_time_ms(rows, c)?;
                // A candidate's event time is never NULL: such rows are dropped as late.
                Int64Array::from_iter_values((0..n).map(|row| expiry(times.value(row), Some(delay))))
            }
            None => Int64Array::from_iter_values(std::iter::repeat_n(expiry(0, None), n)),
        };
        Ok((expiries, keys))
    }
}

/// Sets `bufs` to one encoded key per row of `batch`, of its `key_columns` in order; the
/// buffers keep their capacity from call to call. `process` looks keys up by these bytes and
/// [`Derived::make`] makes them again from a candidate's columns: one encoding for both.
fn encode_keys(batch: &RecordBatch, key_columns: &[usize], bufs: &mut Vec<Vec<u8>>) {
    let rows = batch.num_rows();
    bufs.truncate(rows);
    bufs.iter_mut().for_each(Vec::clear);
    bufs.resize_with(rows, Vec::new);
    for &c in key_columns {
        encode_column(batch.column(c), bufs);
    }
}

/// The expiry of a key whose kept row has `event_time`: the time plus the watermark delay, or
/// never without a watermark.
fn expiry(event_time: i64, delay: Option<i64>) -> i64 {
    match delay {
        Some(delay) => event_time.saturating_add(delay),
        None => i64::MAX,
    }
}

/// Rows of a version's delta waiting to be written ([`state_schema`]), in order.
#[derive(Debug, Default)]
struct Added {
    batches: std::collections::VecDeque<RecordBatch>,
    rows: usize,
}

impl Added {
    fn push(&mut self, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.batches.push_back(batch);
    }

    /// The first rows waiting, at most `max_rows` of them (a slice when a batch holds more).
    fn next(&mut self, max_rows: usize) -> Option<RecordBatch> {
        let first = self.batches.pop_front()?;
        let batch = match first.num_rows() > max_rows {
            true => {
                self.batches.push_front(first.slice(max_rows, first.num_rows() - max_rows));
                first.slice(0, max_rows)
            }
            false => first,
        };
        self.rows -= batch.num_rows();
        Some(batch)
    }

    fn take_all(&mut self) -> Vec<RecordBatch> {
        self.rows = 0;
        self.batches.drain(..).collect()
    }
}

/// A batch's candidate rows, in the order they came: in memory up to
/// [`CANDIDATES_IN_MEMORY`] bytes, then all in a temporary file (Arrow IPC), so that a batch
/// of millions of new keys does not hold their rows until it ends.
struct Candidates {
    /// Bytes kept in memory before the rows go to a file.
    limit: usize,
    memory: Vec<RecordBatch>,
    memory_bytes: usize,
    spill: Option<StreamWriter<SpillWriter>>,
}

impl std::fmt::Debug for Candidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates").field("in_memory", &self.memory.len()).field("spilled", &self.spill.is_some()).finish_non_exhaustive()
    }
}

fn spill_err(e: impl std::fmt::Display) -> StateError {
    StateError::Data(format!("cannot spill a batch's candidate rows to a temporary file (in $TMPDIR or /tmp): {e}"))
}

impl Candidates {
    fn new(limit: usize) -> Self {
        Self { limit, memory: Vec::new(), memory_bytes: 0, spill: None }
    }
}

/// Candidates-to-be of one input batch: its rows, which of them are candidates (how many),
/// and those rows' expiries and encoded keys unless they are [`Derived`].
struct Kept {
    rows: RecordBatch,
    keep: BooleanArray,
    candidates: usize,
    stored: Option<(Int64Array, BinaryArray)>,
}

/// Makes a chunk's candidate rows from its [`Kept`]s: the kept rows' output columns, then
/// `__weir_expires` and `__weir_key` unless they are [`Derived`], in one record batch.
#[derive(Debug, Clone)]
struct CandidateBuilder {
    schema: SchemaRef,
    output_columns: Arc<[usize]>,
}

impl CandidateBuilder {
    fn build(&self, kept: Vec<Kept>) -> Result<RecordBatch> {
        let mut batches = Vec::with_capacity(kept.len());
        for Kept { rows, keep, stored, .. } in kept {
            let rows = filter_record_batch(&rows, &keep).map_err(|e| StateError::Data(e.to_string()))?;
            let mut columns: Vec<ArrayRef> = self.output_columns.iter().map(|&c| Arc::clone(rows.column(c))).collect();
            if let Some((expiries, keys)) = stored {
                columns.push(Arc::new(expiries));
                columns.push(Arc::new(keys));
            }
            batches.push(RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|e| StateError::Data(e.to_string()))?);
        }
        match batches.len() {
            1 => Ok(batches.pop().expect("one batch")),
            _ => concat_batches(&self.schema, &batches).map_err(|e| StateError::Data(e.to_string())),
        }
    }
}

/// Chunks with at least this many candidate rows have them built and stored on a thread of
/// their own (see [`CandidateWriter`]).
const CANDIDATE_THREAD_FROM: usize = 8_192;

/// [`CANDIDATE_THREAD_FROM`], or `WEIR_DEDUP_THREAD_FROM` when set (the tests set it to 1
/// and to a number no chunk reaches, to show that the thread changes no row).
fn candidate_thread_from() -> usize {
    static FROM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *FROM.get_or_init(|| tuning_knob("WEIR_DEDUP_THREAD_FROM", CANDIDATE_THREAD_FROM))
}

/// Chunks queued for the candidate thread: a bound on the input rows it holds.
const CANDIDATE_QUEUE: usize = 2;

/// Where a batch's candidates go, in order. Building them (filtering each input batch by
/// its kept rows, adding expiry and key, one record batch per chunk) and storing them (up to
/// 16 MiB in memory, then written to a file) was a good part of the batch loop's work in a
/// batch of millions of new keys (filters, a concatenation, the spill file's writes), while
/// the loop was what the decoders waited for; a thread of its own does it from the first
/// big chunk on, and hands the candidates back at the batch's end. Small chunks (a batch of
/// a few rows) are stored here, with no thread, and so is everything when no thread can be
/// started.
enum CandidateWriter {
    Here(Box<Candidates>),
    Thread { queue: std::sync::mpsc::SyncSender<Vec<Kept>>, thread: std::thread::JoinHandle<Result<Candidates>> },
    /// The thread failed, with this error.
    Failed(String),
}

impl std::fmt::Debug for CandidateWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Here(_) => "CandidateWriter::Here",
            Self::Thread { .. } => "CandidateWriter::Thread",
            Self::Failed(_) => "CandidateWriter::Failed",
        })
    }
}

impl Default for CandidateWriter {
    fn default() -> Self {
        Self::new(candidates_in_memory())
    }
}

impl CandidateWriter {
    fn new(limit: usize) -> Self {
        Self::Here(Box::new(Candidates::new(limit)))
    }

    /// Stores one chunk's candidates (see [`Kept`]), after those of the chunks before.
    fn write(&mut self, kept: Vec<Kept>, builder: &CandidateBuilder) -> Result<()> {
        if let Self::Here(candidates) = self {
            if kept.iter().map(|k| k.candidates).sum::<usize>() < candidate_thread_from() {
                return candidates.push(builder.build(kept)?);
            }
            let (queue, chunks) = std::sync::mpsc::sync_channel::<Vec<Kept>>(CANDIDATE_QUEUE);
            // The candidates so far go to the thread through a slot, from which they come
            // back when no thread can be had: then they are stored here, as before.
            let slot = Arc::new(std::sync::Mutex::new(Some(std::mem::replace(&mut **candidates, Candidates::new(0)))));
            let (theirs, their_builder) = (Arc::clone(&slot), builder.clone());
            let store = move || {
                let taken = theirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                let mut candidates = taken.ok_or_else(|| StateError::Data("internal: the candidate rows were taken twice".into()))?;
                for kept in chunks {
                    candidates.push(their_builder.build(kept)?)?;
                }
                Ok(candidates)
            };
            match std::thread::Builder::new().name("weir-candidates".into()).spawn(store) {
                Ok(thread) => *self = Self::Thread { queue, thread },
                // The thread never ran: the slot holds the candidates still.
                Err(e) => match slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                    Some(back) => {
                        **candidates = back;
                        return candidates.push(builder.build(kept)?);
                    }
                    None => return Err(StateError::Data(format!("cannot start a thread: {e}"))),
                },
            }
        }
        match self {
            Self::Thread { queue, .. } => {
                // A closed queue: the thread stopped on an error, which `finish` returns.
                if queue.send(kept).is_err() {
                    let Self::Thread { thread, .. } = std::mem::replace(self, Self::new(0)) else { unreachable!() };
                    let error = match thread.join() {
                        Ok(Err(e)) => e.to_string(),
                        _ => "internal: the thread storing candidate rows failed".to_string(),
                    };
                    *self = Self::Failed(error.clone());
                    return Err(StateError::Data(error));
                }
                Ok(())
            }
            Self::Failed(e) => Err(StateError::Data(e.clone())),
            Self::Here(_) => unreachable!("a thread was started above"),
        }
    }

    /// Every candidate stored, in order.
    fn finish(self) -> Result<Candidates> {
        match self {
            Self::Here(candidates) => Ok(*candidates),
            Self::Thread { queue, thread } => {
                drop(queue);
                thread.join().map_err(|_| StateError::Data("internal: the thread storing candidate rows failed".into()))?
            }
            Self::Failed(e) => Err(StateError::Data(e)),
        }
    }
}

impl Candidates {
    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if let Some(spill) = &mut self.spill {
            return spill.write(&batch).map_err(spill_err);
        }
        self.memory_bytes += batch.get_array_memory_size();
        self.memory.push(batch);
        if self.memory_bytes > self.limit {
            #[cfg(test)]
            if self.limit == tests::NO_SPILL_FILE {
                return Err(spill_err("(a test's) no temporary directory"));
            }
            let mut spill = StreamWriter::try_new(SpillWriter::new().map_err(spill_err)?, &self.memory[0].schema()).map_err(spill_err)?;
            for b in self.memory.drain(..) {
                spill.write(&b).map_err(spill_err)?;
            }
            self.memory_bytes = 0;
            self.spill = Some(spill);
        }
        Ok(())
    }

    /// The candidates to read back, and the bytes spilled to a file.
    fn into_reader(self) -> Result<(CandidateReader, u64)> {
        Ok(match self.spill {
            None => (CandidateReader::Memory(self.memory.into_iter()), 0),
            Some(mut spill) => {
                spill.finish().map_err(spill_err)?;
                let spill = spill.into_inner().map_err(spill_err)?;
                let bytes = spill.len();
                let file = spill.finish().map_err(spill_err)?;
                (CandidateReader::File(Box::new(StreamReader::try_new(file, None).map_err(spill_err)?)), bytes)
            }
        })
    }
}

/// The candidates of a batch, read back in order.
enum CandidateReader {
    Memory(std::vec::IntoIter<RecordBatch>),
    File(Box<StreamReader<SpillReader>>),
}

impl std::fmt::Debug for CandidateReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory(_) => "CandidateReader::Memory",
            Self::File(_) => "CandidateReader::File",
        })
    }
}

impl CandidateReader {
    fn next(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            Self::Memory(batches) => Ok(batches.next()),
            Self::File(reader) => reader.next().transpose().map_err(spill_err),
        }
    }
}

/// An eviction under way; see [`Deduplicate::evict`].
#[derive(Debug)]
pub struct Eviction<'a> {
    op: &'a mut Deduplicate,
    state: EvictState,
}

impl Eviction<'_> {
    /// Evicts up to `max` more keys and returns them; empty once every expired key is gone.
    pub fn next_keys(&mut self, max: usize) -> Vec<Key> {
        self.state.next_keys(self.op, max)
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

/// Where an eviction is.
#[derive(Debug)]
struct EvictState {
    watermark_ms: i64,
    walk: Walk,
    done: bool,
}

impl EvictState {
    /// No walk when no key can have expired: every key held expires after the watermark
    /// (a stream with a long delay and frequent batches walked every key of its state in
    /// every batch, a cost that grew with the state).
    fn start(op: &Deduplicate, watermark_ms: i64) -> Self {
        let done = op.spec.event_time.is_none() || watermark_ms <= 0 || op.state.min_expiry().is_none_or(|least| least > watermark_ms);
        Self { watermark_ms, walk: Walk::default(), done }
    }

    fn next_keys(&mut self, op: &mut Deduplicate, max: usize) -> Vec<Key> {
        let mut keys = Vec::new();
        if self.done {
            return keys;
        }
        self.done = op.state.remove_expired(&mut self.walk, self.watermark_ms, max, |k| keys.push(Key::new(k)));
        op.metrics.num_rows_removed += keys.len() as u64;
        if self.done {
            op.state.shrink_emptied();
        }
        keys
    }

    /// Evicts every expired key in one walk, without handing the keys out; returns how many
    /// went.
    fn run_all(&mut self, op: &mut Deduplicate) -> usize {
        if self.done {
            return 0;
        }
        self.done = true;
        let n = op.state.evict(self.watermark_ms);
        op.metrics.num_rows_removed += n as u64;
        n
    }
}

/// The columns of deduplication state files: `key` (the encoded key), `expires` (its expiry,
/// or NULL: the key was removed). A row with an empty key and an expiry is an eviction:
/// every key held then with an expiry at or below it was removed (no encoded key is empty:
/// each key column gives at least its null flag; an operator without key columns writes
/// its removed key instead).
pub fn state_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("key", DataType::Binary, false), Field::new("expires", DataType::Int64, true)]))
}

/// State file rows: keys with their expiry, or NULL for a removed key.
fn encode_entries<K: AsRef<[u8]>>(entries: impl Iterator<Item = (K, Option<i64>)>) -> Result<RecordBatch> {
    let rows = entries.size_hint().0;
    let (mut keys, mut expires) = (BinaryBuilder::with_capacity(rows, rows * 24), arrow::array::Int64Builder::with_capacity(rows));
    for (key, e) in entries {
        keys.append_value(key);
        expires.append_option(e);
    }
    RecordBatch::try_new(state_schema(), vec![Arc::new(keys.finish()), Arc::new(expires.finish())]).map_err(|e| StateError::Data(e.to_string()))
}

/// [`Deduplicate`] as a link of a query's chain ([`StatefulOperator`]): its state files hold
/// keys and expiries ([`state_schema`]); a batch's delta holds the keys it added, then its
/// eviction as one row (the watermark it evicted at), which a restore replays at that point.
/// A batch that evicts a million keys writes a few bytes for them, not the keys.
#[derive(Debug)]
pub struct DedupOperator {
    op: Deduplicate,
    name: String,
    phase: Phase,
}

/// Where a [`DedupOperator`] is in its batch.
#[derive(Debug)]
enum Phase {
    Input,
    Settling(Box<SettleState>),
    Evicting(EvictState),
    Done,
}

impl DedupOperator {
    /// The operator `op`, called `name` in progress (`dedupeWithinWatermark`, `dedupe`).
    pub fn new(op: Deduplicate, name: &str) -> Self {
        Self { op, name: name.to_string(), phase: Phase::Input }
    }

    /// Whether a delta records an eviction as its watermark (see [`state_schema`]): when
    /// no key can be empty.
    fn evicts_by_watermark(&self) -> bool {
        !self.op.spec.key_columns.is_empty()
    }
}

impl StatefulOperator for DedupOperator {
    fn name(&self) -> &str {
        &self.name
    }

    fn state_schema(&self) -> SchemaRef {
        state_schema()
    }

    fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = batch.column(0).as_any().downcast_ref::<BinaryArray>().ok_or_else(|| StateError::Data("bad key column".into()))?;
        let expires = batch.column(1).as_any().downcast_ref::<Int64Array>().ok_or_else(|| StateError::Data("bad expires column".into()))?;
        for i in 0..batch.num_rows() {
            if keys.value(i).is_empty() && !expires.is_null(i) && self.evicts_by_watermark() {
                // Replayed, not counted: the batch that evicted counted it.
                self.op.state.evict(expires.value(i));
            } else if expires.is_null(i) {
                self.op.state.remove(keys.value(i));
            } else {
                self.op.state.insert(keys.value(i), expires.value(i));
            }
        }
        Ok(())
    }

    fn has_watermark(&self) -> bool {
        self.op.has_watermark()
    }

    fn process(&mut self, input: &[RecordBatch], place: Place, late_watermark_ms: i64) -> Result<()> {
        if !matches!(self.phase, Phase::Input | Phase::Done) {
            return Err(StateError::Data("internal: rows for a deduplication that is settling its batch".into()));
        }
        self.phase = Phase::Input;
        self.op.process(input, place, late_watermark_ms)
    }

    fn take_late_rows(&mut self) -> Vec<RecordBatch> {
        self.op.take_late_rows()
    }

    fn expect_rows(&mut self, rows: u64) {
        self.op.expect_rows(rows);
    }

    fn next_output(&mut self, watermark_ms: i64) -> Result<Option<RecordBatch>> {
        if matches!(self.phase, Phase::Input | Phase::Done) {
            self.phase = Phase::Settling(Box::new(SettleState::start(&mut self.op)?));
        }
        let Phase::Settling(settle) = &mut self.phase else { return Ok(None) };
        match settle.next_batch(&mut self.op)? {
            Some(batch) => Ok(Some(batch)),
            None => {
                self.phase = Phase::Evicting(EvictState::start(&self.op, watermark_ms));
                Ok(None)
            }
        }
    }

    fn next_delta(&mut self, max_rows: usize, all: bool) -> Result<Option<RecordBatch>> {
        let max_rows = max_rows.max(1);
        // Added keys come before evicted ones: a key added and evicted by one batch must
        // reach the delta in that order.
        if self.op.added.rows >= max_rows || (all && self.op.added.rows > 0) {
            return Ok(self.op.added.next(max_rows));
        }
        if !all {
            return Ok(None);
        }
        let evicts_by_watermark = self.evicts_by_watermark();
        let Phase::Evicting(eviction) = &mut self.phase else { return Ok(None) };
        if evicts_by_watermark {
            let watermark_ms = eviction.watermark_ms;
            let removed = eviction.run_all(&mut self.op);
            self.phase = Phase::Done;
            return if removed == 0 { Ok(None) } else { encode_entries(std::iter::once((&[][..], Some(watermark_ms)))).map(Some) };
        }
        let keys = eviction.next_keys(&mut self.op, max_rows);
        if keys.is_empty() {
            self.phase = Phase::Done;
            return Ok(None);
        }
        encode_entries(keys.iter().map(|k| (k, None))).map(Some)
    }

    fn snapshot(&mut self, max_rows: usize) -> Box<dyn Iterator<Item = Result<RecordBatch>> + Send + '_> {
        let mut entries = self.op.state.iter().peekable();
        let max_rows = max_rows.max(1);
        Box::new(std::iter::from_fn(move || {
            entries.peek()?;
            Some(encode_entries(entries.by_ref().take(max_rows).map(|(k, e)| (k, Some(e)))))
        }))
    }

    fn snapshot_filter(&self, watermark_ms: i64) -> Option<SnapshotFilter> {
        // Without key columns a removed key is a row of its own, which a filter of single rows
        // cannot apply.
        if !self.evicts_by_watermark() {
            return None;
        }
        // The batch's eviction (when it ran: see `EvictState::start`) removed every key held
        // with an expiry at or below its watermark, and earlier ones removed less (the
        // watermark never moves back). A key is added only while not held, with an expiry
        // above every earlier eviction's watermark (its row was not late). So the state
        // holds exactly the keys added by the snapshot's rows and the deltas' whose expiry is
        // above the batch's watermark, each once: the eviction rows go, and a key that was
        // evicted and added again is held by its last row alone.
        let evicted = (self.op.spec.event_time.is_some() && watermark_ms > 0).then_some(watermark_ms);
        Some(Box::new(move |batch: &RecordBatch| {
            let keys = batch.column(0).as_any().downcast_ref::<BinaryArray>().ok_or_else(|| StateError::Data("bad key column".into()))?;
            let expires = batch.column(1).as_any().downcast_ref::<Int64Array>().ok_or_else(|| StateError::Data("bad expires column".into()))?;
            if let Some(i) = (0..batch.num_rows()).find(|&i| expires.is_null(i) && !keys.value(i).is_empty()) {
                // Written only without key columns; a filter cannot apply it.
                return Err(StateError::Data(format!("row {i}: a key removed on its own, in the state of a deduplication that evicts by watermark")));
            }
            let held: BooleanArray =
                (0..batch.num_rows()).map(|i| Some(!keys.value(i).is_empty() && evicted.is_none_or(|w| expires.value(i) > w))).collect();
            match held.true_count() == batch.num_rows() {
                true => Ok(batch.clone()),
                false => filter_record_batch(batch, &held).map_err(|e| StateError::Data(e.to_string())),
            }
        }))
    }

    fn take_metrics(&mut self) -> OperatorMetrics {
        let m = self.op.take_metrics();
        OperatorMetrics {
            num_rows_total: m.num_rows_total,
            num_rows_updated: m.num_rows_updated,
            num_rows_removed: m.num_rows_removed,
            num_rows_dropped_by_watermark: m.num_rows_dropped_by_watermark,
            memory_used_bytes: m.memory_used_bytes,
            custom: [("numDroppedDuplicateRows", m.num_dropped_duplicate_rows), ("spilledCandidateBytes", m.spilled_bytes)].into_iter().collect(),
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
    use arrow::array::{AsArray, Int64Array, StringArray, TimestampMillisecondArray};

    /// A candidate memory limit with which a spill file cannot be made.
    pub(super) const NO_SPILL_FILE: usize = 1;

    thread_local! {
        /// Operators made on this thread store their candidates' keys and expiries even
        /// when they could make them again ([`Derived`]), to compare both ways.
        pub(super) static STORE_CANDIDATE_KEYS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    /// Rows (key, event time in seconds, value).
    fn batch(rows: &[(&str, i64, Option<i64>)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(TimestampMillisecondArray::from(rows.iter().map(|r| r.1 * 1000).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    fn spec(event_time: Option<i64>, order: Option<usize>) -> DedupSpec {
        DedupSpec {
            key_columns: vec![0],
            event_time: event_time.map(|delay| (1, delay)),
            order: order.map(|c| (c, SortOptions { descending: false, nulls_first: false })),
            output_columns: vec![0, 1, 2],
            output_schema: schema(),
            late: None,
        }
    }

    /// (key, event time s, value) of each row.
    fn rows(out: &[RecordBatch]) -> Vec<(String, i64, Option<i64>)> {
        out.iter()
            .flat_map(|b| {
                let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                let t = b.column(1).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
                let v = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
                (0..b.num_rows()).map(|i| (k.value(i).to_string(), t.value(i) / 1000, v.is_valid(i).then(|| v.value(i)))).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Runs one batch of `chunks` (each with its place) and returns the rows kept.
    fn run(op: &mut Deduplicate, chunks: &[(Place, RecordBatch)], late_wm: i64) -> Vec<(String, i64, Option<i64>)> {
        for (place, b) in chunks {
            op.process(std::slice::from_ref(b), *place, late_wm).unwrap();
        }
        let mut out = Vec::new();
        let mut settle = op.settle().unwrap();
        while let Some(b) = settle.next_batch().unwrap() {
            out.push(b);
        }
        out.sort_by_key(|b| b.num_rows());
        let mut rows = rows(&out);
        rows.sort();
        rows
    }

    fn place(source: u32, part: u32, seq: u32) -> Place {
        Place { source, part, seq }
    }

    /// REFERENCE.md's worked example of dropDuplicatesWithinWatermark (delay 2 s).
    #[test]
    fn spark_worked_example() {
        let mut op = Deduplicate::new(spec(Some(2000), Some(1)), DedupMap::default());
        // (input, late-row watermark = previous batch's, eviction watermark = this batch's, expected)
        type Step<'a> = (&'a [(&'a str, i64, Option<i64>)], i64, i64, &'a [&'a str]);
        let steps: &[Step<'_>] = &[
            (&[("a", 17, None)], 0, 0, &["a"]),
            (&[("a", 16, None)], 0, 15_000, &[]),
            (&[("a", 13, None)], 15_000, 15_000, &[]),
            (&[("b", 22, None), ("c", 21, None)], 15_000, 15_000, &["b", "c"]),
            (&[], 15_000, 20_000, &[]), // the no-data batch evicts a (expires 19 s)
            (&[("a", 21, None)], 20_000, 20_000, &["a"]),
            (&[("d", 25, None)], 20_000, 20_000, &["d"]),
        ];
        let mut late = 0;
        for (input, late_wm, evict_wm, want) in steps {
            let out = run(&mut op, &[(Place::default(), batch(input))], *late_wm);
            op.take_added();
            op.evict(*evict_wm).run();
            late += op.take_metrics().num_rows_dropped_by_watermark;
            assert_eq!(out.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), *want);
        }
        assert_eq!(late, 1, "a@13 was late");
        // d@25 moves the watermark to 23: c and the second a (both expire at 23) go; b (24)
        // and d (27) remain, as in Spark.
        assert_eq!(op.evict(23_000).run(), 2);
        assert_eq!(op.state().len(), 2);
    }

    /// Runs one batch through the [`StatefulOperator`] interface as the runner does, with
    /// deltas of at most `max_rows`; returns the rows kept and the batch's delta.
    fn run_operator(op: &mut DedupOperator, input: &[(&str, i64, Option<i64>)], late_wm: i64, wm: i64, max_rows: usize) -> (Vec<String>, Vec<RecordBatch>) {
        if !input.is_empty() {
            op.process(&[batch(input)], Place::default(), late_wm).unwrap();
        }
        let (mut out, mut delta) = (Vec::new(), Vec::new());
        while let Some(b) = op.next_output(wm).unwrap() {
            out.push(b);
            while let Some(d) = op.next_delta(max_rows, false).unwrap() {
                delta.push(d);
            }
        }
        while let Some(d) = op.next_delta(max_rows, true).unwrap() {
            delta.push(d);
        }
        let mut keys: Vec<String> = rows(&out).into_iter().map(|r| r.0).collect();
        keys.sort();
        (keys, delta)
    }

    /// A batch's eviction reaches its delta as one row, whatever it removed, and a restore
    /// that replays the deltas in order ends with the state the running operator has: keys
    /// added before an eviction go, keys added after it stay.
    #[test]
    fn an_eviction_is_one_delta_row_that_a_restore_replays() {
        let mut live = DedupOperator::new(Deduplicate::new(spec(Some(2000), Some(1)), DedupMap::default()), "dedupeWithinWatermark");
        let many: Vec<(String, i64, Option<i64>)> = (0..5000).map(|i| (format!("k{i}"), 10 + i % 7, None)).collect();
        let many: Vec<(&str, i64, Option<i64>)> = many.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect();
        type Step<'a> = (&'a [(&'a str, i64, Option<i64>)], i64, i64);
        let steps: &[Step<'_>] = &[
            (&many, 0, 0),
            (&[("x", 30, None), ("k1", 30, None)], 0, 12_000), // evicts the keys of 10 s (expiry 12 s)
            (&[], 12_000, 14_000),                             // a no-data batch: 11 s and 12 s go
            (&[("k2", 31, None)], 14_000, 14_000),             // k2 went at 14 s, so it is new again
        ];
        let mut deltas = Vec::new();
        for (input, late_wm, wm) in steps {
            let (_, delta) = run_operator(&mut live, input, *late_wm, *wm, 1000);
            deltas.push(delta);
        }
        let evictions: Vec<usize> = deltas.iter().map(|d| d.iter().map(|b| (0..b.num_rows()).filter(|&i| b.column(0).as_binary::<i32>().value(i).is_empty()).count()).sum()).collect();
        assert_eq!(evictions, [0, 1, 1, 0]);
        assert_eq!(deltas[2].iter().map(RecordBatch::num_rows).sum::<usize>(), 1, "a no-data batch's delta is its eviction alone");
        assert!(live.op.state().len() < 5000 && live.op.state().get(&key_of("k2")).is_some() && live.op.state().get(&key_of("k0")).is_none());

        let mut restored = DedupOperator::new(Deduplicate::new(spec(Some(2000), Some(1)), DedupMap::default()), "dedupeWithinWatermark");
        for b in deltas.iter().flatten() {
            restored.restore(b).unwrap();
        }
        assert!(restored.op.state() == live.op.state());
        assert_eq!(restored.take_metrics().num_rows_removed, 0, "a replayed eviction was counted by its batch");
        // A restore that stops before the last eviction still holds what it removed.
        let mut earlier = DedupOperator::new(Deduplicate::new(spec(Some(2000), Some(1)), DedupMap::default()), "dedupeWithinWatermark");
        for b in deltas[..2].iter().flatten() {
            earlier.restore(b).unwrap();
        }
        assert!(earlier.op.state().len() > restored.op.state().len());
        // Both go on alike: k5 (15 s, expires at 17 s) is still held, k4 (14 s) is late.
        let next = [("fresh", 40, None), ("k5", 40, None), ("k4", 14, None)];
        let (out_live, _) = run_operator(&mut live, &next, 14_000, 14_000, 1000);
        let (out_restored, _) = run_operator(&mut restored, &next, 14_000, 14_000, 1000);
        assert_eq!((out_live, out_restored), (vec!["fresh".to_string()], vec!["fresh".to_string()]));
    }

    /// A snapshot made from the files (the snapshot before it and the deltas since, through
    /// the operator's filter), as a snapshot is made off the batch loop, restores the very
    /// state the running operator holds: at every version, over batches whose rows are late,
    /// duplicated, evicted and added again, added and evicted in one batch, with no-data
    /// batches, and without a watermark (nothing evicted).
    #[tokio::test]
    async fn a_snapshot_made_from_the_files_restores_the_state_held() {
        // On local disk (files read a record batch at a time) and in an object store.
        for (delay, local) in [(Some(2000), true), (None, true), (Some(2000), false)] {
            let dir = tempfile::tempdir().unwrap();
            let cp = weir_checkpoint::Checkpoint::open(if local { dir.path().to_str().unwrap() } else { "memory:///bucket/cp" }).unwrap();
            let files = crate::StateFiles::new("dedup", 4, state_schema());
            let fresh = || DedupOperator::new(Deduplicate::new(spec(delay, Some(1)), DedupMap::default()), "dedupeWithinWatermark");
            let mut live = fresh();
            let (mut seed, mut late_wm, mut max_t) = (7u64, 0i64, 0i64);
            for version in 0..23u64 {
                // Every fifth batch has no rows and only moves the watermark.
                let input: Vec<(String, i64, Option<i64>)> = match version % 5 {
                    4 => Vec::new(),
                    _ => (0..200)
                        .map(|_| {
                            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                            let r = seed >> 33;
                            (format!("k{}", r % 300), 10 + 3 * version as i64 + (r % 11) as i64 - 5, Some(r as i64))
                        })
                        .collect(),
                };
                let input: Vec<(&str, i64, Option<i64>)> = input.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect();
                max_t = input.iter().map(|r| r.1).fold(max_t, i64::max);
                let wm = (max_t * 1000 - 5000).max(late_wm);
                let (_, delta) = run_operator(&mut live, &input, late_wm, wm, 64);
                let mut writer = files.delta_writer(&cp, version).unwrap();
                for d in &delta {
                    writer.write(d).await.unwrap();
                }
                writer.finish().await.unwrap();
                if files.snapshot_due(version) {
                    let filter = live.snapshot_filter(wm).expect("a deduplication with key columns snapshots from its files");
                    files.compact(&cp, version, &filter, 64).await.unwrap();
                    // In record batches of 64 rows, whatever the files' (a few rows each).
                    let bytes = cp.get_bytes(&format!("state/dedup/{version}.snapshot")).await.unwrap().unwrap();
                    let sizes: Vec<usize> = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).unwrap().map(|b| b.unwrap().num_rows()).collect();
                    assert!(sizes.split_last().is_some_and(|(last, full)| *last > 0 && full.iter().all(|&n| n >= 64)), "{sizes:?}");
                }
                let mut restored = fresh();
                files.load(&cp, Some(version), &mut |b: &RecordBatch| restored.restore(b)).await.unwrap();
                assert!(restored.op.state() == live.op.state(), "version {version}, delay {delay:?}: {} keys restored, {} held", restored.op.state().len(), live.op.state().len());
                late_wm = wm;
            }
            let names = cp.file_names("state/dedup").await.unwrap();
            assert!(["3.snapshot", "7.snapshot", "19.snapshot"].iter().all(|n| names.iter().any(|m| m == n)), "{names:?}");
            assert!(delay.is_none() || live.take_metrics().num_rows_dropped_by_watermark > 0, "some rows were late");
        }
    }

    /// Within a batch the row kept is the first by event time, ties broken by place; the
    /// key expires by the kept row's time. Chunk order, chunk sizes and which chunk holds a
    /// row do not matter.
    #[test]
    fn the_first_row_by_event_time_wins_whatever_the_chunking() {
        let rows_in_place_order: Vec<(&str, i64, Option<i64>)> = vec![
            ("a", 30, Some(1)),
            ("b", 10, Some(2)),
            ("a", 20, Some(3)),
            ("a", 25, Some(4)),
            ("b", 10, Some(5)), // a tie: b@10 value 2 came first
            ("c", 40, Some(6)),
            ("a", 20, Some(7)), // a tie with value 3
        ];
        let want = vec![("a".to_string(), 20, Some(3)), ("b".to_string(), 10, Some(2)), ("c".to_string(), 40, Some(6))];
        // Cut the rows into chunks of every size, over two parts (as two Kafka partitions
        // would be), and hand the chunks over in several orders.
        for size in 1..=rows_in_place_order.len() {
            let mut chunks: Vec<(Place, RecordBatch)> = rows_in_place_order
                .chunks(size)
                .enumerate()
                .map(|(i, c)| (place(0, 0, i as u32), batch(c)))
                .collect();
            for order in 0..3 {
                match order {
                    1 => chunks.reverse(),
                    2 => chunks.rotate_left(1),
                    _ => {}
                }
                let mut op = Deduplicate::new(spec(Some(5000), Some(1)), DedupMap::default());
                assert_eq!(run(&mut op, &chunks, 0), want, "chunks of {size}, order {order}");
                let m = op.take_metrics();
                assert_eq!((m.num_rows_updated, m.num_dropped_duplicate_rows), (3, 4));
                assert_eq!(op.state().get(&key_of("a")), Some(25_000), "a expires by its kept row: 20 s + 5 s");
            }
        }
    }

    /// A batch told how many rows are coming sizes its state once, early, and keeps the same
    /// rows and state as one that is not told, or told wrong (too many, too few).
    #[test]
    fn rows_expected_size_the_state_and_change_no_row() {
        // 40,000 rows, one key in four seen twice, in chunks of 5,000.
        let rows: Vec<(String, i64, Option<i64>)> = (0..40_000i64).map(|i| (format!("k{}", if i % 4 == 3 { i - 2 } else { i }), 100 + i % 7, Some(i))).collect();
        let chunks: Vec<(Place, RecordBatch)> = rows
            .chunks(5_000)
            .enumerate()
            .map(|(i, c)| {
                let c: Vec<(&str, i64, Option<i64>)> = c.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect();
                (place(0, 0, i as u32), batch(&c))
            })
            .collect();
        // Every run deals the keys to the tables alike: one hasher seed (this crate's tests
        // fix it), or a run whose seed put a table just over a doubling would end a size apart.
        let empty = DedupMap::default();
        let run_told = |told: Option<u64>| {
            let mut op = Deduplicate::new(spec(Some(5000), Some(1)), empty.clone());
            let mut buckets = Vec::new();
            for (i, (place, b)) in chunks.iter().enumerate() {
                if let Some(total) = told {
                    op.expect_rows(total.saturating_sub(i as u64 * 5_000));
                }
                op.process(std::slice::from_ref(b), *place, 0).unwrap();
                buckets.push(op.state().buckets());
            }
            let mut out = Vec::new();
            let mut settle = op.settle().unwrap();
            while let Some(b) = settle.next_batch().unwrap() {
                out.push(b);
            }
            let mut rows = super::tests::rows(&out);
            rows.sort();
            let state: std::collections::BTreeMap<Vec<u8>, i64> = op.state().iter().map(|(k, e)| (k.to_vec(), e)).collect();
            (rows, state, buckets)
        };
        let (want, want_state, grown) = run_told(None);
        assert_eq!(want.len(), 30_000);
        for told in [40_000, 400_000, 1_000] {
            let (rows, state, buckets) = run_told(Some(told));
            assert_eq!((rows.len(), rows == want, state == want_state), (30_000, true, true), "told {told} rows");
            if told == 40_000 {
                // Sized once, after the first two chunks gave the rate of new keys, to what
                // the batch needs: the same tables as doubling ends with, with no size between.
                assert_eq!(buckets[2..].iter().collect::<std::collections::BTreeSet<_>>().len(), 1, "{buckets:?}");
                assert_eq!(buckets.last(), grown.last());
                assert!(grown.iter().collect::<std::collections::BTreeSet<_>>().len() > 2, "{grown:?}");
            }
        }
    }

    fn key_of(k: &str) -> Vec<u8> {
        let mut bufs = vec![Vec::new()];
        encode_column(&(Arc::new(StringArray::from(vec![k])) as ArrayRef), &mut bufs);
        bufs.pop().unwrap()
    }

    /// Across batches the earlier batch wins, even with an earlier event time later.
    #[test]
    fn an_earlier_batch_wins() {
        let mut op = Deduplicate::new(spec(None, Some(1)), DedupMap::default());
        assert_eq!(run(&mut op, &[(Place::default(), batch(&[("a", 30, Some(1))]))], 0), vec![("a".into(), 30, Some(1))]);
        assert_eq!(run(&mut op, &[(Place::default(), batch(&[("a", 10, Some(2))]))], 0), vec![]);
    }

    /// Ordered by another column (nulls last, as `ORDER BY v`), or not at all (place only).
    #[test]
    fn other_orders() {
        let input = [("a", 1, Some(5)), ("a", 2, None), ("a", 3, Some(4)), ("b", 4, None), ("b", 5, Some(9))];
        let chunks: Vec<(Place, RecordBatch)> =
            input.iter().enumerate().map(|(i, r)| (place(0, (i % 2) as u32, (i / 2) as u32), batch(&[*r]))).rev().collect();
        // Places: rows 0, 2, 4 in part 0 (chunks 0, 1, 2), rows 1, 3 in part 1.
        let mut op = Deduplicate::new(spec(None, Some(2)), DedupMap::default());
        assert_eq!(run(&mut op, &chunks, 0), vec![("a".into(), 3, Some(4)), ("b".into(), 5, Some(9))]);
        let mut op = Deduplicate::new(spec(None, None), DedupMap::default());
        assert_eq!(run(&mut op, &chunks, 0), vec![("a".into(), 1, Some(5)), ("b".into(), 5, Some(9))], "part 0 comes before part 1");
        let mut op = Deduplicate::new(spec(Some(0), Some(1)), DedupMap::default());
        let sources = [(place(1, 0, 0), batch(&[("x", 7, Some(1))])), (place(0, 3, 9), batch(&[("x", 7, Some(2))]))];
        assert_eq!(run(&mut op, &sources, 0), vec![("x".into(), 7, Some(2))], "the first source wins a tie");
    }

    /// Rows at or before the epoch are late from the first batch on, as in Spark.
    #[test]
    fn rows_at_the_epoch_are_late_in_the_first_batch() {
        let mut op = Deduplicate::new(spec(Some(10_000), Some(1)), DedupMap::default());
        let out = run(&mut op, &[(Place::default(), batch(&[("a", 0, None), ("b", 5, None), ("c", -1, None)]))], 0);
        assert_eq!(out, vec![("b".into(), 5, None)]);
        assert_eq!(op.take_metrics().num_rows_dropped_by_watermark, 2);
    }

    /// Candidates whose keys and expiries are made again from their output columns give
    /// the same rows in the same order, the same deltas byte for byte and the same state as
    /// candidates that store them: over batches that settle by a walk of the tables and by
    /// lookups, spilled or not, with duplicates, late rows and evictions, and with a key of
    /// two columns that are not the first ones.
    #[test]
    fn candidates_made_again_from_their_columns_match_stored_ones() {
        let batches: Vec<Vec<(String, i64, Option<i64>)>> = vec![
            (0..30_000).map(|i| (format!("k{}", (i * 7) % 12_000), 100 + (i % 13), Some(i))).collect(),
            (0..3_000).map(|i| (format!("k{}", 11_000 + i * 3), 105 + (i % 5), if i % 4 == 0 { None } else { Some(i) })).collect(),
            (0..2_000).map(|i| (format!("n{i}"), 99 + (i % 9), Some(-i))).collect(),
        ];
        let specs = [
            spec(Some(2_000), Some(1)),
            spec(None, None),
            // Key (v, k): the key columns in another order, one of them nullable.
            DedupSpec { key_columns: vec![2, 0], ..spec(Some(2_000), Some(1)) },
        ];
        for (n, spec) in specs.into_iter().enumerate() {
            for limit in [CANDIDATES_IN_MEMORY, 50_000] {
                let run_all = |store: bool| {
                    STORE_CANDIDATE_KEYS.with(|s| s.set(store));
                    let mut op = Deduplicate::new(spec.clone(), DedupMap::default());
                    STORE_CANDIDATE_KEYS.with(|s| s.set(false));
                    assert_eq!(op.derived.is_none(), store, "spec {n}");
                    op.set_candidate_memory(limit);
                    let mut op = DedupOperator::new(op, "dedupeWithinWatermark");
                    let (mut seen, mut spilled) = (Vec::new(), 0);
                    for (b, input) in batches.iter().enumerate() {
                        for (seq, rows) in input.chunks(4_000).enumerate() {
                            let rows: Vec<(&str, i64, Option<i64>)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
                            op.process(&[batch(&rows)], place(0, 0, seq as u32), 101_000).unwrap();
                        }
                        let watermark = 100_000 + 2_000 * b as i64;
                        while let Some(out) = op.next_output(watermark).unwrap() {
                            seen.push(format!("out {:?}", rows(&[out])));
                        }
                        while let Some(d) = op.next_delta(1_000, true).unwrap() {
                            let keys = d.column(0).as_any().downcast_ref::<BinaryArray>().unwrap();
                            let expires = d.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
                            seen.push(format!("delta {:?}", (0..d.num_rows()).map(|i| (keys.value(i).to_vec(), expires.is_valid(i).then(|| expires.value(i)))).collect::<Vec<_>>()));
                        }
                        // Stored candidates are bigger: the bytes spilled differ.
                        let mut metrics = op.take_metrics();
                        spilled += metrics.custom.remove("spilledCandidateBytes").expect("spilled bytes");
                        seen.push(format!("metrics {metrics:?}"));
                    }
                    let mut state: Vec<(Vec<u8>, i64)> = op.op.state().iter().map(|(k, e)| (k.to_vec(), e)).collect();
                    state.sort();
                    (seen, state, spilled)
                };
                let (derived, stored) = (run_all(false), run_all(true));
                assert!(derived.0.len() > 10, "spec {n}");
                assert_eq!((&derived.0, &derived.1), (&stored.0, &stored.1), "spec {n}, candidate memory {limit}");
                match limit {
                    CANDIDATES_IN_MEMORY => assert_eq!((derived.2, stored.2), (0, 0), "spec {n}: nothing spilled"),
                    _ => assert!(0 < derived.2 && derived.2 < stored.2, "spec {n}: spilled {} and {} bytes", derived.2, stored.2),
                }
            }
        }
    }

    /// Many candidates go through a spill file and come back the same.
    #[test]
    fn candidates_spill_to_a_file() {
        let input: Vec<(String, i64, Option<i64>)> = (0..20_000).map(|i| (format!("k{}", i % 7_000), 100_000 - i, Some(i))).collect();
        let chunks: Vec<(Place, RecordBatch)> = input
            .chunks(1_000)
            .enumerate()
            .map(|(i, c)| (place(0, 0, i as u32), batch(&c.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect::<Vec<_>>())))
            .collect();
        let mut spilled = Deduplicate::new(spec(Some(1_000), Some(1)), DedupMap::default());
        spilled.set_candidate_memory(10_000);
        let mut in_memory = Deduplicate::new(spec(Some(1_000), Some(1)), DedupMap::default());
        let (a, b) = (run(&mut spilled, &chunks, 0), run(&mut in_memory, &chunks, 0));
        assert_eq!(a.len(), 7_000);
        assert_eq!(a, b);
        // The last row of each key has the earliest time: k0 is row 14000 (19,999 is k5999).
        assert!(a.contains(&("k0".into(), 100_000 - 14_000, Some(14_000))));
        assert_eq!(spilled.take_added().iter().map(RecordBatch::num_rows).sum::<usize>(), 7_000);
        assert_eq!(spilled.state().pending(), 0);
    }

    /// Chunks of many candidates have them built and stored on a thread of their own, in
    /// memory or spilled: the rows kept and the keys added are those of chunks small enough
    /// to be stored on the calling thread; a small chunk after a big one goes through the
    /// thread too, after the big one's.
    #[test]
    fn candidates_stored_on_a_thread_come_back_the_same() {
        let input: Vec<(String, i64, Option<i64>)> = (0..60_000).map(|i| (format!("k{}", (i * 7) % 25_000), 100_000 - i % 9, Some(i))).collect();
        let chunks = |sizes: &[usize]| -> Vec<(Place, RecordBatch)> {
            let mut out = Vec::new();
            let mut at = 0;
            for (seq, &n) in sizes.iter().cycle().enumerate() {
                if at == input.len() {
                    break;
                }
                let rows: Vec<(&str, i64, Option<i64>)> = input[at..(at + n).min(input.len())].iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
                at += rows.len();
                out.push((place(0, 0, seq as u32), batch(&rows)));
            }
            out
        };
        for limit in [20_000, CANDIDATES_IN_MEMORY] {
            let mut here = Deduplicate::new(spec(Some(1_000), Some(1)), DedupMap::default());
            here.set_candidate_memory(limit);
            let expected = run(&mut here, &chunks(&[1_000]), 0);
            let mut threaded = Deduplicate::new(spec(Some(1_000), Some(1)), DedupMap::default());
            threaded.set_candidate_memory(limit);
            let big_then_small = chunks(&[20_000, 500]);
            threaded.process(std::slice::from_ref(&big_then_small[0].1), big_then_small[0].0, 0).unwrap();
            assert!(matches!(threaded.batch.candidates, CandidateWriter::Thread { .. }), "a chunk of 20,000 new keys starts the thread");
            let got = run(&mut threaded, &big_then_small[1..], 0);
            assert_eq!(got.len(), 25_000);
            assert_eq!(got, expected, "limit {limit}");
            let (a, b) = (threaded.take_added(), here.take_added());
            let keys = |batches: &[RecordBatch]| -> Vec<Vec<u8>> {
                batches.iter().flat_map(|b| b.column(0).as_any().downcast_ref::<BinaryArray>().unwrap().iter().map(|k| k.unwrap().to_vec()).collect::<Vec<_>>()).collect()
            };
            let (mut ka, mut kb) = (keys(&a), keys(&b));
            assert_eq!(ka.len(), 25_000);
            ka.sort();
            kb.sort();
            assert_eq!(ka, kb, "the same keys added");
            assert!(matches!(threaded.batch.candidates, CandidateWriter::Here(_)), "the next batch starts without a thread");
        }
    }

    /// The candidate thread fails (its spill file cannot be made): the batch fails with its
    /// error, from a later chunk or from settle (the runner then fails the batch, and the
    /// query starts again from its checkpoint with the state loaded anew).
    #[test]
    fn a_candidate_thread_that_fails_fails_the_batch() {
        let rows: Vec<(String, i64, Option<i64>)> = (0..60_000).map(|i| (format!("k{i}"), 100_000, Some(i))).collect();
        let chunk = |n: usize| batch(&rows[n * 20_000..(n + 1) * 20_000].iter().map(|r| (r.0.as_str(), r.1, r.2)).collect::<Vec<_>>());
        let mut op = Deduplicate::new(spec(Some(1_000), Some(1)), DedupMap::default());
        op.set_candidate_memory(NO_SPILL_FILE);
        let mut error = None;
        for n in 0..3 {
            if let Err(e) = op.process(&[chunk(n)], place(0, 0, n as u32), 0) {
                error = Some(e.to_string());
                break;
            }
            if n == 0 {
                assert!(matches!(op.batch.candidates, CandidateWriter::Thread { .. }), "20,000 candidates start the thread");
            }
        }
        let error = match error {
            Some(e) => e,
            None => op.settle().unwrap_err().to_string(),
        };
        assert!(error.contains("cannot spill a batch's candidate rows") && error.contains("no temporary directory"), "{error}");
    }
}
