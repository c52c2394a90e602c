//! `weir.Preview`: a live `SELECT` over streams, read batch by batch as the query makes
//! them: as a Python iterator of `pyarrow.RecordBatch`, or through the Arrow PyCapsule
//! stream interface (`__arrow_c_stream__`) that Polars, DuckDB, pandas and pyarrow read.
//! Its checkpoint is temporary; it writes no table. The rows cross into Python through the
//! Arrow C data interface, without copies.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use arrow_pyarrow::{IntoPyArrow, PyArrowType, Table, ToPyArrow};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use tokio::sync::Mutex;
use weir_runtime::{Preview, StreamingQuery, WeirError};

use crate::errors::query_failed;
use crate::query::PyStreamingQuery;
use crate::runtime::{runtime, wait, wait_detached};

/// The preview and the rows of its last batch not yet read.
struct State {
    /// `None` once the query has ended and the preview was closed.
    preview: Option<Preview>,
    pending: VecDeque<RecordBatch>,
}

impl Drop for State {
    fn drop(&mut self) {
        // Dropping a preview stops its query and deletes the checkpoint once the query has
        // let go of it, on the runtime.
        if let Some(preview) = self.preview.take() {
            let _entered = runtime().enter();
            drop(preview);
        }
    }
}

/// The next non-empty batch; `None` at the end (the query stopped or ran out with its
/// trigger), `Err` if the query failed.
async fn next(state: Arc<Mutex<State>>) -> Result<Option<RecordBatch>, WeirError> {
    let mut state = state.lock().await;
    loop {
        if let Some(batch) = state.pending.pop_front() {
            return Ok(Some(batch));
        }
        let Some(preview) = state.preview.as_mut() else { return Ok(None) };
        match preview.next_batch().await {
            Some(done) => state.pending.extend(done.rows.into_iter().filter(|b| b.num_rows() > 0)),
            None => {
                let preview = state.preview.take().expect("checked just above");
                return preview.close().await.map(|()| None);
            }
        }
    }
}

/// A live preview; see `weir.Preview`.
#[pyclass(frozen, module = "weir._internal", name = "Preview")]
pub struct PyPreview {
    query: StreamingQuery,
    schema: SchemaRef,
    state: Arc<Mutex<State>>,
}

impl PyPreview {
    pub(crate) fn new(preview: Preview) -> Self {
        let query = preview.query().clone();
        let schema = preview.schema();
        Self { query, schema, state: Arc::new(Mutex::new(State { preview: Some(preview), pending: VecDeque::new() })) }
    }
}

#[pymethods]
impl PyPreview {
    /// The schema of its rows (`pyarrow.Schema`).
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.schema.as_ref().to_pyarrow(py)
    }

    /// The query behind it: status, progress.
    #[getter]
    fn query(&self) -> PyStreamingQuery {
        PyStreamingQuery { query: self.query.clone() }
    }

    /// Itself: `session.sql("SELECT ...").stream()` reads as it does.
    fn stream(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match wait(py, next(Arc::clone(&self.state)))? {
            Ok(Some(batch)) => batch.to_pyarrow(py),
            Ok(None) => Err(PyStopIteration::new_err(())),
            Err(e) => Err(query_failed(e.to_string())),
        }
    }

    /// Every batch until the preview ends, as one `pyarrow.Table`. With the default trigger
    /// a preview runs until closed: give `trigger="available-now"` to read what is there.
    fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = Arc::clone(&self.state);
        let batches = wait(py, async move {
            let mut out = Vec::new();
            while let Some(batch) = next(Arc::clone(&state)).await? {
                out.push(batch);
            }
            Ok::<_, WeirError>(out)
        })?
        .map_err(|e| query_failed(e.to_string()))?;
        let schema = batches.first().map_or_else(|| Arc::clone(&self.schema), RecordBatch::schema);
        let table = Table::try_new(batches, schema).map_err(|e| query_failed(e.to_string()))?;
        PyArrowType(table).into_pyobject(py)
    }

    /// Stops the query after its batch in flight, waits for it and deletes its checkpoint.
    /// Does not raise if the query had failed: see `query.exception()`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.query.stop();
        let state = Arc::clone(&self.state);
        wait(py, async move {
            let mut state = state.lock().await;
            state.pending.clear();
            match state.preview.take() {
                Some(preview) => preview.close().await,
                None => Ok(()),
            }
        })
        .map(drop)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py).map(|()| false)
    }

    /// The Arrow PyCapsule stream interface: the batches still to come, for a consumer
    /// (`polars.from_arrow`, `duckdb.sql`, `pyarrow.RecordBatchReader.from_stream`). Reading
    /// it to its end takes the preview to its end, as iterating does.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        let reader: Box<dyn RecordBatchReader + Send> = Box::new(Reader { state: Arc::clone(&self.state), schema: Arc::clone(&self.schema) });
        // pyarrow's reader takes the Rust stream through the C interface and hands it on as
        // a capsule; no batch is copied on the way.
        let pyarrow_reader = reader.into_pyarrow(py)?;
        pyarrow_reader.call_method1("__arrow_c_stream__", (requested_schema,))
    }

    fn __repr__(&self) -> String {
        format!("<Preview id={} active={}>", self.query.id(), self.query.is_active())
    }
}

/// The preview as an Arrow `RecordBatchReader`, for the C stream interface.
struct Reader {
    state: Arc<Mutex<State>>,
    schema: SchemaRef,
}

impl Iterator for Reader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match wait_detached(next(Arc::clone(&self.state)))? {
            Ok(batch) => batch.map(Ok),
            Err(e) => Some(Err(ArrowError::ExternalError(Box::new(e)))),
        }
    }
}

impl RecordBatchReader for Reader {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}
