//! `weir`: run continuous SQL pipelines exactly once into Delta tables.
//!
//! A thin layer over `weir_runtime::Session`: `weir run` reads a script, executes its
//! statements, prints progress and stops cleanly on Ctrl-C or SIGTERM; `weir shell` (in
//! `shell/`) takes statements interactively; `weir optimize` and `weir vacuum` (in
//! `upkeep.rs`) look after the Delta tables pipelines write; `weir checkpoint show` looks
//! into a checkpoint.

mod bar;
mod checkpoint;
mod log;
mod shell;
mod upkeep;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use weir_runtime::delta_upkeep::{OptimizeOptions, VacuumOptions};
use weir_runtime::progress::{QueryBacklogEvent, QueryIdleEvent, QueryStartedEvent, QueryTerminatedEvent, QueryWarningEvent};
use weir_runtime::{
    Executed, QueryListener, QueryOptions, QueryProgress, Session, SessionConfig, Trigger, WatermarkPolicy, WeirError,
};

#[derive(Parser)]
#[command(name = "weir", version, about = "Exactly-once streaming SQL into Delta Lake tables")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline in FILE: CREATE TABLE statements declare sources and sinks, each
    /// INSERT INTO sink SELECT ... starts a continuous query. Running the same command again
    /// resumes where the last run stopped. Ctrl-C or SIGTERM stops after the batch in flight.
    Run {
        /// The SQL script.
        file: PathBuf,
        /// Checkpoint directory or URL (s3://, gs://, az://, abfss://) [default:
        /// .weir/checkpoints/<sink table>]. In an object store its settings come from the
        /// cloud's standard variables, WEIR_CHECKPOINT_STORAGE_<KEY> or SET
        /// checkpoint.storage.<key>, else the Delta sink's storage.* options; a runner holds
        /// a lease on it (WEIR_CHECKPOINT_LEASE_SECONDS, default 30).
        #[arg(long)]
        checkpoint: Option<String>,
        /// available-now: process what is there at start, then exit; once: one batch, then
        /// exit; an interval such as 10s: one batch per interval, forever (0s: as soon as
        /// data arrives).
        #[arg(long, default_value = "0s", value_parser = parse_trigger)]
        trigger: Trigger,
        /// Progress output on stderr: auto is a progress bar on a terminal with --trigger
        /// available-now, else a line per batch (human).
        #[arg(long, value_enum, default_value_t = ProgressFormat::Auto)]
        progress: ProgressFormat,
        /// With several watermarked sources, the query's watermark is the minimum of theirs
        /// (no source's on-time rows are late) or the maximum (smaller state).
        #[arg(long, default_value = "min", value_parser = parse_policy)]
        watermark_policy: WatermarkPolicy,
        /// Threads that run the query [default: the cores available]. The results are the
        /// same with any number.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks
        /// a free one), with /healthz and /readyz for an orchestrator's probes.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// /readyz fails for a query whose last batch, or trigger that found nothing new,
        /// ended longer ago than this.
        #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
        ready_within: std::time::Duration,
        /// Log lines on stderr: human (`weir: ...`) or json (one object per line, with the
        /// query, its id and the batch id as fields).
        #[arg(long, value_enum, default_value_t = log::LogFormat::Human)]
        log_format: log::LogFormat,
        /// What to log: a level (error, warn, info, debug, trace) or per target
        /// (warn,weir_connectors=debug) [default: RUST_LOG, else info for weir and warn for
        /// the libraries it uses].
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<String>,
    },
    /// Compact the small files of a Delta table into bigger ones (delta-rs's OPTIMIZE).
    ///
    /// The rows stay the same: one commit removes the small files and adds the compacted
    /// ones, both with dataChange = false and without a txn, so it can run while a pipeline
    /// appends to the table. The removed files stay for older versions until `weir vacuum`.
    /// Prints the files and bytes removed and added.
    Optimize {
        /// The table: a local path, or a file://, s3://, gs://, az:// or abfss:// URL.
        table: String,
        /// Size of the files written; files this big or bigger are left alone [default: the
        /// table's delta.targetFileSize, else 128MB].
        #[arg(long, value_name = "SIZE", value_parser = upkeep::parse_size)]
        target_size: Option<u64>,
        /// Only the partitions this predicate selects: partition columns compared with
        /// values, joined by AND, e.g. "day = '2024-01-01' AND region IN ('eu', 'us')".
        #[arg(long = "where", value_name = "PREDICATE")]
        partition_filter: Option<String>,
        /// Z-order the files of each partition by these columns (comma-separated) instead of
        /// compacting them.
        #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
        zorder_by: Vec<String>,
        /// A setting of the table's object store, as a sink's storage.<key> options
        /// (aws_region=eu-west-1); repeatable. Without it the cloud's standard variables apply.
        #[arg(long = "storage", value_name = "KEY=VALUE", value_parser = upkeep::parse_key_value)]
        storage: Vec<(String, String)>,
    },
    /// Delete the files a Delta table removed longer ago than the retention (delta-rs's
    /// VACUUM).
    ///
    /// Versions older than the retention can no longer be read afterwards. A retention below
    /// the table's delta.deletedFileRetentionDuration (7 days unless set) is refused unless
    /// --force. Prints the files deleted, or with --dry-run those that would be.
    Vacuum {
        /// The table: a local path, or a file://, s3://, gs://, az:// or abfss:// URL.
        table: String,
        /// Delete the files removed longer ago than this, e.g. 7d or 36h [default: the
        /// table's delta.deletedFileRetentionDuration].
        #[arg(long, value_name = "DURATION", value_parser = upkeep::parse_duration)]
        retain: Option<std::time::Duration>,
        /// List the files that would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a retention below the table's delta.deletedFileRetentionDuration: readers of
        /// older versions, and writers still committing, may then miss files.
        #[arg(long)]
        force: bool,
        /// Also delete files that no version of the table references (writes that never
        /// committed), when older than the retention, as Spark's VACUUM does.
        #[arg(long)]
        full: bool,
        /// A setting of the table's object store, as a sink's storage.<key> options
        /// (aws_region=eu-west-1); repeatable. Without it the cloud's standard variables apply.
        #[arg(long = "storage", value_name = "KEY=VALUE", value_parser = upkeep::parse_key_value)]
        storage: Vec<(String, String)>,
    },
    /// Look into a query's checkpoint. Read-only and safe while the query runs.
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// An interactive SQL shell: preview streams live, run pipelines, query Delta tables.
    ///
    /// Declare tables with CREATE TABLE; SELECT ... FROM a source shows its rows as batches
    /// arrive (Ctrl-C returns to the prompt); INSERT INTO starts a pipeline in the
    /// background (SHOW QUERIES, STOP QUERY); a SELECT over Delta or Parquet tables runs once.
    /// \help lists the commands. With statements on stdin or -c it runs them as a script:
    /// plain output, no prompt, and a non-zero exit code at the first error.
    Shell {
        /// Run these statements (and \commands) instead of reading stdin, then leave.
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
        /// Leave without asking, stopping running queries after their batch in flight.
        /// Without it, the shell asks at the prompt, and a script waits for them to end.
        #[arg(long)]
        yes: bool,
        /// Threads that run queries [default: the cores available].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Serve Prometheus metrics of the queries the shell starts at http://ADDR/metrics,
        /// with /healthz and /readyz.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// The query, its sources, the newest batch with its offsets and watermark and whether
    /// it committed (if not, the next run replays it), the state operators with their rows
    /// and files, and each Kafka source's lag now. An object store's settings come from
    /// WEIR_CHECKPOINT_STORAGE_<KEY>. Read-only: safe while the query runs.
    Show {
        /// The checkpoint directory or URL (.weir/checkpoints/<sink table> by default).
        dir: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
        /// The Kafka sources' broker (the checkpoint does not keep it): with it, each Kafka
        /// source's lag now, behind the last committed batch.
        #[arg(long, value_name = "HOST:PORT")]
        bootstrap_servers: Option<String>,
        /// A librdkafka setting for that broker (security.protocol=SASL_SSL); repeatable.
        #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = checkpoint::parse_property, requires = "bootstrap_servers")]
        kafka_properties: Vec<(String, String)>,
    },
    /// The rows of a stateful operator's state as of a committed batch, as the query would
    /// restore them: a deduplication's keys with when each expires, or a window
    /// aggregation's open groups with their partial aggregates. Read-only.
    State {
        /// The checkpoint directory or URL.
        dir: String,
        /// The operator, as `weir checkpoint show` names it (dedup, window-1) [default: the
        /// only one].
        #[arg(long)]
        operator: Option<String>,
        /// Only rows whose COLUMN shows as VALUE (e.g. event_id=e-42); repeatable.
        #[arg(long = "key", value_name = "COLUMN=VALUE", value_parser = checkpoint::parse_key)]
        keys: Vec<(String, String)>,
        /// The state as of this committed batch [default: the last committed].
        #[arg(long)]
        batch: Option<u64>,
        /// At most this many rows (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ProgressFormat {
    /// A progress bar on a terminal with --trigger available-now, else human.
    Auto,
    /// A short line per batch: rows in, rows out, duration.
    Human,
    /// Spark-compatible StreamingQueryProgress JSON, one object per line.
    Json,
    /// Nothing.
    None,
}

fn parse_trigger(s: &str) -> Result<Trigger, String> {
    s.parse()
}

fn parse_policy(s: &str) -> Result<WatermarkPolicy, String> {
    s.parse()
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    weir_sql::interval::parse_duration(s).map_err(|_| format!("'{s}' is not a duration: write e.g. 30s, 5m or 1 hour"))
}

/// Prints progress to stderr.
struct Printer {
    format: ProgressFormat,
    /// The progress bars, when shown: a query with a bar has no batch lines.
    bars: Option<bar::Bars>,
}

impl QueryListener for Printer {
    fn on_query_started(&self, e: &QueryStartedEvent) {
        if !matches!(self.format, ProgressFormat::None) {
            tracing::info!(query = %e.name, query_id = %e.id, checkpoint = %e.checkpoint, "query '{}' (id {}) started; checkpoint {}", e.name, e.id, e.checkpoint);
        }
        for w in &e.warnings {
            tracing::warn!(query = %e.name, query_id = %e.id, "{w}");
        }
    }

    fn on_query_progress(&self, p: &QueryProgress) {
        if let Some(bars) = self.bars.as_ref().filter(|b| b.shows(&p.id)) {
            bars.progress(p);
            return;
        }
        match self.format {
            ProgressFormat::Human | ProgressFormat::Auto => {
                let version = p.sink.version.map(|v| format!(", table version {v}")).unwrap_or_default();
                let replay = if p.is_replay { " (replayed after a restart)" } else { "" };
                let no_data = if p.sources.iter().all(|s| s.start_offset.as_ref() == s.end_offset.as_ref()) {
                    " (no-data batch: the watermark moved, state evicted)"
                } else {
                    ""
                };
                // One clause per stateful operator, from the sources up.
                let state: String = p
                    .state_operators
                    .iter()
                    .rev()
                    .map(|op| match op["customMetrics"]["numDroppedDuplicateRows"].as_u64() {
                        Some(duplicates) => format!(
                            ", deduplication: {} keys in state, {duplicates} duplicates and {} late rows dropped",
                            op["numRowsTotal"], op["numRowsDroppedByWatermark"]
                        ),
                        None => format!(
                            ", window: {} groups in state, {} written, {} late groups dropped",
                            op["numRowsTotal"], op["numRowsRemoved"], op["numRowsDroppedByWatermark"]
                        ),
                    })
                    .collect();
                let watermark = p.event_time.as_ref().map(|e| format!(", watermark {}", e.watermark)).unwrap_or_default();
                // The Delta sink's auto_compact, after the batch's commit.
                let compacted = match (p.sink.metrics.get("compactionRemovedFiles"), p.sink.metrics.get("compactionAddedFiles")) {
                    (Some(removed), Some(added)) => {
                        let version = p.sink.metrics.get("compactionVersion").map(|v| format!(" (table version {v})")).unwrap_or_default();
                        format!(", compacted {removed} small files into {added}{version}")
                    }
                    _ => String::new(),
                };
                tracing::info!(
                    query = %p.name,
                    query_id = %p.id,
                    batch_id = p.batch_id,
                    rows_in = p.num_input_rows,
                    rows_out = p.sink.num_output_rows,
                    duration_ms = p.duration_ms.trigger_execution,
                    "batch {}: {} rows in, {} rows out, {} ms{version}{watermark}{state}{compacted}{no_data}{replay}",
                    p.batch_id,
                    p.num_input_rows,
                    p.sink.num_output_rows,
                    p.duration_ms.trigger_execution
                );
            }
            ProgressFormat::Json => eprintln!("{}", p.to_json()),
            ProgressFormat::None => {}
        }
    }

    fn on_query_idle(&self, _e: &QueryIdleEvent) {}

    fn on_query_backlog(&self, e: &QueryBacklogEvent) {
        if let Some(bars) = &self.bars {
            bars.backlog(e);
        }
    }

    fn on_query_warning(&self, e: &QueryWarningEvent) {
        tracing::warn!(query_id = %e.id, "{}", e.message);
    }

    fn on_query_terminated(&self, e: &QueryTerminatedEvent) {
        if let Some(bars) = &self.bars {
            bars.finish(&e.id, if e.exception.is_some() { "failed" } else { "done" });
        }
    }
}

/// The session configuration (`--threads`) and a runtime with that many worker threads, as
/// `weir run` and `weir shell` start them; `None` (said on stderr) when the runtime cannot start.
fn session_and_runtime(threads: Option<u16>) -> Option<(SessionConfig, tokio::runtime::Runtime)> {
    let mut config = SessionConfig::default();
    if let Some(n) = threads {
        config.threads = usize::from(n);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(config.threads).enable_all();
    weir_runtime::without_lifo_slot(&mut builder);
    match builder.build() {
        Ok(runtime) => Some((config, runtime)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { file, checkpoint, trigger, progress, watermark_policy, threads, metrics_addr, ready_within, log_format, log_level } => {
            if let Err(e) = log::init(log_format, log_level.as_deref()) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            let Some((mut config, runtime)) = session_and_runtime(threads) else {
                return ExitCode::FAILURE;
            };
            config.metrics_addr = metrics_addr;
            config.ready_within = ready_within;
            let options = QueryOptions { checkpoint, trigger, name: None, watermark_policy, starting_offsets: None };
            runtime.block_on(run(file, config, options, progress))
        }
        Command::Shell { command, yes, threads, metrics_addr } => shell::main(shell::ShellArgs { command, yes, threads, metrics_addr }),
        Command::Checkpoint { command: CheckpointCommand::Show { dir, json, bootstrap_servers, kafka_properties } } => {
            let kafka = bootstrap_servers.map(|bootstrap_servers| weir_runtime::inspect::KafkaLagOptions {
                bootstrap_servers,
                properties: kafka_properties,
                timeout: std::time::Duration::from_secs(10),
            });
            checkpoint::show(&dir, json, kafka.as_ref())
        }
        Command::Checkpoint { command: CheckpointCommand::State { dir, operator, keys, batch, limit, json } } => {
            let query = weir_runtime::inspect::StateQuery { operator, batch, keys, limit: (limit > 0).then_some(limit) };
            checkpoint::state(&dir, &query, json)
        }
        Command::Optimize { table, target_size, partition_filter, zorder_by, storage } => {
            upkeep::optimize(&table, storage, OptimizeOptions { target_size, partition_filter, zorder_by })
        }
        Command::Vacuum { table, retain, dry_run, force, full, storage } => {
            upkeep::vacuum(&table, storage, VacuumOptions { retain, dry_run, force, full })
        }
    }
}

async fn run(file: PathBuf, config: SessionConfig, options: QueryOptions, progress: ProgressFormat) -> ExitCode {
    let shown = file.display().to_string();
    let fail = |e: WeirError| {
        tracing::error!("{}", with_file(&shown, &e));
        ExitCode::FAILURE
    };
    let script = match std::fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot read {shown}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut session = Session::new(config);
    // The bar needs a person watching and an end to measure against.
    let bars = (matches!(progress, ProgressFormat::Auto) && options.trigger == Trigger::AvailableNow && std::io::stderr().is_terminal())
        .then(bar::Bars::new);
    session.add_listener(Arc::new(Printer { format: progress, bars }));
    match session.serve_metrics().await {
        Ok(Some(addr)) => tracing::info!(address = %addr, "metrics at http://{addr}/metrics (health: /healthz, /readyz)"),
        Ok(None) => {}
        Err(e) => return fail(e),
    }
    let statements = match weir_sql::parse_script(&script) {
        Ok(s) => s,
        Err(e) => return fail(e.into()),
    };
    if let Some(other) = statements.iter().find(|s| !matches!(s, weir_sql::Statement::CreateTable(_) | weir_sql::Statement::Insert(_))) {
        tracing::error!(
            "{shown}:{}: a pipeline script holds CREATE TABLE and INSERT INTO statements; SELECT, SHOW, DESCRIBE and DROP are for `weir shell`",
            other.line()
        );
        return ExitCode::FAILURE;
    }
    let inserts = statements.iter().filter(|s| matches!(s, weir_sql::Statement::Insert(_))).count();
    if inserts == 0 {
        tracing::error!("{shown} starts no query: add INSERT INTO <sink> SELECT ... FROM <source>");
        return ExitCode::FAILURE;
    }
    if inserts > 1 && options.checkpoint.is_some() {
        tracing::error!("{shown} has {inserts} INSERT statements, and each query needs its own checkpoint: drop --checkpoint to use .weir/checkpoints/<sink table>");
        return ExitCode::FAILURE;
    }
    let mut queries = Vec::new();
    for statement in statements {
        match session.execute(statement, &options).await {
            Ok(Executed::Started(q)) => queries.push(q),
            Ok(_) => {}
            Err(e) => {
                for q in &queries {
                    q.stop();
                }
                return fail(e);
            }
        }
    }

    let queries = Arc::new(queries);
    let stopper = Arc::clone(&queries);
    tokio::spawn(async move {
        // Ctrl-C and SIGTERM (an orchestrator's stop) alike: stop after the batch in flight,
        // so no batch is left half-written; the same signal again aborts.
        let mut stops = StopSignals::new();
        if let Some(signal) = stops.next().await {
            tracing::info!("{signal}: stopping after the batch in flight ({signal} again to abort)");
            for q in stopper.iter() {
                q.stop();
            }
            if let Some(signal) = stops.next().await {
                tracing::info!("{signal}: aborted; the next run resumes from the checkpoint");
                std::process::exit(if signal == "SIGTERM" { 143 } else { 130 });
            }
        }
    });
    let mut code = ExitCode::SUCCESS;
    for q in queries.iter() {
        if let Err(e) = q.await_termination().await {
            for other in queries.iter() {
                other.stop();
            }
            code = fail(e);
        }
    }
    code
}

/// The signals that ask `weir run` to stop: Ctrl-C (SIGINT) and SIGTERM.
struct StopSignals {
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> Self {
        Self { terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok() }
    }

    /// The next stop signal's name; `None` if signals cannot be received.
    async fn next(&mut self) -> Option<&'static str> {
        let terminate = async {
            match self.terminate.as_mut() {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.ok().map(|()| "Ctrl-C"),
            r = terminate => r.map(|()| "SIGTERM"),
        }
    }
}

/// `file:line: message` for errors about a statement, the message alone otherwise.
fn with_file(file: &str, e: &WeirError) -> String {
    match e {
        WeirError::Statement { line, message } => format!("{file}:{line}: {message}"),
        WeirError::Sql(s) => match s.line {
            Some(line) => format!("{file}:{line}: {}", s.message),
            None => s.message.clone(),
        },
        other => other.to_string(),
    }
}

/// glibc's malloc gives every thread that allocates an arena of its own, up to eight per
/// core, and each arena keeps what is freed in it up to its trim threshold, which follows
/// the largest block freed so far (megabytes here). The batch loop allocates on the async
/// workers and on the blocking pool, which starts threads as it needs them: every one of
/// those threads held its own few megabytes of free memory. One arena per core is enough
/// (the threads that allocate at the same time are the ones on a core) and cut the peak
/// RSS of the one-batch 2M-event run by about 25 MB, at the same speed. `MALLOC_ARENA_MAX`
/// or `GLIBC_TUNABLES`, when set, are left to speak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() || std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = i32::try_from(cores).unwrap_or(i32::MAX);
    // SAFETY: mallopt only sets a parameter of the allocator, which takes its own lock; it
    // runs first thing in main, and the value is a positive number of arenas.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
