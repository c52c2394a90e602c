//! `weir checkpoint show` and `weir checkpoint state`: what a checkpoint says about its
//! query, and the rows of an operator's state, read without the lock, so it is safe while
//! the query runs, and never written.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, TimestampMillisecondArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use weir_checkpoint::{Checkpoint, StorageOptions};
use weir_state::StateFiles;

use crate::error::{Result, WeirError};
use crate::progress::iso_millis;

/// What a checkpoint holds, for people (`Display`) and scripts (`Serialize`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointReport {
    /// Where it is.
    pub location: String,
    /// The stable query id (the Delta `txn` app id).
    pub query_id: String,
    /// The query's text.
    pub query: String,
    /// What it reads, by source name.
    pub sources: BTreeMap<String, String>,
    /// What it writes.
    pub sink: String,
    /// The sink's columns.
    pub sink_columns: Option<String>,
    /// `min` or `max`.
    pub watermark_policy: Option<String>,
    /// The weir that created it, and when.
    pub weir_version: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The newest batch recorded.
    pub last_batch: Option<BatchReport>,
    /// The stateful operators, with their state files.
    pub state_operators: Vec<OperatorReport>,
    /// Each Kafka source's lag now, behind the last committed batch (asked for with
    /// [`KafkaLagOptions`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kafka_lag: BTreeMap<String, KafkaLag>,
}

/// Where the Kafka sources' broker is, for their lag: the checkpoint does not keep it.
#[derive(Debug, Clone)]
pub struct KafkaLagOptions {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// librdkafka settings (security.protocol, sasl.*), as a table's `properties.*`.
    pub properties: Vec<(String, String)>,
    /// How long to wait for the broker.
    pub timeout: std::time::Duration,
}

/// A Kafka source's lag now: partitions and their sum, or why it is not known.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaLag {
    /// Per partition, behind the last committed batch's end.
    pub partitions: Vec<weir_connectors::kafka::PartitionLag>,
    /// Their sum.
    pub total: i64,
    /// Why the broker did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The newest batch of a checkpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReport {
    /// Its id.
    pub batch_id: u64,
    /// Whether `commits/N` exists: false means the next run replays it.
    pub committed: bool,
    /// When it was planned (RFC 3339).
    pub planned_at: String,
    /// Its watermark (RFC 3339; the epoch before any).
    pub watermark: String,
    /// Each source's start and end offsets.
    pub sources: BTreeMap<String, Value>,
    /// The Delta versions static tables were joined at.
    pub static_versions: Option<BTreeMap<String, i64>>,
    /// Rows it wrote and the sink's version after it, once committed.
    pub output_rows: Option<u64>,
    /// The sink's version after it, once committed.
    pub sink_version: Option<i64>,
    /// The run that planned it.
    pub run_id: Option<String>,
}

/// One stateful operator and its files.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorReport {
    /// Its directory under `state/`.
    pub id: String,
    /// What it is (`dedupKeys`, `windowAggregate`), its keys, event time and delay, from
    /// `metadata.json`.
    pub spec: Option<Value>,
    /// State files (snapshots and deltas) and their bytes.
    pub files: usize,
    /// Total bytes of its files.
    pub bytes: u64,
    /// The newest snapshot's batch id.
    pub newest_snapshot: Option<u64>,
    /// Rows (keys, groups) in its state after the last committed batch.
    pub rows: Option<u64>,
    /// Bytes its state took in memory then.
    pub memory_bytes: Option<u64>,
}

