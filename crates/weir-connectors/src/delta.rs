//! The Delta Lake sink: each batch is ONE Delta commit holding its data files and
//! `txn(appId = query id, version = batch id)`. A batch whose id is at or below the table's
//! recorded version for the query was committed before, and is skipped: that is what makes
//! a replay after a crash write nothing twice.
//!
//! Data files of a batch that crashed before its commit are found through the journal
//! (`delta_journal.rs`) and removed when the sink opens again, by a runner that holds the
//! checkpoint's lock.
//!
//! delta-rs writes local files through object_store, which never fsyncs. The sink's store
//! syncs each file it writes (data files, then the log entry) before the write returns, so a
//! commit is durable before the batch loop writes `commits/N`.
//!
//! A local table is handed to delta-rs as `file:///` over a store rooted at the table's
//! directory, so every path delta-rs and its kernel see is relative to the table. Its kernel
//! lists the log through URLs built from raw paths and decodes a `%` in the table's own path
//! a second time (`c d%20é/` becomes `c d é/`): a table there could not be opened again
//! after its first commit. Relative paths hold only what delta-rs names itself.
//!
//! With `merge_schema = true` the query's output is matched to an existing table by column
//! name, as Spark's `mergeSchema` does: columns the table lacks are added to it (nullable) by
//! a `metaData` action in the commit of the first batch that writes them, so the batch's
//! files, the new schema and its `txn` land at once; table columns the query does not produce
//! are written as NULL. With `auto_compact = true` the sink compacts the table's small files
//! after a batch's commit (`delta_upkeep.rs`), in a commit of its own without a `txn`.
//! `delta.*` options are the table's properties when the sink creates it.

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitData, CommitProperties, PROTOCOL, TransactionError};
use deltalake::kernel::{Action, Add, DataType as DeltaType, StructType, Transaction};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::logstore::{CommitOrBytes, LogStoreRef};
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::{FutureExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;
use weir_checkpoint::{Checkpoint, LocalDisk, Location};
use weir_sql::config::DeltaConfig;

use crate::delta_guard::RemoveOnce;
use crate::delta_journal::{Journal, JournaledStore, PendingFile};
use crate::delta_schema::{check_table_properties, merge_columns, merged_metadata};
use crate::delta_upkeep;
use crate::error::{ConnectorError, Result};
use crate::{AppId, Compaction, Sink, SinkCommit};

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
    app_id: AppId,
    /// Highest batch id this query has committed to the table.
    recorded: Option<i64>,
    /// A local table's directory, the store rooted at it through which delta-rs writes and
    /// orphans are removed, and what syncs the files written.
    local: Option<(PathBuf, Arc<dyn ObjectStore>, Arc<LocalDisk>)>,
    /// An object store table's bucket store (built from the table's `storage.*` options),
    /// handed to delta-rs with the table's URL.
    remote: Option<Arc<dyn ObjectStore>>,
    journal: Journal,
    /// The schema of the files written, set by `open`: the query's output, or with
    /// `merge_schema` the table's columns followed by the output's new ones.
    schema: Option<SchemaRef>,
    /// With `merge_schema`, where each written column comes from: the output column of that
    /// name, or `None`, a column the query does not produce, written as NULL. `None` when
    /// the output is written as it is.
    placement: Option<Vec<Option<usize>>>,
    /// Columns the table declares NOT NULL: (index in the written schema, name).
    required: Vec<(usize, String)>,
    /// The batch being written.
    pending: Option<Pending>,
    /// Things the user should know that did not stop the query (a compaction skipped).
    warnings: Vec<String>,
    /// The newest version this sink committed. Appends write the log entry alone (see
    /// `commit_files`), so the table's loaded state stays at an older version.
    head: Option<i64>,
    /// The Delta checkpoint being written in the background: what went wrong, if anything.
    checkpointing: Option<tokio::task::JoinHandle<Option<String>>>,
}

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Bytes of rows queued to each Parquet encoder ([`queue_share`]): room for a whole row
/// group of narrow rows (256Ki rows of 44 bytes, `benches/engines`' events, are 11 MiB), so
/// that the batch loop deals the next row group to the other encoder while this one still
/// encodes its own. With four record batches queued (80,000 of those rows), the loop waited
/// on one encoder while the other had nothing left to encode: the two took turns, and a
/// batch's output ran at 1.3-1.45 cores (1.7 with the row group queued whole). A row group
/// of wider rows fills the queue before it is whole: memory stays bounded, and the encoders
/// overlap for less of it.
const WRITE_QUEUE_BYTES: usize = 16 << 20;

/// Parquet encoding tasks a batch's rows are dealt to, a row group at a time: a batch of more
/// than one row group is encoded on as many cores, into as many files. A fixed number, so
/// that the files a batch writes never depend on the machine or the thread count.
const ENCODERS: usize = 2;

/// The batch between `begin` and `finish`.
#[derive(Debug)]
struct Pending {
    batch_id: u64,
    rows: u64,
    /// `None` when the batch was committed before: its rows are dropped.
    writer: Option<FileWriter>,
}

/// The tasks that encode a batch's rows into Parquet files, and the queues to them. The rows
/// are dealt out a row group at a time: rows `[k * ROW_GROUP_ROWS, (k + 1) * ROW_GROUP_ROWS)`
/// go to encoder `k % ENCODERS`, each its own writer and files, so each file holds whole row
/// groups and which rows land in which file depends on the rows' order alone. An encoder
/// starts when its first rows come (a batch of one row group writes one file); the first
/// rows choose every file's column encodings. Dropped before `close` (the batch failed), it
/// stops the tasks: no file of theirs is completed.
#[derive(Debug)]
struct FileWriter {
    store: deltalake::logstore::ObjectStoreRef,
    schema: SchemaRef,
    partition_columns: Vec<String>,
    target_file_size: Option<NonZeroU64>,
    properties: Option<WriterProperties>,
    encoders: Vec<Encoder>,
    /// Rows dealt so far.
    rows: u64,
}

