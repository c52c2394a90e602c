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
}

impl ConsoleSink {
    /// A console sink.
    pub fn new(name: &str, config: ConsoleConfig, declared: Option<SchemaRef>) -> Self {
        Self { name: name.to_string(), config, declared }
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

    async fn open(&mut self, _schema: &SchemaRef, _query_id: &str, _checkpoint: &std::sync::Arc<weir_checkpoint::Checkpoint>) -> Result<()> {
        Ok(())
    }

    #[allow(clippy::print_stdout)]
    async fn commit(&mut self, batch_id: u64, batches: Vec<RecordBatch>) -> Result<SinkCommit> {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut shown = Vec::new();
        let mut left = self.config.max_rows;
        for b in &batches {
            if left == 0 {
                break;
            }
            let take = left.min(b.num_rows());
            shown.push(b.slice(0, take));
            left -= take;
        }
        let table = pretty_format_batches(&shown).map_err(|e| ConnectorError::Io(e.to_string()))?;
        println!("-------------------------------------------\nBatch: {batch_id}\n-------------------------------------------\n{table}");
        if rows as usize > self.config.max_rows {
            println!("only showing top {} of {rows} rows", self.config.max_rows);
        }
        Ok(SinkCommit { rows, written: true, version: None })
    }
}