/// Reads the checkpoint at `location` (object store settings `storage`).
pub async fn show_checkpoint(location: &str, storage: &StorageOptions, kafka: Option<&KafkaLagOptions>) -> Result<CheckpointReport> {
    let (checkpoint, shown, meta) = open_read_only(location, storage).await?;
    let latest = checkpoint.latest().await?;
    // State sizes as of the last committed batch: the newest one, or the one before it.
    let last_committed = match &latest {
        Some((_, Some(commit))) => Some(commit.clone()),
        Some((offsets, None)) => match offsets.batch_id.checked_sub(1) {
            Some(before) => checkpoint.commit(before).await?,
            None => None,
        },
        None => None,
    };
    let sizes = last_committed.as_ref().and_then(|c| c.state_sizes.clone()).unwrap_or_default();
    // The Kafka sources' lag behind the last committed batch: its end, or the start of
    // the batch the next run replays.
    let mut kafka_lag = BTreeMap::new();
    if let (Some(options), Some((offsets, commit))) = (kafka, &latest) {
        for (name, description) in &meta.sources {
            let Some(o) = offsets.sources.get(name).filter(|_| description.starts_with("KafkaV2")) else { continue };
            let position = if commit.is_some() { Some(&o.end) } else { o.start.as_ref() };
            let Some(position) = position else { continue };
            let lag = match weir_connectors::kafka::lag_now(&options.bootstrap_servers, &options.properties, position, options.timeout).await {
                Ok(partitions) => KafkaLag { total: partitions.iter().map(|p| p.lag).sum(), partitions, error: None },
                Err(e) => KafkaLag { partitions: Vec::new(), total: 0, error: Some(e.to_string()) },
            };
            kafka_lag.insert(name.clone(), lag);
        }
    }
    let last_batch = match latest {
        Some((offsets, commit)) => Some(BatchReport {
            batch_id: offsets.batch_id,
            committed: commit.is_some(),
            planned_at: iso_millis(offsets.batch_timestamp_ms),
            watermark: iso_millis(offsets.batch_watermark_ms),
            sources: offsets
                .sources
                .iter()
                .map(|(name, o)| (name.clone(), serde_json::json!({"start": o.start, "end": o.end})))
                .collect(),
            static_versions: offsets.static_versions.clone(),
            output_rows: commit.as_ref().map(|c| c.num_output_rows),
            sink_version: commit.as_ref().and_then(|c| c.sink_version),
            run_id: offsets.run_id.clone(),
        }),
        None => None,
    };
    let dirs = state_dirs(&checkpoint).await?;
    let specs: Vec<Value> = meta.state_operators.iter().flatten().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).collect();
    let state_operators = dirs
        .into_iter()
        .map(|(id, (files, bytes, newest_snapshot))| {
            // `dedup` is operator 0; `<kind>-<i>` operator i.
            let index = operator_index(&id);
            let size = sizes.get(index);
            OperatorReport {
                spec: specs.get(index).cloned(),
                id,
                files,
                bytes,
                newest_snapshot,
                rows: size.map(|s| s.rows),
                memory_bytes: size.map(|s| s.memory_bytes),
            }
        })
        .collect();
    Ok(CheckpointReport {
        location: shown,
        query_id: meta.id,
        query: meta.query,
        sources: meta.sources,
        sink: meta.sink,
        sink_columns: meta.sink_columns,
        watermark_policy: meta.watermark_policy,
        weir_version: meta.weir_version,
        created_at: iso_millis(meta.created_at_ms),
        last_batch,
        state_operators,
        kafka_lag,
    })
}

/// The checkpoint at `location` opened without its lock, how to show it, and its metadata;
/// an error when it is not a weir checkpoint.
async fn open_read_only(location: &str, storage: &StorageOptions) -> Result<(Checkpoint, String, weir_checkpoint::Metadata)> {
    let checkpoint = Checkpoint::read_only(location, storage)?;
    let shown = checkpoint.display();
    let meta = checkpoint
        .metadata()
        .await?
        .ok_or_else(|| WeirError::Config(format!("{shown} is not a weir checkpoint: it has no metadata.json")))?;
    Ok((checkpoint, shown, meta))
}

/// The operators' directories under `state/`: files, bytes and newest snapshot of each.
async fn state_dirs(checkpoint: &Checkpoint) -> Result<BTreeMap<String, (usize, u64, Option<u64>)>> {
    let location = checkpoint.location();
    let state = location.child("state");
    let mut dirs: BTreeMap<String, (usize, u64, Option<u64>)> = BTreeMap::new();
    let mut listing = location.store.list(Some(&state));
    while let Some(meta) = listing.try_next().await.map_err(|e| WeirError::Config(format!("cannot list {}: {e}", location.display(&state))))? {
        let Some(relative) = meta.location.prefix_match(&state) else { continue };
        let parts: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
        let [dir, name] = parts.as_slice() else { continue };
        let entry = dirs.entry(dir.clone()).or_default();
        entry.0 += 1;
        entry.1 += meta.size;
        if let Some(id) = name.strip_suffix(".snapshot").and_then(|n| n.parse::<u64>().ok()) {
            entry.2 = entry.2.max(Some(id));
        }
    }
    Ok(dirs)
}

/// The operator an operator directory belongs to: `dedup` is operator 0, `<kind>-<i>`
/// operator i.
fn operator_index(dir: &str) -> usize {
    dir.rsplit_once('-').and_then(|(_, i)| i.parse::<usize>().ok()).unwrap_or(0)
}

