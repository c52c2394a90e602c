//! weir's connectors: replayable sources (Kafka, files, datagen) and sinks (Delta, memory,
//! console, foreach_batch).
//!
//! A source hands the batch loop offsets (JSON, as Spark's) and reads exactly the records
//! between two offsets; a sink commits one batch's output idempotently. Neither knows SQL or
//! the batch loop: they get typed configs from `weir-sql` and are driven by `weir-runtime`.

#![warn(missing_docs)]

pub mod channel;
pub mod console;
pub mod datagen;
pub mod delta;
pub mod delta_source;
mod delta_guard;
mod delta_journal;
mod delta_schema;
pub mod delta_upkeep;
pub mod error;
pub use weir_checkpoint::failpoint;
pub mod file;
pub mod foreach_batch;
mod json_flat;
pub mod kafka;
pub mod memory;
pub mod static_table;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use weir_checkpoint::Checkpoint;
use weir_sql::config::ConnectorConfig;

pub use error::{ConnectorError, Result};

/// A replayable source: the same offsets always give the same records.
#[async_trait]
pub trait Source: Send + Sync {
    /// The schema of the records it yields.
    fn schema(&self) -> SchemaRef;

    /// What it reads, for progress (`FileSource[file:///data/events/]`).
    fn description(&self) -> String;

    /// Called once before the first batch, so the source knows where it is: `last_batch` is
    /// the newest batch recorded in the checkpoint (committed or about to be replayed), and
    /// `recorded_end` this source's end offset in it (`None` before the source's first data).
    async fn restore(&mut self, checkpoint: &Arc<Checkpoint>, last_batch: Option<u64>, recorded_end: Option<&Value>) -> Result<()>;

    /// Where rows that fail to decode go, and their schema, when the table sends them to a
    /// dead-letter table (`on_bad_row = 'dead_letter'`).
    fn dead_letter(&self) -> Option<(String, SchemaRef)> {
        None
    }

    /// Source-specific numbers for progress (`sources[].metrics`, such as Kafka's lag).
    fn metrics(&self) -> BTreeMap<String, Value> {
        BTreeMap::new()
    }

    /// Things the user should know that did not stop the query (skipped data, new partitions).
    fn take_warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Called after batch `end` is committed (Kafka commits it to a consumer group for lag
    /// monitoring). Never needed for correctness.
    async fn committed(&self, _end: &Value) -> Result<()> {
        Ok(())
    }

    /// Limits this run to what is available now (trigger `available-now`).
    async fn freeze_available(&mut self) -> Result<()> {
        Ok(())
    }

    /// The end offset of batch `batch_id`, which starts at `start`: everything new up to the
    /// per-trigger limits. `None` when nothing new is there. May record what it chose in the
    /// checkpoint (the file source logs the batch's files) before returning.
    async fn plan_batch(&mut self, checkpoint: &Arc<Checkpoint>, batch_id: u64, start: Option<&Value>) -> Result<Option<Value>>;

    /// Whether the last [`Source::plan_batch`] left data out of its batch that a per-trigger
    /// limit kept back (`max_files_per_trigger`, `max_offsets_per_trigger`, ...): there is
    /// a backlog, and the loop reads the next batch while the last one commits. A source
    /// that is caught up says no: the next batch then waits for the commit before it is
    /// planned, so that it takes what came meanwhile.
    fn has_more(&self) -> bool {
        false
    }

    /// The newest offset available, regardless of per-trigger limits (for progress).
    async fn latest_offset(&self) -> Option<Value> {
        None
    }

    /// What is left of an `available-now` run after `position` (the end of the source's
    /// last batch; `None` before its first): the files, offsets or rows between there and
    /// the end [`Source::freeze_available`] fixed. `None` when the run is not frozen or the
    /// source cannot count (an unbounded generator). For progress only.
    async fn backlog(&self, _position: Option<&Value>) -> Result<Option<Backlog>> {
        Ok(None)
    }

    /// Reads the records in `(start, end]` of the offsets (`start` exclusive end of the batch
    /// before), exactly as the first time.
    async fn read(&self, checkpoint: &Arc<Checkpoint>, start: Option<&Value>, end: &Value) -> Result<ReadOutput>;

    /// The records of [`Source::read`] in chunks (a file's rows, say), in a fixed order, so
    /// that the batch loop works on the first chunk while the next are read and decoded.
    /// Chained, the chunks are exactly what `read` returns.
    fn read_chunks<'a>(
        &'a self,
        checkpoint: &'a Arc<Checkpoint>,
        start: Option<&'a Value>,
        end: &'a Value,
    ) -> BoxStream<'a, Result<ReadOutput>> {
        futures::stream::once(self.read(checkpoint, start, end)).boxed()
    }
}

/// Work left in a source, in its own unit ([`Source::backlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// How much.
    pub amount: u64,
    /// Of what: `files`, `offsets` or `rows`.
    pub unit: &'static str,
}

