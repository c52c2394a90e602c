//! The foreach-batch sink: each batch's rows go to a function the program registers
//! (Spark's `foreachBatch`; Python's `session.register_sink(name, fn)`).
//!
//! The replay rule is Spark's: the sink keeps no record of what the function did, so a batch
//! replayed after a crash (its offsets written, its commit not) calls the function again
//! with the same batch id and the same rows. A function that writes somewhere makes that
//! write idempotent by keying it on the batch id. The function runs on tokio's blocking
//! pool, since it may take its time (a Python function waits for the interpreter lock).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;

use crate::error::{ConnectorError, Result};
use crate::{Buffered, Sink, SinkCommit};

/// A function that takes every batch of a query: its id, the output schema and its rows
/// (maybe none: a batch that output nothing still calls it, as Spark's does). An `Err`
/// fails the batch, and with it the query; nothing of the batch is committed.
pub trait BatchFunction: Send + Sync {
    /// Takes batch `batch_id`.
    fn call(&self, batch_id: u64, schema: &SchemaRef, rows: Vec<RecordBatch>) -> std::result::Result<(), String>;
}

/// Hands each batch's rows, once the query has made them all, to a [`BatchFunction`].
pub struct ForeachBatchSink {
    name: String,
    declared: Option<SchemaRef>,
    function: Arc<dyn BatchFunction>,
    schema: Option<SchemaRef>,
    pending: Buffered,
}

impl std::fmt::Debug for ForeachBatchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeachBatchSink").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ForeachBatchSink {
    /// A sink for table `name` (declared columns `declared`, if any) calling `function`.
    pub fn new(name: &str, declared: Option<SchemaRef>, function: Arc<dyn BatchFunction>) -> Self {
        Self { name: name.to_string(), declared, function, schema: None, pending: Buffered::default() }
    }
}

#[async_trait]
impl Sink for ForeachBatchSink {
    fn description(&self) -> String {
        format!("ForeachBatchSink[{}]", self.name)
    }

    async fn target_schema(&mut self) -> Result<Option<SchemaRef>> {
        Ok(self.declared.clone())
    }

    async fn open(&mut self, schema: &SchemaRef, _app_id: &crate::AppId, _checkpoint: &Arc<weir_checkpoint::Checkpoint>) -> Result<()> {
        self.schema = Some(Arc::clone(schema));
        Ok(())
    }

    /// Never skips: a replayed batch is handed over again (see the module docs).
    async fn begin(&mut self, batch_id: u64) -> Result<()> {
        self.pending.begin(batch_id);
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.pending.write(batch)
    }

    async fn finish(&mut self) -> Result<SinkCommit> {
        let (batch_id, rows) = self.pending.take()?;
        let schema = self.schema.clone().ok_or_else(|| ConnectorError::Io("foreach_batch sink written before open".to_string()))?;
        let n: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        let function = Arc::clone(&self.function);
        let called = tokio::task::spawn_blocking(move || function.call(batch_id, &schema, rows)).await;
        match called {
            Ok(Ok(())) => Ok(SinkCommit { rows: n, written: true, version: None, compaction: None, commit_retries: 0 }),
            Ok(Err(message)) => Err(ConnectorError::Io(format!("the foreach_batch function of table '{}' failed: {message}", self.name))),
            Err(e) => Err(ConnectorError::Io(format!("the foreach_batch function of table '{}' panicked: {e}", self.name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    #[derive(Default)]
    struct Calls(Mutex<Vec<(u64, usize)>>);

    impl BatchFunction for Calls {
        fn call(&self, batch_id: u64, _schema: &SchemaRef, rows: Vec<RecordBatch>) -> std::result::Result<(), String> {
            let n = rows.iter().map(RecordBatch::num_rows).sum();
            if n == 13 {
                return Err("unlucky".into());
            }
            self.0.lock().unwrap().push((batch_id, n));
            Ok(())
        }
    }

    fn rows(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    /// Every batch reaches the function once per commit, replays included (Spark's rule), and
    /// the function's error fails the batch, naming the table.
    #[tokio::test]
    async fn every_batch_and_every_replay_reach_the_function() {
        let calls = Arc::new(Calls::default());
        let mut sink = ForeachBatchSink::new("alerts", None, Arc::clone(&calls) as Arc<dyn BatchFunction>);
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Arc::new(weir_checkpoint::Checkpoint::open(&dir.path().display().to_string()).unwrap());
        sink.open(&rows(0).schema(), &crate::AppId::sink("q"), &checkpoint).await.unwrap();
        sink.commit(0, vec![rows(2), rows(3)]).await.unwrap();
        let replay = sink.commit(0, vec![rows(2), rows(3)]).await.unwrap();
        assert_eq!(replay, SinkCommit { rows: 5, written: true, version: None, compaction: None, commit_retries: 0 });
        sink.commit(1, vec![]).await.unwrap();
        assert_eq!(*calls.0.lock().unwrap(), vec![(0, 5), (0, 5), (1, 0)]);
        let err = sink.commit(2, vec![rows(13)]).await.unwrap_err().to_string();
        assert_eq!(err, "the foreach_batch function of table 'alerts' failed: unlucky");
    }
}
