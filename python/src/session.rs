//! `weir._internal.Session`: declared tables, started queries, registered functions and
//! rows, over weir-runtime's `Session` (the Python `weir.Session` wraps it). Statements run
//! on the runtime with the interpreter lock released.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow_pyarrow::{PyArrowType, Table};
use pyo3::prelude::*;
use tokio::sync::{Mutex, OwnedMutexGuard};
use weir_runtime::{Executed, QueryOptions, Session, SessionConfig, Trigger, WeirError};
use weir_sql::Statement;

use crate::callbacks::{PyBatchFunction, PyListener};
use crate::errors::{ConfigError, to_py};
use crate::preview::PyPreview;
use crate::query::PyStreamingQuery;
use crate::runtime::{on_query_thread, wait};

/// A session; see `weir.Session`.
#[pyclass(frozen, module = "weir._internal", name = "Session")]
pub struct PySession {
    inner: Arc<Mutex<Session>>,
    /// Where the metrics are served, when `metrics_addr` was given.
    metrics_address: Option<String>,
}

/// `trigger=` and `checkpoint=` as the library takes them.
fn options(trigger: Option<&str>, checkpoint: Option<String>, name: Option<String>) -> PyResult<QueryOptions> {
    let mut options = QueryOptions { checkpoint, name, ..Default::default() };
    if let Some(t) = trigger {
        options.trigger = t.parse::<Trigger>().map_err(|e| ConfigError::new_err(format!("trigger={e}")))?;
    }
    Ok(options)
}

/// What one statement returns to Python.
fn to_python(py: Python<'_>, executed: Executed) -> PyResult<Py<PyAny>> {
    let rows = |batches: Vec<arrow::record_batch::RecordBatch>| -> PyResult<Py<PyAny>> {
        let schema = batches.first().map_or_else(|| Arc::new(Schema::empty()), |b| b.schema());
        let table = Table::try_new(batches, schema).map_err(|e| ConfigError::new_err(e.to_string()))?;
        Ok(PyArrowType(table).into_pyobject(py)?.unbind())
    };
    match executed {
        Executed::Created(_) | Executed::Dropped(_) | Executed::Set(_) => Ok(py.None()),
        Executed::Started(query) => Ok(Py::new(py, PyStreamingQuery { query })?.into_any()),
        Executed::Preview(preview) => Ok(Py::new(py, PyPreview::new(preview))?.into_any()),
        Executed::Rows(batches) => rows(batches),
        Executed::Described(d) => rows(vec![d.columns_batch()]),
        // STOP QUERY: the query, stopped after its batch in flight.
        Executed::Stopped(query) => Ok(Py::new(py, PyStreamingQuery { query })?.into_any()),
        // SHOW PROGRESS: the JSON `weir run --progress json` prints, as a table of one column
        // `progress` (no row before the first batch); `StreamingQuery.last_progress` gives a dict.
        Executed::Progress(_, progress) => {
            let json: Vec<String> = progress.iter().map(|p| p.to_json()).collect();
            let column: arrow::array::ArrayRef = Arc::new(arrow::array::StringArray::from(json));
            let schema = Arc::new(Schema::new(vec![arrow::datatypes::Field::new("progress", arrow::datatypes::DataType::Utf8, false)]));
            let batch = arrow::record_batch::RecordBatch::try_new(schema, vec![column]).map_err(|e| ConfigError::new_err(e.to_string()))?;
            rows(vec![batch])
        }
    }
}

impl PySession {
    /// The session, once it is free. A listener or `foreach_batch` function gets it only if
    /// it is free now: a query being started holds it while calling `on_query_started`, and
    /// waiting for it there would wait forever.
    fn lock(&self) -> impl std::future::Future<Output = Result<OwnedMutexGuard<Session>, WeirError>> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        let from_query = on_query_thread();
        async move {
            if from_query {
                inner.try_lock_owned().map_err(|_| {
                    WeirError::Config(
                        "the session is busy starting a query, which waits for this listener: use the session after on_query_started returns, or from another thread".into(),
                    )
                })
            } else {
                Ok(inner.lock_owned().await)
            }
        }
    }

    /// Runs `script` (from `file`, when it came from one); returns what each statement did.
    /// A statement that fails stops the queries the script started before it, as `weir run`
    /// does. `pipeline` adds `weir run`'s checks: only CREATE TABLE and INSERT, at least one
    /// INSERT.
    fn run(&self, py: Python<'_>, script: String, file: Option<String>, options: QueryOptions, pipeline: bool) -> PyResult<Vec<Executed>> {
        let lock = self.lock();
        let shown = file.clone().unwrap_or_else(|| "the script".to_string());
        let outcome = wait(py, async move {
            let statements = weir_sql::parse_script(&script)?;
            if pipeline {
                if let Some(other) = statements.iter().find(|s| !matches!(s, Statement::CreateTable(_) | Statement::Insert(_))) {
                    return Err(WeirError::Statement {
                        line: other.line(),
                        message: "a pipeline script holds CREATE TABLE and INSERT INTO statements; SELECT, SHOW, DESCRIBE and DROP are for `weir shell`".into(),
                    });
                }
                if !statements.iter().any(|s| matches!(s, Statement::Insert(_))) {
                    return Err(WeirError::Config(format!("{shown} starts no query: add INSERT INTO <sink> SELECT ... FROM <source>")));
                }
            }
            let inserts = statements.iter().filter(|s| matches!(s, Statement::Insert(_))).count();
            if inserts > 1 && options.checkpoint.is_some() {
                return Err(WeirError::Config(format!(
                    "{shown} has {inserts} INSERT statements, and each query needs its own checkpoint: drop checkpoint= to use <checkpoint_root>/<sink table>"
                )));
            }
            let mut session = lock.await?;
            let mut done = Vec::new();
            for statement in statements {
                match session.execute(statement, &options).await {
                    Ok(executed) => done.push(executed),
                    Err(e) => {
                        for executed in &done {
                            if let Executed::Started(q) = executed {
                                q.stop();
                            }
                        }
                        return Err(e);
                    }
                }
            }
            Ok(done)
        })?;
        outcome.map_err(|e| to_py(py, &e, file.as_deref()))
    }

    /// Runs `script` and returns the last statement's result.
    fn last(&self, py: Python<'_>, script: String, file: Option<String>, options: QueryOptions) -> PyResult<Py<PyAny>> {
        match self.run(py, script, file, options, false)?.pop() {
            Some(executed) => to_python(py, executed),
            None => Ok(py.None()),
        }
    }
}