/// What `weir checkpoint state` asks for.
#[derive(Debug, Clone, Default)]
pub struct StateQuery {
    /// The operator's directory under `state/` (`dedup`, `window-1`); `None`: the only one.
    pub operator: Option<String>,
    /// The state as of this committed batch; `None`: the last committed one.
    pub batch: Option<u64>,
    /// Only rows whose column (by name) shows as this value, e.g. `event_id` = `e-42`.
    pub keys: Vec<(String, String)>,
    /// At most this many rows.
    pub limit: Option<usize>,
}

/// An operator's state rows, as `weir checkpoint state` shows them.
#[derive(Debug, Clone)]
pub struct StateRows {
    /// The operator's directory under `state/`.
    pub operator: String,
    /// What it is (`dedupeWithinWatermark`, `windowAggregate`).
    pub kind: String,
    /// The committed batch the state is as of.
    pub batch_id: u64,
    /// The rows: for a deduplication each key's columns and `expires_at` (when the
    /// watermark passes it the key is forgotten; NULL: never, no watermark); for a window
    /// aggregation `closes_at`, the group's columns and its partial aggregates, a row per
    /// batch that touched the group since the last snapshot (merged, they are its state).
    pub rows: RecordBatch,
    /// Rows that matched before `limit`.
    pub matched: usize,
}

/// Reads the state of one operator of the checkpoint at `location`: its snapshot and deltas
/// up to a committed batch, put together as the query would restore them.
pub async fn read_state(location: &str, storage: &StorageOptions, query: &StateQuery) -> Result<StateRows> {
    let (checkpoint, shown, meta) = open_read_only(location, storage).await?;
    let dirs = state_dirs(&checkpoint).await?;
    let known = || dirs.keys().cloned().collect::<Vec<_>>().join(", ");
    let operator = match &query.operator {
        Some(op) if dirs.contains_key(op) => op.clone(),
        Some(op) if dirs.is_empty() => return Err(WeirError::Config(format!("{shown} has no state: its query keeps none (asked for operator '{op}')"))),
        Some(op) => return Err(WeirError::Config(format!("{shown} has no operator '{op}'; its operators: {}", known()))),
        None if dirs.len() == 1 => dirs.keys().next().cloned().expect("one"),
        None if dirs.is_empty() => return Err(WeirError::Config(format!("{shown} has no state: its query keeps none"))),
        None => return Err(WeirError::Config(format!("{shown} has several stateful operators; name one with --operator: {}", known()))),
    };
    let committed = match checkpoint.latest().await? {
        Some((o, Some(_))) => Some(o.batch_id),
        Some((o, None)) => o.batch_id.checked_sub(1),
        None => None,
    };
    let Some(committed) = committed else {
        return Err(WeirError::Config(format!("{shown} has no committed batch yet, so no state")));
    };
    let batch_id = match query.batch {
        Some(b) if b > committed => {
            return Err(WeirError::Config(format!("batch {b} is not committed in {shown}; the last committed batch is {committed}")));
        }
        Some(b) => b,
        None => committed,
    };
    let specs = meta.state_operators.unwrap_or_default();
    let spec = specs.get(operator_index(&operator)).cloned();
    let kind = spec.as_ref().map_or_else(|| "unknown".to_string(), |s| s.operator.clone());
    let mut files = Vec::new();
    StateFiles::new(&operator, 1, Arc::new(Schema::empty()))
        .load(&checkpoint, Some(batch_id), &mut |b: &RecordBatch| {
            files.push(b.clone());
            Ok(())
        })
        .await?;
    let rows = if operator.starts_with("dedup") {
        let keys = spec.as_ref().map(|s| s.keys.clone()).unwrap_or_default();
        dedup_rows(&files, &keys)?
    } else {
        window_rows(&files, spec.as_ref())?
    };
    let rows = matching(rows, &query.keys)?;
    let matched = rows.num_rows();
    let rows = match query.limit {
        Some(limit) => rows.slice(0, limit.min(matched)),
        None => rows,
    };
    Ok(StateRows { operator, kind, batch_id, rows, matched })
}

