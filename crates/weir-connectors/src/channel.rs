//! The channel sink: each committed batch's rows go to a channel, for live previews (the
//! shell's `SELECT ... FROM <stream>`, Python's `stream()`). The receiver sees a batch only
//! once the batch is done, as a reader of a table would; a slow receiver holds the query
//! back (the channel is bounded) rather than letting rows pile up in memory.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::{Buffered, Sink, SinkCommit};

/// One batch as a preview receives it.
#[derive(Debug, Clone)]
pub struct PreviewBatch {
    /// The batch id.
    pub batch_id: u64,
    /// Its rows, in the query's output schema (maybe none).
    pub rows: Vec<RecordBatch>,
}

/// Sends each batch's rows to a [`PreviewBatch`] channel once the batch is done.
#[derive(Debug)]
pub struct ChannelSink {
    tx: mpsc::Sender<PreviewBatch>,
    pending: Buffered,
}

impl ChannelSink {
    /// A sink sending to `tx`.
    pub fn new(tx: mpsc::Sender<PreviewBatch>) -> Self {
        Self { tx, pending: Buffered::default() }
    }
}

#[async_trait]
impl Sink for ChannelSink {
    fn description(&self) -> String {
        "PreviewSink".to_string()
    }

    async fn target_schema(&mut self) -> Result<Option<SchemaRef>> {
        Ok(None)
    }

    async fn open(&mut self, _schema: &SchemaRef, _app_id: &crate::AppId, _checkpoint: &std::sync::Arc<weir_checkpoint::Checkpoint>) -> Result<()> {
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
        let (batch_id, rows) = self.pending.take()?;
        let n: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        // A closed receiver: the preview was closed and its query is stopping.
        let written = self.tx.send(PreviewBatch { batch_id, rows }).await.is_ok();
        Ok(SinkCommit { rows: if written { n } else { 0 }, written, version: None, compaction: None, commit_retries: 0 })
    }
}
