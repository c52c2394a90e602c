//! The tokio runtime weir's queries run on (one per process, started on first use), and
//! how a Python call waits for one of its futures: with the interpreter lock released, so
//! queries' listeners and `foreach_batch` functions run meanwhile, and checking for Ctrl-C
//! every 100 ms, so a wait can be interrupted (as datafusion-python's `wait_for_future`).

use std::future::Future;
use std::sync::OnceLock;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// How often a waiting call looks for a signal (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The process's runtime.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all().thread_name("weir");
        weir_runtime::without_lifo_slot(&mut builder);
        builder.build().expect("the OS lets a process start threads (tokio's runtime)")
    })
}

/// Whether this thread is one of the runtime's: a listener or a `foreach_batch` function is
/// being called, and the query it belongs to waits for it to return.
pub(crate) fn on_query_thread() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Spawns `future` on the runtime so another worker can run it while this thread waits. A
/// task spawned from a worker goes to that worker's own slot, which the other workers do not
/// take from: a listener waiting on its worker for it would wait forever. From a worker it
/// is spawned from a thread of its own instead, through the queue every worker reads.
fn spawn<F>(future: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if on_query_thread() {
        std::thread::spawn(move || runtime().spawn(future)).join().expect("spawning a task does not panic")
    } else {
        runtime().spawn(future)
    }
}

/// Runs `future` on the runtime and waits for it without the interpreter lock. A signal
/// handler that raises (Ctrl-C: `KeyboardInterrupt`) ends the wait with its exception and
/// cancels the future. Works from any thread, the runtime's own included (a `foreach_batch`
/// function may call back into its session), since it never blocks a runtime thread on the
/// runtime.
pub(crate) fn wait<T, F>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = sync_channel(1);
    let task = spawn(async move {
        let _ = tx.send(future.await);
    });
    py.detach(move || {
        loop {
            match rx.recv_timeout(SIGNAL_CHECK) {
                Ok(value) => return Ok(value),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        task.abort();
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(PyRuntimeError::new_err("weir's task ended without an answer (it panicked); see the log above"));
                }
            }
        }
    })
}

/// Runs `future` on the runtime and waits for it, for a caller that may not hold the
/// interpreter (a consumer of an Arrow stream, on any thread): the lock is let go while
/// waiting, when held. No signal checks: such a caller cannot take an exception.
pub(crate) fn wait_detached<T, F>(future: F) -> Option<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = sync_channel(1);
    spawn(async move {
        let _ = tx.send(future.await);
    });
    Python::attach(|py| py.detach(move || rx.recv().ok()))
}
