//! A Delta table read as a stream, after Spark's Delta source: each batch takes the data
//! files the table's commits added after the last batch's end.
//!
//! **The stream of files.** A position in the table is a version and an index: without a
//! starting version, the stream begins with the files of the table's snapshot at the version
//! current when the first batch is planned (ordered by modification time, then path, as
//! Spark orders them), then the files each later commit adds, in the order its log entry
//! lists them. With `starting_version` (or `starting_timestamp`, which names the first
//! version committed at or after it) the stream is the files of that commit and every one
//! after. Files added with `dataChange = false` (a compaction rewriting rows already read)
//! are not part of it.
//!
//! **Offsets** are the position of the batch's last file:
//! `{"sourceVersion":1,"reservoirId":<table id>,"reservoirVersion":v,"index":i,"isStartingVersion":b}`
//! (Spark's fields). The log is immutable, so the files between two offsets are the same on
//! every replay. The table id is checked: a different table at the path is an error, not a
//! stream read from the middle.
//!
//! **What stops the query**: a commit that removes data (a DELETE, UPDATE or MERGE; skipped
//! with `skip_change_commits`), a commit that changes the table's schema (a restart reads on
//! with the new schema, when the older files still fit it), deletion vectors and column
//! mapping, which weir does not read, and a version that expired from the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use weir_checkpoint::{Checkpoint, Location};
use weir_sql::config::{DeltaConfig, FileFormat, StartingVersion};

use crate::error::{ConnectorError, Result};
use crate::file::read::{self, Body, Cut};
use crate::{Backlog, ChunkPlace, ReadOutput, Source};

/// Files per batch when the table sets no limit (Spark's `maxFilesPerTrigger` default).
const DEFAULT_MAX_FILES: usize = 1000;

/// Pieces of data files read ahead of the one being decoded.
const READ_AHEAD: usize = 2;

/// Commits whose files are kept in memory between batches.
const COMMITS_CACHED: usize = 64;

/// Reads a Delta table's new commits as a stream.
#[derive(Debug)]
pub struct DeltaSource {
    name: String,
    config: DeltaConfig,
    /// The table's location as the user wrote it, for messages.
    shown: String,
    /// What the source yields: the declared columns, or the table's.
    schema: SchemaRef,
    /// Whether the columns were declared.
    declared: bool,
    /// The table's columns and partition columns, once it exists.
    shape: Mutex<Shape>,
    /// The table's id (`metaData.id`), once it exists.
    table_id: Mutex<Option<String>>,
    /// The newest version a run with trigger `available-now` reads.
    frozen: Option<u64>,
    /// With `starting_version = 'latest'`: the first version after the one current when the
    /// query started (0 for a table created later).
    latest_start: Mutex<Option<u64>>,
    /// The open table (its log), once it exists.
    table: tokio::sync::Mutex<Option<DeltaTable>>,
    /// Where data files are read from, once the table exists.
    location: Mutex<Option<Location>>,
    /// Data files of recent commits, and of the starting snapshot.
    commits: Mutex<BTreeMap<u64, Commit>>,
    snapshot: Mutex<Option<(u64, Arc<Vec<DataFile>>)>>,
    /// A position after which nothing was found, and the last version looked at then: the
    /// next plan from the same position starts past it.
    scanned: Mutex<Option<(Position, u64)>>,
    /// Whether the last plan stopped at a per-trigger limit with a file after it
    /// ([`Source::has_more`]).
    limited: std::sync::atomic::AtomicBool,
}

/// The table's columns, as the query reads it.
#[derive(Debug, Clone)]
struct Shape {
    /// The table's columns when the query started (the schema the stream is read with).
    columns: SchemaRef,
    /// Its partition columns.
    partition_columns: Vec<String>,
}

/// A data file of the stream.
#[derive(Debug, Clone)]
struct DataFile {
    /// The file's path relative to the table, decoded once (as on disk).
    path: String,
    size: u64,
    modification_time: i64,
    /// Its partition values, as the log writes them.
    partition_values: HashMap<String, Option<String>>,
}

/// The files one commit adds to the stream (none for a skipped change commit).
type Commit = Arc<Vec<DataFile>>;

/// Where the stream is: the last file read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// The snapshot's version, or the commit's.
    version: u64,
    /// The file's index in the snapshot or commit; -1 before its first.
    index: i64,
    /// Whether the position is in the starting snapshot.
    snapshot: bool,
}

/// A batch's end offset, in Spark's Delta source's fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaOffset {
    source_version: u32,
    reservoir_id: String,
    reservoir_version: u64,
    index: i64,
    is_starting_version: bool,
    /// In the first batch's end offset, when the stream starts with a commit rather than the
    /// snapshot: that commit's version (`starting_version`, `'latest'` or
    /// `starting_timestamp` as resolved then), so that a replay of the first batch after a
    /// restart starts where it did, not where the options would point now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    starting_from: Option<u64>,
}

