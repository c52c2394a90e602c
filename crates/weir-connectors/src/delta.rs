//! The Delta Lake sink: each batch is ONE Delta commit holding its data files and
//! `txn(appId = query id, version = batch id)`. A batch whose id is at or below the table's
//! recorded version for the query was committed before, and is skipped: that is what makes
//! a replay after a crash write nothing twice.
//!
//! Data files of a batch that crashed before its commit are found through the journal
//! (`delta_journal.rs`) and removed when the sink opens again.

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::{ObjectStore, ObjectStoreExt};
use object_store::path::Path;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use url::Url;
use weir_checkpoint::{Checkpoint, Location};
use weir_sql::config::DeltaConfig;

use crate::delta_journal::{Journal, JournaledStore, PendingFile};
use crate::error::{ConnectorError, Result};
use crate::{Sink, SinkCommit};

/// How many times a batch's commit is tried when other writers' commits conflict with it.
const MAX_COMMIT_ATTEMPTS: u32 = 10;

/// Appends each batch to a Delta table, exactly once.
#[derive(Debug)]
pub struct DeltaSink {
    name: String,
    config: DeltaConfig,
    url: Url,
    declared: Option<SchemaRef>,
    /// The open table, `None` until it exists (or after a failed write consumed it).
    table: Option<DeltaTable>,
    app_id: String,
    /// Highest batch id this query has committed to the table.
    recorded: Option<i64>,
    /// The store's root (local tables), through which delta-rs writes and orphans are removed.
    root: Option<Arc<dyn ObjectStore>>,
    journal: Journal,
    /// The query's output schema, set by `open`.
    schema: Option<SchemaRef>,
    /// Columns the table declares NOT NULL: (index in the output, name).
    required: Vec<(usize, String)>,
    /// The batch being written.
    pending: Option<Pending>,
}

/// Commits between two clean-ups of expired Delta log entries (delta-rs's default
/// checkpoint interval).
const LOG_CLEANUP_EVERY: u64 = 100;

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Rows in flight to the Parquet writer task; a bounded queue keeps memory bounded.
const WRITE_QUEUE: usize = 4;

/// The batch between `begin` and `finish`.
#[derive(Debug)]
struct Pending {
    batch_id: u64,
    rows: u64,
    /// `None` when the batch was committed before: its rows are dropped.
    writer: Option<FileWriter>,
}

/// The task that encodes a batch's rows into Parquet files, and the queue to it. Dropped
/// before `close` (the batch failed), it stops the task: no file of it is completed.
#[derive(Debug)]
struct FileWriter {
    tx: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    task: Option<tokio::task::JoinHandle<deltalake::DeltaResult<Vec<Add>>>>,
}

impl FileWriter {
    /// Queues rows; false when the task has stopped (its result says why).
    async fn send(&self, batch: RecordBatch) -> bool {
        match &self.tx {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        }
    }