/// A deduplication's keys (`key` BINARY, `expires` BIGINT, NULL: removed), replayed in order
/// into each key's columns (`name TYPE` of `keys`) and `expires_at`, sorted by key.
fn dedup_rows(files: &[RecordBatch], keys: &[String]) -> Result<RecordBatch> {
    let bad = |m: String| WeirError::Config(format!("cannot read the deduplication state: {m}"));
    let mut state: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for b in files {
        let (key, expires) = (b.column(0).as_binary_opt::<i32>(), b.column(1).as_primitive_opt::<Int64Type>());
        let (Some(key), Some(expires)) = (key, expires) else { return Err(bad("its files are not keys and expiries".into())) };
        for i in 0..b.num_rows() {
            if expires.is_null(i) {
                state.remove(key.value(i));
            } else {
                state.insert(key.value(i).to_vec(), expires.value(i));
            }
        }
    }
    let mut fields = Vec::new();
    for k in keys {
        let (name, sql) = k.split_once(' ').ok_or_else(|| bad(format!("key '{k}' has no type")))?;
        fields.push(Field::new(name, key_type(sql).ok_or_else(|| bad(format!("key {name} has type {sql}, which cannot be shown")))?, true));
    }
    let types: Vec<DataType> = fields.iter().map(|f| f.data_type().clone()).collect();
    let mut decoded = Vec::with_capacity(state.len());
    for (key, expires) in &state {
        decoded.push((weir_state::key::decode_key(&types, key).map_err(bad)?, *expires));
    }
    decoded.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len() + 1);
    for (c, t) in types.iter().enumerate() {
        let values = decoded.iter().map(|(v, _)| v[c].clone());
        columns.push(if decoded.is_empty() { arrow::array::new_empty_array(t) } else { ScalarValue::iter_to_array(values).map_err(|e| bad(e.to_string()))? });
    }
    // No watermark: the key is kept forever (expiry i64::MAX), shown as NULL.
    columns.push(Arc::new(
        TimestampMillisecondArray::from(decoded.iter().map(|(_, e)| (*e != i64::MAX).then_some(*e)).collect::<Vec<_>>()).with_timezone("UTC"),
    ));
    fields.push(Field::new("expires_at", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| bad(e.to_string()))
}

/// The Arrow type of a key column from its SQL spelling in the checkpoint's metadata (the
/// types weir keys on: a TIMESTAMP is weir's, microseconds).
fn key_type(sql: &str) -> Option<DataType> {
    Some(match sql {
        "BOOLEAN" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INT" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "TINYINT UNSIGNED" => DataType::UInt8,
        "SMALLINT UNSIGNED" => DataType::UInt16,
        "INT UNSIGNED" => DataType::UInt32,
        "BIGINT UNSIGNED" => DataType::UInt64,
        "FLOAT" => DataType::Float32,
        "DOUBLE" => DataType::Float64,
        "STRING" => DataType::Utf8,
        "BINARY" => DataType::Binary,
        "DATE" => DataType::Date32,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "TIMESTAMP_NTZ" => DataType::Timestamp(TimeUnit::Microsecond, None),
        other => {
            let (p, s) = other.strip_prefix("DECIMAL(")?.strip_suffix(')')?.split_once(',')?;
            DataType::Decimal128(p.trim().parse().ok()?, s.trim().parse().ok()?)
        }
    })
}

/// A window aggregation's files (`bucket`, `removed`, group columns `k<i>`, partial
/// aggregates `a<i>_<j>`), replayed in order: the groups of buckets not yet emitted, with
/// `closes_at` for `bucket`, and the columns named as the query names them (`spec`).
fn window_rows(files: &[RecordBatch], spec: Option<&weir_checkpoint::StateOperatorSpec>) -> Result<RecordBatch> {
    let bad = |m: String| WeirError::Config(format!("cannot read the window state: {m}"));
    let Some(first) = files.first() else {
        return Ok(RecordBatch::new_empty(Arc::new(Schema::new(vec![Field::new("closes_at", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false)]))));
    };
    let mut open: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for b in files {
        let (bucket, removed) = (b.column(0).as_primitive_opt::<Int64Type>(), b.column(1).as_boolean_opt());
        let (Some(bucket), Some(removed)) = (bucket, removed) else { return Err(bad("its files do not start with bucket and removed".into())) };
        for i in 0..b.num_rows() {
            if removed.value(i) {
                open.remove(&bucket.value(i));
            } else {
                open.entry(bucket.value(i)).or_default().push(b.slice(i, 1));
            }
        }
    }
    let mut fields = vec![Field::new("closes_at", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false)];
    let aggregates = spec.and_then(|s| s.aggregates.clone()).unwrap_or_default();
    let name = |stored: &str| -> String {
        let index = |s: &str| s.parse::<usize>().ok();
        if let Some(g) = stored.strip_prefix('k').and_then(index)
            && let Some(k) = spec.and_then(|s| s.keys.get(g))
        {
            // `name TYPE`.
            return k.split_once(' ').map_or(k.as_str(), |(name, _)| name).to_string();
        }
        if let Some((a, part)) = stored.strip_prefix('a').and_then(|s| s.split_once('_'))
            && let (Some(a), Some(part)) = (index(a), index(part))
            && let Some(aggregate) = aggregates.get(a)
        {
            let parts = first.schema().fields().iter().filter(|f| f.name().starts_with(&format!("a{a}_"))).count();
            return if parts == 1 { format!("{aggregate} (partial)") } else { format!("{aggregate} (partial {part})") };
        }
        stored.to_string()
    };
    fields.extend(first.schema().fields().iter().skip(2).map(|f| f.as_ref().clone().with_name(name(f.name())).with_nullable(true)));
    let schema = Arc::new(Schema::new(fields));
    let rows: Vec<&RecordBatch> = open.values().flatten().collect();
    let all = concat_batches(&first.schema(), rows).map_err(|e| bad(e.to_string()))?;
    let closes: TimestampMillisecondArray = all.column(0).as_primitive::<Int64Type>().reinterpret_cast::<arrow::datatypes::TimestampMillisecondType>();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(closes.with_timezone("UTC"))];
    columns.extend(all.columns().iter().skip(2).cloned());
    RecordBatch::try_new(schema, columns).map_err(|e| bad(e.to_string()))
}

