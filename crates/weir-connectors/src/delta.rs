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
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::{ObjectStore, ObjectStoreExt};
use object_store::path::Path;
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
        self.remove_orphans(checkpoint, &journal_dir).await?;
        self.journal.attach(checkpoint, journal_dir);
        Ok(())
    }

    async fn commit(&mut self, batch_id: u64, batches: Vec<RecordBatch>) -> Result<SinkCommit> {
        let version = batch_id as i64;
        if self.recorded.is_some_and(|r| r >= version) {
            return Ok(SinkCommit { rows: 0, written: false, version: self.table.as_ref().and_then(DeltaTable::version).map(|v| v as i64) });
        }
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows == 0 {
            return Ok(SinkCommit { rows: 0, written: false, version: self.table.as_ref().and_then(DeltaTable::version).map(|v| v as i64) });
        }
        // Another writer may commit between our read of the table and our commit (Delta's
        // optimistic concurrency). A conflicting commit wrote nothing: reload, check the
        // batch is still ours to write, and try again.
        let mut attempt = 0;
        let table = loop {
            attempt += 1;
            let table = match self.table.take() {
                Some(t) => t,
                None if self.load().await? => self.table.take().expect("loaded"),
                None => self.builder().map_err(|e| self.err("cannot open", e))?.build().map_err(|e| self.err("cannot open", e))?,
            };
            self.journal.begin(batch_id);
            let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let txn = Transaction::new_with_last_update(&self.app_id, version, Some(now_ms));
            let mut write = table
                .write(batches.clone())
                .with_save_mode(SaveMode::Append)
                .with_commit_properties(CommitProperties::default().with_application_transaction(txn));
            if !self.config.partition_by.is_empty() {
                write = write.with_partition_columns(self.config.partition_by.clone());
            }
            if let Some(size) = self.config.target_file_size.and_then(NonZeroU64::new) {
                write = write.with_target_file_size(Some(size));
            }
            match write.await {
                Ok(table) => break table,
                Err(DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_)) if attempt < MAX_COMMIT_ATTEMPTS => {
                    // The attempt's files were never committed: remove them now.
                    if let Some(root) = &self.root {
                        self.journal.abort(root.as_ref()).await;
                    }
                    if self.load().await? {
                        self.refresh_recorded().await?;
                        if self.recorded.is_some_and(|r| r >= version) {
                            return Ok(SinkCommit { rows: 0, written: false, version: self.table.as_ref().and_then(DeltaTable::version).map(|v| v as i64) });
                        }
                    }
                }
                Err(e) => return Err(self.err(&format!("batch {batch_id} was not committed"), e)),
            }
        };
        self.journal.finish().await;
        let table_version = table.version().map(|v| v as i64);
        self.table = Some(table);
        self.recorded = Some(version);
        Ok(SinkCommit { rows, written: true, version: table_version })
    }
}