    /// Ends the queue and waits for the task's files.
    async fn close(mut self) -> std::result::Result<deltalake::DeltaResult<Vec<Add>>, tokio::task::JoinError> {
        self.tx = None;
        self.task.take().expect("open until closed").await
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl DeltaSink {
    /// A sink for the table at `config.path` (created on first write if absent).
    pub fn new(name: &str, config: DeltaConfig, declared: Option<SchemaRef>) -> Result<Self> {
        let location = Location::resolve(&config.path, true)
            .map_err(|e| ConnectorError::Config(format!("table '{name}': Delta table path {e}")))?;
        // Local tables get the journaling store; in-memory ones cannot outlive a crash.
        let root: Option<Arc<dyn ObjectStore>> =
            (location.url.scheme() == "file").then(|| Arc::new(object_store::local::LocalFileSystem::new()) as Arc<dyn ObjectStore>);
        Ok(Self {
            name: name.to_string(),
            config,
            url: location.url,
            declared,
            table: None,
            app_id: String::new(),
            recorded: None,
            root,
            journal: Journal::default(),
            schema: None,
            required: Vec::new(),
            pending: None,
        })
    }

    /// A handle on the table, writing through the journal when the table is local.
    fn builder(&self) -> deltalake::DeltaResult<DeltaTableBuilder> {
        let builder = DeltaTableBuilder::from_url(self.url.clone())?;
        Ok(match &self.root {
            Some(root) => {
                let store = JournaledStore::new(Arc::clone(root), self.journal.clone());
                builder.with_storage_backend(Arc::new(store), self.url.clone())
            }
            None => builder,
        })
    }

    /// Reads the table's recorded transaction version for this query again.
    async fn refresh_recorded(&mut self) -> Result<()> {
        let Some(table) = self.table.as_ref() else { return Ok(()) };
        let snapshot = table.snapshot().map_err(|e| self.err("cannot read the table state", e))?;
        let recorded = snapshot
            .transaction_version(table.log_store().as_ref(), &self.app_id)
            .await
            .map_err(|e| self.err("cannot read the recorded transaction version", e))?;
        self.recorded = recorded;
        Ok(())
    }

    /// Removes the data files recorded in the journal that no commit of the table took:
    /// files of batches the table has not recorded, and files of recorded batches that the
    /// table does not reference (an attempt that failed before another committed).
    async fn remove_orphans(&self, checkpoint: &Arc<Checkpoint>, dir: &str) -> Result<usize> {
        let Some(root) = &self.root else { return Ok(0) };
        let names = checkpoint.file_names(dir).await?;
        if names.is_empty() {
            return Ok(0);
        }
        let active: HashSet<String> = match &self.table {
            Some(t) => t
                .get_file_uris()
                .map_err(|e| self.err("cannot list the table's files", e))?
                // Local tables give plain paths, others URLs.
                .filter_map(|uri| if uri.starts_with('/') { Url::from_file_path(&uri).ok() } else { Url::parse(&uri).ok() })
                .filter_map(|u| Path::from_url_path(u.path()).ok())
                .map(|p| p.to_string())
                .collect(),
            None => HashSet::new(),
        };
        let mut removed = 0;
        for name in names {
            let relative = format!("{dir}/{name}");
            let batch: Option<i64> = name.split('-').next().and_then(|b| b.parse().ok());
            let Some(entry) = checkpoint.get_json::<PendingFile>(&relative).await? else { continue };
            let path = Path::parse(&entry.path).map_err(|e| self.err("bad journal entry", e))?;
            let committed_batch = matches!((batch, self.recorded), (Some(b), Some(r)) if b <= r);
            if !(committed_batch && active.contains(&path.to_string())) {
                match root.delete(&path).await {
                    Ok(()) => removed += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(&format!("cannot remove orphan data file /{path}"), e)),
                }
            }
            checkpoint.delete(&relative).await?;
        }
        Ok(removed)
    }

    /// Commits `adds` with `txn(query id, version)` in one Delta commit: an append to an
    /// existing table, or the table's creation (protocol, metadata and the files at once).
    async fn commit_files(&self, table: DeltaTable, version: i64, adds: &[Add]) -> deltalake::DeltaResult<DeltaTable> {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let properties =
            CommitProperties::default().with_application_transaction(Transaction::new_with_last_update(&self.app_id, version, Some(now_ms)));
        let actions: Vec<Action> = adds.iter().cloned().map(Action::Add).collect();
        let log_store = table.log_store();
        let Ok(snapshot) = table.snapshot() else {
            let schema = self.schema.clone().expect("begin checked");
            let columns: StructType = schema.as_ref().try_into_kernel()?;
            return CreateBuilder::new()
                .with_log_store(log_store)
                .with_columns(columns.fields().cloned())
                .with_partition_columns(self.config.partition_by.clone())
                .with_actions(actions)
                .with_commit_properties(properties)
                .with_save_mode(SaveMode::ErrorIfExists)
                .await;
        };
        // delta-rs cleans up expired log entries after every commit by default, listing the
        // whole log each time. Entries only expire past a checkpoint (every 100 commits by
        // default), so cleaning once per 100 commits removes the same files.
        let next = snapshot.version() + 1;
        let properties = properties.with_cleanup_expired_logs(Some(next % LOG_CLEANUP_EVERY == LOG_CLEANUP_EVERY - 1));
        let partition_by = snapshot.metadata().partition_columns().to_vec();
        let operation =
            DeltaOperation::Write { mode: SaveMode::Append, partition_by: (!partition_by.is_empty()).then_some(partition_by), predicate: None };
        let committed = CommitBuilder::from(properties).with_actions(actions).build(Some(snapshot), log_store, operation).await?.version();
        // Reloaded rather than taken from the commit: the commit's snapshot keeps replaying
        // every log entry since the table was opened, and gets slower with each commit.
        let mut table = table;
        table.update_incremental(Some(committed)).await?;
        Ok(table)
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> ConnectorError {
        // delta-rs reports a failed data-file upload as a Parquet "parse" failure.
        let e = e.to_string();
        let e = e.strip_prefix("Failed to parse parquet: External: ").unwrap_or(&e);
        ConnectorError::Delta(format!("Delta table '{}' at {}: {what}: {e}", self.name, self.url))
    }

    /// Opens the table if it exists; returns whether it does.
    async fn load(&mut self) -> Result<bool> {
        if self.table.is_none() {
            let builder = self.builder().map_err(|e| self.err("cannot open", e))?;
            match builder.load().await {
                Ok(t) => self.table = Some(t),
                Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => return Ok(false),
                Err(e) => return Err(self.err("cannot open", e)),
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl Sink for DeltaSink {
    fn description(&self) -> String {
        format!("DeltaSink[{}]", self.url)
    }

    async fn target_schema(&mut self) -> Result<Option<SchemaRef>> {
        if !self.load().await? {
            return Ok(self.declared.clone());
        }
        let table = self.table.as_ref().expect("loaded");
        let snapshot = table.snapshot().map_err(|e| self.err("cannot read the table state", e))?;
        Ok(Some(snapshot.snapshot().arrow_schema()))
    }

    async fn open(&mut self, schema: &SchemaRef, query_id: &str, checkpoint: &Arc<Checkpoint>) -> Result<()> {
        self.app_id = query_id.to_string();
        let journal_dir = format!("sinks/{}/pending", self.name);
        let wanted = self.config.partition_by.clone();
        let name = self.name.clone();
        match self.load().await? {
            true => {
                let table = self.table.as_ref().expect("loaded");
                let snapshot = table.snapshot().map_err(|e| self.err("cannot read the table state", e))?;
                let existing = snapshot.metadata().partition_columns().to_vec();
                if !wanted.is_empty() && wanted != existing {
                    return Err(ConnectorError::Config(format!(
                        "table '{name}': partition_by = '{}' but the existing Delta table at {} is partitioned by [{}]",
                        wanted.join(","),
                        self.url,
                        existing.join(",")
                    )));
                }
                let log_store = table.log_store();
                let recorded = snapshot
                    .transaction_version(log_store.as_ref(), query_id)
                    .await
                    .map_err(|e| self.err("cannot read the recorded transaction version", e))?;
                self.recorded = recorded;
            }
            false => {
                for column in &wanted {
                    if schema.field_with_name(column).is_err() {
                        return Err(ConnectorError::Config(format!(
                            "table '{name}': partition column '{column}' is not in the query's output ({})",
                            schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
                if wanted.len() == schema.fields().len() {
                    return Err(ConnectorError::Config(format!("table '{name}': every column is a partition column; leave at least one data column")));
                }
            }
        }
        // Columns the table (or its declaration) holds NOT NULL, checked in every batch.
        let table_schema = self.table.as_ref().and_then(|t| t.snapshot().ok()).map(|s| s.snapshot().arrow_schema()).or_else(|| self.declared.clone());
        self.required = table_schema
            .map(|ts| {
                ts.fields().iter().filter(|f| !f.is_nullable()).filter_map(|f| Some((schema.index_of(f.name()).ok()?, f.name().clone()))).collect()
            })
            .unwrap_or_default();
        self.schema = Some(Arc::clone(schema));
        self.remove_orphans(checkpoint, &journal_dir).await?;
        self.journal.attach(checkpoint, journal_dir);
        Ok(())
    }

    async fn begin(&mut self, batch_id: u64) -> Result<()> {
        if self.recorded.is_some_and(|r| r >= batch_id as i64) {
            self.pending = Some(Pending { batch_id, rows: 0, writer: None });
            return Ok(());
        }
        let schema = self.schema.clone().ok_or_else(|| self.err("cannot write", "the sink was not opened"))?;
        let table = match self.table.take() {
            Some(t) => t,
            None if self.load().await? => self.table.take().expect("loaded"),
            None => self.builder().map_err(|e| self.err("cannot open", e))?.build().map_err(|e| self.err("cannot open", e))?,
        };
        let partition_columns = match table.snapshot() {
            Ok(s) => s.metadata().partition_columns().to_vec(),
            Err(_) => self.config.partition_by.clone(),
        };
        // Row groups of at most 256Ki rows (parquet-rs defaults to 1Mi; DuckDB writes 122,880):
        // the writer holds a row group in memory until it is complete.
        let properties = WriterProperties::builder()
            .set_created_by(format!("weir {} (delta-rs)", env!("CARGO_PKG_VERSION")))
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let config = WriterConfig::new(
            schema,
            partition_columns,
            Some(properties),
            self.config.target_file_size.and_then(NonZeroU64::new),
            None,
            Default::default(),
            None,
        );
        let store = table.object_store();
        self.table = Some(table);
        self.journal.begin(batch_id);
        // Parquet encoding runs in its own task, beside the query making the next rows.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(WRITE_QUEUE);
        let task = tokio::spawn(async move {
            let mut writer = DeltaWriter::new(store, config);
            while let Some(batch) = rx.recv().await {
                if let Err(e) = writer.write(&batch).await {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
            writer.close().await
        });
        self.pending = Some(Pending { batch_id, rows: 0, writer: Some(FileWriter { tx: Some(tx), task: Some(task) }) });
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let Some(batch_id) = self.pending.as_ref().map(|p| p.batch_id) else { return Err(self.err("cannot write", "rows outside a batch")) };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let failed = || format!("batch {batch_id} was not committed");
        for (i, column) in &self.required {
            if batch.column(*i).null_count() > 0 {
                return Err(self.err(&failed(), format!("column '{column}' is NOT NULL in the table, and the query wrote a NULL to it")));
            }
        }
        let schema = self.schema.as_ref().expect("begin checked");
        let batch = if batch.schema() == *schema {
            batch
        } else {
            // Same columns; the plan may label nullability or metadata differently.
            RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec()).map_err(|e| self.err(&failed(), e))?
        };
        let pending = self.pending.as_mut().expect("checked");
        pending.rows += batch.num_rows() as u64;
        let Some(writer) = pending.writer.as_mut() else { return Ok(()) };
        if writer.send(batch).await {
            return Ok(());
        }
        // The writer task stopped: its result says why.
        let writer = pending.writer.take().expect("present");
        match writer.close().await {
            Ok(Err(e)) => Err(self.err(&failed(), e)),
            Ok(Ok(_)) => Err(self.err(&failed(), "the Parquet writer stopped early")),
            Err(e) => Err(self.err(&failed(), e)),
        }
    }

    async fn finish(&mut self) -> Result<SinkCommit> {
        let Some(Pending { batch_id, rows, writer }) = self.pending.take() else {
            return Err(self.err("cannot commit", "no batch was begun"));
        };
        let Some(writer) = writer else {
            return Ok(SinkCommit { rows: 0, written: false, version: current_version(&self.table) });
        };
        let failed = format!("batch {batch_id} was not committed");
        let adds = match writer.close().await {
            Ok(Ok(adds)) => adds,
            Ok(Err(e)) => return Err(self.err(&failed, e)),
            Err(e) => return Err(self.err(&failed, e)),
        };
        if adds.is_empty() {
            self.journal.finish().await;
            return Ok(SinkCommit { rows: 0, written: false, version: current_version(&self.table) });
        }
        let version = batch_id as i64;
        // Another writer may commit between our read of the table and our commit (Delta's
        // optimistic concurrency; delta-rs retries appends itself). When the table did not
        // exist and another writer created it first, reload, check the batch is still ours
        // to write, and commit the same files to the table it made.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let table = self.table.take().expect("begin opened the table");
            let creating = table.snapshot().is_err();
            match self.commit_files(table, version, &adds).await {
                Ok(table) => {
                    self.table = Some(table);
                    break;
                }
                Err(e) if creating && attempt < MAX_COMMIT_ATTEMPTS && self.load().await? => {
                    self.refresh_recorded().await?;
                    if self.recorded.is_some_and(|r| r >= version) {
                        return Ok(SinkCommit { rows: 0, written: false, version: current_version(&self.table) });
                    }
                    let _ = e; // another writer created the table first: append to it
                }
                Err(e) => return Err(self.err(&failed, e)),
            }
        }
        // The commit is in the log; its files' records are not cleared yet.
        crate::failpoint::hit("after_delta_commit", batch_id);
        self.journal.finish().await;
        self.recorded = Some(version);
        Ok(SinkCommit { rows, written: true, version: current_version(&self.table) })
    }
}

/// The table's version, when it exists.
fn current_version(table: &Option<DeltaTable>) -> Option<i64> {
    table.as_ref().and_then(DeltaTable::version).map(|v| v as i64)
}
