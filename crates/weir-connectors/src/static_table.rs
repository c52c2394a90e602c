//! Static tables: a Delta table or a directory of Parquet files, read by batch queries as
//! they are now (the shell's and Python's `SELECT` over a pipeline's output), and rows a
//! program registered (Python's `session.register_table`). They are registered in a
//! DataFusion context that the planner runs the query in.
//!
//! A streaming query that joins a stream with a static table reads the table whole through
//! [`JoinedTable`]: a Delta table at a given version, a Parquet directory once.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::prelude::SessionContext;
use weir_checkpoint::Location;
use weir_sql::config::ConnectorConfig;

use crate::error::{ConnectorError, Result};

/// Registers table `name` (`config` must be static: delta or parquet) in `ctx`, as the data
/// is now.
pub async fn register_static(ctx: &SessionContext, name: &str, config: &ConnectorConfig) -> Result<()> {
    let (provider, _, failed) = open(ctx, name, config).await?;
    ctx.register_table(name, provider).map_err(|e| failed(&e))?;
    Ok(())
}

/// A closure that turns an error into one naming the table and where it is.
type Failed = Box<dyn Fn(&dyn std::fmt::Display) -> ConnectorError + Send + Sync>;

/// Opens static table `name` for reading in `ctx`: its provider (a Delta table at its latest
/// version), the Delta table itself, and how to report errors about it.
async fn open(
    ctx: &SessionContext,
    name: &str,
    config: &ConnectorConfig,
) -> Result<(Arc<dyn datafusion::catalog::TableProvider>, Option<deltalake::DeltaTable>, Failed)> {
    let (path, what) = match config {
        ConnectorConfig::Delta(c) => (&c.path, "Delta table"),
        ConnectorConfig::Parquet(c) => (&c.path, "Parquet directory"),
        other => {
            return Err(ConnectorError::Config(format!(
                "table '{name}' (connector '{}') is a stream, not a static table; only 'delta' and 'parquet' tables are read by batch queries",
                other.name()
            )));
        }
    };
    if !path.contains("://") && !std::path::Path::new(path).exists() {
        let hint = match config {
            ConnectorConfig::Delta(_) => " yet (a pipeline creates it on its first batch)",
            _ => "",
        };
        return Err(ConnectorError::Config(format!("table '{name}': no {what} at {path}{hint}")));
    }
    let location = Location::resolve_with(path, false, &config.storage())
        .map_err(|e| ConnectorError::Config(format!("table '{name}': {what} {e}; fix option 'path'")))?;
    let (table_name, url) = (name.to_string(), location.url.clone());
    let failed: Failed =
        Box::new(move |e: &dyn std::fmt::Display| ConnectorError::Io(format!("table '{table_name}': cannot read the {what} at {url}: {e}")));
    let mut delta = None;
    let provider: Arc<dyn datafusion::catalog::TableProvider> = match config {
        ConnectorConfig::Delta(_) => {
            let mut builder = deltalake::DeltaTableBuilder::from_url(location.url.clone()).map_err(|e| failed(&e))?;
            if location.is_object_store() {
                builder = builder.with_storage_backend(Arc::clone(&location.store), location.url.clone());
            }
            let table = builder.load().await.map_err(|e| match e {
                deltalake::DeltaTableError::NotATable(_) | deltalake::DeltaTableError::InvalidTableLocation(_) => {
                    ConnectorError::Config(format!("table '{name}': no Delta table at {} yet (a pipeline creates it on its first batch)", location.url))
                }
                e => failed(&e),
            })?;
            table.update_datafusion_session(&ctx.state()).map_err(|e| failed(&e))?;
            let provider = table.table_provider().await.map_err(|e| failed(&e))?;
            delta = Some(table);
            provider
        }
        _ => {
            let url = ListingTableUrl::parse(location.url.as_str()).map_err(|e| failed(&e))?;
            if location.is_object_store() {
                ctx.register_object_store(url.object_store().as_ref(), Arc::clone(&location.store));
            }
            let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
            let schema = options.infer_schema(&ctx.state(), &url).await.map_err(|e| failed(&e))?;
            let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
            Arc::new(ListingTable::try_new(config).map_err(|e| failed(&e))?)
        }
    };
    Ok((provider, delta, failed))
}

/// A static table a streaming query joins with, read whole into memory: a Delta table at a
/// given version, or a Parquet directory (which has no versions: weir reads it once).
pub struct JoinedTable {
    name: String,
    /// A context of one partition, where the table's object store is registered: the rows
    /// come in the table's file order.
    ctx: SessionContext,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
    /// The Delta table, at the version last read (or opened).
    delta: Option<deltalake::DeltaTable>,
    failed: Failed,
}

impl std::fmt::Debug for JoinedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedTable").field("name", &self.name).field("version", &self.delta.as_ref().and_then(|d| d.version())).finish()
    }
}

impl JoinedTable {
    /// Opens static table `name` (connector `delta` or `parquet`); a Delta table at its
    /// latest version.
    pub async fn open(name: &str, config: &ConnectorConfig) -> Result<Self> {
        let ctx = SessionContext::new_with_config(datafusion::prelude::SessionConfig::new().with_target_partitions(1));
        let (provider, delta, failed) = open(&ctx, name, config).await?;
        Ok(Self { name: name.to_string(), ctx, provider, delta, failed })
    }

    /// The table's columns, as [`JoinedTable::read`] returns them.
    pub fn schema(&self) -> SchemaRef {
        self.provider.schema()
    }

    /// Whether the table has versions (a Delta table) or is read once (Parquet).
    pub fn has_versions(&self) -> bool {
        self.delta.is_some()
    }

    /// The table's newest version (a listing of its Delta log); `None` for Parquet.
    pub async fn latest_version(&self) -> Result<Option<i64>> {
        let Some(table) = &self.delta else { return Ok(None) };
        let version = table.get_latest_version().await.map_err(|e| (self.failed)(&e))?;
        Ok(Some(version as i64))
    }

    /// Every row of the table at `version` (a Delta table; `None`: the version opened), or
    /// of the Parquet directory.
    pub async fn read(&mut self, version: Option<i64>) -> Result<Vec<RecordBatch>> {
        if let (Some(table), Some(version)) = (self.delta.as_mut(), version)
            && table.version() != Some(version as u64)
        {
            let wanted = u64::try_from(version).map_err(|_| ConnectorError::Config(format!("table '{}': there is no Delta version {version}", self.name)))?;
            table.load_version(wanted).await.map_err(|e| {
                ConnectorError::Delta(format!(
                    "table '{}': cannot read version {version} of the Delta table at {} ({e}); a replayed batch must join with the version it was first run with, so its log entries and files must still be there",
                    self.name,
                    table.table_url()
                ))
            })?;
            self.provider = table.table_provider().await.map_err(|e| (self.failed)(&e))?;
        }
        let frame = self.ctx.read_table(Arc::clone(&self.provider)).map_err(|e| (self.failed)(&e))?;
        frame.collect().await.map_err(|e| (self.failed)(&e))
    }
}

/// Registers `rows` as table `name` in `ctx`, without copying them (a DataFusion
/// `MemTable` shares the batches' buffers). `rows` must all have `schema`.
pub fn register_rows(ctx: &SessionContext, name: &str, schema: SchemaRef, rows: Vec<RecordBatch>) -> Result<()> {
    let table = MemTable::try_new(schema, vec![rows]).map_err(|e| ConnectorError::Config(format!("table '{name}': {e}")))?;
    ctx.register_table(name, Arc::new(table)).map_err(|e| ConnectorError::Config(format!("table '{name}': {e}")))?;
    Ok(())
}