/// The rows whose columns show as the values asked for (`column`, `value`).
fn matching(rows: RecordBatch, keys: &[(String, String)]) -> Result<RecordBatch> {
    if keys.is_empty() {
        return Ok(rows);
    }
    let mut keep = vec![true; rows.num_rows()];
    for (name, value) in keys {
        let Ok(column) = rows.schema().index_of(name) else {
            let names: Vec<String> = rows.schema().fields().iter().map(|f| f.name().clone()).collect();
            return Err(WeirError::Config(format!("the state has no column '{name}'; its columns: {}", names.join(", "))));
        };
        let options = FormatOptions::default().with_null("NULL");
        let shown = ArrayFormatter::try_new(rows.column(column).as_ref(), &options).map_err(|e| WeirError::Config(e.to_string()))?;
        for (i, k) in keep.iter_mut().enumerate() {
            *k = *k && shown.value(i).to_string() == *value;
        }
    }
    filter_record_batch(&rows, &BooleanArray::from(keep)).map_err(|e| WeirError::Config(e.to_string()))
}

impl std::fmt::Display for CheckpointReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "checkpoint   {}", self.location)?;
        writeln!(f, "query id     {}", self.query_id)?;
        writeln!(f, "query        {}", self.query.trim())?;
        for (name, what) in &self.sources {
            writeln!(f, "source       {name}: {what}")?;
        }
        writeln!(f, "sink         {}", self.sink)?;
        if let Some(columns) = &self.sink_columns {
            writeln!(f, "sink columns {columns}")?;
        }
        writeln!(f, "created      {} by weir {}", self.created_at, self.weir_version)?;
        match &self.last_batch {
            None => writeln!(f, "last batch   none yet")?,
            Some(b) => {
                let state = match b.committed {
                    true => format!("committed: {} rows out, sink version {}", b.output_rows.unwrap_or(0), b.sink_version.map_or("-".to_string(), |v| v.to_string())),
                    false => "planned, not committed: the next run replays it".to_string(),
                };
                writeln!(f, "last batch   {} ({state})", b.batch_id)?;
                writeln!(f, "  planned    {}", b.planned_at)?;
                writeln!(f, "  watermark  {}", b.watermark)?;
                for (name, offsets) in &b.sources {
                    writeln!(f, "  {name}: start {} end {}", offsets["start"], offsets["end"])?;
                }
                if let Some(versions) = &b.static_versions {
                    for (table, version) in versions {
                        writeln!(f, "  static table {table} at version {version}")?;
                    }
                }
            }
        }
        if self.state_operators.is_empty() {
            writeln!(f, "state        none (a stateless query)")?;
        }
        for op in &self.state_operators {
            let spec = op.spec.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
            let snapshot = op.newest_snapshot.map(|s| format!(", newest snapshot at batch {s}")).unwrap_or_default();
            let rows = match (op.rows, op.memory_bytes) {
                (Some(rows), Some(memory)) => format!("{rows} rows ({memory} bytes in memory), "),
                _ => String::new(),
            };
            writeln!(f, "state        {}: {rows}{} files, {} bytes{snapshot}{spec}", op.id, op.files, op.bytes)?;
        }
        for (name, lag) in &self.kafka_lag {
            match &lag.error {
                Some(e) => writeln!(f, "kafka lag    {name}: unknown: {e}")?,
                None => {
                    let parts: Vec<String> = lag.partitions.iter().map(|p| format!("{}-{} {}", p.topic, p.partition, p.lag)).collect();
                    writeln!(f, "kafka lag    {name}: {} ({})", lag.total, parts.join(", "))?;
                }
            }
        }
        Ok(())
    }
}
