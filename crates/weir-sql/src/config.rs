//! Typed connector configurations, one struct per connector, read from `WITH (...)` options.
//!
//! A [`ConnectorConfig`] is built once, when the `CREATE TABLE` is executed; every option is
//! checked for its type and unknown options are refused with the nearest valid name.

use std::time::Duration;

use arrow_schema::Field;

use crate::ddl::CreateTable;
use crate::error::{Result, SqlError};
use crate::options::OptionReader;

/// The connectors weir knows.
pub const CONNECTORS: &[&str] = &["kafka", "file", "datagen", "delta", "parquet", "memory", "console", "foreach_batch"];

/// A table's connector and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorConfig {
    /// Kafka topics (source).
    Kafka(KafkaConfig),
    /// Files in a directory (source).
    File(FileConfig),
    /// Generated rows (source).
    Datagen(DatagenConfig),
    /// A Delta Lake table (sink).
    Delta(DeltaConfig),
    /// Batches kept in memory, for the shell, Python and tests (sink).
    Memory,
    /// Rows printed to standard output (sink).
    Console(ConsoleConfig),
    /// A directory of Parquet files read as it is, by batch queries (static).
    Parquet(ParquetConfig),
    /// Each batch's rows go to a function the program registers under the table's name
    /// (Spark's `foreachBatch`; Python's `session.register_sink`) (sink).
    ForeachBatch,
    /// Rows the program registered with the table (Python's `session.register_table`),
    /// read by batch queries (static). SQL cannot declare one.
    Arrow,
}

impl ConnectorConfig {
    /// The connector's name as written in `connector = '...'`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "kafka",
            Self::File(_) => "file",
            Self::Datagen(_) => "datagen",
            Self::Delta(_) => "delta",
            Self::Memory => "memory",
            Self::Console(_) => "console",
            Self::Parquet(_) => "parquet",
            Self::ForeachBatch => "foreach_batch",
            Self::Arrow => "arrow",
        }
    }

    /// Whether it is a stream: a query reading it reads it as a stream, always.
    pub fn is_source(&self) -> bool {
        matches!(self, Self::Kafka(_) | Self::File(_) | Self::Datagen(_))
    }

    /// Whether a continuous query can read it as a stream: a source, or a Delta table (whose
    /// new commits are the stream).
    pub fn can_stream(&self) -> bool {
        self.is_source() || matches!(self, Self::Delta(_))
    }

    /// The late-rows policy of a source.
    pub fn late_rows(&self) -> Option<&LateRows> {
        match self {
            Self::Kafka(c) => Some(&c.late_rows),
            Self::File(c) => Some(&c.late_rows),
            Self::Datagen(c) => Some(&c.late_rows),
            _ => None,
        }
    }

    /// The table's object store settings (`storage.*` options); empty for connectors that
    /// keep nothing in one.
    pub fn storage(&self) -> StorageOptions {
        match self {
            Self::Kafka(c) => c.storage.clone(),
            Self::File(c) => c.storage.clone(),
            Self::Datagen(c) => c.storage.clone(),
            Self::Delta(c) => c.storage.clone(),
            Self::Parquet(c) => c.storage.clone(),
            _ => StorageOptions::new(),
        }
    }

    /// Whether a query can write to it.
    pub fn is_sink(&self) -> bool {
        matches!(self, Self::Delta(_) | Self::Memory | Self::Console(_) | Self::ForeachBatch)
    }

    /// Whether a batch query can read it as it is now (a Delta table, a Parquet directory).
    pub fn is_static(&self) -> bool {
        matches!(self, Self::Delta(_) | Self::Parquet(_) | Self::Arrow)
    }
}

/// File formats of the file source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Newline-delimited JSON, one object per line.
    Json,
    /// Comma-separated values.
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// `connector = 'file'`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileConfig {
    /// Directory (local path or object store URL) whose files are read.
    pub path: String,
    /// Format of every file.
    pub format: FileFormat,
    /// At most this many new files per batch.
    pub max_files_per_trigger: Option<usize>,
    /// CSV: whether the first line is a header (default true).
    pub header: bool,
    /// CSV: field delimiter (default `,`).
    pub delimiter: u8,
    /// What stateful operators do with this source's late rows.
    pub late_rows: LateRows,
    /// What happens to lines that do not decode (JSON, CSV).
    pub bad_rows: BadRows,
    /// A line longer than this is a bad row.
    pub max_row_bytes: Option<u64>,
    /// The table's event-time column (its WATERMARK): a row without one is a bad row.
    pub event_time: Option<String>,
    /// Object store settings (`storage.<key>` options, without the prefix), also used by
    /// the dead-letter tables of the late and bad rows.
    pub storage: StorageOptions,
}

