//! A live preview: `SELECT ... FROM <stream>` as a continuous query whose batches come to
//! the caller instead of a table (the shell's live results, Python's `stream()`). It runs
//! like a pipeline, on a checkpoint in a temporary directory that goes when it closes, and
//! writes no table.

use arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;
use weir_connectors::channel::PreviewBatch;

use crate::error::Result;
use crate::query::StreamingQuery;

/// A running preview; see the module docs. Dropping it stops its query.
pub struct Preview {
    query: StreamingQuery,
    schema: SchemaRef,
    rows: mpsc::Receiver<PreviewBatch>,
    /// The checkpoint, deleted once the query has ended.
    checkpoint: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preview").field("query", &self.query).finish_non_exhaustive()
    }
}

impl Preview {
    pub(crate) fn new(query: StreamingQuery, schema: SchemaRef, rows: mpsc::Receiver<PreviewBatch>, checkpoint: tempfile::TempDir) -> Self {
        Self { query, schema, rows, checkpoint: Some(checkpoint) }
    }

    /// The query behind it: status, progress, stop.
    pub fn query(&self) -> &StreamingQuery {
        &self.query
    }

    /// The schema of its rows.
    pub fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    /// The next batch the query has done (its rows may be none); `None` once the query has
    /// ended: stopped, or failed ([`StreamingQuery::exception`] says why).
    pub async fn next_batch(&mut self) -> Option<PreviewBatch> {
        self.rows.recv().await
    }

    /// A batch already done, without waiting; `None` if there is none yet.
    pub fn try_next_batch(&mut self) -> Option<PreviewBatch> {
        self.rows.try_recv().ok()
    }

    /// Stops the query after its batch in flight, waits for it, and deletes its checkpoint.
    /// `Err` if the query had failed.
    pub async fn close(mut self) -> Result<()> {
        self.query.stop();
        // Batches the query still hands over are not wanted: let it finish them.
        self.rows.close();
        let outcome = self.query.await_termination().await;
        drop(self.checkpoint.take());
        outcome
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        self.query.stop();
        self.rows.close();
        // The checkpoint goes once the query has let go of it.
        if let Some(dir) = self.checkpoint.take() {
            let query = self.query.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        let _ = query.await_termination().await;
                        drop(dir);
                    });
                }
                Err(_) => drop(dir),
            }
        }
    }
}
