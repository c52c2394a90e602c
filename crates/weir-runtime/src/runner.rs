//! The batch loop of one query (DESIGN.md, "The batch loop").
//!
//! ```text
//! start:  N = newest offsets/N; commits/N exists -> next batch N+1, else re-run N exactly
//! loop:   [sources caught up] wait for commit N-1
//!         -> plan ends per source -> read and execute, chunk by chunk
//!         -> [first rows for a table] wait for commit N-1's task (it wrote offsets/N and
//!            began the sink, or that is done now)
//!         -> sink.write ... -> in a task: sink.finish (commit N) -> write commits/N
//!            -> progress [-> write offsets/N+1 -> sink.begin(N+1), if N+1 is planned]
//!         -> N += 1 (while that task runs)
//! ```
//! A crash anywhere after `offsets/N` re-runs batch N with the same input; the sink finds its
//! own `txn` and writes nothing twice. `offsets/N` follows `commits/N-1` (see [`Output`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array};
use arrow::compute::kernels::aggregate;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use weir_checkpoint::{Checkpoint, CommitEntry, FORMAT_VERSION, OffsetsEntry, SourceOffsets, StateSize};
use futures::StreamExt;
use weir_connectors::{ConnectorError, ReadOutput, Sink, Source};
use weir_planner::CompiledQuery;
use weir_sql::config::Trigger;
use weir_state::{OperatorMetrics, Place, SnapshotFilter, StateFiles, StateWriter, StatefulOperator};

use crate::error::{Result, WeirError};
use crate::failpoint;
use crate::progress::{
    DurationMs, EventTime, QueryBacklogEvent, QueryIdleEvent, QueryProgress, QueryWarningEvent, SinkProgress, SourceBacklog, SourceProgress, iso_millis,
    now_millis,
};
use crate::query::Shared;

/// How long an idle `0s` trigger waits before asking the sources again.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// A source as the loop drives it.
pub(crate) struct RunSource {
    pub name: String,
    pub source: Box<dyn Source>,
    /// Event-time column and delay, when the table has a WATERMARK.
    pub watermark: Option<(String, Duration)>,
    /// Whether rows that fail to decode go to a dead-letter table (`on_bad_row =
    /// 'dead_letter'`; the table is in [`Sinks::bad`]).
    pub dead_letter: bool,
}

/// State rows an operator hands over at a time for its delta or snapshot: a batch that adds
/// or evicts millions of keys does not keep them all in memory until it commits.
const STATE_WRITE_ROWS: usize = 65_536;

/// Longest wait between two attempts to reach an unavailable source.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One stateful operator of the query's chain, where its state lives, and where its late
/// rows go. The loop knows it only through [`StatefulOperator`].
pub(crate) struct ChainOp {
    pub op: Box<dyn StatefulOperator>,
    pub files: StateFiles,
    /// Whether a source sends its late rows to a late-rows table ([`Sinks::late`]).
    pub late_tables: bool,
    /// The snapshot of the state as of the last batch, being made from its files.
    pub snapshot_job: Option<SnapshotJob>,
}

/// A snapshot of an operator's state made from its files ([`StateFiles::compact`]) on a
/// thread of the blocking pool, begun once its batch committed, while the next batches run.
/// The batch whose snapshot is due next waits for it before its state commit, and so does
/// the end of the run, unless the query was asked to stop (then it is cancelled). A purge
/// meanwhile keeps what it reads: it keeps the files from the newest snapshot there is, and
/// this one reads from that snapshot on.
pub(crate) struct SnapshotJob {
    version: u64,
    handle: tokio::task::JoinHandle<weir_state::Result<()>>,
    /// Set, the snapshot stops before its next record batch and leaves nothing behind.
    cancelled: Arc<std::sync::atomic::AtomicBool>,
}

