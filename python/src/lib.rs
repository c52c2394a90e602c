//! `weir._internal`: the extension module behind the Python package `weir`
//! (python/python/weir). It is a thin client of weir-runtime's `Session`: every statement,
//! query and preview is the library's; this crate only converts between Python and Rust
//! (pyarrow through the Arrow C data interface, without copies), waits for the library's
//! futures with the interpreter lock released, and calls Python back (listeners,
//! `foreach_batch` functions) from the queries' threads.
//!
//! One module per Python class, as Polars and datafusion-python lay theirs out.

mod callbacks;
mod errors;
mod preview;
mod query;
mod runtime;
mod session;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_internal")]
fn internal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<session::PySession>()?;
    m.add_class::<query::PyStreamingQuery>()?;
    m.add_class::<preview::PyPreview>()?;
    errors::register(m)?;
    Ok(())
}