/// What a source read for a batch.
#[derive(Debug, Default)]
pub struct ReadOutput {
    /// The rows, in the source's schema.
    pub batches: Vec<RecordBatch>,
    /// Rows that failed to decode, in the dead-letter schema (only with a dead-letter table).
    pub bad_rows: Vec<RecordBatch>,
    /// Where these rows sit in the batch's input (for a chunk of [`Source::read_chunks`]).
    pub place: ChunkPlace,
    /// The bytes they were decoded from (a file's text or Parquet row groups, Kafka keys
    /// and values), for monitoring.
    pub bytes: u64,
    /// The source's estimate of the rows of the whole read, on its first chunk and on later
    /// ones when it refines it (a file source's, on every chunk: its rows per byte so far
    /// times the bytes of the batch's files; a Kafka source's: the records of its offset
    /// ranges; datagen's: its rows), for sizing state ahead; `None`: no new estimate.
    pub rows_hint: Option<u64>,
}

/// Where a chunk sits in its source's input of a batch: the part it comes from (a file of
/// the batch's list, a Kafka partition, numbered in a fixed order) and its number in that
/// part, chunks of a part being in record order. Whatever order chunks come in, and however
/// a source cuts them, places order the rows as file then line, or partition then offset:
/// deduplication breaks ties by it, so its result never depends on chunking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ChunkPlace {
    /// The part of the source.
    pub part: u32,
    /// The chunk's number within its part.
    pub seq: u32,
}

impl ReadOutput {
    /// The chunks of [`Source::read_chunks`] chained: what [`Source::read`] returns.
    pub async fn collect(mut chunks: BoxStream<'_, Result<ReadOutput>>) -> Result<Self> {
        let mut out = Self::default();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            out.batches.extend(chunk.batches);
            out.bad_rows.extend(chunk.bad_rows);
            out.bytes += chunk.bytes;
        }
        Ok(out)
    }
}

impl From<Vec<RecordBatch>> for ReadOutput {
    fn from(batches: Vec<RecordBatch>) -> Self {
        Self { batches, bad_rows: Vec::new(), place: ChunkPlace::default(), bytes: 0, rows_hint: None }
    }
}

/// What a sink did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SinkCommit {
    /// Rows written (0 when skipped).
    pub rows: u64,
    /// False when the batch had been committed before (a replay) or had no rows.
    pub written: bool,
    /// The sink's version after the batch, when it has versions (Delta): the version that
    /// holds the batch.
    pub version: Option<i64>,
    /// The compaction the sink ran after the batch's commit (Delta's `auto_compact`).
    pub compaction: Option<Compaction>,
    /// How many times the commit was tried again (another writer committed first, an
    /// answer was lost).
    pub commit_retries: u64,
}

/// A compaction of a Delta table's small files that a sink ran after a batch's commit, in a
/// commit of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compaction {
    /// Small files removed from the table.
    pub files_removed: u64,
    /// Files written in their place.
    pub files_added: u64,
    /// The table's version after it.
    pub version: Option<i64>,
}

/// Which writer a table's commits come from: the Delta `txn` app id they carry, so that a
/// replayed batch finds its own commit. Every table a query writes has its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppId {
    /// The app id this sink's commits carry.
    pub id: String,
    /// The app id earlier versions of weir wrote the same table with: batches recorded under
    /// it count as committed too.
    pub previous: Option<String>,
}

impl AppId {
    /// The query's sink: the query id, as ever.
    pub fn sink(query_id: &str) -> Self {
        Self { id: query_id.to_string(), previous: None }
    }

    /// A side table of the query (dead-letter or late rows), known to it as `table`:
    /// `<query id>:<table>`. weir 0.1 wrote these with the query id.
    pub fn side_table(query_id: &str, table: &str) -> Self {
        Self { id: format!("{query_id}:{table}"), previous: Some(query_id.to_string()) }
    }
}

/// An idempotent sink: committing batch N twice leaves it as if committed once.
#[async_trait]
pub trait Sink: Send + Sync {
    /// What it writes, for progress and the checkpoint's identity check.
    fn description(&self) -> String;

    /// The schema the query must produce, if the sink already fixes one (declared columns,
    /// or an existing Delta table). `None`: the query's output schema is taken as is.
    async fn target_schema(&mut self) -> Result<Option<SchemaRef>>;

    /// Prepares for writing with the final output schema and the id the sink's commits
    /// carry; checks that an existing table fits, and cleans up after a crashed run of the
    /// query (the checkpoint keeps what the sink needs for that). Called once before the
    /// first batch.
    async fn open(&mut self, schema: &SchemaRef, app_id: &AppId, checkpoint: &Arc<Checkpoint>) -> Result<()>;

