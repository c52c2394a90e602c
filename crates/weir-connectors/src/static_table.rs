//! Static tables: a Delta table or a directory of Parquet files, read by batch queries as
//! they are now (the shell's and Python's `SELECT` over a pipeline's output), and rows a
//! program registered (Python's `session.register_table`). They are registered in a
//! DataFusion context that the planner runs the query in.

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
    let failed = |e: &dyn std::fmt::Display| ConnectorError::Io(format!("table '{name}': cannot read the {what} at {}: {e}", location.url));
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
            table.table_provider().await.map_err(|e| failed(&e))?
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
    ctx.register_table(name, provider).map_err(|e| failed(&e))?;
    Ok(())
}

/// Registers `rows` as table `name` in `ctx`, without copying them (a DataFusion
/// `MemTable` shares the batches' buffers). `rows` must all have `schema`.
pub fn register_rows(ctx: &SessionContext, name: &str, schema: SchemaRef, rows: Vec<RecordBatch>) -> Result<()> {
    let table = MemTable::try_new(schema, vec![rows]).map_err(|e| ConnectorError::Config(format!("table '{name}': {e}")))?;
    ctx.register_table(name, Arc::new(table)).map_err(|e| ConnectorError::Config(format!("table '{name}': {e}")))?;
    Ok(())
}