/// One encoder, the queue to it, and its cancellation: dropping `_cancel` (the batch failed)
/// stops it at its next step, and no file of its is completed.
#[derive(Debug)]
struct Encoder {
    /// First, so that it is dropped before the queue closes, which would let the encoder
    /// complete its files.
    _cancel: tokio::sync::oneshot::Sender<()>,
    /// Each record batch goes with its share of [`WRITE_QUEUE_BYTES`], given back once it
    /// is encoded.
    tx: Option<tokio::sync::mpsc::UnboundedSender<(RecordBatch, OwnedSemaphorePermit)>>,
    room: Arc<Semaphore>,
    task: Option<tokio::task::JoinHandle<deltalake::DeltaResult<Vec<Add>>>>,
}

impl FileWriter {
    /// Deals `batch`'s rows to the encoders; false when one has stopped (`close` says why).
    async fn send(&mut self, mut batch: RecordBatch) -> bool {
        if self.properties.is_none() {
            self.properties = Some(writer_properties_for(&batch));
        }
        while batch.num_rows() > 0 {
            let group = self.rows / ROW_GROUP_ROWS as u64;
            let room = (ROW_GROUP_ROWS as u64 - self.rows % ROW_GROUP_ROWS as u64) as usize;
            let now = match batch.num_rows() > room {
                true => {
                    let now = batch.slice(0, room);
                    batch = batch.slice(room, batch.num_rows() - room);
                    now
                }
                false => {
                    let empty = batch.slice(0, 0);
                    std::mem::replace(&mut batch, empty)
                }
            };
            let n = now.num_rows() as u64;
            let turn = (group % ENCODERS as u64) as usize;
            if turn == self.encoders.len() {
                let config = WriterConfig::new(
                    Arc::clone(&self.schema),
                    self.partition_columns.clone(),
                    self.properties.clone(),
                    self.target_file_size,
                    None,
                    Default::default(),
                    None,
                );
                self.encoders.push(Encoder::spawn(DeltaWriter::new(Arc::clone(&self.store), config)));
            }
            let encoder = &self.encoders[turn];
            let Some(tx) = &encoder.tx else { return false };
            let Ok(permit) = Arc::clone(&encoder.room).acquire_many_owned(queue_share(&now)).await else { return false };
            if tx.send((now, permit)).is_err() {
                return false;
            }
            self.rows += n;
        }
        true
    }

    /// Stops the encoders of a batch that will not commit, and waits for them: each drops
    /// its writer, which aborts the writer's uploads, before the query ends. Left to stop
    /// on their own, an upload could still run as weir exits, fail for want of the shut
    /// runtime's threads, and have delta-rs abort a file it had begun to flush, which
    /// panics inside object_store ("Already shut down"; delta-rs catches it, but the panic
    /// is printed).
    async fn abandon(self) {
        for Encoder { _cancel, tx, task, .. } in self.encoders {
            drop(_cancel);
            drop(tx);
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }

    /// Ends the queues and waits for the tasks' files, in the encoders' order.
    async fn close(mut self) -> std::result::Result<deltalake::DeltaResult<Vec<Add>>, tokio::task::JoinError> {
        self.encoders.iter_mut().for_each(|e| e.tx = None);
        let mut adds = Vec::new();
        for encoder in &mut self.encoders {
            match encoder.task.take().expect("open until closed").await? {
                Ok(files) => adds.extend(files),
                // The other tasks stop when dropped.
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(adds))
    }
}

impl Encoder {
    /// Starts an encoder on a thread of the blocking pool, which drives its writer with
    /// `Handle::block_on`. As a task, an encoder woken by the batch loop's send went to the
    /// loop's worker's LIFO slot, which no other worker may steal from: the loop and the
    /// encoders took turns on one core while the other had nothing to run (tokio's option
    /// to turn that slot off is unstable). The writer's own tasks (its uploads) still run
    /// on the runtime's workers.
    fn spawn(mut writer: DeltaWriter) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(RecordBatch, OwnedSemaphorePermit)>();
        let (cancel, mut cancelled) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            let encode = async move {
                while let Some((batch, permit)) = rx.recv().await {
                    if let Err(e) = writer.write(&batch).await {
                        let _ = writer.abort().await;
                        return Err(e);
                    }
                    drop(permit);
                }
                writer.close().await
            };
            // Dropped unfinished, like an aborted task, when the encoder is cancelled.
            runtime.block_on(async move {
                tokio::select! {
                    biased;
                    _ = &mut cancelled => Err(DeltaTableError::Generic("the batch's Parquet encoding was cancelled".to_string())),
                    written = encode => written,
                }
            })
        });
        Self { _cancel: cancel, tx: Some(tx), room: Arc::new(Semaphore::new(WRITE_QUEUE_BYTES)), task: Some(task) }
    }
}

/// A record batch's share of an encoder's queue ([`WRITE_QUEUE_BYTES`]): the bytes of its
/// arrays' values, at least 1 and at most the whole queue, which an encoder with nothing
/// queued always has room for. Counted as the arrays' slices, not their buffers: the
/// columns of a record batch read back from Arrow IPC (a deduplication's spilled
/// candidates) share one buffer, which `get_array_memory_size` counts once per column.
fn queue_share(batch: &RecordBatch) -> u32 {
    let bytes: usize = batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or_else(|_| c.get_array_memory_size())).sum();
    bytes.clamp(1, WRITE_QUEUE_BYTES) as u32
}

