//! Python called from the queries' threads: listeners, and `foreach_batch` functions.
//!
//! Both take the interpreter lock for the call only. A listener's exception is logged
//! (logger `weir`) and the query goes on, as Spark's listener bus does; a `foreach_batch`
//! function's exception fails the batch, and with it the query, with nothing of the batch
//! committed, so a restart calls the function again with the same batch.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_pyarrow::{PyArrowType, Table};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde::Serialize;
use weir_runtime::BatchFunction;
use weir_runtime::progress::{QueryIdleEvent, QueryStartedEvent, QueryTerminatedEvent, QueryWarningEvent};
use weir_runtime::{QueryListener, QueryProgress};

/// Logs `message` with `err`'s traceback to the `weir` logger (stderr, when logging is not
/// configured).
pub(crate) fn log_exception(py: Python<'_>, message: &str, err: &PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py.import("logging")?.call_method1("getLogger", ("weir",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        logger.call_method("error", ("%s", message), Some(&kwargs))?;
        Ok(())
    })();
    if logged.is_err() {
        // Logging itself failed (the interpreter is shutting down): print it instead.
        err.display(py);
    }
}

/// A Python listener: `dispatch(kind, event_json)` (weir/_listener.py's `_Dispatcher`
/// builds the event object and calls the user's `on_query_<kind>` method).
pub(crate) struct PyListener {
    pub(crate) dispatch: Py<PyAny>,
}

impl PyListener {
    fn send(&self, kind: &str, json: String) {
        Python::attach(|py| {
            if let Err(e) = self.dispatch.bind(py).call1((kind, json)) {
                log_exception(py, &format!("a query listener failed in on_query_{kind}; the query goes on"), &e);
            }
        });
    }
}

fn json(event: &impl Serialize) -> String {
    serde_json::to_string(event).expect("events serialize (strings, numbers and JSON values)")
}

impl QueryListener for PyListener {
    fn on_query_started(&self, event: &QueryStartedEvent) {
        self.send("started", json(event));
    }

    fn on_query_progress(&self, progress: &QueryProgress) {
        self.send("progress", progress.to_json());
    }

    fn on_query_idle(&self, event: &QueryIdleEvent) {
        self.send("idle", json(event));
    }

    fn on_query_warning(&self, event: &QueryWarningEvent) {
        self.send("warning", json(event));
    }

    fn on_query_terminated(&self, event: &QueryTerminatedEvent) {
        self.send("terminated", json(event));
    }
}

/// A Python `fn(table: pyarrow.Table, batch_id: int)` taking the batches of table `table`.
pub(crate) struct PyBatchFunction {
    pub(crate) table: String,
    pub(crate) function: Py<PyAny>,
}

impl BatchFunction for PyBatchFunction {
    fn call(&self, batch_id: u64, schema: &SchemaRef, rows: Vec<RecordBatch>) -> Result<(), String> {
        // The batches' own schema: the sink's may differ from it in field metadata only.
        let schema = rows.first().map_or_else(|| Arc::clone(schema), RecordBatch::schema);
        let table = Table::try_new(rows, schema).map_err(|e| format!("batch {batch_id} does not make one table: {e}"))?;
        Python::attach(|py| {
            let called = PyArrowType(table).into_pyobject(py).and_then(|t| self.function.bind(py).call1((t, batch_id)));
            called.map(drop).map_err(|e| {
                log_exception(py, &format!("the foreach_batch function of table '{}' failed on batch {batch_id}", self.table), &e);
                e.to_string()
            })
        })
    }
}
