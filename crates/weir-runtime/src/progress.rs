//! Progress events, with Spark's `StreamingQueryProgress` field names so dashboards and
//! habits carry over, and the listener interface shared by the CLI, shell and Python.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Time spent in each step of a batch, milliseconds (Spark's `durationMs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationMs {
    /// Asking sources for new offsets.
    pub latest_offset: u64,
    /// Writing `offsets/N`.
    pub wal_commit: u64,
    /// Reading the batch's records.
    pub get_batch: u64,
    /// Planning (zero: the query is planned once, at start).
    pub query_planning: u64,
    /// Executing the plan and committing to the sink.
    pub add_batch: u64,
    /// Writing `commits/N`.
    pub commit_offsets: u64,
    /// The whole batch.
    pub trigger_execution: u64,
    /// weir's own, part of `addBatch`: the sink's commit (a Delta commit).
    pub sink_commit: u64,
    /// weir's own, part of `addBatch`: writing the state's delta and the snapshots taken
    /// from memory, and, when a snapshot is due, waiting for the last one made from the
    /// files.
    pub state_commit: u64,
}

/// Event-time statistics of the batch (ISO-8601 UTC strings, as Spark's).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventTime {
    /// Earliest event time in the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    /// Latest event time in the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Mean event time in the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg: Option<String>,
    /// Watermark in force for the batch.
    pub watermark: String,
}

/// One source's part of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceProgress {
    /// What the source reads.
    pub description: String,
    /// Offset the batch started at (exclusive end of the batch before).
    pub start_offset: Option<Value>,
    /// Offset the batch ended at.
    pub end_offset: Option<Value>,
    /// Newest offset available, when the source knows.
    pub latest_offset: Option<Value>,
    /// Rows read.
    pub num_input_rows: u64,
    /// Rows per second arriving since the previous batch started.
    pub input_rows_per_second: f64,
    /// Rows per second processed by this batch.
    pub processed_rows_per_second: f64,
    /// Source-specific numbers, as Spark's (Kafka: `minOffsetsBehindLatest`,
    /// `maxOffsetsBehindLatest`, `avgOffsetsBehindLatest`, and weir's per-partition
    /// `offsetsBehindLatest`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, Value>,
}

/// The sink's part of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkProgress {
    /// What the sink writes.
    pub description: String,
    /// Rows the batch output (a replay that finds the batch committed reports them too, and
    /// writes nothing).
    pub num_output_rows: u64,
    /// Sink version after the batch (Delta table version), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Sink-specific numbers, as Spark's `sink.metrics`: a Delta sink's compaction after
    /// the batch (`compactionRemovedFiles`, `compactionAddedFiles`, `compactionVersion`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, Value>,
}

/// The progress of one batch (Spark's `StreamingQueryProgress`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryProgress {
    /// Stable query id (kept in the checkpoint).
    pub id: String,
    /// Id of this run of the query.
    pub run_id: String,
    /// Query name.
    pub name: String,
    /// When the batch started (ISO-8601 UTC).
    pub timestamp: String,
    /// The batch.
    pub batch_id: u64,
    /// Whether this batch re-ran one recorded before a crash.
    pub is_replay: bool,
    /// Rows read by the batch.
    pub num_input_rows: u64,
    /// Rows per second arriving since the previous batch started.
    pub input_rows_per_second: f64,
    /// Rows per second processed.
    pub processed_rows_per_second: f64,
    /// Where the time went.
    pub duration_ms: DurationMs,
    /// Event-time statistics (when a source has a watermark).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTime>,
    /// Stateful operators (none in a stateless query).
    pub state_operators: Vec<Value>,
    /// One entry per source read.
    pub sources: Vec<SourceProgress>,
    /// The sink.
    pub sink: SinkProgress,
    /// Observed metrics (unused; kept for Spark's shape).
    pub observed_metrics: BTreeMap<String, Value>,
}

impl QueryProgress {
    /// The progress as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("progress serializes")
    }
}

/// `onQueryStarted`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryStartedEvent {
    /// Stable query id.
    pub id: String,
    /// Id of this run.
    pub run_id: String,
    /// Query name.
    pub name: String,
    /// Checkpoint location.
    pub checkpoint: String,
    /// Start time (ISO-8601 UTC).
    pub timestamp: String,
    /// Things the user should know, such as unbounded state.
    pub warnings: Vec<String>,
}

/// weir's own: in an `available-now` run, the work each source had when the run started and
/// what is left of it. Sent once before the run's first batch and again after each batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryBacklogEvent {
    /// Stable query id.
    pub id: String,
    /// Id of this run.
    pub run_id: String,
    /// Query name.
    pub name: String,
    /// The sources that can count their work, by name.
    pub sources: Vec<SourceBacklog>,
}

/// One source's work in an `available-now` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceBacklog {
    /// The source table.
    pub source: String,
    /// What is counted: `files`, `offsets` or `rows`.
    pub unit: String,
    /// The work there was when the run started.
    pub total: u64,
    /// What is left.
    pub remaining: u64,
}

/// `onQueryIdle`: a trigger found no new data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryIdleEvent {
    /// Stable query id.
    pub id: String,
    /// Id of this run.
    pub run_id: String,
    /// When (ISO-8601 UTC).
    pub timestamp: String,
}

/// Something the user should know that did not stop the query: a source waiting for its
/// broker, data skipped with `fail_on_data_loss = false`, a new partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryWarningEvent {
    /// Stable query id.
    pub id: String,
    /// Id of this run.
    pub run_id: String,
    /// When (ISO-8601 UTC).
    pub timestamp: String,
    /// What happened.
    pub message: String,
}

/// `onQueryTerminated`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryTerminatedEvent {
    /// Stable query id.
    pub id: String,
    /// Id of this run.
    pub run_id: String,
    /// The error that ended the query, if it failed.
    pub exception: Option<String>,
}

/// Receives query events; every method has a no-op default. Called from the query's task:
/// keep them quick.
pub trait QueryListener: Send + Sync {
    /// The query started (before its first batch).
    fn on_query_started(&self, _event: &QueryStartedEvent) {}
    /// A batch finished.
    fn on_query_progress(&self, _progress: &QueryProgress) {}
    /// A trigger found nothing new.
    fn on_query_idle(&self, _event: &QueryIdleEvent) {}
    /// In an `available-now` run: the work known at its start and what is left of it.
    fn on_query_backlog(&self, _event: &QueryBacklogEvent) {}
    /// Something worth a warning happened; the query goes on.
    fn on_query_warning(&self, _event: &QueryWarningEvent) {}
    /// The query stopped or failed.
    fn on_query_terminated(&self, _event: &QueryTerminatedEvent) {}
}

/// `2024-01-01T00:00:00.000Z` for a time in milliseconds since the epoch.
pub fn iso_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Now, in milliseconds since the epoch.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