/// What happens to rows that reach a stateful operator at or below the watermark.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LateRows {
    /// Dropped and counted (`numRowsDroppedByWatermark`).
    #[default]
    Drop,
    /// Written, exactly once, to the Delta table at this path (and counted).
    DeadLetter(String),
}

/// Settings of an object store, by key (`storage.<key>` options without the prefix).
pub type StorageOptions = std::collections::BTreeMap<String, String>;

/// Reads the `storage.*` options: the object store's settings (object_store's keys, such as
/// `aws_region`, checked when the store is built).
fn storage_options(r: &mut OptionReader) -> StorageOptions {
    r.with_prefix("storage.").into_iter().map(|(k, v)| (k, v.value)).collect()
}

/// Reads the options of a Delta table read as a stream.
fn delta_source_options(r: &mut OptionReader) -> Result<DeltaSourceOptions> {
    let starting_version = match r.string_if("starting_version", |v| v.eq_ignore_ascii_case("latest")) {
        Some(_) => Some(StartingVersion::Latest),
        None => r.u64("starting_version")?.map(StartingVersion::Version),
    };
    let starting_timestamp = r.timestamp("starting_timestamp")?;
    if starting_version.is_some() && starting_timestamp.is_some() {
        return Err(r.conflict("starting_version", "starting_timestamp", "a stream starts at one place: give one of them"));
    }
    Ok(DeltaSourceOptions {
        starting_version,
        starting_timestamp,
        skip_change_commits: r.bool("skip_change_commits")?.unwrap_or(false),
        max_files_per_trigger: r.positive("max_files_per_trigger")?.map(|n| n as usize),
        max_bytes_per_trigger: r.size("max_bytes_per_trigger")?,
    })
}

/// Reads `late_rows` and `late_rows_path`.
fn late_rows(r: &mut OptionReader) -> Result<LateRows> {
    Ok(dead_letter(r, ("late_rows", "drop"), "late_rows_path", "late rows")?.map_or(LateRows::Drop, LateRows::DeadLetter))
}

/// Reads a policy option (`keep`, its default, or `dead_letter`) and the path of its
/// dead-letter table: `Some(path)` for `dead_letter`. Each needs the other.
fn dead_letter(
    r: &mut OptionReader,
    (policy_key, keep): (&'static str, &'static str),
    path_key: &'static str,
    rows: &str,
) -> Result<Option<String>> {
    let policy = r.choice(policy_key, &[keep, "dead_letter"])?;
    let path = r.string(path_key);
    match (policy, path) {
        (Some("dead_letter"), Some(p)) if !p.is_empty() => Ok(Some(p)),
        (Some("dead_letter"), _) => Err(r.missing(path_key, &format!("the Delta table {rows} go to"))),
        (_, Some(_)) => Err(r.missing(policy_key, &format!("set {policy_key} = 'dead_letter' to use {path_key}"))),
        _ => Ok(None),
    }
}

/// How the value of a Kafka message is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFormat {
    /// One JSON object per message, decoded into the declared columns.
    Json,
    /// One CSV record per message, fields in declared column order.
    Csv,
    /// No decoding: Spark's columns `key, value, topic, partition, offset, timestamp,
    /// timestamp_type, headers`.
    Raw,
}

/// Where a Kafka source starts when its checkpoint has no offsets yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The oldest offset still on the broker.
    Earliest,
    /// Only records produced after the query first started (Spark's default).
    Latest,
    /// Per topic and partition; `-2` is earliest, `-1` latest. Partitions not listed start
    /// at earliest.
    Explicit(std::collections::BTreeMap<String, std::collections::BTreeMap<i32, i64>>),
}

/// What a source does with a record it cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BadRows {
    /// Stop the query with an error naming the record's position; nothing of the batch is
    /// committed.
    #[default]
    Fail,
    /// Write the raw record, the error and its position, exactly once, to the Delta table at
    /// this path, and go on.
    DeadLetter(String),
}

/// The metadata keys a Kafka column can take with `METADATA FROM '...'`.
pub const KAFKA_METADATA: &[&str] = &["key", "topic", "partition", "offset", "timestamp", "timestamp_type", "headers"];