impl SnapshotJob {
    /// Begins version `version`'s snapshot of the state in `files`, kept by `filter`.
    fn start(checkpoint: &Arc<Checkpoint>, files: &StateFiles, version: u64, filter: SnapshotFilter) -> Self {
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = Arc::clone(&cancelled);
        let keep: SnapshotFilter = Box::new(move |batch| match stop.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err(weir_state::StateError::Data("cancelled: the query stopped".into())),
            false => filter(batch),
        });
        let (checkpoint, files, runtime) = (Arc::clone(checkpoint), files.clone(), tokio::runtime::Handle::current());
        let handle = tokio::task::spawn_blocking(move || runtime.block_on(files.compact(&checkpoint, version, &keep, STATE_WRITE_ROWS)));
        Self { version, handle, cancelled }
    }

    /// Stops it: a query asked to stop does not wait for a snapshot of a big state. The next
    /// run loads the snapshot before and the deltas after it, all kept.
    fn cancel(&self) {
        self.cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits for it. A snapshot that failed is a warning: the state's deltas are all there,
    /// so a restart reads more of them, nothing else.
    async fn finish(self, shared: &Shared, id: &str, run_id: &str, operator: &str) {
        let failed = match self.handle.await {
            Ok(Ok(())) => return,
            Ok(Err(_)) if self.cancelled.load(std::sync::atomic::Ordering::Relaxed) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        let message = format!(
            "the snapshot of {operator}'s state as of batch {} could not be written ({failed}); a restart reads the deltas since the snapshot before it",
            self.version
        );
        warn(shared, id, run_id, message);
    }
}

/// A late-rows table of an operator.
pub(crate) struct LateSink {
    /// Whose late rows it takes: those of the sources of these indexes (the first operator
    /// takes each source's rows as they come), or all of the operator's.
    pub rows_of: Option<Vec<usize>>,
    pub sink: Box<dyn Sink>,
    /// Whether the batch at hand has begun writing to it (with its first late row).
    pub begun: bool,
}

/// The tables a query writes: its sink's, and the dead-letter and late-rows tables beside it.
/// They go with a batch's commit while the next batch is read (see [`Output`]).
pub(crate) struct Sinks {
    pub main: Box<dyn Sink>,
    /// Per source, by index: its dead-letter table (`on_bad_row = 'dead_letter'`).
    pub bad: Vec<Option<DeadLetter>>,
    /// Per operator, by index: its late-rows tables.
    pub late: Vec<Vec<LateSink>>,
    /// Per source: whether the batch at hand has begun its dead-letter table (with its
    /// first bad row).
    bad_begun: Vec<bool>,
}

impl Sinks {
    pub(crate) fn new(main: Box<dyn Sink>, bad: Vec<Option<DeadLetter>>, late: Vec<Vec<LateSink>>) -> Self {
        let bad_begun = vec![false; bad.len()];
        Self { main, bad, late, bad_begun }
    }
}

/// A source's dead-letter table.
pub(crate) struct DeadLetter {
    /// The source's name, for errors.
    pub source: String,
    pub sink: Box<dyn Sink>,
}

/// Where a batch's rows go, and the commit of the batch before.
///
/// Once batch N's rows are all handed to its tables and its state deltas written, its
/// commit (the tables' commits, the deltas completed, `commits/N`) runs as a task of its
/// own while the loop plans batch N+1, reads it and runs it through the operators (when
/// a source has a backlog, see [`Source::has_more`]; else the loop waits for it). The
/// task, once `commits/N` is written, also opens batch N+1 when the loop has planned it by
/// then: writes `offsets/N+1` and begins the tables. Batch N+1 takes the tables back when
/// it first has rows for one of them, or at its own commit at the latest, and waits for the
/// task there (and opens itself if the task did not). So the checkpoint's order is the same
/// as without the overlap (`offsets/N+1` after `commits/N`, a restart re-runs at most one
/// batch), and nothing batch N+1 did before its offsets is visible: its state delta and
/// data files, if any, are staging files and data files no log entry names, written again
/// by a re-run.
pub(crate) struct Output {
    /// The tables, unless a commit has them.
    sinks: Option<Sinks>,
    /// The commit running, of the batch of this id.
    committing: Option<(u64, CommitTask)>,
    /// Hands the commit running the batch to open after it.
    then_open: Option<tokio::sync::oneshot::Sender<Opening>>,
    /// The batch to open at the tables' first use, unless the commit before opens it.
    next: Option<Opening>,
    /// How long the last batch's offsets took to write.
    wal: Duration,
    /// Commits done whose follow-ups the loop has yet to take ([`Runner::take_committed`]).
    done: Vec<Committed>,
}

/// A batch's commit running: it gives the tables back with its outcome.
type CommitTask = tokio::task::JoinHandle<(Sinks, Result<Committed>)>;

/// A batch to open: its offsets, and whether they are still to be written (not for a batch
/// re-run after a restart).
struct Opening {
    entry: OffsetsEntry,
    write_offsets: bool,
}

impl Opening {
    /// Writes the batch's offsets, if they are to be, and begins the main table for it;
    /// returns how long the offsets took.
    async fn open(self, sinks: &mut Sinks, checkpoint: &Checkpoint) -> Result<Duration> {
        let batch_id = self.entry.batch_id;
        let wal = Instant::now();
        if self.write_offsets {
            checkpoint.write_offsets(&self.entry).await?;
            failpoint::hit("after_offsets", batch_id);
        }
        let wal = wal.elapsed();
        sinks.main.begin(batch_id).await.map_err(|e| batch_err(batch_id, e))?;
        sinks.bad_begun.fill(false);
        Ok(wal)
    }
}

/// What a batch's commit leaves for the loop.
struct Committed {
    /// Snapshots being made from the files, by operator index.
    jobs: Vec<(usize, SnapshotJob)>,
    /// Each source's end offset in the batch, for [`Source::committed`].
    ends: BTreeMap<String, Value>,
    /// The next batch's offsets' time, when the commit opened it.
    opened: Option<Duration>,
}

impl Output {
    pub(crate) fn new(sinks: Sinks) -> Self {
        Self { sinks: Some(sinks), committing: None, then_open: None, next: None, wal: Duration::ZERO, done: Vec::new() }
    }

    /// Batch `opening` is next: the commit running opens it, or else the tables' first use.
    fn next_batch(&mut self, opening: Opening) {
        self.wal = Duration::ZERO;
        match self.then_open.take() {
            Some(tx) => {
                if let Err(opening) = tx.send(opening) {
                    self.next = Some(opening); // the commit failed; settling says how
                }
            }
            None => self.next = Some(opening),
        }
    }

    /// Waits for the commit running, if one is: its tables come back, its failure is the
    /// loop's.
    async fn settle(&mut self) -> Result<()> {
        // A commit not handed a batch to open by now opens none.
        self.then_open = None;
        let Some((batch_id, handle)) = self.committing.take() else { return Ok(()) };
        let (sinks, committed) = handle.await.map_err(|e| batch_err(batch_id, format!("its commit did not complete: {e}")))?;
        self.sinks = Some(sinks);
        let committed = committed?;
        if let Some(wal) = committed.opened {
            self.wal = wal;
        }
        self.done.push(committed);
        Ok(())
    }

    /// The tables, begun for the batch at hand: waits for the commit before, then opens
    /// the batch if that commit did not.
    async fn sinks(&mut self, checkpoint: &Checkpoint) -> Result<&mut Sinks> {
        self.settle().await?;
        let sinks = self.sinks.as_mut().ok_or_else(|| WeirError::Config("the query's tables were lost with a failed commit".into()))?;
        if let Some(opening) = self.next.take() {
            self.wal = opening.open(sinks, checkpoint).await?;
        }
        Ok(sinks)
    }

    /// Hands `job` to a task of its own, with the tables.
    fn commit(&mut self, job: CommitJob) {
        let sinks = self.sinks.take().expect("the tables are begun before a commit");
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.then_open = Some(tx);
        self.committing = Some((job.batch_id, tokio::spawn(job.run(sinks, rx))));
    }
}

/// Everything one query needs to run its batches.
pub(crate) struct Runner {
    pub id: String,
    pub run_id: String,
    pub name: String,
    pub checkpoint: Arc<Checkpoint>,
    pub sources: Vec<RunSource>,
    pub compiled: CompiledQuery,
    /// The stateful operators, from the sources up (state loaded by `run`).
    pub operators: Vec<ChainOp>,
    pub trigger: Trigger,
    pub watermark_policy: crate::session::WatermarkPolicy,
    pub retain_batches: u64,
    pub shared: Arc<Shared>,
    /// The static tables the query joins with.
    pub statics: crate::static_tables::StaticTables,
    /// The tables it writes, and the commit of the last batch.
    pub out: Output,
}

/// What the loop carries from one batch to the next.
struct Position {
    next_batch: u64,
    ends: BTreeMap<String, Value>,
    watermark_ms: i64,
    /// The watermark of the batch before (late rows are judged by it).
    late_watermark_ms: i64,
    /// The watermark moved in the last batch: stateful operators need a batch to evict,
    /// even without new data.
    needs_no_data_batch: bool,
    /// Per-source `max event time - delay` over every batch so far (kept in the
    /// checkpoint), for the sources that have had data.
    source_watermarks: BTreeMap<String, i64>,
    last_trigger: Option<Instant>,
    /// Per source, since the last progress: attempts made again while it was unavailable,
    /// and the time from the first failure to the next success.
    outages: BTreeMap<String, (u64, Duration)>,
}

impl Runner {
    pub(crate) async fn run(mut self) -> Result<()> {
        let outcome = self.run_batches().await;
        // The last batch's commit completes; if it failed, that is the first failure.
        let outcome = self.out.settle().await.and(outcome);
        self.take_committed().await;
        // The last snapshot completes, unless the query was asked to stop.
        for c in &mut self.operators {
            if let Some(job) = c.snapshot_job.take() {
                if self.shared.stop_requested() {
                    job.cancel();
                }
                job.finish(&self.shared, &self.id, &self.run_id, c.op.name()).await;
            }
        }
        // The sinks' background work (a Delta checkpoint) ends with the query; a failure of
        // it is a warning: the batches' commits never wait for it.
        let mut sinks: Vec<&mut Box<dyn Sink>> = Vec::new();
        if let Some(s) = self.out.sinks.as_mut() {
            sinks.push(&mut s.main);
            sinks.extend(s.bad.iter_mut().flatten().map(|d| &mut d.sink));
            sinks.extend(s.late.iter_mut().flatten().map(|l| &mut l.sink));
        }
        let mut failed = Vec::new();
        for sink in sinks {
            if let Err(e) = sink.close().await {
                failed.push(e.to_string());
            }
        }
        for e in failed {
            warn(&self.shared, &self.id, &self.run_id, e);
        }
        let active_msg = match &outcome {
            Ok(()) => "Stopped",
            Err(_) => "Terminated with exception",
        };
        self.shared.set_status(active_msg, false, false, false);
        outcome
    }

    async fn run_batches(&mut self) -> Result<()> {
        let mut pos = Position {
            next_batch: 0,
            ends: BTreeMap::new(),
            watermark_ms: 0,
            late_watermark_ms: 0,
            needs_no_data_batch: false,
            source_watermarks: BTreeMap::new(),
            last_trigger: None,
            outages: BTreeMap::new(),
        };
        let latest = self.checkpoint.latest().await?;
        // State as of the last committed batch: the one before a batch to re-run.
        let version = match &latest {
            None => None,
            Some((o, Some(_))) => Some(o.batch_id),
            Some((o, None)) => o.batch_id.checked_sub(1),
        };
        for c in &mut self.operators {
            let op = &mut c.op;
            c.files.load(&self.checkpoint, version, &mut |batch: &RecordBatch| op.restore(batch)).await?;
        }
        let recorded = latest.as_ref().map(|(o, _)| o.clone());
        for s in &mut self.sources {
            let end = recorded.as_ref().and_then(|o| o.sources.get(&s.name)).map(|o| &o.end);
            s.source.restore(&self.checkpoint, recorded.as_ref().map(|o| o.batch_id), end).await?;
        }
        if let Some((offsets, commit)) = latest {
            pos.ends = offsets.sources.iter().map(|(k, v)| (k.clone(), v.end.clone())).collect();
            pos.next_batch = offsets.batch_id + 1;
            match commit {
                Some(c) => {
                    pos.source_watermarks = c.source_watermarks_ms.clone().unwrap_or_default();
                    pos.watermark_ms = c.next_batch_watermark_ms;
                    pos.late_watermark_ms = offsets.batch_watermark_ms;
                    pos.needs_no_data_batch = self.has_stateful_watermark() && pos.watermark_ms > offsets.batch_watermark_ms;
                }
                None => {
                    // Crashed before commits/N: run batch N again with exactly its offsets,
                    // from the watermarks it started from.
                    pos.source_watermarks = offsets.source_watermarks_ms.clone().unwrap_or_default();
                    pos.watermark_ms = offsets.batch_watermark_ms;
                    // It joins with the static tables' versions its first run read.
                    self.statics.replay(offsets.static_versions.as_ref()).await.map_err(|e| batch_err(offsets.batch_id, e))?;
                    self.run_batch(&offsets, &mut pos, Instant::now(), 0, true).await?;
                    if self.trigger == Trigger::Once {
                        return Ok(());
                    }
                }
            }
        }
        // An available-now run's work, per source: (unit, total) when the run started.
        let mut backlog = BTreeMap::new();
        if self.trigger == Trigger::AvailableNow {
            for s in &mut self.sources {
                s.source.freeze_available().await?;
            }
            self.report_backlog(&pos, &mut backlog).await;
        }
        let mut idle_reported = false;
        loop {
            if self.shared.stop_requested() {
                return Ok(());
            }
            // With a backlog (a source's per-trigger limit held data back), the next batch is
            // read while the last one commits. Caught up, it waits for the commit before it
            // is planned: it then takes what came meanwhile, and no row waits for two commits.
            // An available-now run's sources are frozen at its start, so nothing can come
            // meanwhile: its no-data batch (the eviction) runs while the last batch commits.
            if self.trigger != Trigger::AvailableNow && !self.sources.iter().any(|s| s.source.has_more()) {
                self.out.settle().await?;
            }
            self.take_committed().await;
            let started = Instant::now();
            let round = self.shared.begin_round();
            self.shared.set_status("Getting offsets from sources", false, true, true);
            let batch_id = pos.next_batch;
            let mut sources = BTreeMap::new();
            let mut any_new = false;
            for s in &mut self.sources {
                let start = pos.ends.get(&s.name).cloned();
                let mut attempt = 0;
                let mut failed_at = None;
                let planned = loop {
                    // An outage counts from the start of the first attempt that failed.
                    let tried = Instant::now();
                    match s.source.plan_batch(&self.checkpoint, batch_id, start.as_ref()).await {
                        Err(ConnectorError::Unavailable(m)) if !self.shared.stop_requested() => {
                            attempt += 1;
                            failed_at.get_or_insert(tried);
                            wait_for_source(&self.shared, &self.id, &self.run_id, &s.name, &m, attempt).await;
                        }
                        other => break other,
                    }
                };
                if let Some(t) = failed_at {
                    let outage = pos.outages.entry(s.name.clone()).or_default();
                    outage.0 += u64::from(attempt);
                    outage.1 += t.elapsed();
                }
                if attempt > 0 && planned.is_ok() {
                    warn(&self.shared, &self.id, &self.run_id, format!("source '{}' is reachable again; the query goes on", s.name));
                }
                forward_warnings(&self.shared, &self.id, &self.run_id, s.source.as_ref());
                if self.shared.stop_requested() && planned.is_err() {
                    return Ok(());
                }
                match planned.map_err(|e| batch_err(batch_id, e))? {
                    Some(end) => {
                        any_new = true;
                        sources.insert(s.name.clone(), SourceOffsets { start, end });
                    }
                    None => {
                        if let Some(prev) = start {
                            sources.insert(s.name.clone(), SourceOffsets { start: Some(prev.clone()), end: prev });
                        }
                    }
                }
            }
            let latest_offset_ms = started.elapsed().as_millis() as u64;
            if !any_new && !pos.needs_no_data_batch {
                // Idle means every batch is committed.
                self.out.settle().await?;
                self.take_committed().await;
                self.shared.round_idle(round);
                match self.trigger {
                    Trigger::AvailableNow | Trigger::Once => return Ok(()),
                    Trigger::ProcessingTime(interval) => {
                        self.shared.set_status("Waiting for data to arrive", false, false, true);
                        if !idle_reported {
                            idle_reported = true;
                            let event = QueryIdleEvent { id: self.id.clone(), run_id: self.run_id.clone(), timestamp: iso_millis(now_millis()) };
                            for l in &self.shared.listeners {
                                l.on_query_idle(&event);
                            }
                        }
                        self.shared.sleep(if interval.is_zero() { IDLE_POLL } else { interval }).await;
                        continue;
                    }
                }
            }
            idle_reported = false;
            // Static tables that moved to a new version are read again; the versions go
            // into offsets/N, so a replay of the batch joins with the same rows.
            let static_versions = self.statics.refresh().await.map_err(|e| batch_err(batch_id, e))?;
            let entry = OffsetsEntry {
                version: FORMAT_VERSION,
                batch_id,
                batch_watermark_ms: pos.watermark_ms,
                late_events_watermark_ms: pos.late_watermark_ms,
                batch_timestamp_ms: now_millis(),
                sources,
                source_watermarks_ms: self.has_watermarks().then(|| pos.source_watermarks.clone()),
                static_versions,
                run_id: Some(self.run_id.clone()),
            };
            self.run_batch(&entry, &mut pos, started, latest_offset_ms, false).await?;
            if self.trigger == Trigger::Once {
                return Ok(());
            }
            if self.trigger == Trigger::AvailableNow {
                self.report_backlog(&pos, &mut backlog).await;
            }
            if let Trigger::ProcessingTime(interval) = self.trigger {
                let elapsed = started.elapsed();
                if interval > elapsed {
                    self.shared.sleep(interval - elapsed).await;
                }
            }
        }
    }

    /// Runs the batch recorded in `entry`: read, execute, hand its rows to the tables, then
    /// commit it in a task of its own ([`Output`]) that the next batch waits for before it
    /// writes anything visible.
    async fn run_batch(&mut self, entry: &OffsetsEntry, pos: &mut Position, started: Instant, latest_offset_ms: u64, is_replay: bool) -> Result<()> {
        let batch_id = entry.batch_id;
        self.shared.set_status("Processing new data", true, true, true);
        self.out.next_batch(Opening { entry: entry.clone(), write_offsets: !is_replay });

        // Each source's chunks (a file's rows, say) flow through the query as they are
        // decoded: the source reads ahead, the sink encodes in its own task, and a batch
        // never has to fit in memory at once. A stateless query writes each chunk's rows as
        // they come; otherwise the first stateful operator takes them, and once the batch's
        // input is all seen, each operator's output goes through the stage above it to the
        // next operator, and the last one's to the sink (see `weir_state::operator`).
        let mut get_batch = Duration::ZERO;
        let add_started = Instant::now();
        let mut rows_by_source: BTreeMap<String, u64> = BTreeMap::new();
        let mut bytes_by_source: BTreeMap<String, u64> = BTreeMap::new();
        // Rows that failed to decode, sent to a source's dead-letter table.
        let mut bad_by_source: BTreeMap<String, u64> = BTreeMap::new();
        let mut stats = EventStats::default();
        let mut num_output_rows = 0u64;
        // Each operator's state delta is written as the batch goes (see `STATE_WRITE_ROWS`).
        let mut deltas = Vec::with_capacity(self.operators.len());
        for c in &self.operators {
            deltas.push(c.files.delta_writer(&self.checkpoint, batch_id).map_err(|e| batch_err(batch_id, e))?);
        }
        for (source_index, s) in self.sources.iter_mut().enumerate() {
            let Some(o) = entry.sources.get(&s.name) else { continue };
            if o.start.as_ref() == Some(&o.end) {
                continue;
            }
            rows_by_source.insert(s.name.clone(), 0);
            let mut attempt = 0;
            let mut failed_at: Option<Instant> = None;
            let mut chunks = s.source.read_chunks(&self.checkpoint, o.start.as_ref(), &o.end);
            // Chunks done, and chunks to pass over after a restarted read.
            let (mut done, mut skip) = (0usize, 0usize);
            // The rows of this source's read, as its chunks estimate them.
            let mut read_rows: Option<u64> = None;
            loop {
                let waited = Instant::now();
                let next = chunks.next().await;
                get_batch += waited.elapsed();
                let chunk = match next {
                    None => break,
                    Some(Ok(chunk)) => chunk,
                    // The offsets are fixed and a source cuts them into the same chunks every
                    // time: a read that failed for want of the broker starts again, passing
                    // over the chunks this batch has used.
                    Some(Err(ConnectorError::Unavailable(m))) if !self.shared.stop_requested() => {
                        attempt += 1;
                        failed_at.get_or_insert(waited);
                        pos.outages.entry(s.name.clone()).or_default().0 += 1;
                        wait_for_source(&self.shared, &self.id, &self.run_id, &s.name, &m, attempt).await;
                        chunks = s.source.read_chunks(&self.checkpoint, o.start.as_ref(), &o.end);
                        skip = done;
                        continue;
                    }
                    Some(Err(e)) => return Err(batch_err(batch_id, e)),
                };
                if attempt > 0 {
                    attempt = 0;
                    if let Some(t) = failed_at.take() {
                        pos.outages.entry(s.name.clone()).or_default().1 += t.elapsed();
                    }
                    warn(&self.shared, &self.id, &self.run_id, format!("source '{}' is reachable again; the query goes on", s.name));
                }
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                done += 1;
                let ReadOutput { batches, bad_rows, place, bytes, rows_hint } = chunk;
                *bytes_by_source.entry(s.name.clone()).or_default() += bytes;
                let read = rows_by_source.get_mut(&s.name).expect("inserted");
                // The rows of the source's read still to come, this chunk's included.
                read_rows = rows_hint.or(read_rows);
                let expected = read_rows.map(|rows| rows.saturating_sub(*read));
                *read += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                *bad_by_source.entry(s.name.clone()).or_default() += bad_rows.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                if s.dead_letter && bad_rows.iter().any(|b| b.num_rows() > 0) {
                    let sinks = self.out.sinks(&self.checkpoint).await?;
                    let bad_sink = &mut sinks.bad[source_index].as_mut().expect("a source with a dead-letter table has its sink").sink;
                    for bad in bad_rows.iter().filter(|b| b.num_rows() > 0) {
                        if !sinks.bad_begun[source_index] {
                            bad_sink.begin(batch_id).await.map_err(|e| bad_rows_err(batch_id, &s.name, e))?;
                            sinks.bad_begun[source_index] = true;
                        }
                        bad_sink.write(add_batch_id(bad, batch_id)).await.map_err(|e| bad_rows_err(batch_id, &s.name, e))?;
                    }
                }
                stats.add(&s.name, s.watermark.as_ref(), &batches, &mut pos.source_watermarks, batch_id)?;
                let rows =
                    self.compiled.run_pre(BTreeMap::from([(s.name.clone(), batches)])).await.map_err(|e| batch_err(batch_id, e))?;
                match self.operators.first_mut() {
                    Some(first) => {
                        let place = Place { source: source_index as u32, part: place.part, seq: place.seq };
                        first.op.expect_rows(expected.unwrap_or(0));
                        first.op.process(&rows, place, entry.late_events_watermark_ms).map_err(|e| batch_err(batch_id, e))?;
                        write_late_rows(first, 0, &mut self.out, &self.checkpoint, Some(source_index), batch_id).await?;
                    }
                    None => {
                        for batch in rows {
                            num_output_rows += batch.num_rows() as u64;
                            self.out.sinks(&self.checkpoint).await?.main.write(batch).await.map_err(|e| batch_err(batch_id, e))?;
                        }
                    }
                }
            }
            forward_warnings(&self.shared, &self.id, &self.run_id, s.source.as_ref());
        }
        let num_input_rows: u64 = rows_by_source.values().sum();
        let event_time = self.event_time(&stats, pos);
        // The batch's end, up the chain: each operator's output goes through the stage above
        // it to the next operator (or the sink), and its state changes to its delta as they
        // come. Rows an operator passes on are numbered in the order they come.
        let mut state_metrics = Vec::with_capacity(self.operators.len());
        for (i, delta) in deltas.iter_mut().enumerate() {
            let mut seq = 0u32;
            while let Some(out) = self.operators[i].op.next_output(entry.batch_watermark_ms).map_err(|e| batch_err(batch_id, e))? {
                let rows = self.compiled.run_above(i, vec![out]).await.map_err(|e| batch_err(batch_id, e))?;
                match self.operators.get_mut(i + 1) {
                    Some(next) => {
                        let place = Place { source: 0, part: 0, seq };
                        seq = seq.checked_add(1).ok_or_else(|| batch_err(batch_id, "a batch of more than 4 billion output chunks"))?;
                        next.op.process(&rows, place, entry.late_events_watermark_ms).map_err(|e| batch_err(batch_id, e))?;
                        write_late_rows(next, i + 1, &mut self.out, &self.checkpoint, None, batch_id).await?;
                    }
                    None => {
                        for batch in rows {
                            num_output_rows += batch.num_rows() as u64;
                            self.out.sinks(&self.checkpoint).await?.main.write(batch).await.map_err(|e| batch_err(batch_id, e))?;
                        }
                    }
                }
                while let Some(d) = self.operators[i].op.next_delta(STATE_WRITE_ROWS, false).map_err(|e| batch_err(batch_id, e))? {
                    delta.write(&d).await.map_err(|e| batch_err(batch_id, e))?;
                }
            }
            // State is evicted by this batch's watermark: the rest of the delta.
            while let Some(d) = self.operators[i].op.next_delta(STATE_WRITE_ROWS, true).map_err(|e| batch_err(batch_id, e))? {
                delta.write(&d).await.map_err(|e| batch_err(batch_id, e))?;
            }
            state_metrics.push(self.operators[i].op.take_metrics());
        }
        failpoint::hit("after_execute", batch_id);

        // Snapshots of the state as of this batch: those an operator makes from memory are
        // written now, before the next batch changes the state; those made from the files
        // are begun once the batch commits.
        let state_started = Instant::now();
        // A snapshot due waits for the commit before, which may have begun one.
        if self.operators.iter().any(|c| c.files.snapshot_due(batch_id)) {
            self.out.settle().await?;
        }
        self.take_committed().await;
        let mut from_files = Vec::new();
        for (i, c) in self.operators.iter_mut().enumerate() {
            if !c.files.snapshot_due(batch_id) {
                continue;
            }
            // One snapshot at a time: the last one made from the files is complete.
            if let Some(job) = c.snapshot_job.take() {
                job.finish(&self.shared, &self.id, &self.run_id, c.op.name()).await;
            }
            if let Some(filter) = c.op.snapshot_filter(entry.batch_watermark_ms) {
                from_files.push((i, c.files.clone(), filter));
                continue;
            }
            let mut snapshot = c.files.snapshot_writer(&self.checkpoint, batch_id).map_err(|e| batch_err(batch_id, e))?;
            for b in c.op.snapshot(STATE_WRITE_ROWS) {
                snapshot.write(&b.map_err(|e| batch_err(batch_id, e))?).await.map_err(|e| batch_err(batch_id, e))?;
            }
            snapshot.finish().await.map_err(|e| batch_err(batch_id, e))?;
        }
        let snapshots = state_started.elapsed();

        let next_watermark = self.next_watermark(pos);
        let commit = CommitEntry {
            version: FORMAT_VERSION,
            next_batch_watermark_ms: next_watermark,
            num_output_rows,
            sink_version: None,
            source_watermarks_ms: self.has_watermarks().then(|| pos.source_watermarks.clone()),
            run_id: Some(self.run_id.clone()),
            state_sizes: (!state_metrics.is_empty())
                .then(|| state_metrics.iter().map(|m| StateSize { rows: m.num_rows_total, memory_bytes: m.memory_used_bytes }).collect()),
        };

        let since_last = pos.last_trigger.map(|t| started.duration_since(t).as_secs_f64()).unwrap_or(0.0);
        let mut sources = Vec::with_capacity(self.sources.len());
        for s in &self.sources {
            let Some(o) = entry.sources.get(&s.name) else { continue };
            let rows = rows_by_source.get(&s.name).copied().unwrap_or(0);
            sources.push(SourceProgress {
                description: s.source.description(),
                start_offset: o.start.clone(),
                end_offset: Some(o.end.clone()),
                latest_offset: s.source.latest_offset().await.or_else(|| Some(o.end.clone())),
                num_input_rows: rows,
                input_rows_per_second: per_sec(rows, since_last),
                processed_rows_per_second: 0.0, // when committed
                metrics: {
                    let mut metrics = s.source.metrics();
                    if s.dead_letter {
                        metrics.insert("numBadRows".to_string(), bad_by_source.get(&s.name).copied().unwrap_or(0).into());
                    }
                    // weir's own: bytes read, and the outages since the last progress.
                    metrics.insert("numInputBytes".to_string(), bytes_by_source.get(&s.name).copied().unwrap_or(0).into());
                    if let Some((retries, unavailable)) = pos.outages.remove(&s.name) {
                        metrics.insert("numRetries".to_string(), retries.into());
                        metrics.insert("unavailableMs".to_string(), (unavailable.as_millis() as u64).into());
                    }
                    metrics
                },
            });
        }
        let progress = QueryProgress {
            id: self.id.clone(),
            run_id: self.run_id.clone(),
            name: self.name.clone(),
            timestamp: iso_millis(entry.batch_timestamp_ms),
            batch_id,
            is_replay,
            num_input_rows,
            input_rows_per_second: per_sec(num_input_rows, since_last),
            processed_rows_per_second: 0.0, // when committed
            duration_ms: DurationMs {
                latest_offset: latest_offset_ms,
                wal_commit: 0,
                get_batch: get_batch.as_millis() as u64,
                query_planning: 0,
                add_batch: 0,
                commit_offsets: 0,
                trigger_execution: 0,
                sink_commit: 0,
                state_commit: 0,
            },
            event_time,
            // Spark lists the operators from the sink down.
            state_operators: self.operators.iter().zip(&state_metrics).rev().map(|(c, m)| state_operator_json(c.op.name(), m)).collect(),
            sources,
            sink: SinkProgress { description: String::new(), num_output_rows, version: None, metrics: BTreeMap::new() },
            observed_metrics: BTreeMap::new(),
        };

        // The commit: the tables begun, the offsets written, if no rows did that yet.
        self.out.sinks(&self.checkpoint).await?;
        let job = CommitJob {
            batch_id,
            deltas,
            checkpoint: Arc::clone(&self.checkpoint),
            shared: Arc::clone(&self.shared),
            id: self.id.clone(),
            run_id: self.run_id.clone(),
            commit,
            from_files,
            purge: (batch_id.is_multiple_of(10) && batch_id > 0)
                .then(|| (self.retain_batches, self.operators.iter().map(|c| c.files.clone()).collect())),
            ends: entry.sources.iter().map(|(name, o)| (name.clone(), o.end.clone())).collect(),
            progress,
            started,
            add_started,
            get_batch,
            wal: self.out.wal,
            snapshots,
        };
        self.out.commit(job);

        pos.last_trigger = Some(started);
        pos.needs_no_data_batch = self.has_stateful_watermark() && next_watermark > entry.batch_watermark_ms;
        pos.late_watermark_ms = entry.batch_watermark_ms;
        pos.watermark_ms = next_watermark;
        pos.next_batch = batch_id + 1;
        for (name, o) in &entry.sources {
            pos.ends.insert(name.clone(), o.end.clone());
        }
        Ok(())
    }

    /// Takes what the commits done since the last call left: the snapshots they began, and
    /// the sources told what was committed.
    async fn take_committed(&mut self) {
        for committed in std::mem::take(&mut self.out.done) {
            for (i, job) in committed.jobs {
                self.operators[i].snapshot_job = Some(job);
            }
            for s in &self.sources {
                if let Some(end) = committed.ends.get(&s.name)
                    && let Err(e) = s.source.committed(end).await
                {
                    warn(&self.shared, &self.id, &self.run_id, format!("source '{}': {e}", s.name));
                }
            }
        }
    }

    /// Tells listeners what is left of an available-now run (`totals`: each source's unit
    /// and work at the start, filled on the first call). A source that cannot count is left
    /// out; one whose count fails is too, since progress must never stop a query.
    async fn report_backlog(&mut self, pos: &Position, totals: &mut BTreeMap<String, (&'static str, u64)>) {
        let first = totals.is_empty();
        let mut sources = Vec::new();
        for s in &self.sources {
            let left = match s.source.backlog(pos.ends.get(&s.name)).await {
                Ok(Some(b)) => b,
                // The batch itself says what went wrong with the source, if anything did.
                Ok(None) | Err(_) => continue,
            };
            if first {
                totals.insert(s.name.clone(), (left.unit, left.amount));
            }
            let Some(&(unit, total)) = totals.get(&s.name) else { continue };
            sources.push(SourceBacklog { source: s.name.clone(), unit: unit.to_string(), total, remaining: left.amount.min(total) });
        }
        if sources.is_empty() {
            return;
        }
        let event = QueryBacklogEvent { id: self.id.clone(), run_id: self.run_id.clone(), name: self.name.clone(), sources };
        for l in &self.shared.listeners {
            l.on_query_backlog(&event);
        }
    }

    /// Whether a stateful operator's state moves with the watermark.
    fn has_stateful_watermark(&self) -> bool {
        self.operators.iter().any(|c| c.op.has_watermark())
    }

    /// Whether any source of the query has a watermark.
    fn has_watermarks(&self) -> bool {
        self.sources.iter().any(|s| s.watermark.is_some())
    }

    /// The batch's `eventTime` progress; `None` when no source has a watermark.
    fn event_time(&self, stats: &EventStats, pos: &Position) -> Option<EventTime> {
        if !self.has_watermarks() {
            return None;
        }
        let shown = (stats.count > 0).then(|| {
            (iso_millis(stats.min), iso_millis(stats.max), iso_millis((stats.sum / stats.count as i128) as i64))
        });
        Some(EventTime {
            min: shown.as_ref().map(|s| s.0.clone()),
            max: shown.as_ref().map(|s| s.1.clone()),
            avg: shown.map(|s| s.2),
            watermark: iso_millis(pos.watermark_ms),
        })
    }

    /// The watermark for the next batch, as Spark's `WatermarkTracker` makes it: each
    /// watermarked source's `max event time - delay` over every batch so far (0 for a source
    /// that has had no data yet, so it holds a `min` back), combined by the policy, and never
    /// moving back.
    fn next_watermark(&self, pos: &Position) -> i64 {
        let per_source = self
            .sources
            .iter()
            .filter(|s| s.watermark.is_some())
            .map(|s| pos.source_watermarks.get(&s.name).copied().unwrap_or(0));
        let combined = match self.watermark_policy {
            crate::session::WatermarkPolicy::Min => per_source.min(),
            crate::session::WatermarkPolicy::Max => per_source.max(),
        };
        combined.map_or(pos.watermark_ms, |w| w.max(pos.watermark_ms))
    }
}

/// A batch's commit, run as a task of its own ([`Output`]): the tables' commits, the state's
/// deltas completed, `commits/N`, then the snapshots made from the files begun, the old
/// checkpoint entries purged, and the batch's progress reported.
struct CommitJob {
    batch_id: u64,
    deltas: Vec<StateWriter>,
    checkpoint: Arc<Checkpoint>,
    shared: Arc<Shared>,
    id: String,
    run_id: String,
    /// `commits/N`, without the sink's version yet.
    commit: CommitEntry,
    /// Snapshots to make from the files once the batch is committed, by operator index.
    from_files: Vec<(usize, StateFiles, SnapshotFilter)>,
    /// Every tenth batch: the batches of the checkpoint to keep, and the state files to purge.
    purge: Option<(u64, Vec<StateFiles>)>,
    ends: BTreeMap<String, Value>,
    /// The batch's progress, but for what its commit adds.
    progress: QueryProgress,
    started: Instant,
    add_started: Instant,
    get_batch: Duration,
    wal: Duration,
    /// The time the loop spent on the batch's snapshots (part of `stateCommit`).
    snapshots: Duration,
}

impl CommitJob {
    /// Commits the batch, then opens the next if the loop hands it over by then.
    async fn run(mut self, mut sinks: Sinks, then_open: tokio::sync::oneshot::Receiver<Opening>) -> (Sinks, Result<Committed>) {
        let mut committed = self.commit(&mut sinks).await;
        if let Ok(c) = &mut committed
            && let Ok(opening) = then_open.await
        {
            match opening.open(&mut sinks, &self.checkpoint).await {
                Ok(wal) => c.opened = Some(wal),
                Err(e) => committed = Err(e),
            }
        }
        (sinks, committed)
    }

    async fn commit(&mut self, sinks: &mut Sinks) -> Result<Committed> {
        let batch_id = self.batch_id;
        // A runner that lost its lease to another stops here, before its commit.
        self.checkpoint.check_lease().await?;
        failpoint::fail("commit_error", batch_id).map_err(|e| batch_err(batch_id, e))?;
        // The sink commits while the state's deltas complete: a state version counts only
        // once `commits/N` is written (a restart loads the last committed batch's, and a
        // re-run batch writes its delta again), so the delta may land before the sink's
        // commit as well as after it.
        let sink_commit = async {
            let started = Instant::now();
            sinks.main.finish().await.map(|commit| (commit, started.elapsed()))
        };
        // A stateful query has a delta for each operator.
        let deltas = std::mem::take(&mut self.deltas);
        let stateful = !deltas.is_empty();
        let state_deltas = async {
            let started = Instant::now();
            for delta in deltas {
                delta.finish().await?;
            }
            Ok::<_, weir_state::StateError>(started.elapsed())
        };
        let (sink_commit, state_deltas) = tokio::join!(sink_commit, state_deltas);
        let (sink_commit, sink_commit_time) = sink_commit.map_err(|e| batch_err(batch_id, e))?;
        let state_deltas_time = state_deltas.map_err(|e| batch_err(batch_id, e))?;
        for w in sinks.main.take_warnings() {
            warn(&self.shared, &self.id, &self.run_id, w);
        }
        failpoint::hit("after_sink_commit", batch_id);
        // The bad and late rows' tables commit after the sink, each with its own txn, so a
        // replay skips what they committed before. A table not created yet is begun without
        // rows, so that the query's first batch creates it as it does the sink's.
        for (i, dead_letter) in sinks.bad.iter_mut().enumerate() {
            let Some(DeadLetter { source, sink }) = dead_letter.as_mut() else { continue };
            let begun = std::mem::take(&mut sinks.bad_begun[i]);
            if !begun && !sink.awaits_creation() {
                continue;
            }
            if !begun {
                sink.begin(batch_id).await.map_err(|e| bad_rows_err(batch_id, source, e))?;
            }
            sink.finish().await.map_err(|e| bad_rows_err(batch_id, source, e))?;
        }
        for late in sinks.late.iter_mut().flatten().filter(|l| l.begun || l.sink.awaits_creation()) {
            if !late.begun {
                late.sink.begin(batch_id).await.map_err(|e| late_rows_err(batch_id, e))?;
            }
            late.begun = false;
            late.sink.finish().await.map_err(|e| late_rows_err(batch_id, e))?;
        }
        if stateful {
            failpoint::hit("after_state_commit", batch_id);
        }
        let commit_started = Instant::now();
        self.commit.sink_version = sink_commit.version;
        self.checkpoint.write_commit(batch_id, &self.commit).await?;
        failpoint::hit("after_commit_log", batch_id);
        let commit_time = commit_started.elapsed();
        // The state as of this batch is committed: its snapshots are made from its files while
        // the next batches run.
        let jobs = std::mem::take(&mut self.from_files)
            .into_iter()
            .map(|(i, files, filter)| (i, SnapshotJob::start(&self.checkpoint, &files, batch_id, filter)))
            .collect();
        if let Some((retain, files)) = self.purge.take() {
            self.checkpoint.purge(retain).await?;
            for f in files {
                // Only version N-1 can still be needed (to re-run batch N if this run dies
                // before commits/N); older state is history no one reads.
                f.purge(&self.checkpoint, batch_id.saturating_sub(1)).await.map_err(|e| batch_err(batch_id, e))?;
            }
        }

        let total = self.started.elapsed();
        let p = &mut self.progress;
        p.processed_rows_per_second = per_sec(p.num_input_rows, total.as_secs_f64());
        for s in &mut p.sources {
            s.processed_rows_per_second = per_sec(s.num_input_rows, total.as_secs_f64());
        }
        let d = &mut p.duration_ms;
        d.wal_commit = self.wal.as_millis() as u64;
        d.add_batch = self.add_started.elapsed().saturating_sub(self.get_batch + self.wal + commit_time).as_millis() as u64;
        d.commit_offsets = commit_time.as_millis() as u64;
        d.trigger_execution = total.as_millis() as u64;
        d.sink_commit = sink_commit_time.as_millis() as u64;
        d.state_commit = (state_deltas_time + self.snapshots).as_millis() as u64;
        p.sink.description = sinks.main.description();
        p.sink.version = sink_commit.version;
        p.sink.metrics = sink_commit.compaction.map(compaction_metrics).unwrap_or_default();
        if sink_commit.commit_retries > 0 {
            p.sink.metrics.insert("numCommitRetries".to_string(), sink_commit.commit_retries.into());
        }
        self.shared.push_progress(self.progress.clone());
        Ok(Committed { jobs, ends: std::mem::take(&mut self.ends), opened: None })
    }
}

fn per_sec(rows: u64, secs: f64) -> f64 {
    if secs > 0.0 { rows as f64 / secs } else { 0.0 }
}

/// Event-time statistics of one batch, gathered chunk by chunk.
struct EventStats {
    min: i64,
    max: i64,
    sum: i128,
    count: u64,
}

impl Default for EventStats {
    fn default() -> Self {
        Self { min: i64::MAX, max: i64::MIN, sum: 0, count: 0 }
    }
}

impl EventStats {
    /// Adds the event times of `batches` of source `name` (watermarked by `watermark`:
    /// event-time column and delay), and raises the source's `max event time - delay` in
    /// `source_watermarks`.
    fn add(
        &mut self,
        name: &str,
        watermark: Option<&(String, Duration)>,
        batches: &[RecordBatch],
        source_watermarks: &mut BTreeMap<String, i64>,
        batch_id: u64,
    ) -> Result<()> {
        let Some((column, delay)) = watermark else { return Ok(()) };
        let mut source_max = i64::MIN;
        for b in batches {
            let Ok(idx) = b.schema().index_of(column) else { continue };
            let millis = arrow::compute::cast(b.column(idx), &DataType::Timestamp(TimeUnit::Millisecond, None))
                .and_then(|a| arrow::compute::cast(&a, &DataType::Int64))
                .map_err(|e| WeirError::Batch { batch_id, message: format!("event-time column '{column}': {e}") })?;
            let millis = millis.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
            if millis.null_count() == millis.len() {
                continue;
            }
            if let (Some(lo), Some(hi)) = (aggregate::min(millis), aggregate::max(millis)) {
                self.min = self.min.min(lo);
                self.max = self.max.max(hi);
                source_max = source_max.max(hi);
            }
            self.sum += millis.iter().flatten().map(i128::from).sum::<i128>();
            self.count += (millis.len() - millis.null_count()) as u64;
        }
        if source_max != i64::MIN {
            let candidate = source_max.saturating_sub(delay.as_millis() as i64);
            let entry = source_watermarks.entry(name.to_string()).or_insert(candidate);
            *entry = (*entry).max(candidate);
        }
        Ok(())
    }
}

/// One entry of `stateOperators`, with Spark's names.
fn state_operator_json(name: &str, m: &OperatorMetrics) -> Value {
    serde_json::json!({
        "operatorName": name,
        "numRowsTotal": m.num_rows_total,
        "numRowsUpdated": m.num_rows_updated,
        "numRowsRemoved": m.num_rows_removed,
        "numRowsDroppedByWatermark": m.num_rows_dropped_by_watermark,
        "memoryUsedBytes": m.memory_used_bytes,
        "customMetrics": m.custom,
    })
}

/// Sends the late rows of operator `index` (`c`), of the source of index `source` when it has
/// just taken a chunk of a source's rows, to the late-rows table that takes them, begun with
/// the first of them. A source that asks for no table has its late rows dropped (and counted).
async fn write_late_rows(c: &mut ChainOp, index: usize, out: &mut Output, checkpoint: &Checkpoint, source: Option<usize>, batch_id: u64) -> Result<()> {
    let late = c.op.take_late_rows();
    if !c.late_tables || late.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    let takes = |l: &LateSink| match (&l.rows_of, source) {
        (None, _) => true,
        (Some(sources), Some(s)) => sources.contains(&s),
        (Some(_), None) => false,
    };
    let sinks = out.sinks(checkpoint).await?;
    let Some(table) = sinks.late[index].iter_mut().find(|l| takes(l)) else { return Ok(()) };
    for batch in late.into_iter().filter(|b| b.num_rows() > 0) {
        if !table.begun {
            table.sink.begin(batch_id).await.map_err(|e| late_rows_err(batch_id, e))?;
            table.begun = true;
        }
        table.sink.write(batch).await.map_err(|e| late_rows_err(batch_id, e))?;
    }
    Ok(())
}

fn batch_err(batch_id: u64, e: impl std::fmt::Display) -> WeirError {
    WeirError::Batch { batch_id, message: e.to_string() }
}

fn bad_rows_err(batch_id: u64, source: &str, e: impl std::fmt::Display) -> WeirError {
    batch_err(batch_id, format!("bad rows of '{source}': {e}"))
}

fn late_rows_err(batch_id: u64, e: impl std::fmt::Display) -> WeirError {
    batch_err(batch_id, format!("late rows: {e}"))
}

/// A sink's compaction after a batch, as progress shows it.
fn compaction_metrics(c: weir_connectors::Compaction) -> BTreeMap<String, Value> {
    let mut metrics = BTreeMap::from([
        ("compactionRemovedFiles".to_string(), c.files_removed.into()),
        ("compactionAddedFiles".to_string(), c.files_added.into()),
    ]);
    if let Some(v) = c.version {
        metrics.insert("compactionVersion".to_string(), v.into());
    }
    metrics
}

/// Tells listeners about something that did not stop the query.
fn warn(shared: &Shared, id: &str, run_id: &str, message: String) {
    let event = QueryWarningEvent { id: id.to_string(), run_id: run_id.to_string(), timestamp: iso_millis(now_millis()), message };
    for l in &shared.listeners {
        l.on_query_warning(&event);
    }
}

fn forward_warnings(shared: &Shared, id: &str, run_id: &str, source: &dyn Source) {
    for w in source.take_warnings() {
        warn(shared, id, run_id, w);
    }
}

/// Shows that source `name` is unavailable and waits before attempt `attempt + 1`: 100 ms,
/// doubling up to five seconds.
async fn wait_for_source(shared: &Shared, id: &str, run_id: &str, name: &str, message: &str, attempt: u32) {
    let backoff = (Duration::from_millis(100) * 2u32.saturating_pow(attempt.min(16) - 1)).min(MAX_BACKOFF);
    shared.set_status(&format!("Waiting for source '{name}': {message}"), false, true, true);
    // Say it once, then every tenth attempt, so a long outage does not flood the output.
    if attempt == 1 || attempt.is_multiple_of(10) {
        warn(
            shared,
            id,
            run_id,
            format!("source '{name}' is unavailable (attempt {attempt}, next in {} ms): {message}", backoff.as_millis()),
        );
    }
    shared.sleep(backoff).await;
}

/// A dead-letter schema with the `batch_id` column weir adds to every bad row.
pub(crate) fn with_batch_id(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new("batch_id", DataType::Int64, false)));
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// Bad rows of batch `batch_id`, with the batch they were read in.
fn add_batch_id(batch: &RecordBatch, batch_id: u64) -> RecordBatch {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(vec![batch_id as i64; batch.num_rows()])));
    RecordBatch::try_new(with_batch_id(&batch.schema()), columns).expect("bad rows plus batch_id match their schema")
}