impl DeltaSink {
    /// A sink for the table at `config.path` (created on first write if absent). Its
    /// `delta.*` table properties are checked here, before anything runs. Nothing is
    /// created: a local table's directory is made when its first batch begins, so that a
    /// query refused at start, or one that never runs a batch, leaves none behind.
    pub fn new(name: &str, config: DeltaConfig, declared: Option<SchemaRef>) -> Result<Self> {
        check_table_properties(name, &config.sink.properties)?;
        let invalid = |e: weir_checkpoint::CheckpointError| ConnectorError::Config(format!("table '{name}': Delta table path {e}"));
        let (url, remote) = match weir_checkpoint::storage::local_dir(&config.path) {
            Some(_) => (Location::url_of(&config.path, &config.storage).map_err(invalid)?, None),
            None => {
                let location = Location::resolve_with(&config.path, false, &config.storage).map_err(invalid)?;
                let remote = location.is_object_store().then(|| Arc::clone(&location.store));
                (location.url, remote)
            }
        };
        let mut sink = Self {
            name: name.to_string(),
            config,
            url,
            declared,
            table: None,
            app_id: AppId::sink(""),
            recorded: None,
            local: None,
            remote,
            journal: Journal::default(),
            schema: None,
            placement: None,
            required: Vec::new(),
            pending: None,
            warnings: Vec::new(),
            head: None,
            checkpointing: None,
        };
        sink.attach_local_dir(false)?;
        Ok(sink)
    }

