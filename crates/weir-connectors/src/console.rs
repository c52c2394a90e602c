//! The console sink: prints each batch as a table on standard output, as Spark's does.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use async_trait::async_trait;
use weir_sql::config::ConsoleConfig;

use crate::error::{ConnectorError, Result};
use crate::{Sink, SinkCommit};

/// Prints up to `max_rows` rows of each batch.
#[derive(Debug)]
pub struct ConsoleSink {
    name: String,
    config: ConsoleConfig,
    declared: Option<SchemaRef>,
    /// The batch being written: its id, the rows to show (at most `max_rows`) and the count.
    pending: Option<(u64, Vec<RecordBatch>, u64)>,
}

impl ConsoleSink {
    /// A console sink.
    pub fn new(name: &str, config: ConsoleConfig, declared: Option<SchemaRef>) -> Self {
        Self { name: name.to_string(), config, declared, pending: None }
    }
}

#[async_trait]
impl Sink for ConsoleSink {
    fn description(&self) -> String {
        format!("ConsoleSink[{}]", self.name)
    }

    async fn target_schema(&mut self) -> Result<Option<SchemaRef>> {
        Ok(self.declared.clone())
    }

    async fn open(&mut self, _schema: &SchemaRef, _app_id: &crate::AppId, _checkpoint: &std::sync::Arc<weir_checkpoint::Checkpoint>) -> Result<()> {
        Ok(())
    }

    async fn begin(&mut self, batch_id: u64) -> Result<()> {
        self.pending = Some((batch_id, Vec::new(), 0));
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let Some((_, shown, rows)) = &mut self.pending else {
            return Err(ConnectorError::Io("rows written outside a batch (no begin)".to_string()));
        };
        let left = (self.config.max_rows as u64).saturating_sub(*rows) as usize;
        if left > 0 {
            shown.push(batch.slice(0, left.min(batch.num_rows())));
        }
        *rows += batch.num_rows() as u64;
        Ok(())
    }

    #[allow(clippy::print_stdout)]
    async fn finish(&mut self) -> Result<SinkCommit> {
        let Some((batch_id, shown, rows)) = self.pending.take() else {
            return Err(ConnectorError::Io("finish without begin".to_string()));
        };
        let table = pretty_format_batches(&shown).map_err(|e| ConnectorError::Io(e.to_string()))?;
        println!("-------------------------------------------\nBatch: {batch_id}\n-------------------------------------------\n{table}");
        if rows as usize > self.config.max_rows {
            println!("only showing top {} of {rows} rows", self.config.max_rows);
        }
        Ok(SinkCommit { rows, written: true, version: None, compaction: None, commit_retries: 0 })
    }
}
