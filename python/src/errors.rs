//! The exception hierarchy (`weir.WeirError` and its subclasses), and the mapping from the
//! library's errors. Messages are the CLI's: `file:line: message` for a statement of a file,
//! `line N: message` for one of a string.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use weir_runtime::WeirError as E;

create_exception!(weir, WeirError, PyException, "Base class of every error weir raises.");
create_exception!(weir, SqlError, WeirError, "A statement is malformed or cannot be carried out; `line` (and `file`) say where.");
create_exception!(weir, ConfigError, WeirError, "A setting is invalid (a trigger, a session option, an argument).");
create_exception!(weir, CheckpointError, WeirError, "The checkpoint cannot be used (another query's, unreadable, newer format).");
create_exception!(weir, StateError, CheckpointError, "A stateful operator's state in the checkpoint cannot be loaded.");
create_exception!(weir, ConnectorError, WeirError, "A source or sink failed outside a batch; the message names the file, topic or table.");
create_exception!(
    weir,
    StreamingQueryException,
    WeirError,
    "A query failed; the message names the batch and where (file and line, topic/partition/offset, table)."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WeirError", py.get_type::<WeirError>())?;
    m.add("SqlError", py.get_type::<SqlError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("CheckpointError", py.get_type::<CheckpointError>())?;
    m.add("StateError", py.get_type::<StateError>())?;
    m.add("ConnectorError", py.get_type::<ConnectorError>())?;
    m.add("StreamingQueryException", py.get_type::<StreamingQueryException>())?;
    Ok(())
}

/// The Python exception for `e`, from a statement of `file` when given.
pub(crate) fn to_py(py: Python<'_>, e: &E, file: Option<&str>) -> PyErr {
    let (line, message) = match e {
        E::Statement { line, message } => (Some(*line), message.clone()),
        E::Sql(s) => (s.line, s.message.clone()),
        E::Config(m) => return ConfigError::new_err(m.clone()),
        E::Checkpoint(_) => return CheckpointError::new_err(e.to_string()),
        E::State(_) => return StateError::new_err(e.to_string()),
        E::Connector(_) => return ConnectorError::new_err(e.to_string()),
        E::Batch { .. } | E::Terminated(_) => return StreamingQueryException::new_err(e.to_string()),
    };
    let text = match (file, line) {
        (Some(file), Some(line)) => format!("{file}:{line}: {message}"),
        (None, Some(line)) => format!("line {line}: {message}"),
        (_, None) => message,
    };
    let err = SqlError::new_err(text);
    let value = err.value(py);
    // Plain attributes on a fresh exception object: setting them cannot fail.
    let _ = value.setattr("line", line);
    let _ = value.setattr("file", file);
    err
}

/// A query's failure, as `await_termination` raises it and `exception()` returns it.
pub(crate) fn query_failed(message: String) -> PyErr {
    StreamingQueryException::new_err(message)
}
