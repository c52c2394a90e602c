//! The handle of a running query: stop it, wait for it, read its status and progress.
//! The CLI, the shell and Python all hold this same handle.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{Result, WeirError};
use crate::progress::{QueryListener, QueryProgress};

/// How many progress events a query keeps (Spark keeps 100 as well).
const RECENT_PROGRESS: usize = 100;

/// What a query is doing now (Spark's `StreamingQueryStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryStatus {
    /// e.g. "Processing new data", "Waiting for data to arrive", "Stopped".
    pub message: String,
    /// Whether the last trigger found new data.
    pub is_data_available: bool,
    /// Whether a batch is running now.
    pub is_trigger_active: bool,
    /// Whether the query is still running.
    pub is_active: bool,
}

/// State shared by a query's task and its handles.
pub(crate) struct Shared {
    stop: AtomicBool,
    wake: Notify,
    /// Trigger rounds started (a round asks every source for new data, then runs a batch
    /// or finds nothing to do).
    rounds: AtomicU64,
    /// The number of the last round that found nothing to do, and whether the query ended:
    /// [`StreamingQuery::process_all_available`] waits on it.
    idle: tokio::sync::watch::Sender<(u64, bool)>,
    status: Mutex<Option<QueryStatus>>,
    recent: Mutex<VecDeque<QueryProgress>>,
    exception: Mutex<Option<String>>,
    pub(crate) listeners: Vec<Arc<dyn QueryListener>>,
}

impl Shared {
    pub(crate) fn new(listeners: Vec<Arc<dyn QueryListener>>) -> Self {
        Self {
            stop: AtomicBool::new(false),
            wake: Notify::new(),
            rounds: AtomicU64::new(0),
            idle: tokio::sync::watch::Sender::new((0, false)),
            status: Mutex::default(),
            recent: Mutex::default(),
            exception: Mutex::default(),
            listeners,
        }
    }

    /// A trigger round starts; returns its number (from 1).
    pub(crate) fn begin_round(&self) -> u64 {
        self.rounds.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Round `round` found no new data and nothing else to do.
    pub(crate) fn round_idle(&self, round: u64) {
        self.idle.send_modify(|(last, _)| *last = (*last).max(round));
    }

    /// The query's task ended, however it did.
    pub(crate) fn ended(&self) {
        self.idle.send_modify(|(_, ended)| *ended = true);
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps for `d` or until a stop is requested.
    pub(crate) async fn sleep(&self, d: Duration) {
        if self.stop_requested() {
            return;
        }
        let _ = tokio::time::timeout(d, self.wake.notified()).await;
    }

    pub(crate) fn set_status(&self, message: &str, data: bool, trigger: bool, active: bool) {
        *self.status.lock().expect("status lock") = Some(QueryStatus {
            message: message.to_string(),
            is_data_available: data,
            is_trigger_active: trigger,
            is_active: active,
        });
    }

    pub(crate) fn push_progress(&self, p: QueryProgress) {
        for l in &self.listeners {
            l.on_query_progress(&p);
        }
        let mut recent = self.recent.lock().expect("progress lock");
        if recent.len() == RECENT_PROGRESS {
            recent.pop_front();
        }
        recent.push_back(p);
    }

    pub(crate) fn set_exception(&self, message: String) {
        *self.exception.lock().expect("exception lock") = Some(message);
    }
}

/// A running (or finished) continuous query. Clones are handles on the same query.
#[derive(Clone)]
pub struct StreamingQuery {
    id: String,
    run_id: String,
    name: String,
    checkpoint: String,
    /// The tables it reads, then the one it writes (`None` for a preview).
    sources: Arc<[String]>,
    sink: Option<String>,
    /// The schema of the rows it writes.
    output: arrow::datatypes::SchemaRef,
    shared: Arc<Shared>,
    task: Arc<tokio::sync::Mutex<Option<JoinHandle<Result<()>>>>>,
}

impl std::fmt::Debug for StreamingQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingQuery").field("id", &self.id).field("name", &self.name).finish()
    }
}