/// `connector = 'kafka'`.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Topics read (one or a comma list).
    pub topics: Vec<String>,
    /// How values are decoded.
    pub format: KafkaFormat,
    /// Where a new query starts.
    pub starting_offsets: StartingOffsets,
    /// At most this many records per batch, shared across partitions by backlog.
    pub max_offsets_per_trigger: Option<u64>,
    /// Whether offsets removed from the broker before they were read stop the query.
    pub fail_on_data_loss: bool,
    /// Consumer group that gets each batch's end offsets committed (monitoring only).
    pub group_id: Option<String>,
    /// How long to wait for the broker at start before failing.
    pub connect_timeout: Duration,
    /// CSV: field delimiter.
    pub delimiter: u8,
    /// What happens to values that do not decode.
    pub bad_rows: BadRows,
    /// `properties.*`: librdkafka settings, passed as they are.
    pub properties: Vec<(String, String)>,
    /// What stateful operators do with this source's late rows.
    pub late_rows: LateRows,
    /// A message value longer than this is a bad row.
    pub max_row_bytes: Option<u64>,
    /// The table's event-time column (its WATERMARK): a row without one is a bad row.
    pub event_time: Option<String>,
    /// Object store settings (`storage.<key>` options, without the prefix), also used by
    /// the dead-letter tables of the late and bad rows.
    pub storage: StorageOptions,
}

/// Whether a librdkafka property's value must never be shown (passwords, keys, tokens).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.starts_with("sasl.") || ["password", "secret", "key", "token", "credential"].iter().any(|w| k.contains(w))
}

fn kafka_config(r: &mut OptionReader, columns: &[Field], line: usize) -> Result<KafkaConfig> {
    let bootstrap_servers = r.required_string("bootstrap_servers")?;
    let topics: Vec<String> =
        r.required_string("topic")?.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    if topics.is_empty() {
        return Err(r.missing("topic", "a topic name, or a comma-separated list"));
    }
    let format = match r.choice("format", &["json", "csv", "raw"])? {
        Some("json") => KafkaFormat::Json,
        Some("csv") => KafkaFormat::Csv,
        Some(_) => KafkaFormat::Raw,
        None => return Err(r.missing("format", "'json', 'csv' or 'raw'")),
    };
    let starting_offsets = match r.string("starting_offsets") {
        None => StartingOffsets::Latest,
        Some(s) => match s.trim().to_ascii_lowercase().as_str() {
            "earliest" => StartingOffsets::Earliest,
            "latest" => StartingOffsets::Latest,
            _ => StartingOffsets::Explicit(parse_explicit_offsets(&s, &topics).map_err(|m| {
                SqlError::at(line, format!("option 'starting_offsets': {m}; write 'earliest', 'latest' or JSON such as '{{\"{}\":{{\"0\":23,\"1\":-2}}}}'", topics[0]))
            })?),
        },
    };
    let max_offsets_per_trigger = r.positive("max_offsets_per_trigger")?;
    let fail_on_data_loss = r.bool("fail_on_data_loss")?.unwrap_or(true);
    let group_id = r.string("group_id").filter(|g| !g.is_empty());
    let connect_timeout = r.duration("connect_timeout")?.unwrap_or(Duration::from_secs(30));
    let delimiter = r.char("delimiter")?.unwrap_or(b',');
    let bad_rows = bad_rows(r)?;
    let max_row_bytes = r.positive("max_row_bytes")?;
    let mut properties = Vec::new();
    for (key, value) in r.with_prefix("properties.") {
        if ["enable.auto.commit", "enable.partition.eof", "auto.offset.reset", "enable.auto.offset.store"].contains(&key.as_str()) {
            return Err(SqlError::at(
                value.line,
                format!("option 'properties.{key}' cannot be set: weir manages it (offsets live in the checkpoint)"),
            ));
        }
        if key == "group.id" {
            return Err(SqlError::at(value.line, "option 'properties.group.id': use the option group_id instead"));
        }
        if key == "bootstrap.servers" {
            return Err(SqlError::at(value.line, "option 'properties.bootstrap.servers': use the option bootstrap_servers instead"));
        }
        properties.push((key, value.value));
    }
    let late_rows = late_rows(r)?;
    match format {
        KafkaFormat::Raw => {
            for f in columns {
                let name = f.metadata().get(crate::ddl::METADATA_KEY).map_or(f.name().as_str(), String::as_str);
                if !KAFKA_METADATA.contains(&name) && name != "value" {
                    return Err(SqlError::at(
                        line,
                        format!("column '{}': with format 'raw' the columns are key, value, topic, partition, offset, timestamp, timestamp_type and headers", f.name()),
                    ));
                }
            }
        }
        KafkaFormat::Json | KafkaFormat::Csv => {
            if !columns.iter().any(|f| !f.metadata().contains_key(crate::ddl::METADATA_KEY)) {
                return Err(SqlError::at(
                    line,
                    "a kafka table with format 'json' or 'csv' needs declared columns for the value, e.g. CREATE TABLE t (id BIGINT, ts TIMESTAMP) WITH (...); use format 'raw' for the bytes",
                ));
            }
        }
    }
    for f in columns {
        if let Some(key) = f.metadata().get(crate::ddl::METADATA_KEY)
            && !KAFKA_METADATA.contains(&key.as_str())
        {
            return Err(SqlError::at(
                line,
                format!("column '{}': unknown metadata '{key}'; a kafka column can take METADATA FROM {}", f.name(), KAFKA_METADATA.join(", ")),
            ));
        }
    }
    let storage = storage_options(r);
    Ok(KafkaConfig {
        storage,
        bootstrap_servers,
        topics,
        format,
        starting_offsets,
        max_offsets_per_trigger,
        fail_on_data_loss,
        group_id,
        connect_timeout,
        delimiter,
        bad_rows,
        properties,
        late_rows,
        max_row_bytes,
        event_time: None,
    })
}

