//! The memory sink: each batch's rows kept in the session, for the shell, Python and tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;

use crate::error::Result;
use crate::{Buffered, Sink, SinkCommit};

/// The rows of one memory table, by batch.
#[derive(Debug, Default, Clone)]
pub struct MemoryTable {
    /// Output schema, once known.
    pub schema: Option<SchemaRef>,
    /// `(batch id, rows)` in commit order.
    pub batches: Vec<(u64, Vec<RecordBatch>)>,
}

/// All memory tables of a session, by table name.
pub type MemoryTables = Arc<Mutex<HashMap<String, MemoryTable>>>;

/// Appends batches to a [`MemoryTable`]; a batch id seen before is skipped.
#[derive(Debug)]
pub struct MemorySink {
    name: String,
    declared: Option<SchemaRef>,
    tables: MemoryTables,
    pending: Buffered,
}

impl MemorySink {
    /// A sink writing to `tables[name]`.
    pub fn new(name: &str, declared: Option<SchemaRef>, tables: MemoryTables) -> Self {
        Self { name: name.to_string(), declared, tables, pending: Buffered::default() }
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn description(&self) -> String {
        format!("MemorySink[{}]", self.name)
    }

    async fn target_schema(&mut self) -> Result<Option<SchemaRef>> {
        Ok(self.declared.clone())
    }

    async fn open(&mut self, schema: &SchemaRef, _app_id: &crate::AppId, _checkpoint: &std::sync::Arc<weir_checkpoint::Checkpoint>) -> Result<()> {
        let mut tables = self.tables.lock().expect("memory tables lock");
        tables.entry(self.name.clone()).or_default().schema = Some(Arc::clone(schema));
        Ok(())
    }

    async fn begin(&mut self, batch_id: u64) -> Result<()> {
        self.pending.begin(batch_id);
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.pending.write(batch)
    }

    async fn finish(&mut self) -> Result<SinkCommit> {
        let (batch_id, batches) = self.pending.take()?;
        let mut tables = self.tables.lock().expect("memory tables lock");
        let table = tables.entry(self.name.clone()).or_default();
        if table.batches.last().is_some_and(|(id, _)| *id >= batch_id) {
            return Ok(SinkCommit::default());
        }
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        table.batches.push((batch_id, batches));
        Ok(SinkCommit { rows, written: true, version: None, compaction: None, commit_retries: 0 })
    }
}