    /// For a local table, the store rooted at its directory and what syncs its files
    /// (`local`), once the directory exists: made here when `create` is set, else left
    /// alone until it is. In-memory tables (`memory://`) get no journaling store: they
    /// cannot outlive a crash.
    fn attach_local_dir(&mut self, create: bool) -> Result<()> {
        if self.local.is_some() || self.remote.is_some() || self.url.scheme() != "file" {
            return Ok(());
        }
        let Ok(dir) = self.url.to_file_path() else { return Ok(()) };
        let failed = |e: String| ConnectorError::Config(format!("table '{}': Delta table path {}: {e}", self.name, dir.display()));
        if !dir.exists() {
            if !create {
                return Ok(());
            }
            weir_checkpoint::durable::create_dir_all(&dir).map_err(|e| failed(format!("cannot create the directory: {e}")))?;
        }
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| failed(e.to_string()))?;
        let disk = LocalDisk::new(dir.clone());
        self.local = Some((dir, Arc::new(store) as Arc<dyn ObjectStore>, Arc::new(disk)));
        Ok(())
    }

    /// A handle on the table. A local table is `file:///` over a store rooted at its
    /// directory (see the module's notes), writing through the journal. Either kind writes
    /// its log through the guard that keeps a file from being removed twice
    /// (`delta_guard.rs`), which compactions need.
    fn builder(&self) -> deltalake::DeltaResult<DeltaTableBuilder> {
        match &self.local {
            Some((_, store, disk)) => {
                let root = Url::parse("file:///").expect("a valid URL");
                let store = JournaledStore::new(Arc::clone(store), self.journal.clone(), Arc::clone(disk));
                Ok(DeltaTableBuilder::from_url(root.clone())?.with_storage_backend(RemoveOnce::wrap(Arc::new(store)), root))
            }
            None => {
                let builder = DeltaTableBuilder::from_url(self.url.clone())?;
                Ok(match &self.remote {
                    Some(store) => builder.with_storage_backend(RemoveOnce::wrap(Arc::clone(store)), self.url.clone()),
                    None => builder,
                })
            }
        }
    }

    /// Reads the table's recorded transaction version for this sink again: the highest batch
    /// id committed under its app id (or the one an earlier weir used for the table).
    async fn refresh_recorded(&mut self) -> Result<()> {
        let Some(table) = self.table.as_ref() else { return Ok(()) };
        let snapshot = table.snapshot().map_err(|e| self.err("cannot read the table state", e))?;
        let mut recorded = None;
        for id in std::iter::once(&self.app_id.id).chain(&self.app_id.previous) {
            let version = snapshot
                .transaction_version(table.log_store().as_ref(), id)
                .await
                .map_err(|e| self.err("cannot read the recorded transaction version", e))?;
            recorded = recorded.max(version);
        }
        self.recorded = recorded;
        Ok(())
    }

    /// Removes the data files recorded in the journal that no readable version of the table
    /// references: files of batches that crashed before their commit, and of attempts that
    /// failed before another one committed. A recorded file that the table references now,
    /// or that a later commit removed (older versions still read it), stays. Paths are
    /// compared as the log's `add.path` decoded once: relative to the table.
    ///
    /// Only a runner that holds the checkpoint's lock sweeps: on an object store, where there
    /// is none, the files another runner is writing look the same as orphans, so they are
    /// left for VACUUM.
    async fn remove_orphans(&self, checkpoint: &Arc<Checkpoint>, dir: &str) -> Result<usize> {
        let Some((table_dir, store, _)) = &self.local else { return Ok(0) };
        if !checkpoint.holds_lock() {
            return Ok(0);
        }
        let mut records = Vec::new();
        for name in checkpoint.file_names(dir).await? {
            let relative = format!("{dir}/{name}");
            let Some(entry) = checkpoint.get_json::<PendingFile>(&relative).await? else { continue };
            match entry.table_relative(table_dir) {
                Some(file) => records.push((relative, file)),
                // Not a file of this table: nothing to remove.
                None => checkpoint.delete(&relative).await?,
            }
        }
        if records.is_empty() {
            return Ok(0);
        }
        let recorded: HashSet<&str> = records.iter().map(|(_, f)| f.as_str()).collect();
        let referenced = self.referenced(&recorded).await?;
        let mut removed = 0;
        for (relative, file) in &records {
            if !referenced.contains(file) {
                let path = Path::parse(file).map_err(|e| self.err(&format!("bad journal entry {}", checkpoint.show_entry(relative)), e))?;
                match store.delete(&path).await {
                    Ok(()) => removed += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(&format!("cannot remove orphan data file {}", table_dir.join(file).display()), e)),
                }
            }
            checkpoint.delete(relative).await?;
        }
        Ok(removed)
    }

    /// Which of `files` (relative to the table) a readable version of the table references:
    /// the current version's files, and the files later commits removed (the tombstones
    /// delta-rs keeps, as VACUUM does, until the retention period has passed).
    async fn referenced(&self, files: &HashSet<&str>) -> Result<HashSet<String>> {
        let Some(table) = &self.table else { return Ok(HashSet::new()) };
        let state = table.snapshot().map_err(|e| self.err("cannot read the table state", e))?;
        let log_store = table.log_store();
        let mut found = HashSet::new();
        let mut active = state.snapshot().file_views(log_store.as_ref(), None);
        while let Some(file) = active.try_next().await.map_err(|e| self.err("cannot list the table's files", e))? {
            if files.contains(file.path().as_ref()) {
                found.insert(file.path().into_owned());
            }
        }
        let mut removed = state.all_tombstones(log_store.as_ref());
        while let Some(file) = removed.try_next().await.map_err(|e| self.err("cannot list the table's removed files", e))? {
            if files.contains(file.path().as_ref()) {
                found.insert(file.path().into_owned());
            }
        }
        Ok(found)
    }

    /// Commits `adds` with `txn(query id, version)` in one Delta commit: an append to an
    /// existing table (with the schema the files need, when `merge_schema` adds columns), or
    /// the table's creation (protocol, metadata with the `delta.*` properties, and the files
    /// at once). Returns the table after, the version committed (`None`: the batch was found
    /// committed by an earlier attempt whose answer was lost), and how many times delta-rs
    /// retried the commit past other writers' commits.
    ///
    /// A plain append writes its log entry and nothing else: the bytes delta-rs's
    /// `CommitBuilder` writes, put-if-absent at the version after the newest this sink knows,
    /// checked against the loaded protocol first as delta-rs checks it. delta-rs would then
    /// bring its in-memory state up to the new version, replaying the file list once for
    /// every commit since the last Delta checkpoint (9 ms after a checkpoint, 43 ms 80
    /// commits later), and write every hundredth commit's checkpoint in the batch's time. A
    /// sink that only appends needs none of that: the table's protocol and metadata do not
    /// change under it, and when another writer took the version, the put fails and the
    /// commit goes through `CommitBuilder`, with its conflict checks, from the state brought
    /// up to date. Checkpoints and the clean-up of expired log entries run in a task of their
    /// own ([`spawn_checkpoint`]). A commit with a schema change, a table's creation, and
    /// every commit of a sink that compacts (which counts the table's small files) go
    /// through `CommitBuilder` and keep the state current.
    async fn commit_files(&self, table: DeltaTable, version: i64, adds: &[Add]) -> deltalake::DeltaResult<(DeltaTable, Option<i64>, u64)> {
        let txn = Transaction::new_with_last_update(&self.app_id.id, version, Some(now_ms()));
        // Checkpoints and log clean-up are weir's, off the batch's path.
        let properties = CommitProperties::default()
            .with_application_transaction(txn.clone())
            .with_create_checkpoint(false)
            .with_cleanup_expired_logs(Some(false));
        let mut actions: Vec<Action> = adds.iter().cloned().map(Action::Add).collect();
        let log_store = table.log_store();
        let schema = self.schema.clone().expect("begin checked");
        let columns: StructType = schema.as_ref().try_into_kernel()?;
        if table.snapshot().is_err() {
            let table = CreateBuilder::new()
                .with_log_store(log_store)
                .with_columns(columns.fields().cloned())
                .with_partition_columns(self.config.partition_by.clone())
                .with_configuration(self.config.sink.properties.iter().map(|(k, v)| (k.clone(), Some(v.clone()))))
                .with_actions(actions)
                // Never retried by delta-rs: when another writer made version 0 first, its
                // retry would commit this table's protocol and metadata again at a later
                // version, and every other writer's next append would fail with "Metadata
                // changed since last commit". The caller reloads and appends instead.
                .with_commit_properties(properties.with_max_retries(0))
                .with_save_mode(SaveMode::ErrorIfExists)
                .await?;
            return Ok((table, Some(0), 0));
        }
        let operation = |snapshot: &deltalake::table::state::DeltaTableState| {
            let partition_by = snapshot.metadata().partition_columns().to_vec();
            DeltaOperation::Write { mode: SaveMode::Append, partition_by: (!partition_by.is_empty()).then_some(partition_by), predicate: None }
        };
        let mut table = table;
        let snapshot = table.snapshot()?;
        let plain = merged_metadata(snapshot.metadata(), snapshot.schema().as_ref(), &columns)?.is_none();
        if plain && !self.config.sink.auto_compact && log_store.name() == "DefaultLogStore" {
            let next = self.head.unwrap_or(-1).max(snapshot.version() as i64) + 1;
            let operation = operation(snapshot);
            PROTOCOL.can_commit(snapshot, &actions, &operation)?;
            let bytes = CommitData::new(actions.clone(), operation, Default::default(), vec![txn]).get_bytes()?;
            match log_store.write_commit_entry(next as u64, CommitOrBytes::LogBytes(bytes), uuid::Uuid::new_v4()).await {
                Ok(()) => return Ok((table, Some(next), 0)),
                // The version is taken: by this very commit, when the store lost the answer
                // to the put and its client tried again, or by another writer. The state is
                // brought up to date; with this batch's txn in it the batch is done, else
                // the commit goes through the conflict checks.
                Err(TransactionError::VersionAlreadyExists(_)) => {
                    table.update_incremental(None).await?;
                    let state = table.snapshot()?;
                    if state.transaction_version(log_store.as_ref(), &self.app_id.id).await?.is_some_and(|v| v >= version) {
                        return Ok((table, None, 0));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let snapshot = table.snapshot()?;
        if let Some(metadata) = merged_metadata(snapshot.metadata(), snapshot.schema().as_ref(), &columns)? {
            actions.push(Action::Metadata(metadata));
        }
        let finalized = CommitBuilder::from(properties).with_actions(actions).build(Some(snapshot), log_store, operation(snapshot)).await?;
        let committed = finalized.version();
        // Reloaded rather than taken from the commit: the commit's snapshot is never rebuilt
        // from a newer Delta checkpoint, and gets slower with each commit.
        table.update_incremental(Some(committed)).await?;
        Ok((table, Some(committed as i64), finalized.metrics.num_retries))
    }

    /// The newest version of the table this sink knows.
    fn version(&self) -> Option<i64> {
        current_version(&self.table).max(self.head)
    }

    /// After the commit of `version`: takes the outcome of a finished background checkpoint,
    /// and starts one when `version` is a checkpoint version of the table (every
    /// `delta.checkpointInterval` commits, 100 by default, as delta-rs writes them) and none
    /// is being written. A checkpoint that is due while another is written is left to the
    /// next one: a checkpoint only saves readers work.
    fn checkpoint_after(&mut self, version: i64) {
        if self.checkpointing.as_ref().is_some_and(|t| t.is_finished()) {
            let done = self.checkpointing.take().expect("present");
            if let Some(Some(e)) = done.now_or_never().and_then(|r| r.ok()) {
                self.warnings.push(format!("table '{}': the Delta checkpoint written in the background failed (readers replay more of the log until the next one): {e}", self.name));
            }
        }
        let Some(table) = self.table.as_ref() else { return };
        let Ok(state) = table.snapshot() else { return };
        let config = state.table_config();
        let due = u64::try_from(version).is_ok_and(|v| (v + 1).is_multiple_of(config.checkpoint_interval().get()));
        if !due || self.checkpointing.is_some() {
            return;
        }
        let cleanup_before_ms = config.enable_expired_log_cleanup().then(|| now_ms() - config.log_retention_duration().as_millis() as i64);
        self.checkpointing = Some(spawn_checkpoint(table.log_store(), version as u64, cleanup_before_ms));
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> ConnectorError {
        // delta-rs reports a failed data-file upload as a Parquet "parse" failure.
        let e = e.to_string();
        let e = e.strip_prefix("Failed to parse parquet: External: ").unwrap_or(&e);
        ConnectorError::Delta(format!("Delta table '{}' at {}: {what}: {e}", self.name, self.url))
    }

    /// Opens the table if it exists; returns whether it does.
    async fn load(&mut self) -> Result<bool> {
        self.attach_local_dir(false)?;
        if self.table.is_none() && self.url.scheme() == "file" && self.local.is_none() {
            // A local table whose directory is not made yet.
            return Ok(false);
        }
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
        // Matched by name when the sink opens, not by position.
        if self.config.sink.merge_schema {
            return Ok(None);
        }
        let table = self.table.as_ref().expect("loaded");
        let snapshot = table.snapshot().map_err(|e| self.err("cannot read the table state", e))?;
        Ok(Some(snapshot.snapshot().arrow_schema()))
    }

    async fn open(&mut self, schema: &SchemaRef, app_id: &AppId, checkpoint: &Arc<Checkpoint>) -> Result<()> {
        self.app_id = app_id.clone();
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
                let table_schema = snapshot.snapshot().arrow_schema();
                let configuration = snapshot.metadata().configuration().clone();
                if self.config.sink.merge_schema {
                    let (written, placement) = merge_columns(&name, &self.url, &table_schema, schema)?;
                    self.schema = Some(written);
                    self.placement = Some(placement);
                } else {
                    let wanted_columns: StructType = schema.as_ref().try_into_kernel().map_err(|e| self.err("cannot write", e))?;
                    if columns_shape(snapshot.schema().as_ref()) != columns_shape(&wanted_columns) {
                        return Err(ConnectorError::Config(format!(
                            "the existing Delta table at {} has the columns ({}), but '{name}' writes ({}); weir writes nothing into a table of other columns: point it at a new path, or move the table away",
                            self.url,
                            describe_columns(&table_schema),
                            describe_columns(schema)
                        )));
                    }
                }
                // Properties are set when the sink creates a table, never changed after.
                for (key, value) in &self.config.sink.properties {
                    let existing = configuration.get(key);
                    if existing != Some(value) {
                        self.warnings.push(format!(
                            "table '{name}': option '{key}' = '{value}' is not applied: the existing Delta table at {} has {}, and weir sets table properties only when it creates a table",
                            self.url,
                            existing.map_or_else(|| "it unset".to_string(), |v| format!("'{v}'"))
                        ));
                    }
                }
                self.refresh_recorded().await?;
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
        let written = Arc::clone(self.schema.get_or_insert_with(|| Arc::clone(schema)));
        // Columns the table (or its declaration) holds NOT NULL, checked in every batch.
        let table_schema = self.table.as_ref().and_then(|t| t.snapshot().ok()).map(|s| s.snapshot().arrow_schema()).or_else(|| self.declared.clone());
        self.required = table_schema
            .map(|ts| {
                ts.fields().iter().filter(|f| !f.is_nullable()).filter_map(|f| Some((written.index_of(f.name()).ok()?, f.name().clone()))).collect()
            })
            .unwrap_or_default();
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
        self.attach_local_dir(true)?;
        let table = match self.table.take() {
            Some(t) => t,
            None if self.load().await? => self.table.take().expect("loaded"),
            None => self.builder().map_err(|e| self.err("cannot open", e))?.build().map_err(|e| self.err("cannot open", e))?,
        };
        let partition_columns = match table.snapshot() {
            Ok(s) => s.metadata().partition_columns().to_vec(),
            Err(_) => self.config.partition_by.clone(),
        };
        let target_file_size = self.config.target_file_size.and_then(NonZeroU64::new);
        let store = table.object_store();
        self.table = Some(table);
        self.journal.begin(batch_id);
        // Parquet encoding runs on threads of its own, beside the query making the next rows.
        let writer = FileWriter { store, schema, partition_columns, target_file_size, properties: None, encoders: Vec::new(), rows: 0 };
        self.pending = Some(Pending { batch_id, rows: 0, writer: Some(writer) });
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let Some(batch_id) = self.pending.as_ref().map(|p| p.batch_id) else { return Err(self.err("cannot write", "rows outside a batch")) };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let failed = || format!("batch {batch_id} was not committed");
        let schema = self.schema.as_ref().expect("begin checked");
        let columns: Vec<ArrayRef> = match &self.placement {
            None => batch.columns().to_vec(),
            // The table's columns by name, NULL where the query has none, cast where the
            // query's type is narrower.
            Some(placement) => {
                let mut columns = Vec::with_capacity(placement.len());
                for (field, from) in schema.fields().iter().zip(placement) {
                    columns.push(match from {
                        Some(i) if batch.column(*i).data_type() == field.data_type() => Arc::clone(batch.column(*i)),
                        Some(i) => arrow::compute::cast(batch.column(*i), field.data_type())
                            .map_err(|e| self.err(&failed(), format!("column '{}': {e}", field.name())))?,
                        None => new_null_array(field.data_type(), batch.num_rows()),
                    });
                }
                columns
            }
        };
        for (i, column) in &self.required {
            if columns[*i].null_count() > 0 {
                return Err(self.err(&failed(), format!("column '{column}' is NOT NULL in the table, and the query wrote a NULL to it")));
            }
        }
        let batch = match self.placement.is_none() && batch.schema() == *schema {
            true => batch,
            // The plan may label nullability or metadata differently.
            false => RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| self.err(&failed(), e))?,
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
            return Ok(SinkCommit { rows: 0, written: false, version: self.version(), compaction: None, commit_retries: 0 });
        };
        let failed = format!("batch {batch_id} was not committed");
        let adds = match writer.close().await {
            Ok(Ok(adds)) => adds,
            Ok(Err(e)) => return Err(self.err(&failed, e)),
            Err(e) => return Err(self.err(&failed, e)),
        };
        // A batch without rows commits nothing, but the first batch of a table that does not
        // exist yet creates it (its schema and this batch's `txn`, no files), as Spark's
        // Delta sink does: once a query has run a batch, every reader finds its table.
        if adds.is_empty() && !self.awaits_creation() {
            self.journal.finish().await;
            return Ok(SinkCommit { rows: 0, written: false, version: self.version(), compaction: None, commit_retries: 0 });
        }
        let version = batch_id as i64;
        // Another writer may commit between our read of the table and our commit (Delta's
        // optimistic concurrency; delta-rs retries blind appends itself, and a log entry is
        // written put-if-absent, so no version is ever overwritten). When the table did not
        // exist and another writer created it first, or a commit conflicted (another runner
        // committed this query's txn, say), reload, check the batch is still ours to write,
        // and commit the same files again.
        let mut attempt = 0;
        let commit_retries = loop {
            attempt += 1;
            let table = self.table.take().expect("begin opened the table");
            let creating = table.snapshot().is_err();
            match self.commit_files(table, version, &adds).await {
                Ok((table, None, _)) => {
                    // Committed already, by an attempt whose answer was lost: as below.
                    self.table = Some(table);
                    self.recorded = Some(version);
                    return Ok(SinkCommit { rows: 0, written: false, version: self.version(), compaction: None, commit_retries: 0 });
                }
                Ok((table, Some(committed), retried)) => {
                    self.table = Some(table);
                    self.head = self.head.max(Some(committed));
                    // delta-rs's own retries, and ours.
                    break retried + u64::from(attempt - 1);
                }
                Err(e) if attempt < MAX_COMMIT_ATTEMPTS => {
                    // A conflict is retried at once; another failure (the store's answer
                    // lost, say, when the commit may have landed) after a pause.
                    if !(creating || is_conflict(&e)) {
                        tokio::time::sleep(std::time::Duration::from_millis(100 << attempt.min(6))).await;
                    }
                    self.table = None;
                    match self.load().await {
                        Ok(true) => {}
                        Ok(false) if !creating => return Err(self.err(&failed, e)),
                        Ok(false) => {
                            self.table = Some(self.builder().and_then(|b| b.build()).map_err(|e| self.err("cannot open", e))?);
                            continue;
                        }
                        Err(_) => return Err(self.err(&failed, e)),
                    }
                    self.refresh_recorded().await?;
                    if self.recorded.is_some_and(|r| r >= version) {
                        // Committed already: by this attempt, whose answer was lost, or by
                        // another runner of this query, whose files are then the table's and
                        // these orphans (the journal keeps them for the sweep, on local disk;
                        // VACUUM removes them on an object store).
                        return Ok(SinkCommit { rows: 0, written: false, version: self.version(), compaction: None, commit_retries: 0 });
                    }
                }
                Err(e) => return Err(self.err(&failed, e)),
            }
        };
        // The commit is in the log; its files' records are not cleared yet.
        crate::failpoint::hit("after_delta_commit", batch_id);
        self.journal.finish().await;
        self.recorded = Some(version);
        let committed = self.version();
        if let Some(committed) = committed {
            self.checkpoint_after(committed);
        }
        let compaction = match self.config.sink.auto_compact {
            true => self.auto_compact(batch_id).await,
            false => None,
        };
        Ok(SinkCommit { rows, written: true, version: committed, compaction, commit_retries })
    }

    fn awaits_creation(&self) -> bool {
        self.table.as_ref().is_none_or(|t| t.snapshot().is_err())
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Stops the encoding of a batch that never committed (the query failed or stopped in
    /// it; see [`FileWriter::abandon`]), then waits for the Delta checkpoint being written in
    /// the background, if any.
    async fn close(&mut self) -> Result<()> {
        if let Some(Pending { writer: Some(writer), .. }) = self.pending.take() {
            writer.abandon().await;
        }
        if let Some(task) = self.checkpointing.take()
            && let Ok(Some(e)) = task.await
        {
            return Err(self.err("cannot write the Delta checkpoint", e));
        }
        Ok(())
    }
}

impl DeltaSink {
    /// After batch `batch_id`'s commit: compacts the table's small files when there are at
    /// least `auto_compact_min_files` of them (in partitions holding two or more), in a
    /// commit of its own, without a `txn`, with `dataChange = false` on its actions.
    ///
    /// The batch is committed already, with its `txn`, so whatever happens here cannot undo
    /// or repeat it: a compaction that fails, or that conflicts with another writer's (a
    /// `weir optimize`, another query's compaction; see `delta_guard.rs`), commits nothing
    /// and is skipped with a warning, and the next batch tries again. Its files are recorded
    /// in the journal like a batch's, so those of a compaction that never committed are
    /// removed at the next start. The table is reloaded afterwards either way.
    async fn auto_compact(&mut self, batch_id: u64) -> Option<Compaction> {
        let table = self.table.as_ref()?;
        let state = table.snapshot().ok()?;
        let target = delta_upkeep::target_size(self.config.target_file_size, state);
        let small = delta_upkeep::small_files(state, target);
        if small < self.config.sink.auto_compact_min_files.unwrap_or(delta_upkeep::DEFAULT_MIN_FILES) {
            return None;
        }
        self.journal.begin_compaction();
        let done = match delta_upkeep::compact(table, target).await {
            Ok((table, metrics)) if metrics.num_files_removed > 0 => {
                self.journal.finish().await;
                Some(Compaction {
                    files_removed: metrics.num_files_removed,
                    files_added: metrics.num_files_added,
                    version: table.version().map(|v| v as i64),
                })
            }
            Ok(_) => {
                self.journal.finish().await;
                None
            }
            Err(e) => {
                // Its records stay: files it wrote are orphans the next start removes.
                self.journal.abandon();
                self.warnings.push(format!(
                    "table '{}': compaction after batch {batch_id} skipped, nothing of it was committed (the next batch tries again): {}",
                    self.name,
                    self.err("optimize", e)
                ));
                None
            }
        };
        // The sink's handle is the table as it was before: bring it up to date.
        if let Some(table) = self.table.as_mut()
            && let Err(e) = table.update_incremental(None).await
        {
            self.warnings.push(format!("table '{}': cannot reload the table after compacting it ({e}); the next batch opens it again", self.name));
            self.table = None;
        }
        done
    }
}

/// How weir writes Parquet, a batch's files and compacted ones alike: snappy, statistics, and
/// row groups of at most 256Ki rows (parquet-rs defaults to 1Mi; DuckDB writes 122,880), since
/// the writer holds a row group in memory until it is complete.
pub(crate) fn writer_properties() -> WriterProperties {
    properties_builder().build()
}

fn properties_builder() -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_created_by(format!("weir {} (delta-rs)", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
}

/// Rows of a batch's first rows looked at to choose its columns' encodings.
const ENCODING_SAMPLE_ROWS: usize = 8192;

/// [`writer_properties`] with each column's encoding chosen from `first`, the first rows of a
/// batch: a column whose sampled values are nearly all distinct (event ids, amounts,
/// timestamps to the microsecond) is written plain. Parquet's default dictionary encoding
/// interns every value, which costs a hash and a probe per value and, for such a column,
/// only grows a dictionary the writer gives up on when it outgrows its page. The other
/// columns keep the dictionary. A plain column whose sampled values snappy shrinks by less
/// than a fifth (random ids: UUIDs shrink by 9%, hashes by less) is also written
/// uncompressed: snappy is at its slowest on such bytes (a tenth of a 2M-row run's CPU for
/// UUID ids) and saves next to nothing. Every Parquet reader reads an uncompressed column chunk. Only the files'
/// encodings depend on the sample, never the rows they hold.
pub(crate) fn writer_properties_for(first: &RecordBatch) -> WriterProperties {
    let rows = first.num_rows().min(ENCODING_SAMPLE_ROWS);
    let mut builder = properties_builder();
    // A few rows tell nothing of a column's values.
    if rows >= 1024 {
        for (field, column) in first.schema().fields().iter().zip(first.columns()) {
            let sample = column.slice(0, rows);
            if mostly_distinct(&sample) {
                let path = || parquet::schema::types::ColumnPath::from(field.name().as_str());
                builder = builder.set_column_dictionary_enabled(path(), false);
                if !compresses(&sample) {
                    builder = builder.set_column_compression(path(), Compression::UNCOMPRESSED);
                }
            }
        }
    }
    builder.build()
}

/// A column's values as bytes, nulls as `None`.
type Values<'a> = Box<dyn Iterator<Item = Option<&'a [u8]>> + 'a>;

/// A column's values as bytes, for the choices above: fixed-width values (true) or lengths
/// and bytes (false, strings and binaries); `None` for other types. `data` is the column's.
fn column_values<'a>(column: &'a arrow::array::ArrayRef, data: &'a arrow::array::ArrayData) -> Option<(bool, Values<'a>)> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType as A;
    Some(match column.data_type() {
        t if t.is_primitive() => {
            let width = t.primitive_width()?;
            let values = &data.buffers()[0].as_slice()[data.offset() * width..(data.offset() + data.len()) * width];
            (true, Box::new(values.chunks_exact(width).map(Some)))
        }
        A::Utf8 => (false, Box::new(column.as_string::<i32>().iter().map(|v| v.map(str::as_bytes)))),
        A::LargeUtf8 => (false, Box::new(column.as_string::<i64>().iter().map(|v| v.map(str::as_bytes)))),
        A::Utf8View => (false, Box::new(column.as_string_view().iter().map(|v| v.map(str::as_bytes)))),
        A::Binary => (false, Box::new(column.as_binary::<i32>().iter())),
        A::LargeBinary => (false, Box::new(column.as_binary::<i64>().iter())),
        A::BinaryView => (false, Box::new(column.as_binary_view().iter())),
        _ => return None,
    })
}

/// Whether snappy shrinks `column`'s values, as Parquet's plain encoding lays them out, by a
/// fifth or more (primitive, string and binary columns; others are taken to compress).
fn compresses(column: &arrow::array::ArrayRef) -> bool {
    let data = column.to_data();
    let Some((fixed, values)) = column_values(column, &data) else { return true };
    let mut plain = Vec::new();
    for v in values.flatten() {
        if !fixed {
            plain.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        plain.extend_from_slice(v);
    }
    if plain.is_empty() {
        return true;
    }
    match snap::raw::Encoder::new().compress_vec(&plain) {
        Ok(compressed) => compressed.len() * 5 <= plain.len() * 4,
        Err(_) => true,
    }
}

/// Whether at least 90% of `column`'s values are distinct (primitive, string and binary
/// columns; others are left to the dictionary).
fn mostly_distinct(column: &arrow::array::ArrayRef) -> bool {
    let data = column.to_data();
    let Some((_, values)) = column_values(column, &data) else { return false };
    let rows = column.len();
    let mut seen: std::collections::HashSet<Option<&[u8]>, _> = std::collections::HashSet::with_capacity_and_hasher(rows, foldhash::fast::FixedState::default());
    let distinct = values.filter(|v| seen.insert(*v)).count();
    distinct * 10 >= rows * 9
}

/// The names and Delta types of `columns`, in order, nullability aside (the sink checks NOT
/// NULL columns in every batch): two schemas with the same shape fit each other.
pub(crate) fn columns_shape(columns: &StructType) -> Vec<(String, String)> {
    fn shape(t: &DeltaType) -> String {
        match t {
            DeltaType::Array(a) => format!("array<{}>", shape(a.element_type())),
            DeltaType::Map(m) => format!("map<{},{}>", shape(m.key_type()), shape(m.value_type())),
            DeltaType::Struct(s) => format!("struct<{}>", columns_shape(s).iter().map(|(n, t)| format!("{n}:{t}")).collect::<Vec<_>>().join(",")),
            other => format!("{other:?}"),
        }
    }
    columns.fields().map(|f| (f.name().clone(), shape(f.data_type()))).collect()
}

/// `name TYPE, ...` of `schema`.
fn describe_columns(schema: &SchemaRef) -> String {
    schema.fields().iter().map(|f| format!("{} {}", f.name(), weir_sql::types::sql_name(f.data_type()))).collect::<Vec<_>>().join(", ")
}

/// Whether a commit failed because another writer's commit came first in a way delta-rs
/// does not retry itself (the same txn app id, a version taken, retries used up).
fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction { source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_) | TransactionError::VersionAlreadyExists(_) }
    )
}

/// Writes the table's Delta checkpoint at `version` and then, with `cleanup_before_ms`, removes
/// the log entries the checkpoint lets expire (older than that time), in a task of its own
/// while the sink goes on committing: what went wrong, if anything. The checkpoint is of
/// `version` whatever was committed since, as delta-rs's post-commit hook writes it.
fn spawn_checkpoint(log_store: LogStoreRef, version: u64, cleanup_before_ms: Option<i64>) -> tokio::task::JoinHandle<Option<String>> {
    tokio::spawn(async move {
        let run = async {
            let root = log_store.transaction_url(None)?;
            let engine = log_store.engine(None);
            let building = Arc::clone(&engine);
            let snapshot =
                tokio::task::spawn_blocking(move || delta_kernel::Snapshot::builder_for(root).at_version(version).build(building.as_ref()))
                    .await
                    .map_err(|e| DeltaTableError::Generic(e.to_string()))??;
            snapshot.checkpoint(engine.as_ref(), None)?;
            if let Some(cutoff) = cleanup_before_ms {
                deltalake::checkpoints::cleanup_expired_logs_for(version, log_store.as_ref(), cutoff, None).await?;
            }
            Ok::<_, DeltaTableError>(())
        };
        run.await.err().map(|e| e.to_string())
    })
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The table's version, when it exists.
fn current_version(table: &Option<DeltaTable>) -> Option<i64> {
    table.as_ref().and_then(DeltaTable::version).map(|v| v as i64)
}

#[cfg(test)]
mod tests;