/// `{"topic":{"0":23,"1":-2}}`: every topic must be one the table reads.
fn parse_explicit_offsets(
    text: &str,
    topics: &[String],
) -> std::result::Result<std::collections::BTreeMap<String, std::collections::BTreeMap<i32, i64>>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let mut out = std::collections::BTreeMap::new();
    for (topic, parts) in obj {
        if !topics.contains(topic) {
            return Err(format!("topic '{topic}' is not one the table reads ({})", topics.join(", ")));
        }
        let parts = parts.as_object().ok_or_else(|| format!("topic '{topic}' must map partitions to offsets"))?;
        let mut map = std::collections::BTreeMap::new();
        for (p, o) in parts {
            let p: i32 = p.parse().ok().filter(|p| *p >= 0).ok_or_else(|| format!("'{p}' is not a partition number"))?;
            let o = o.as_i64().filter(|o| *o >= -2).ok_or_else(|| format!("offset of {topic} partition {p} must be a number >= -2"))?;
            map.insert(p, o);
        }
        out.insert(topic.clone(), map);
    }
    Ok(out)
}

/// Reads `on_bad_row` and `dead_letter_path`.
fn bad_rows(r: &mut OptionReader) -> Result<BadRows> {
    Ok(dead_letter(r, ("on_bad_row", "fail"), "dead_letter_path", "bad rows")?.map_or(BadRows::Fail, BadRows::DeadLetter))
}

/// How a datagen column's values are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `min + row number` (numbers), or `start_time + row * interval` (timestamps).
    Sequence,
    /// Pseudo-random in `[min, max]`, from the seed, the row number and the column.
    Random,
}

/// `fields.<column>.*` options of the datagen connector.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// Sequence or random.
    pub kind: FieldKind,
    /// Smallest value (numbers).
    pub min: Option<f64>,
    /// Largest value (numbers).
    pub max: Option<f64>,
    /// Length of strings.
    pub length: Option<usize>,
    /// Number of distinct values (random strings and numbers).
    pub cardinality: Option<u64>,
    /// Share of NULLs, 0 to 1.
    pub null_rate: f64,
}

impl Default for FieldSpec {
    fn default() -> Self {
        Self { kind: FieldKind::Random, min: None, max: None, length: None, cardinality: None, null_rate: 0.0 }
    }
}

/// `connector = 'datagen'`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenConfig {
    /// Seed of every random value.
    pub seed: u64,
    /// Rows that become available each second; `None`: all of `total_rows` at once.
    pub rows_per_second: Option<u64>,
    /// Rows in all; `None`: unbounded.
    pub total_rows: Option<u64>,
    /// Cap on rows per batch.
    pub max_rows_per_trigger: Option<u64>,
    /// Event time of row 0, microseconds since the epoch (timestamps advance by
    /// `1 / rows_per_second` per row, or 1 ms per row when unthrottled).
    pub start_time_micros: i64,
    /// Per-column settings, by column name.
    pub fields: Vec<(String, FieldSpec)>,
    /// What stateful operators do with this source's late rows.
    pub late_rows: LateRows,
    /// Object store settings (`storage.<key>` options, without the prefix), also used by
    /// the dead-letter tables of the late and bad rows.
    pub storage: StorageOptions,
}

