//! `weir.StreamingQuery`: the handle of a running query, with Spark's names (`id`, `run_id`,
//! `status`, `last_progress`, `recent_progress`, `is_active`, `stop`, `await_termination`,
//! `exception`). Progress is the same JSON as `weir run --progress json`, as dicts.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use weir_runtime::StreamingQuery;

use crate::errors::{WeirError, query_failed};
use crate::runtime::{on_query_thread, wait};

/// A running (or finished) continuous query; see `weir.StreamingQuery`.
#[pyclass(frozen, module = "weir._internal", name = "StreamingQuery")]
pub struct PyStreamingQuery {
    pub(crate) query: StreamingQuery,
}

fn loads<'py>(py: Python<'py>, json: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (json,))
}

/// Waiting for a query from a listener or a `foreach_batch` function would wait forever: the
/// query waits for them.
fn refuse_on_query_thread(what: &str) -> PyResult<()> {
    if on_query_thread() {
        return Err(WeirError::new_err(format!(
            "{what}() cannot be called from a listener or a foreach_batch function: the query waits for them to return; call stop() there, and wait elsewhere"
        )));
    }
    Ok(())
}

#[pymethods]
impl PyStreamingQuery {
    /// The stable query id: the same across restarts on one checkpoint.
    #[getter]
    fn id(&self) -> &str {
        self.query.id()
    }

    /// The id of this run of the query.
    #[getter]
    fn run_id(&self) -> &str {
        self.query.run_id()
    }

    /// The query's name (the sink table's, unless given).
    #[getter]
    fn name(&self) -> &str {
        self.query.name()
    }

    /// Where its checkpoint is.
    #[getter]
    fn checkpoint(&self) -> &str {
        self.query.checkpoint()
    }

    /// What it is doing now: `message`, `isDataAvailable`, `isTriggerActive` (Spark's keys).
    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.query.status();
        let d = PyDict::new(py);
        d.set_item("message", s.message)?;
        d.set_item("isDataAvailable", s.is_data_available)?;
        d.set_item("isTriggerActive", s.is_trigger_active)?;
        Ok(d)
    }

    /// Whether the query is still running.
    #[getter]
    fn is_active(&self) -> bool {
        self.query.is_active()
    }

    /// The progress of the last batch (Spark's `StreamingQueryProgress` as a dict), or None.
    #[getter]
    fn last_progress<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.query.last_progress().map(|p| loads(py, &p.to_json())).transpose()
    }

    /// The progress of the most recent batches (up to 100), oldest first.
    #[getter]
    fn recent_progress<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.query.recent_progress().iter().map(|p| loads(py, &p.to_json())).collect()
    }

    /// Stops the query after the batch in flight and waits until it has stopped. Does not
    /// raise if the query had failed: see `exception()`. From a listener or a
    /// `foreach_batch` function, which the query waits for, it only asks the query to stop.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.query.stop();
        if on_query_thread() {
            return Ok(());
        }
        let query = self.query.clone();
        wait(py, async move { query.await_termination().await }).map(drop)
    }

    /// Waits until the query ends (at most `timeout` seconds when given). Raises
    /// `StreamingQueryException` if it failed, `KeyboardInterrupt` on Ctrl-C (the query goes
    /// on). Returns None without a timeout; with one, whether the query ended in time.
    #[pyo3(signature = (timeout=None))]
    fn await_termination(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<bool>> {
        refuse_on_query_thread("await_termination")?;
        let query = self.query.clone();
        match timeout {
            None => wait(py, async move { query.await_termination().await })?.map(|()| None).map_err(|e| query_failed(e.to_string())),
            Some(seconds) => {
                let limit = Duration::try_from_secs_f64(seconds).map_err(|_| PyValueError::new_err(format!("timeout={seconds}: give a number of seconds, 0 or more")))?;
                wait(py, async move { query.await_termination_timeout(limit).await })?.map(Some).map_err(|e| query_failed(e.to_string()))
            }
        }
    }

    /// Waits until the query has processed everything its sources had when called (Spark's
    /// `processAllAvailable`); for tests and notebooks. Raises if the query failed.
    fn process_all_available(&self, py: Python<'_>) -> PyResult<()> {
        refuse_on_query_thread("process_all_available")?;
        let query = self.query.clone();
        wait(py, async move { query.process_all_available().await })?.map_err(|e| query_failed(e.to_string()))
    }

    /// The error the query failed with, or None.
    fn exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.query.exception().map(|m| query_failed(m).into_value(py).into_any())
    }

    fn __repr__(&self) -> String {
        format!("<StreamingQuery {} id={} run_id={} active={}>", self.query.name(), self.query.id(), self.query.run_id(), self.query.is_active())
    }
}