    /// Starts batch `batch_id`: its rows follow through [`Sink::write`] as the query makes
    /// them, and [`Sink::finish`] commits them. A batch committed before (a replay) is
    /// skipped: its rows are dropped and `finish` writes nothing.
    async fn begin(&mut self, batch_id: u64) -> Result<()>;

    /// Takes rows of the batch begun last. A sink may start writing them at once, but
    /// nothing is visible before `finish`.
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// Commits the rows of the batch begun last in one atomic step.
    async fn finish(&mut self) -> Result<SinkCommit>;

    /// Ends the sink's work when the query stops: waits for what it does in the background
    /// (a Delta checkpoint). Nothing of a batch waits for this.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// Whether the sink's table is yet to be created: a batch then commits even without
    /// rows, and so creates it (the Delta sink; see `DeltaSink::finish`). A dead-letter or
    /// late-rows table, which gets rows only now and then, is begun for that.
    fn awaits_creation(&self) -> bool {
        false
    }

    /// Things the user should know that did not stop the query (a compaction skipped, a
    /// table property not applied), since the last call.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Commits batch `batch_id`'s rows in one atomic step, or skips it if already committed.
    async fn commit(&mut self, batch_id: u64, batches: Vec<RecordBatch>) -> Result<SinkCommit> {
        self.begin(batch_id).await?;
        for batch in batches {
            self.write(batch).await?;
        }
        self.finish().await
    }
}

/// The rows of the batch being written, for sinks that take a batch's rows at once.
#[derive(Debug, Default)]
pub(crate) struct Buffered {
    /// The batch begun last, and its rows so far.
    pub(crate) batch: Option<(u64, Vec<RecordBatch>)>,
}

impl Buffered {
    pub(crate) fn begin(&mut self, batch_id: u64) {
        self.batch = Some((batch_id, Vec::new()));
    }

    pub(crate) fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match &mut self.batch {
            Some((_, rows)) => {
                rows.push(batch);
                Ok(())
            }
            None => Err(ConnectorError::Io("rows written outside a batch (no begin)".to_string())),
        }
    }

    pub(crate) fn take(&mut self) -> Result<(u64, Vec<RecordBatch>)> {
        self.batch.take().ok_or_else(|| ConnectorError::Io("finish without begin".to_string()))
    }
}

/// Shared storage of the memory sink, kept by the session.
pub type MemoryTables = memory::MemoryTables;

/// Builds the source for a table (`config.is_source()` must hold). `declared` holds the
/// table's declared columns, if any.
pub async fn make_source(name: &str, config: &ConnectorConfig, declared: Option<SchemaRef>) -> Result<Box<dyn Source>> {
    match config {
        ConnectorConfig::Kafka(c) => Ok(Box::new(kafka::KafkaSource::new(name, c.clone(), declared)?)),
        ConnectorConfig::File(c) => Ok(Box::new(file::FileSource::new(name, c.clone(), declared).await?)),
        ConnectorConfig::Delta(c) => Ok(Box::new(delta_source::DeltaSource::new(name, c.clone(), declared).await?)),
        ConnectorConfig::Datagen(c) => {
            let schema = declared.ok_or_else(|| ConnectorError::Config(format!("datagen table '{name}' needs declared columns")))?;
            Ok(Box::new(datagen::DatagenSource::new(c.clone(), schema)?))
        }
        other => Err(ConnectorError::Config(format!(
            "table '{name}' (connector '{}') cannot be read by a streaming query; sources are 'kafka', 'file', 'datagen' and 'delta'",
            other.name()
        ))),
    }
}

/// A positive number from the environment variable `name`, else `default`: the tuning
/// knobs the tests use to show that rows do not depend on how input is cut
/// (`WEIR_FILE_PIECE_BYTES`, `WEIR_KAFKA_CHUNK_MESSAGES`). Read once per knob by its caller.
pub(crate) fn tuning_knob<T: std::str::FromStr + PartialOrd + Default>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse::<T>().ok()).filter(|n| *n > T::default()).unwrap_or(default)
}

/// Builds the sink for a table (`config.is_sink()` must hold).
pub fn make_sink(name: &str, config: &ConnectorConfig, declared: Option<SchemaRef>, memory: &MemoryTables) -> Result<Box<dyn Sink>> {
    match config {
        ConnectorConfig::Delta(c) => Ok(Box::new(delta::DeltaSink::new(name, c.clone(), declared)?)),
        ConnectorConfig::Memory => Ok(Box::new(memory::MemorySink::new(name, declared, Arc::clone(memory)))),
        ConnectorConfig::Console(c) => Ok(Box::new(console::ConsoleSink::new(name, c.clone(), declared))),
        other => Err(ConnectorError::Config(format!(
            "table '{name}' (connector '{}') cannot be written by a query; sinks are 'delta', 'memory' and 'console'",
            other.name()
        ))),
    }
}