/// `connector = 'delta'`: a table a query writes (a sink), reads as a stream (a source), or
/// reads as it is now (a static table).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeltaConfig {
    /// Table location (local path or object store URL).
    pub path: String,
    /// Partition columns, in order.
    pub partition_by: Vec<String>,
    /// Target size of data files, in bytes.
    pub target_file_size: Option<u64>,
    /// Object store settings (`storage.<key>` options, without the prefix).
    pub storage: StorageOptions,
    /// How the table is read as a stream.
    pub source: DeltaSourceOptions,
    /// How the table is written.
    pub sink: DeltaSinkOptions,
}

impl DeltaConfig {
    /// A table at `path` with every other option at its default.
    pub fn at(path: impl Into<String>, storage: StorageOptions) -> Self {
        Self { path: path.into(), storage, ..Self::default() }
    }
}

/// The options of a Delta table read as a stream, after Spark's Delta source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeltaSourceOptions {
    /// `starting_version`: read the commits from this version on (or, `latest`, only the
    /// commits after the query starts), instead of the table's current snapshot and the
    /// commits after it.
    pub starting_version: Option<StartingVersion>,
    /// `starting_timestamp` (milliseconds since the epoch, UTC): read the commits made at or
    /// after this moment.
    pub starting_timestamp: Option<i64>,
    /// `skip_change_commits`: commits that remove files (deletes, updates, merges) are
    /// skipped instead of stopping the query.
    pub skip_change_commits: bool,
    /// `max_files_per_trigger`: data files per batch at most (at least one is read).
    pub max_files_per_trigger: Option<usize>,
    /// `max_bytes_per_trigger`: bytes of data files per batch, a soft limit (at least one
    /// file is read).
    pub max_bytes_per_trigger: Option<u64>,
}

/// Where a Delta stream starts (`starting_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingVersion {
    /// The commit of this version and those after it.
    Version(u64),
    /// The commits made after the query starts (Spark's `startingVersion = "latest"`).
    Latest,
}

/// The options of a Delta table a query writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeltaSinkOptions {
    /// `merge_schema`: new columns of the query's output are added to the table (nullable).
    pub merge_schema: bool,
    /// `auto_compact`: the sink compacts the table's small files as it goes.
    pub auto_compact: bool,
    /// `auto_compact_min_files`: small files that start a compaction.
    pub auto_compact_min_files: Option<u64>,
    /// `delta.*` table properties set when the table is created, key with its prefix
    /// (`delta.appendOnly`), in the order written.
    pub properties: Vec<(String, String)>,
}

/// `connector = 'parquet'`: a directory of Parquet files, read whole by batch queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetConfig {
    /// The directory (local path or object store URL).
    pub path: String,
    /// Object store settings (`storage.<key>` options, without the prefix).
    pub storage: StorageOptions,
}

/// `connector = 'console'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Rows printed per batch at most.
    pub max_rows: usize,
}