impl DeltaOffset {
    fn position(&self) -> Position {
        Position { version: self.reservoir_version, index: self.index, snapshot: self.is_starting_version }
    }
}

/// One action of a commit's log entry, as much of it as the stream needs.
#[derive(Debug, Deserialize)]
struct LogLine {
    add: Option<LogAdd>,
    remove: Option<LogRemove>,
    #[serde(rename = "metaData")]
    metadata: Option<LogMetadata>,
    #[serde(rename = "commitInfo")]
    commit_info: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogAdd {
    path: String,
    #[serde(default)]
    partition_values: HashMap<String, Option<String>>,
    size: i64,
    #[serde(default)]
    modification_time: i64,
    data_change: bool,
    deletion_vector: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogRemove {
    data_change: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogMetadata {
    id: String,
    schema_string: String,
    #[serde(default)]
    configuration: HashMap<String, Option<String>>,
}

impl DeltaSource {
    /// A stream over the Delta table of `config`. The table is opened for its columns; a
    /// table that does not exist yet needs declared columns, and is read once it does.
    pub async fn new(name: &str, config: DeltaConfig, declared: Option<SchemaRef>) -> Result<Self> {
        let shown = config.path.clone();
        let mut source = Self {
            name: name.to_string(),
            config,
            shown,
            schema: declared.clone().unwrap_or_else(|| Arc::new(Schema::empty())),
            declared: declared.is_some(),
            shape: Mutex::new(Shape { columns: declared.clone().unwrap_or_else(|| Arc::new(Schema::empty())), partition_columns: Vec::new() }),
            table_id: Mutex::new(None),
            frozen: None,
            latest_start: Mutex::new(None),
            table: tokio::sync::Mutex::new(None),
            location: Mutex::new(None),
            commits: Mutex::new(BTreeMap::new()),
            snapshot: Mutex::new(None),
            scanned: Mutex::new(None),
            limited: std::sync::atomic::AtomicBool::new(false),
        };
        match source.open().await? {
            Some(table) => {
                source.adopt(&table)?;
                if !source.declared {
                    source.schema = Arc::clone(&lock(&source.shape).columns);
                }
                *source.table.get_mut() = Some(table);
            }
            None if !source.declared => {
                return Err(ConnectorError::Config(format!(
                    "table '{name}': no Delta table at {} yet; declare its columns (CREATE TABLE {name} (col TYPE, ...) WITH (...)) to start a stream before the table exists",
                    source.shown
                )));
            }
            // Created after the query started: every commit is new.
            None => *lock(&source.latest_start) = Some(0),
        }
        Ok(source)
    }

    /// Takes the shape of the table, found for the first time: its columns (which must hold
    /// the declared ones), partition columns and id.
    fn adopt(&self, table: &DeltaTable) -> Result<()> {
        let snapshot = table.snapshot().map_err(|e| self.err("cannot read the table state", e))?;
        let metadata = snapshot.metadata();
        self.check_configuration(metadata.configuration().iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))), None)?;
        let shape = Shape { columns: self.arrow_schema(metadata.schema_string(), None)?, partition_columns: metadata.partition_columns().to_vec() };
        lock(&self.latest_start).get_or_insert(table.version().map_or(0, |v| v + 1));
        if self.declared {
            self.check_declared(&shape.columns)?;
        }
        *lock(&self.shape) = shape;
        let mut id = lock(&self.table_id);
        match id.as_ref() {
            Some(known) if known != metadata.id() => Err(self.replaced(known, metadata.id())),
            Some(_) => Ok(()),
            None => {
                *id = Some(metadata.id().to_string());
                Ok(())
            }
        }
    }

    fn replaced(&self, was: &str, is: &str) -> ConnectorError {
        ConnectorError::Config(format!(
            "table '{}': the Delta table at {} is not the table the query read before (its id was {was}, it is {is}): the table was replaced; start the query over with a new checkpoint",
            self.name, self.shown
        ))
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Delta(format!("table '{}': Delta table at {}: {what}: {e}", self.name, self.shown))
    }