fn read(path: &PathBuf) -> PyResult<String> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::new_err(format!("cannot read {}: {e}", path.display())))
}

#[pymethods]
impl PySession {
    #[new]
    #[pyo3(signature = (checkpoint_root=None, threads=None, retain_batches=None, metrics_addr=None))]
    fn new(py: Python<'_>, checkpoint_root: Option<PathBuf>, threads: Option<usize>, retain_batches: Option<u64>, metrics_addr: Option<String>) -> PyResult<Self> {
        let defaults = SessionConfig::default();
        let metrics_addr = metrics_addr
            .map(|a| a.parse::<std::net::SocketAddr>().map_err(|e| ConfigError::new_err(format!("metrics_addr='{a}': {e}; write host:port, e.g. 127.0.0.1:9464"))))
            .transpose()?;
        let config = SessionConfig {
            checkpoint_root: checkpoint_root.unwrap_or(defaults.checkpoint_root),
            threads: threads.unwrap_or(defaults.threads).max(1),
            retain_batches: retain_batches.unwrap_or(defaults.retain_batches),
            metrics_addr,
            ..defaults
        };
        let mut session = Session::new(config);
        let bound = py.detach(|| crate::runtime::runtime().block_on(session.serve_metrics())).map_err(|e| to_py(py, &e, None))?;
        Ok(Self { inner: Arc::new(Mutex::new(session)), metrics_address: bound.map(|a| a.to_string()) })
    }

    /// `host:port` where the metrics are served (`metrics_addr`, its port chosen when 0).
    #[getter]
    fn metrics_address(&self) -> Option<String> {
        self.metrics_address.clone()
    }

    /// Runs `text` (one statement or a script); returns what its last statement gives.
    #[pyo3(signature = (text, trigger=None, checkpoint=None, name=None))]
    fn sql(&self, py: Python<'_>, text: String, trigger: Option<&str>, checkpoint: Option<String>, name: Option<String>) -> PyResult<Py<PyAny>> {
        let options = options(trigger, checkpoint, name)?;
        self.last(py, text, None, options)
    }

    /// Runs the script in file `path`; errors name `path:line`.
    #[pyo3(signature = (path, trigger=None, checkpoint=None, name=None))]
    fn sql_file(&self, py: Python<'_>, path: PathBuf, trigger: Option<&str>, checkpoint: Option<String>, name: Option<String>) -> PyResult<Py<PyAny>> {
        let options = options(trigger, checkpoint, name)?;
        let script = read(&path)?;
        self.last(py, script, Some(path.display().to_string()), options)
    }

    /// Starts the pipeline in file `path` as `weir run` does; returns its queries.
    #[pyo3(signature = (path, trigger=None, checkpoint=None))]
    fn start_pipeline(&self, py: Python<'_>, path: PathBuf, trigger: Option<&str>, checkpoint: Option<String>) -> PyResult<Vec<PyStreamingQuery>> {
        let options = options(trigger, checkpoint, None)?;
        let script = read(&path)?;
        let done = self.run(py, script, Some(path.display().to_string()), options, true)?;
        Ok(done.into_iter().filter_map(|e| if let Executed::Started(query) = e { Some(PyStreamingQuery { query }) } else { None }).collect())
    }

    /// Every query started from this session (previews included), oldest first.
    fn queries(&self, py: Python<'_>) -> PyResult<Vec<PyStreamingQuery>> {
        let lock = self.lock();
        let queries = wait(py, async move { lock.await.map(|s| s.queries()) })?.map_err(|e| to_py(py, &e, None))?;
        Ok(queries.into_iter().map(|query| PyStreamingQuery { query }).collect())
    }

    /// Calls `dispatch(kind, event_json)` on every event of the queries started from now on.
    fn add_listener(&self, py: Python<'_>, dispatch: Py<PyAny>) -> PyResult<()> {
        let lock = self.lock();
        wait(py, async move { lock.await.map(|mut s| s.add_listener(Arc::new(PyListener { dispatch }))) })?.map_err(|e| to_py(py, &e, None))
    }

    /// Sends every batch written to table `name` to `function(table, batch_id)`.
    fn register_sink(&self, py: Python<'_>, name: String, function: Py<PyAny>) -> PyResult<()> {
        let lock = self.lock();
        let f = Arc::new(PyBatchFunction { table: name.clone(), function });
        wait(py, async move { lock.await?.register_sink(&name, f) })?.map_err(|e| to_py(py, &e, None))
    }

    /// Declares static table `name` holding the rows of `table` (anything with
    /// `__arrow_c_stream__`), shared, not copied.
    fn register_table(&self, py: Python<'_>, name: String, table: PyArrowType<Table>) -> PyResult<()> {
        let (batches, schema) = table.0.into_inner();
        let lock = self.lock();
        wait(py, async move { lock.await?.register_table(&name, schema, batches) })?.map_err(|e| to_py(py, &e, None))
    }
}