impl StreamingQuery {
    pub(crate) fn new(
        id: String,
        run_id: String,
        name: String,
        checkpoint: String,
        (sources, sink, output): (Vec<String>, Option<String>, arrow::datatypes::SchemaRef),
        shared: Arc<Shared>,
        task: JoinHandle<Result<()>>,
    ) -> Self {
        Self { id, run_id, name, checkpoint, sources: sources.into(), sink, output, shared, task: Arc::new(tokio::sync::Mutex::new(Some(task))) }
    }

    /// The schema of the rows it writes (its sink's columns).
    pub fn output_schema(&self) -> arrow::datatypes::SchemaRef {
        Arc::clone(&self.output)
    }

    /// The tables it reads.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The table it writes; `None` for a preview.
    pub fn sink(&self) -> Option<&str> {
        self.sink.as_deref()
    }

    /// The stable query id: the same across restarts on one checkpoint.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of this run.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The query's name (the sink table's, unless given).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its checkpoint is.
    pub fn checkpoint(&self) -> &str {
        &self.checkpoint
    }

    /// Asks the query to stop after the batch in flight. Returns at once.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_waiters();
        self.shared.wake.notify_one();
    }

    /// Waits until the query ends; `Err` if it failed. Later calls return the same outcome.
    /// Cancel-safe: a wait given up (a timeout, Ctrl-C in Python) leaves the task for the
    /// next one to wait for.
    pub async fn await_termination(&self) -> Result<()> {
        let mut task = self.task.lock().await;
        if let Some(handle) = task.as_mut() {
            let joined = handle.await;
            *task = None;
            let outcome = match joined {
                Ok(r) => r,
                Err(e) => Err(WeirError::Terminated(format!("the query task panicked: {e}"))),
            };
            if let Err(e) = &outcome {
                self.shared.set_exception(e.to_string());
            }
            return outcome;
        }
        match self.exception() {
            Some(e) => Err(WeirError::Terminated(e)),
            None => Ok(()),
        }
    }

    /// Waits at most `timeout`; `Ok(true)` when the query ended successfully in time.
    pub async fn await_termination_timeout(&self, timeout: Duration) -> Result<bool> {
        match tokio::time::timeout(timeout, self.await_termination()).await {
            Ok(r) => r.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Waits until the query has processed everything its sources had when this was called
    /// (Spark's `processAllAvailable`): a trigger round that started after the call found
    /// nothing more to do, no-data batches included. Returns at once when the query has
    /// ended; `Err` if it failed. Meant for tests and interactive use: a source that keeps
    /// receiving data may keep it waiting.
    pub async fn process_all_available(&self) -> Result<()> {
        let called_at = self.shared.rounds.load(Ordering::SeqCst);
        let mut idle = self.shared.idle.subscribe();
        let _ = idle.wait_for(|(round, ended)| *ended || *round > called_at).await;
        match self.exception() {
            Some(e) => Err(WeirError::Terminated(e)),
            None => Ok(()),
        }
    }

    /// Whether the query is still running.
    pub fn is_active(&self) -> bool {
        self.status().is_active
    }

    /// What it is doing now.
    pub fn status(&self) -> QueryStatus {
        self.shared.status.lock().expect("status lock").clone().unwrap_or(QueryStatus {
            message: "Initializing".into(),
            is_data_available: false,
            is_trigger_active: false,
            is_active: true,
        })
    }

    /// The progress of the most recent batches, oldest first.
    pub fn recent_progress(&self) -> Vec<QueryProgress> {
        self.shared.recent.lock().expect("progress lock").iter().cloned().collect()
    }

    /// The progress of the last batch.
    pub fn last_progress(&self) -> Option<QueryProgress> {
        self.shared.recent.lock().expect("progress lock").back().cloned()
    }

    /// The error the query failed with, if it did.
    pub fn exception(&self) -> Option<String> {
        self.shared.exception.lock().expect("exception lock").clone()
    }
}