    /// Opens the table, if it exists (a local table through a store rooted at its directory,
    /// as the sink does, so that no path is decoded twice).
    async fn open(&self) -> Result<Option<DeltaTable>> {
        // A local table's directory that does not exist yet (a path, or a `file://` URL).
        // Asked before resolving: the writer may create the directory between a failed
        // resolve and a second look, and the failure would then read as a broken path.
        if weir_checkpoint::storage::local_dir(&self.config.path).is_some_and(|dir| !dir.exists()) {
            return Ok(None);
        }
        let location = Location::resolve_with(&self.config.path, false, &self.config.storage)
            .map_err(|e| ConnectorError::Config(format!("table '{}': Delta table path {e}", self.name)))?;
        let builder = match &location.local_dir {
            Some(dir) => {
                let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| self.err("cannot open", e))?;
                let root = Url::parse("file:///").expect("a valid URL");
                DeltaTableBuilder::from_url(root.clone()).map_err(|e| self.err("cannot open", e))?.with_storage_backend(Arc::new(store), root)
            }
            None => DeltaTableBuilder::from_url(location.url.clone())
                .map_err(|e| self.err("cannot open", e))?
                .with_storage_backend(Arc::clone(&location.store), location.url.clone()),
        };
        match builder.load().await {
            Ok(table) => {
                *lock(&self.location) = Some(location);
                Ok(Some(table))
            }
            Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => Ok(None),
            Err(e) => Err(self.err("cannot open", e)),
        }
    }

    /// The Arrow schema of a Delta schema string; `version` names where it comes from.
    fn arrow_schema(&self, schema_string: &str, version: Option<u64>) -> Result<SchemaRef> {
        let at = version.map_or(String::new(), |v| format!(" of version {v}"));
        let columns: StructType = serde_json::from_str(schema_string).map_err(|e| self.err(&format!("cannot read the schema{at}"), e))?;
        let schema: Schema = (&columns).try_into_arrow().map_err(|e| self.err(&format!("cannot read the schema{at}"), e))?;
        Ok(Arc::new(schema))
    }

    /// Refuses table settings the stream cannot read right: column mapping.
    fn check_configuration<'a>(&self, configuration: impl Iterator<Item = (&'a str, Option<&'a str>)>, version: Option<u64>) -> Result<()> {
        for (key, value) in configuration {
            if key == "delta.columnMapping.mode" && value.is_some_and(|v| !v.eq_ignore_ascii_case("none")) {
                let at = version.map_or(String::new(), |v| format!(" (since version {v})"));
                return Err(ConnectorError::Config(format!(
                    "table '{}': the Delta table at {} uses column mapping (delta.columnMapping.mode = '{}'){at}, which weir does not read yet; its data files name columns by physical names",
                    self.name,
                    self.shown,
                    value.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// The declared columns, checked against the table's: each must be one of its columns.
    fn check_declared(&self, columns: &Schema) -> Result<()> {
        for field in self.schema.fields() {
            let Ok(column) = columns.field_with_name(field.name()) else {
                return Err(ConnectorError::Config(format!(
                    "table '{}': column '{}' is not a column of the Delta table at {} ({})",
                    self.name,
                    field.name(),
                    self.shown,
                    describe(columns)
                )));
            };
            if !arrow::compute::can_cast_types(column.data_type(), field.data_type()) {
                return Err(ConnectorError::Config(format!(
                    "table '{}': column '{}' is declared {} but the Delta table at {} holds {}",
                    self.name,
                    field.name(),
                    weir_sql::types::sql_name(field.data_type()),
                    self.shown,
                    weir_sql::types::sql_name(column.data_type())
                )));
            }
        }
        Ok(())
    }

    /// The open table, refreshed to its newest version; `None` while it does not exist.
    async fn refresh(&self) -> Result<Option<tokio::sync::MutexGuard<'_, Option<DeltaTable>>>> {
        let mut table = self.table.lock().await;
        if table.is_none() {
            let Some(found) = self.open().await? else { return Ok(None) };
            self.adopt(&found)?;
            *table = Some(found);
            return Ok(Some(table));
        }
        let t = table.as_mut().expect("open");
        t.update_incremental(None).await.map_err(|e| self.err("cannot read the table's log", e))?;
        let snapshot = t.snapshot().map_err(|e| self.err("cannot read the table state", e))?;
        let id = snapshot.metadata().id().to_string();
        if let Some(known) = lock(&self.table_id).as_ref()
            && *known != id
        {
            return Err(self.replaced(known, &id));
        }
        Ok(Some(table))
    }

    /// The files of the table's snapshot at `version`, in the stream's order.
    async fn snapshot_files(&self, table: &DeltaTable, version: u64) -> Result<Arc<Vec<DataFile>>> {
        if let Some((v, files)) = lock(&self.snapshot).as_ref()
            && *v == version
        {
            return Ok(Arc::clone(files));
        }
        let mut at = table.clone();
        at.load_version(version).await.map_err(|e| self.err(&format!("cannot read version {version}"), e))?;
        let state = at.snapshot().map_err(|e| self.err(&format!("cannot read version {version}"), e))?;
        let log_store = at.log_store();
        let mut views = state.snapshot().file_views(log_store.as_ref(), None);
        let mut files = Vec::new();
        while let Some(file) = views.try_next().await.map_err(|e| self.err(&format!("cannot list the files of version {version}"), e))? {
            if file.deletion_vector_descriptor().is_some() {
                return Err(self.deletion_vector(&file.path(), version));
            }
            files.push(DataFile {
                path: file.path().into_owned(),
                size: file.size().max(0) as u64,
                modification_time: file.modification_time(),
                partition_values: file.partition_values_map(),
            });
        }
        files.sort_by(|a, b| (a.modification_time, &a.path).cmp(&(b.modification_time, &b.path)));
        let files = Arc::new(files);
        *lock(&self.snapshot) = Some((version, Arc::clone(&files)));
        Ok(files)
    }

    fn deletion_vector(&self, path: &str, version: u64) -> ConnectorError {
        ConnectorError::Config(format!(
            "table '{}': data file {path} of version {version} of the Delta table at {} has a deletion vector, which weir does not read yet (the rows it deletes would be read again); rewrite the table without deletion vectors (delta.enableDeletionVectors = false, then OPTIMIZE/REORG), or start from a later version (starting_version)",
            self.name, self.shown
        ))
    }

    /// The files commit `version` adds to the stream.
    async fn commit_files(&self, table: &DeltaTable, version: u64) -> Result<Commit> {
        if let Some(c) = lock(&self.commits).get(&version) {
            return Ok(Arc::clone(c));
        }
        let bytes = table.log_store().read_commit_entry(version).await.map_err(|e| self.err(&format!("cannot read version {version} of the log"), e))?;
        let Some(bytes) = bytes else {
            return Err(ConnectorError::Config(format!(
                "table '{}': version {version} of the Delta table at {} is no longer in its log (log entries older than delta.logRetentionDuration, 30 days by default, are removed): the stream cannot go on from where it stopped; start the query over with a new checkpoint (starting_version = a version still in the log)",
                self.name, self.shown
            )));
        };
        let mut adds = Vec::new();
        let mut removes_data = false;
        let mut operation = None;
        for line in serde_json::Deserializer::from_slice(&bytes).into_iter::<LogLine>() {
            let line = line.map_err(|e| self.err(&format!("cannot read version {version} of the log (line {})", e.line()), e))?;
            if let Some(add) = line.add
                && add.data_change
            {
                adds.push(add);
            }
            if line.remove.is_some_and(|r| r.data_change) {
                removes_data = true;
            }
            if let Some(metadata) = line.metadata {
                self.check_metadata(&metadata, version)?;
            }
            if let Some(info) = line.commit_info {
                operation = info.get("operation").and_then(Value::as_str).map(str::to_string);
            }
        }
        let files = if removes_data {
            if !self.config.source.skip_change_commits {
                let operation = operation.map_or(String::new(), |o| format!(" ({o})"));
                return Err(ConnectorError::BadData(format!(
                    "table '{}': version {version} of the Delta table at {} removes or rewrites rows{operation}; a stream reads only appended rows. Set skip_change_commits = 'true' on table '{}' to skip such commits (their rows are not read), or start over from a later version (starting_version)",
                    self.name, self.shown, self.name
                )));
            }
            Vec::new()
        } else {
            let mut files = Vec::with_capacity(adds.len());
            for add in adds {
                let path = percent_encoding::percent_decode_str(&add.path).decode_utf8_lossy().into_owned();
                if add.deletion_vector.as_ref().is_some_and(|d| !d.is_null()) {
                    return Err(self.deletion_vector(&path, version));
                }
                files.push(DataFile { path, size: add.size.max(0) as u64, modification_time: add.modification_time, partition_values: add.partition_values });
            }
            files
        };
        let commit: Commit = Arc::new(files);
        let mut commits = lock(&self.commits);
        commits.insert(version, Arc::clone(&commit));
        while commits.len() > COMMITS_CACHED {
            commits.pop_first();
        }
        Ok(commit)
    }

    /// A commit's new metadata: the stream goes on only when the table's schema is one the
    /// query reads with (the same, or, on a restart, an older one whose columns the newer
    /// schema holds with the same types).
    fn check_metadata(&self, metadata: &LogMetadata, version: u64) -> Result<()> {
        self.check_configuration(metadata.configuration.iter().map(|(k, v)| (k.as_str(), v.as_deref())), Some(version))?;
        if lock(&self.table_id).as_ref().is_some_and(|id| *id != metadata.id) {
            return Err(ConnectorError::Config(format!(
                "table '{}': version {version} of the Delta table at {} makes it another table (id {}): start the query over with a new checkpoint",
                self.name, self.shown, metadata.id
            )));
        }
        let schema = self.arrow_schema(&metadata.schema_string, Some(version))?;
        let columns = Arc::clone(&lock(&self.shape).columns);
        let fits = schema.fields().iter().all(|f| columns.field_with_name(f.name()).is_ok_and(|t| t.data_type() == f.data_type()));
        if !fits {
            return Err(ConnectorError::Config(format!(
                "table '{}': version {version} of the Delta table at {} changes its schema from ({}) to ({}); the query stops. Restart it to read on with the new schema (the sink then needs the query's new output columns: merge_schema = true, or a new sink table)",
                self.name,
                self.shown,
                describe(&columns),
                describe(&schema)
            )));
        }
        Ok(())
    }

    /// Where a stream with no recorded offset starts: the snapshot of the newest version, or
    /// the commit of `starting_version` / `starting_timestamp`.
    async fn initial(&self, table: &DeltaTable, latest: u64) -> Result<Position> {
        let starting_version = match self.config.source.starting_version {
            Some(StartingVersion::Version(v)) => Some(v),
            Some(StartingVersion::Latest) => Some(lock(&self.latest_start).unwrap_or(0)),
            None => None,
        };
        if let Some(v) = starting_version {
            if v > latest + 1 {
                return Err(ConnectorError::Config(format!(
                    "table '{}': starting_version = {v}, but the Delta table at {} is at version {latest}",
                    self.name, self.shown
                )));
            }
            return Ok(Position { version: v, index: -1, snapshot: false });
        }
        if let Some(ts) = self.config.source.starting_timestamp {
            return Ok(Position { version: self.version_at(table, ts, latest).await?, index: -1, snapshot: false });
        }
        Ok(Position { version: latest, index: -1, snapshot: true })
    }

    /// The first version committed at or after `ts` (milliseconds): its log entry's
    /// modification time, as Spark reads it.
    async fn version_at(&self, table: &DeltaTable, ts: i64, latest: u64) -> Result<u64> {
        let store = table.log_store().object_store(None);
        let log = object_store::path::Path::from("_delta_log");
        let mut entries = store.list(Some(&log));
        let mut first = None;
        let mut newest: Option<(u64, i64)> = None;
        while let Some(meta) = entries.try_next().await.map_err(|e| self.err("cannot list the table's log", e))? {
            let Some(name) = meta.location.filename() else { continue };
            let Some(version) = name.strip_suffix(".json").and_then(|v| v.parse::<u64>().ok()) else { continue };
            let at = meta.last_modified.timestamp_millis();
            if at >= ts && first.is_none_or(|f| version < f) {
                first = Some(version);
            }
            if newest.is_none_or(|(v, _)| version > v) {
                newest = Some((version, at));
            }
        }
        match first {
            Some(v) => Ok(v.min(latest + 1)),
            None => Err(ConnectorError::Config(format!(
                "table '{}': starting_timestamp is after the newest commit of the Delta table at {} (version {}, committed {})",
                self.name,
                self.shown,
                newest.map_or(latest, |(v, _)| v),
                newest.and_then(|(_, at)| chrono::DateTime::from_timestamp_millis(at)).map_or("?".to_string(), |t| t.to_rfc3339())
            ))),
        }
    }

    /// The files after `from` up to version `through`, as (position, file), until `take`
    /// says stop; with the last version looked at.
    async fn walk(
        &self,
        table: &DeltaTable,
        from: Position,
        through: u64,
        mut take: impl FnMut(&Position, &DataFile) -> Walk,
    ) -> Result<(Vec<(Position, DataFile)>, u64)> {
        let mut out = Vec::new();
        let (mut version, mut after, mut snapshot) = (from.version, from.index, from.snapshot);
        if !snapshot
            && let Some((p, scanned)) = *lock(&self.scanned)
            && p == from
        {
            // Nothing after `from` up to `scanned`: go on past it.
            (version, after) = (scanned + 1, -1);
        }
        loop {
            if !snapshot && version > through {
                return Ok((out, through));
            }
            let files = match snapshot {
                true => self.snapshot_files(table, version).await?,
                false => match self.commit_files(table, version).await {
                    Ok(files) => files,
                    // A commit the stream cannot go past ends the batch before it; the next
                    // batch stops there.
                    Err(_) if !out.is_empty() => return Ok((out, version.saturating_sub(1))),
                    Err(e) => return Err(e),
                },
            };
            for (index, file) in files.iter().enumerate().skip((after + 1).max(0) as usize) {
                let position = Position { version, index: index as i64, snapshot };
                match take(&position, file) {
                    Walk::Take => out.push((position, file.clone())),
                    Walk::TakeLast => {
                        out.push((position, file.clone()));
                        return Ok((out, version));
                    }
                    Walk::Stop => return Ok((out, version)),
                }
            }
            if snapshot {
                snapshot = false;
            }
            version += 1;
            after = -1;
        }
    }

    fn offset(&self, position: &Position, starting_from: Option<u64>) -> Result<Value> {
        let id = lock(&self.table_id).clone().unwrap_or_default();
        let offset = DeltaOffset {
            source_version: 1,
            reservoir_id: id,
            reservoir_version: position.version,
            index: position.index,
            is_starting_version: position.snapshot,
            starting_from,
        };
        serde_json::to_value(offset).map_err(|e| ConnectorError::Io(e.to_string()))
    }

    fn parse_offset(&self, offset: &Value) -> Result<DeltaOffset> {
        let offset: DeltaOffset = serde_json::from_value(offset.clone())
            .map_err(|e| ConnectorError::Config(format!("table '{}': the checkpoint's offset {offset} is not a Delta source's: {e}", self.name)))?;
        if let Some(id) = lock(&self.table_id).as_ref()
            && *id != offset.reservoir_id
        {
            return Err(ConnectorError::Config(format!(
                "table '{}': the checkpoint read the Delta table with id {}, and the table at {} has id {id}: the table was replaced; start the query over with a new checkpoint",
                self.name, offset.reservoir_id, self.shown
            )));
        }
        Ok(offset)
    }

    /// The files of the batch `(start, end]`.
    async fn batch_files(&self, start: Option<&Value>, end: &Value) -> Result<Vec<DataFile>> {
        let end_offset = self.parse_offset(end)?;
        let end = end_offset.position();
        let guard = self.table.lock().await;
        let guard = match guard.as_ref() {
            Some(_) => guard,
            None => {
                drop(guard);
                self.refresh().await?.ok_or_else(|| self.err("cannot read", "the table is gone"))?
            }
        };
        let table = guard.as_ref().expect("present");
        let from = match start {
            Some(s) => self.parse_offset(s)?.position(),
            None => match (end.snapshot, end_offset.starting_from) {
                (true, _) => Position { version: end.version, index: -1, snapshot: true },
                (false, Some(v)) => Position { version: v, index: -1, snapshot: false },
                // Not recorded: the options, resolved again.
                (false, None) => self.initial(table, end.version).await?,
            },
        };
        let (files, _) = self
            .walk(table, from, end.version, |p, _| if *p == end { Walk::TakeLast } else { Walk::Take })
            .await?;
        if files.last().map(|(p, _)| *p) != Some(end) {
            return Err(self.err("cannot replay a batch", format!("its last file (version {}, index {}) is not in the log", end.version, end.index)));
        }
        Ok(files.into_iter().map(|(_, f)| f).collect())
    }

    /// How the batch's files become rows: the columns read from the files, and where the
    /// partition columns go.
    fn decoder(&self) -> Decoder {
        let partition_columns = lock(&self.shape).partition_columns.clone();
        let schema = Arc::clone(&self.schema);
        let partitions = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| partition_columns.contains(f.name()))
            .map(|(i, f)| (i, f.name().clone()))
            .collect();
        let data = Arc::new(Schema::new(schema.fields().iter().filter(|f| !partition_columns.contains(f.name())).cloned().collect::<Vec<_>>()));
        Decoder { schema, data, partitions }
    }
}

/// Decodes the pieces of a batch's files (see [`DeltaSource::decoder`]).
#[derive(Debug, Clone)]
struct Decoder {
    /// What the source yields.
    schema: SchemaRef,
    /// The columns in the data files (all but the partition columns).
    data: SchemaRef,
    /// The partition columns: their index in `schema`, and name.
    partitions: Vec<(usize, String)>,
}

impl Decoder {
    /// The rows of one piece (whole row groups) of the batch's file number `file`, whose
    /// partition values are `values`.
    fn decode(&self, piece: read::Piece, values: &HashMap<String, Option<String>>) -> Result<ReadOutput> {
        let read::Piece { shown, file_index, index, body } = piece;
        let Body::Parquet { metadata, row_groups, bytes } = body else {
            return Err(ConnectorError::BadData(format!("{shown}: not a Parquet file")));
        };
        let size = bytes.bytes.len() as u64;
        let batches = crate::file::decode::decode_row_groups(&self.data, &shown, metadata, row_groups, bytes)?;
        let batches = batches.iter().map(|b| with_partitions(&self.schema, b, &self.partitions, values, &shown)).collect::<Result<Vec<_>>>()?;
        let number = |n: usize| u32::try_from(n).map_err(|_| ConnectorError::Io(format!("{shown}: more than {} pieces in a batch", u32::MAX)));
        Ok(ReadOutput { batches, bad_rows: Vec::new(), place: ChunkPlace { part: number(file_index)?, seq: number(index)? }, bytes: size, rows_hint: None })
    }
}

/// What [`DeltaSource::walk`] does with a file.
enum Walk {
    Take,
    /// Takes the file and stops.
    TakeLast,
    /// Stops before the file, without taking it.
    Stop,
}

/// `batch`'s data columns with the file's partition values, in `schema`'s order.
fn with_partitions(
    schema: &SchemaRef,
    batch: &RecordBatch,
    partitions: &[(usize, String)],
    values: &HashMap<String, Option<String>>,
    shown: &str,
) -> Result<RecordBatch> {
    if partitions.is_empty() {
        return Ok(batch.clone());
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let mut data = batch.columns().iter();
    for (i, field) in schema.fields().iter().enumerate() {
        match partitions.iter().find(|(p, _)| *p == i) {
            Some((_, name)) => {
                let value = values.get(name).cloned().flatten();
                let text: ArrayRef = Arc::new(StringArray::from(vec![value.as_deref(); batch.num_rows()]));
                let column = arrow::compute::cast(&text, field.data_type()).map_err(|e| {
                    ConnectorError::BadData(format!("{shown}: partition value {name} = {value:?} is not a {}: {e}", field.data_type()))
                })?;
                columns.push(column);
            }
            None => columns.push(Arc::clone(data.next().expect("a data column for each field"))),
        }
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| ConnectorError::BadData(format!("{shown}: {e}")))
}

/// The object path of a data file, `relative` to the table as its log names it once
/// decoded. Its parts are taken as they are (`%` and all, as delta-rs takes them), not
/// escaped again.
fn data_path(location: &Location, relative: &str) -> object_store::path::Path {
    let relative = object_store::path::Path::parse(relative).unwrap_or_else(|_| object_store::path::Path::from(relative));
    relative.parts().fold(location.root.clone(), |path, part| path.join(part))
}

/// `name TYPE, ...` of `schema`.
fn describe(schema: &Schema) -> String {
    schema.fields().iter().map(|f: &Arc<Field>| format!("{} {}", f.name(), weir_sql::types::sql_name(f.data_type()))).collect::<Vec<_>>().join(", ")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl Source for DeltaSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn description(&self) -> String {
        format!("DeltaSource[{}]", self.shown)
    }

    async fn restore(&mut self, _checkpoint: &Arc<Checkpoint>, _last_batch: Option<u64>, recorded_end: Option<&Value>) -> Result<()> {
        // The offsets say where the stream is; the id they carry must be this table's.
        if let Some(end) = recorded_end {
            let offset = self.parse_offset(end)?;
            let mut id = lock(&self.table_id);
            if id.is_none() {
                *id = Some(offset.reservoir_id);
            }
        }
        Ok(())
    }

    async fn freeze_available(&mut self) -> Result<()> {
        let frozen = self.refresh().await?.and_then(|guard| guard.as_ref().and_then(DeltaTable::version));
        self.frozen = frozen;
        Ok(())
    }

    async fn backlog(&self, position: Option<&Value>) -> Result<Option<Backlog>> {
        let Some(frozen) = self.frozen else { return Ok(None) };
        let Some(guard) = self.refresh().await? else { return Ok(None) };
        let table = guard.as_ref().expect("refreshed");
        let from = match position {
            Some(s) => self.parse_offset(s)?.position(),
            None => self.initial(table, frozen).await?,
        };
        let (files, _) = self.walk(table, from, frozen, |_, _| Walk::Take).await?;
        Ok(Some(Backlog { amount: files.len() as u64, unit: "files" }))
    }

    async fn plan_batch(&mut self, _checkpoint: &Arc<Checkpoint>, _batch_id: u64, start: Option<&Value>) -> Result<Option<Value>> {
        self.limited.store(false, std::sync::atomic::Ordering::Relaxed);
        let Some(guard) = self.refresh().await? else { return Ok(None) };
        let table = guard.as_ref().expect("refreshed");
        let Some(latest) = table.version() else { return Ok(None) };
        let latest = self.frozen.map_or(latest, |f| f.min(latest));
        let from = match start {
            Some(s) => self.parse_offset(s)?.position(),
            None => self.initial(table, latest).await?,
        };
        let (max_files, max_bytes) = (self.config.source.max_files_per_trigger.unwrap_or(DEFAULT_MAX_FILES), self.config.source.max_bytes_per_trigger);
        let (mut count, mut bytes) = (0usize, 0u64);
        // Files are taken until a limit is reached (the file that reaches the byte limit
        // included); a file after that is the backlog the next batch takes.
        let mut limited = false;
        let (files, scanned) = self
            .walk(table, from, latest, |_, file| {
                if count >= max_files || max_bytes.is_some_and(|m| bytes >= m) {
                    limited = true;
                    return Walk::Stop;
                }
                count += 1;
                bytes += file.size;
                Walk::Take
            })
            .await?;
        self.limited.store(limited, std::sync::atomic::Ordering::Relaxed);
        let Some((last, _)) = files.last() else {
            // Nothing new: the next plan from here starts past what was looked at.
            if !from.snapshot {
                *lock(&self.scanned) = Some((from, scanned));
            }
            return Ok(None);
        };
        let starting_from = (start.is_none() && !from.snapshot).then_some(from.version);
        let end = self.offset(last, starting_from)?;
        drop(guard);
        Ok(Some(end))
    }

    fn has_more(&self) -> bool {
        self.limited.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn read(&self, checkpoint: &Arc<Checkpoint>, start: Option<&Value>, end: &Value) -> Result<ReadOutput> {
        ReadOutput::collect(self.read_chunks(checkpoint, start, end)).await
    }

    /// Chunks in the batch's file order, each file's row groups in order: read ahead, and
    /// decoded as many at a time as there are cores, ahead of the batch loop.
    fn read_chunks<'a>(&'a self, _checkpoint: &'a Arc<Checkpoint>, start: Option<&'a Value>, end: &'a Value) -> BoxStream<'a, Result<ReadOutput>> {
        let cut = Cut { format: FileFormat::Parquet, delimiter: b',', header: false, piece_bytes: crate::file::piece_bytes() };
        let decoder = self.decoder();
        futures::stream::once(async move {
            let files = self.batch_files(start, end).await?;
            let location = lock(&self.location).clone().ok_or_else(|| self.err("cannot read", "the table is not open"))?;
            let pieces = futures::stream::iter(files.into_iter().enumerate()).flat_map(move |(i, file)| {
                let values = Arc::new(file.partition_values);
                read::read_pieces(location.clone(), i, data_path(&location, &file.path), file.size, cut).map(move |piece| piece.map(|p| (p, Arc::clone(&values))))
            });
            let pieces = crate::file::read_ahead(pieces.boxed(), READ_AHEAD).map_err(|(e, _)| e).boxed();
            let decode = move |(piece, values): (read::Piece, Arc<_>)| decoder.decode(piece, &values);
            Ok::<_, ConnectorError>(crate::file::decode_ahead(pieces, decode, |(p, _)| p.len(), ConnectorError::Io, crate::file::DECODE_AHEAD))
        })
        .try_flatten()
        .boxed()
    }
}


#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::DataType;
    use weir_sql::config::DeltaSourceOptions;

    use super::*;
    use crate::delta::DeltaSink;
    use crate::{AppId, Sink};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]))
    }

    /// Appends one file of `ids` to the table at `path`, as batch `batch` of a writer.
    async fn append(sink: &mut DeltaSink, batch: u64, ids: &[i64]) {
        let rows = RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids.to_vec()))]).unwrap();
        sink.commit(batch, vec![rows]).await.unwrap();
    }

    /// The source's backlog flag follows the limits exactly: set when a file waits behind
    /// `max_files_per_trigger` or `max_bytes_per_trigger`, clear when the limit takes the
    /// table's last file, so that the batch loop plans ahead only with something to read.
    #[tokio::test]
    async fn has_more_only_when_a_file_waits_behind_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let table = tmp.path().join("table");
        let cp = Arc::new(Checkpoint::open(tmp.path().join("cp").to_str().unwrap()).unwrap());
        let mut sink = DeltaSink::new("t", DeltaConfig::at(table.display().to_string(), Default::default()), None).unwrap();
        sink.open(&schema(), &AppId::sink("w"), &cp).await.unwrap();
        for b in 0..3 {
            append(&mut sink, b, &[b as i64]).await;
        }
        let source = |max_files: Option<usize>, max_bytes: Option<u64>| {
            let config = DeltaConfig {
                source: DeltaSourceOptions { max_files_per_trigger: max_files, max_bytes_per_trigger: max_bytes, ..Default::default() },
                ..DeltaConfig::at(table.display().to_string(), Default::default())
            };
            DeltaSource::new("s", config, None)
        };

        // Two files a batch over the snapshot's three: one waits, then none.
        let mut s = source(Some(2), None).await.unwrap();
        let end0 = s.plan_batch(&cp, 0, None).await.unwrap().expect("files to read");
        assert!(s.has_more(), "a third file waits behind the limit");
        let end1 = s.plan_batch(&cp, 1, Some(&end0)).await.unwrap().expect("the third file");
        assert!(!s.has_more(), "the last file is taken");
        assert!(s.plan_batch(&cp, 2, Some(&end1)).await.unwrap().is_none());
        assert!(!s.has_more(), "nothing to read");

        // A limit that takes exactly the table's files leaves no backlog.
        let mut s = source(Some(3), None).await.unwrap();
        let end = s.plan_batch(&cp, 0, None).await.unwrap().expect("files to read");
        assert!(!s.has_more(), "the limit took the last file");

        // A commit after the snapshot: a file behind the limit again, in the commits.
        append(&mut sink, 3, &[3]).await;
        s.plan_batch(&cp, 1, Some(&end)).await.unwrap().expect("the new commit's file");
        assert!(!s.has_more(), "one new file, taken");

        // One byte a batch: every file reaches the limit, and each but the last has one after it.
        let mut s = source(None, Some(1)).await.unwrap();
        let mut start = None;
        let mut backlog = Vec::new();
        for b in 0..4 {
            let end = s.plan_batch(&cp, b, start.as_ref()).await.unwrap().expect("a file");
            backlog.push(s.has_more());
            start = Some(end);
        }
        assert_eq!(backlog, [true, true, true, false]);
        assert!(s.plan_batch(&cp, 4, start.as_ref()).await.unwrap().is_none());
    }
}