impl ConnectorConfig {
    /// Reads the connector config of `table`, rejecting unknown and mistyped options.
    pub fn from_table(table: &CreateTable) -> Result<Self> {
        let context = format!("table '{}' (connector '{}')", table.name, table.connector);
        let mut r = OptionReader::new(&table.options, context, table.line);
        if table.connector != "kafka"
            && let Some(f) = table.columns.iter().find(|f| f.metadata().contains_key(crate::ddl::METADATA_KEY))
        {
            return Err(SqlError::at(
                table.line,
                format!("column '{}': METADATA columns are for kafka tables; connector '{}' has none", f.name(), table.connector),
            ));
        }
        let config = match table.connector.as_str() {
            "kafka" => Self::Kafka(KafkaConfig {
                event_time: table.watermark.as_ref().map(|w| w.column.clone()),
                ..kafka_config(&mut r, &table.columns, table.line)?
            }),
            "file" => Self::File(FileConfig { event_time: table.watermark.as_ref().map(|w| w.column.clone()), ..file_config(&mut r)? }),
            "datagen" => Self::Datagen(datagen_config(&mut r, &table.columns, table.line)?),
            "delta" => Self::Delta(DeltaConfig {
                path: r.required_string("path")?,
                partition_by: r
                    .string("partition_by")
                    .map(|s| s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
                    .unwrap_or_default(),
                target_file_size: r.size("target_file_size")?,
                storage: storage_options(&mut r),
                source: delta_source_options(&mut r)?,
                sink: DeltaSinkOptions {
                    merge_schema: r.bool("merge_schema")?.unwrap_or(false),
                    auto_compact: r.bool("auto_compact")?.unwrap_or(false),
                    auto_compact_min_files: r.positive("auto_compact_min_files")?,
                    properties: r.with_prefix("delta.").into_iter().map(|(k, v)| (format!("delta.{k}"), v.value)).collect(),
                },
            }),
            "parquet" => Self::Parquet(ParquetConfig { path: r.required_string("path")?, storage: storage_options(&mut r) }),
            "memory" => Self::Memory,
            "console" => Self::Console(ConsoleConfig {
                max_rows: r.positive("max_rows")?.map_or(20, |n| n as usize),
            }),
            "foreach_batch" => Self::ForeachBatch,
            "arrow" => {
                return Err(SqlError::at(
                    table.line,
                    format!(
                        "table '{}': an 'arrow' table holds rows a program registers with it (Python: session.register_table('{}', table)); SQL cannot declare one",
                        table.name, table.name
                    ),
                ));
            }
            other => {
                let mut message = format!("table '{}': unknown connector '{other}'", table.name);
                if let Some(near) = crate::options::nearest(other, CONNECTORS) {
                    message.push_str(&format!("; did you mean '{near}'?"));
                }
                message.push_str(&format!(" (connectors: {})", CONNECTORS.join(", ")));
                return Err(SqlError::at(table.line, message));
            }
        };
        r.finish()?;
        Ok(config)
    }
}

fn file_config(r: &mut OptionReader) -> Result<FileConfig> {
    let path = r.required_string("path")?;
    let format = match r.choice("format", &["json", "csv", "parquet"])? {
        Some("csv") => FileFormat::Csv,
        Some("parquet") => FileFormat::Parquet,
        Some(_) => FileFormat::Json,
        None => return Err(r.missing("format", "'json', 'csv' or 'parquet'")),
    };
    let max_files_per_trigger = r.positive("max_files_per_trigger")?.map(|n| n as usize);
    let header = r.bool("header")?.unwrap_or(true);
    let delimiter = r.char("delimiter")?.unwrap_or(b',');
    let late_rows = late_rows(r)?;
    let bad_rows = bad_rows(r)?;
    let max_row_bytes = r.positive("max_row_bytes")?;
    let storage = storage_options(r);
    Ok(FileConfig { path, format, max_files_per_trigger, header, delimiter, late_rows, bad_rows, max_row_bytes, event_time: None, storage })
}

fn datagen_config(r: &mut OptionReader, columns: &[Field], line: usize) -> Result<DatagenConfig> {
    if columns.is_empty() {
        return Err(SqlError::at(line, "a datagen table needs declared columns, e.g. CREATE TABLE t (id BIGINT, ts TIMESTAMP) WITH (connector = 'datagen', ...)"));
    }
    let seed = r.u64("seed")?.unwrap_or(0);
    let rows_per_second = r.positive("rows_per_second")?;
    let total_rows = r.u64("total_rows")?;
    let max_rows_per_trigger = r.positive("max_rows_per_trigger")?;
    let start_time_micros = match r.string("start_time") {
        None => 1_704_067_200_000_000, // 2024-01-01T00:00:00Z: fixed, so runs are reproducible
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.timestamp_micros())
            .map_err(|e| SqlError::at(line, format!("option 'start_time' must be an RFC 3339 time such as '2024-01-01T00:00:00Z': {e}")))?,
    };
    if rows_per_second.is_none() && total_rows.is_none() {
        return Err(SqlError::at(line, "a datagen table needs 'rows_per_second', 'total_rows', or both"));
    }
    let mut fields: Vec<(String, FieldSpec)> = Vec::new();
    for (key, value) in r.with_prefix("fields.") {
        let Some((column, setting)) = key.split_once('.') else {
            return Err(SqlError::at(value.line, format!("option 'fields.{key}': write fields.<column>.<setting>")));
        };
        if !columns.iter().any(|f| f.name() == column) {
            return Err(SqlError::at(value.line, format!("option 'fields.{key}': no column '{column}' in the table")));
        }
        let pos = match fields.iter().position(|(c, _)| c == column) {
            Some(p) => p,
            None => {
                fields.push((column.to_string(), FieldSpec::default()));
                fields.len() - 1
            }
        };
        let spec = &mut fields[pos].1;
        let number = |v: &str| -> Result<f64> {
            v.parse().map_err(|_| SqlError::at(value.line, format!("option 'fields.{key}' must be a number, got '{v}'")))
        };
        match setting {
            "kind" => {
                spec.kind = match value.value.to_ascii_lowercase().as_str() {
                    "sequence" => FieldKind::Sequence,
                    "random" => FieldKind::Random,
                    v => return Err(SqlError::at(value.line, format!("option 'fields.{key}' must be 'sequence' or 'random', got '{v}'"))),
                }
            }
            "min" => spec.min = Some(number(&value.value)?),
            "max" => spec.max = Some(number(&value.value)?),
            "length" => spec.length = Some(number(&value.value)? as usize),
            "cardinality" => spec.cardinality = Some(number(&value.value)?.max(1.0) as u64),
            "null_rate" => {
                let rate = number(&value.value)?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(SqlError::at(value.line, format!("option 'fields.{key}' must be between 0 and 1")));
                }
                spec.null_rate = rate;
            }
            other => {
                let near = crate::options::nearest(other, &["kind", "min", "max", "length", "cardinality", "null_rate"]);
                return Err(SqlError::at(
                    value.line,
                    format!(
                        "unknown option 'fields.{key}'{}",
                        near.map(|n| format!("; did you mean 'fields.{column}.{n}'?")).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    let late_rows = late_rows(r)?;
    let storage = storage_options(r);
    Ok(DatagenConfig { seed, rows_per_second, total_rows, max_rows_per_trigger, start_time_micros, fields, late_rows, storage })
}

/// How often a query runs a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Process everything available at start, in batches capped by per-trigger limits, then stop.
    AvailableNow,
    /// One batch of what is available (capped), then stop.
    Once,
    /// A batch every interval, forever; `0s` starts the next batch as soon as data is there.
    ProcessingTime(Duration),
}

impl std::str::FromStr for Trigger {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "available-now" | "available_now" | "availablenow" => Ok(Self::AvailableNow),
            "once" => Ok(Self::Once),
            other => crate::interval::parse_duration(other).map(Self::ProcessingTime).map_err(|_| {
                format!("'{s}' is not a trigger: use available-now, once, or an interval such as 10s")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddl::{Statement, parse_script};

    fn config(sql: &str) -> Result<ConnectorConfig> {
        let Statement::CreateTable(t) = parse_script(sql)?.remove(0) else { panic!("not a CREATE TABLE") };
        ConnectorConfig::from_table(&t)
    }

    fn kafka(options: &str) -> Result<KafkaConfig> {
        let sql = format!(
            "CREATE TABLE e (id BIGINT, p INT METADATA FROM 'partition') WITH (connector = 'kafka', bootstrap_servers = 'b:9092', topic = 'a, b', format = 'json'{options})"
        );
        config(&sql).map(|c| match c {
            ConnectorConfig::Kafka(k) => k,
            other => panic!("not kafka: {other:?}"),
        })
    }

    #[test]
    fn kafka_defaults_and_options() {
        let k = kafka("").unwrap();
        assert_eq!(k.topics, ["a", "b"]);
        assert_eq!(k.starting_offsets, StartingOffsets::Latest);
        assert!(k.fail_on_data_loss);
        assert_eq!(k.bad_rows, BadRows::Fail);
        let k = kafka(", startingOffsets = '{\"a\":{\"0\":5,\"1\":-2}}', max_offsets_per_trigger = 100, 'properties.security.protocol' = 'SSL', on_bad_row = 'dead_letter', dead_letter_path = 'dlq'").unwrap();
        let StartingOffsets::Explicit(m) = k.starting_offsets else { panic!("explicit") };
        assert_eq!(m["a"][&0], 5);
        assert_eq!(k.max_offsets_per_trigger, Some(100));
        assert_eq!(k.properties, [("security.protocol".to_string(), "SSL".to_string())]);
        assert_eq!(k.bad_rows, BadRows::DeadLetter("dlq".into()));
    }

    #[test]
    fn kafka_errors_name_the_option() {
        let err = |o: &str| kafka(o).unwrap_err().to_string();
        assert!(err(", starting_offsets = '{\"zzz\":{\"0\":1}}'").contains("option 'starting_offsets': topic 'zzz' is not one the table reads"));
        assert!(err(", 'properties.enable.auto.commit' = 'true'").contains("cannot be set: weir manages it"));
        assert!(err(", on_bad_row = 'dead_letter'").contains("dead_letter_path"));
        assert!(err(", max_offset_per_trigger = 5").contains("did you mean 'max_offsets_per_trigger'?"));
        let e = config("CREATE TABLE e (p INT METADATA FROM 'partition') WITH (connector = 'file', path = 'x', format = 'json')").unwrap_err();
        assert!(e.to_string().contains("METADATA columns are for kafka tables"), "{e}");
        let e = config("CREATE TABLE e (id BIGINT, p INT METADATA FROM 'part') WITH (connector = 'kafka', bootstrap_servers = 'b', topic = 't', format = 'json')").unwrap_err();
        assert!(e.to_string().contains("unknown metadata 'part'"), "{e}");
    }

    /// A `foreach_batch` table is a sink the program gives a function; an `arrow` table only
    /// a program can make, with its rows.
    #[test]
    fn program_provided_tables() {
        let c = config("CREATE TABLE alerts (id BIGINT) WITH (connector = 'foreach_batch')").unwrap();
        assert_eq!(c, ConnectorConfig::ForeachBatch);
        assert!(c.is_sink() && !c.is_source() && !c.is_static());
        let e = config("CREATE TABLE alerts WITH (connector = 'foreach_batch', path = 'x')").unwrap_err();
        assert!(e.to_string().contains("unknown option 'path'"), "{e}");
        let e = config("CREATE TABLE users WITH (connector = 'arrow')").unwrap_err();
        assert!(e.to_string().contains("session.register_table('users', table)"), "{e}");
        assert!(ConnectorConfig::Arrow.is_static() && !ConnectorConfig::Arrow.is_sink());
        let e = config("CREATE TABLE t WITH (connector = 'foreach_bach')").unwrap_err();
        assert!(e.to_string().contains("did you mean 'foreach_batch'?"), "{e}");
    }

    #[test]
    fn delta_options() {
        let delta = |o: &str| {
            config(&format!("CREATE TABLE t WITH (connector = 'delta', path = 'p'{o})")).map(|c| match c {
                ConnectorConfig::Delta(d) => d,
                other => panic!("not delta: {other:?}"),
            })
        };
        let d = delta("").unwrap();
        assert_eq!(d, DeltaConfig::at("p", StorageOptions::new()));
        let d = delta(", startingVersion = 3, skipChangeCommits = true, maxFilesPerTrigger = 2, max_bytes_per_trigger = '1MB', target_file_size = '64MB'").unwrap();
        assert_eq!(d.source.starting_version, Some(StartingVersion::Version(3)));
        assert_eq!(delta(", starting_version = 'LATEST'").unwrap().source.starting_version, Some(StartingVersion::Latest));
        assert!(d.source.skip_change_commits);
        assert_eq!((d.source.max_files_per_trigger, d.source.max_bytes_per_trigger), (Some(2), Some(1 << 20)));
        assert_eq!(d.target_file_size, Some(64 << 20));
        let d = delta(", starting_timestamp = '1970-01-01 00:00:02', merge_schema = true, auto_compact = true, 'delta.appendOnly' = 'true'").unwrap();
        assert_eq!(d.source.starting_timestamp, Some(2000));
        assert!(d.sink.merge_schema && d.sink.auto_compact);
        assert_eq!(d.sink.properties, [("delta.appendOnly".to_string(), "true".to_string())]);
        let err = |o: &str| delta(o).unwrap_err().to_string();
        assert!(err(", starting_version = 1, starting_timestamp = '2026-01-01'").contains("exclude each other"));
        assert!(err(", starting_timestamp = 'soon'").contains("option 'starting_timestamp'"));
        assert!(err(", max_bytes_per_trigger = 'lots'").contains("option 'max_bytes_per_trigger'"));
    }

    #[test]
    fn secret_properties_are_recognised() {
        for k in ["sasl.password", "sasl.username", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret", "ssl.key.pem"] {
            assert!(is_secret_property(k), "{k}");
        }
        assert!(!is_secret_property("security.protocol"));
        assert!(!is_secret_property("fetch.wait.max.ms"));
    }
}
