//! A session: the tables declared so far and the queries started from them. The CLI, the
//! REPL shell and the Python bindings are thin layers over this type.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use weir_checkpoint::{Checkpoint, FORMAT_VERSION, Location, Metadata, StateOperatorSpec, StorageOptions};
use weir_connectors::memory::MemoryTable;
use weir_connectors::{AppId, MemoryTables, make_sink, make_source};
use weir_planner::{SourceDef, compile};
use weir_sql::config::{ConnectorConfig, DeltaConfig, StartingOffsets, Trigger};
use weir_sql::{CreateTable, Insert, Statement, parse_script};

use crate::error::{Result, WeirError};
use crate::progress::{QueryListener, QueryStartedEvent, QueryTerminatedEvent, iso_millis, now_millis};
use crate::query::{Shared, StreamingQuery};
use crate::catalog::TableDescription;
use crate::preview::Preview;
use crate::runner::{RunSource, Runner};
use crate::static_tables::StaticTables;
use arrow::record_batch::RecordBatch;
use weir_connectors::channel::PreviewBatch;

/// A declared table.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// The statement that declared it.
    pub create: CreateTable,
    /// Its connector settings.
    pub config: ConnectorConfig,
    /// Its place among the session's declarations, which numbers a query's sources (the
    /// rows of the one declared first win ties).
    pub declared: u64,
}

impl TableDef {
    pub(crate) fn declared_schema(&self) -> Option<SchemaRef> {
        (!self.create.columns.is_empty()).then(|| Arc::new(Schema::new(self.create.columns.clone())))
    }
}

/// How to run a query.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Checkpoint location; default `<checkpoint_root>/<sink table>`.
    pub checkpoint: Option<String>,
    /// When batches run.
    pub trigger: Trigger,
    /// Query name; default the sink table's name.
    pub name: Option<String>,
    /// How the watermarks of several sources combine (Spark's `multipleWatermarkPolicy`).
    pub watermark_policy: WatermarkPolicy,
    /// Where Kafka sources whose table sets no `starting_offsets` start (the shell's
    /// `SET starting_offsets = earliest`); `None`: at `latest`, the table's default.
    pub starting_offsets: Option<StartingOffsets>,
}

/// How the query's watermark follows several watermarked sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatermarkPolicy {
    /// The slowest source sets the pace: no source's on-time rows are dropped (default).
    #[default]
    Min,
    /// The fastest source sets the pace: state stays small, slower sources' rows may be late.
    Max,
}

impl WatermarkPolicy {
    /// Its name, as `--watermark-policy` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

impl std::str::FromStr for WatermarkPolicy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "min" => Ok(Self::Min),
            "max" => Ok(Self::Max),
            other => Err(format!("'{other}' is not a watermark policy: use min or max")),
        }
    }
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            checkpoint: None,
            trigger: Trigger::ProcessingTime(std::time::Duration::ZERO),
            name: None,
            watermark_policy: WatermarkPolicy::Min,
            starting_offsets: None,
        }
    }
}

/// Session-wide settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where default checkpoints go (`.weir/checkpoints`).
    pub checkpoint_root: PathBuf,
    /// How many batches of offsets and commits a checkpoint keeps; at least 1 (a restart
    /// resumes from the last one).
    pub retain_batches: u64,
    /// How many partitions a query's plan runs on at once (default: the cores available).
    /// Results never depend on it.
    pub threads: usize,
    /// The object store settings of checkpoints (object_store's keys, as in a table's
    /// `storage.*` options): `WEIR_CHECKPOINT_STORAGE_<KEY>` variables, then
    /// `SET checkpoint.storage.<key> = '...'`. When empty, a checkpoint on the same kind of
    /// store as the query's Delta sink takes the sink table's `storage.*` options.
    pub checkpoint_storage: StorageOptions,
    /// How long a runner's lease on a checkpoint in an object store lasts unless renewed
    /// (`WEIR_CHECKPOINT_LEASE_SECONDS`, default 30): after a crash on another host, the
    /// next runner waits at most this long.
    pub checkpoint_lease: std::time::Duration,
    /// Where [`Session::serve_metrics`] serves `/metrics`, `/healthz` and `/readyz`
    /// (`weir run --metrics-addr`); `None`: nowhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `/readyz` answers 503 for a query whose last batch (or trigger that found nothing
    /// new) ended longer ago than this (default 5 minutes).
    pub ready_within: std::time::Duration,
}

/// The prefix of `SET` keys and variables that hold the checkpoint's store settings.
const CHECKPOINT_STORAGE: &str = "checkpoint.storage.";

impl Default for SessionConfig {
    fn default() -> Self {
        let checkpoint_storage = std::env::vars()
            .filter_map(|(k, v)| Some((k.strip_prefix("WEIR_CHECKPOINT_STORAGE_")?.to_ascii_lowercase(), v)))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        let checkpoint_lease = std::env::var("WEIR_CHECKPOINT_LEASE_SECONDS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .map_or(weir_checkpoint::log::DEFAULT_LEASE, std::time::Duration::from_secs_f64);
        Self {
            checkpoint_root: PathBuf::from(".weir/checkpoints"),
            retain_batches: 100,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            checkpoint_storage,
            checkpoint_lease,
            metrics_addr: None,
            ready_within: std::time::Duration::from_secs(300),
        }
    }
}

/// Declared tables, listeners, the queries started, and the memory sink's rows.
#[derive(Default)]
pub struct Session {
    config: SessionConfig,
    pub(crate) tables: BTreeMap<String, TableDef>,
    listeners: Vec<Arc<dyn QueryListener>>,
    pub(crate) memory: MemoryTables,
    /// The functions and rows of the tables a program registered.
    pub(crate) registered: crate::registry::Registered,
    /// Every query started from this session (previews included), oldest first.
    queries: std::sync::Mutex<Vec<StreamingQuery>>,
    /// Tables declared so far, dropped ones included: the next one's [`TableDef::declared`].
    declarations: u64,
}

/// What executing one statement did.
#[derive(Debug)]
pub enum Executed {
    /// A table was declared.
    Created(String),
    /// A table was dropped.
    Dropped(String),
    /// A query was started.
    Started(StreamingQuery),
    /// A `SELECT` over streams started a live preview.
    Preview(Preview),
    /// A `SELECT` over static tables (or `SHOW TABLES`) ran; its rows.
    Rows(Vec<RecordBatch>),
    /// `DESCRIBE`.
    Described(TableDescription),
    /// `STOP QUERY`: the query, asked to stop after its batch in flight.
    Stopped(StreamingQuery),
    /// `SHOW PROGRESS`: the query's last progress (`None` before its first batch).
    Progress(StreamingQuery, Option<Box<crate::progress::QueryProgress>>),
    /// `SET checkpoint.storage.<key> = ...`: a session setting, as it can be shown (a
    /// secret's value masked).
    Set(String),
}

/// Where a query started by the session writes.
enum Output<'a> {
    /// A declared sink table (`INSERT INTO`).
    Table(&'a str),
    /// A preview's channel.
    Preview(tokio::sync::mpsc::Sender<PreviewBatch>),
}

impl Output<'_> {
    /// The name the query's writes go under (query name, side tables, default checkpoint).
    fn name(&self) -> &str {
        match self {
            Self::Table(t) => t,
            Self::Preview(_) => "preview",
        }
    }
}

impl Session {
    /// A session with `config`.
    pub fn new(config: SessionConfig) -> Self {
        Self { config, ..Default::default() }
    }

    /// Registers a listener for every query started from now on.
    pub fn add_listener(&mut self, listener: Arc<dyn QueryListener>) {
        self.listeners.push(listener);
    }

    /// Serves Prometheus metrics of the queries started from now on, with health and
    /// readiness, at [`SessionConfig::metrics_addr`] (see [`crate::metrics`]); returns the
    /// address bound, or `None` when none is configured.
    pub async fn serve_metrics(&mut self) -> Result<Option<std::net::SocketAddr>> {
        let Some(addr) = self.config.metrics_addr else { return Ok(None) };
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let bound = metrics
            .serve(addr, self.config.ready_within)
            .await
            .map_err(|e| WeirError::Config(format!("cannot serve metrics at {addr}: {e} (option --metrics-addr)")))?;
        self.add_listener(metrics);
        Ok(Some(bound))
    }

    /// The declared tables.
    pub fn tables(&self) -> &BTreeMap<String, TableDef> {
        &self.tables
    }

    /// The rows a `memory` sink table has received, by batch.
    pub fn memory_table(&self, name: &str) -> Option<MemoryTable> {
        self.memory.lock().expect("memory tables lock").get(name).cloned()
    }

    /// Executes every statement of `script`; each `INSERT` starts a query with `options`.
    pub async fn execute_script(&mut self, script: &str, options: &QueryOptions) -> Result<Vec<Executed>> {
        let mut out = Vec::new();
        for statement in parse_script(script)? {
            out.push(self.execute(statement, options).await?);
        }
        Ok(out)
    }

    /// Executes one statement. A `SELECT` that reads a stream starts a live preview; one that
    /// reads only static tables (Delta, Parquet) runs once.
    pub async fn execute(&mut self, statement: Statement, options: &QueryOptions) -> Result<Executed> {
        match statement {
            Statement::CreateTable(create) => {
                let name = create.name.clone();
                self.create_table(create)?;
                Ok(Executed::Created(name))
            }
            Statement::Insert(insert) => self.start(&insert, options.clone()).await.map(Executed::Started),
            Statement::Select(select) => {
                if self.reads_streams(&select)? {
                    self.preview(&select, options.clone()).await.map(Executed::Preview)
                } else {
                    self.query_static(&select).await.map(Executed::Rows)
                }
            }
            Statement::DropTable { name, line } => {
                self.drop_table(&name, line)?;
                Ok(Executed::Dropped(name))
            }
            Statement::ShowTables { .. } => Ok(Executed::Rows(vec![self.show_tables()])),
            Statement::Describe { name, line } => self.describe(&name, line).map(Executed::Described),
            Statement::ShowQueries { .. } => Ok(Executed::Rows(vec![self.show_queries()])),
            Statement::ShowProgress { name, line } => {
                let query = self.query(&name, line)?;
                let last = query.last_progress().map(Box::new);
                Ok(Executed::Progress(query, last))
            }
            Statement::StopQuery { name, line } => self.stop_query(&name, line).map(Executed::Stopped),
            Statement::Set { key, value, line } => match key.strip_prefix(CHECKPOINT_STORAGE) {
                Some(option) if !option.is_empty() => {
                    let shown = match weir_sql::config::is_secret_property(option) {
                        true => "****",
                        false => value.as_str(),
                    };
                    let done = format!("{key} = {shown}");
                    self.config.checkpoint_storage.insert(option.to_string(), value);
                    Ok(Executed::Set(done))
                }
                _ => Err(WeirError::at(
                    line,
                    format!(
                        "SET {key}: a session itself takes only {CHECKPOINT_STORAGE}<key> (the checkpoint's object store settings); others come from its client (weir shell's SET, QueryOptions in a program)"
                    ),
                )),
            },
        }
    }

    /// Every query started from this session (previews included), oldest first.
    pub fn queries(&self) -> Vec<StreamingQuery> {
        self.queries.lock().expect("queries lock").clone()
    }

    /// The session's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Forgets table `name` (see [`Session::drop_table`] for the checks).
    pub(crate) fn forget_table(&mut self, name: &str) {
        self.tables.remove(name);
        self.registered.forget(name);
    }

    /// Declares a table; its options are checked now.
    pub fn create_table(&mut self, create: CreateTable) -> Result<()> {
        if self.tables.contains_key(&create.name) {
            return Err(WeirError::at(create.line, format!("table '{}' is already declared", create.name)));
        }
        let config = ConnectorConfig::from_table(&create)?;
        check_storage(&create.name, &config).map_err(|m| WeirError::at(create.line, m))?;
        if create.watermark.is_some() && !config.can_stream() {
            return Err(WeirError::at(
                create.line,
                format!("table '{}': WATERMARK only applies to tables read as streams (kafka, file, datagen, delta)", create.name),
            ));
        }
        let declared = self.next_declaration();
        self.tables.insert(create.name.clone(), TableDef { create, config, declared });
        Ok(())
    }

    /// The [`TableDef::declared`] of the next table declared.
    pub(crate) fn next_declaration(&mut self) -> u64 {
        self.declarations += 1;
        self.declarations
    }

    /// Starts `INSERT INTO sink SELECT ...` as a continuous query. Everything is checked
    /// before the first batch: the query, the sink's schema, the checkpoint's owner.
    pub async fn start(&self, insert: &Insert, options: QueryOptions) -> Result<StreamingQuery> {
        self.start_query(&insert.query, insert.line, Output::Table(&insert.sink), options).await.map(|(query, _)| query)
    }

    /// Starts `select` as a live preview: a continuous query over the streams it reads whose
    /// batches come to the returned [`Preview`]. Its checkpoint is a temporary directory,
    /// deleted when the preview closes; it writes no table. File sources start with the files
    /// there now, Kafka sources where their `starting_offsets` say (`latest` by default), as a
    /// pipeline does. `options.checkpoint` is ignored.
    pub async fn preview(&self, select: &weir_sql::Select, options: QueryOptions) -> Result<Preview> {
        let dir = tempfile::Builder::new()
            .prefix("weir-preview-")
            .tempdir()
            .map_err(|e| WeirError::Config(format!("cannot make a temporary checkpoint for the preview (in $TMPDIR or /tmp): {e}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(PREVIEW_QUEUE);
        let options = QueryOptions { checkpoint: Some(dir.path().display().to_string()), ..options };
        let (query, schema) = self.start_query(&select.query, select.line, Output::Preview(tx), options).await?;
        Ok(Preview::new(query, schema, rx, dir))
    }

    /// Runs `select`, which reads only static tables (Delta, Parquet), once, now.
    pub async fn query_static(&self, select: &weir_sql::Select) -> Result<Vec<RecordBatch>> {
        let line = select.line;
        let ctx = weir_planner::batch::batch_context(self.config.threads);
        for name in weir_planner::batch::referenced_tables(&select.query).map_err(|e| WeirError::at(line, e))? {
            let Some(def) = self.tables.get(&name) else { continue };
            self.register_static_table(&ctx, &name, def).await.map_err(|e| WeirError::at(line, e))?;
        }
        weir_planner::batch::run_batch(&ctx, &select.query).await.map_err(|e| WeirError::at(line, crate::catalog::with_table_hint(e.to_string())))
    }

    /// Whether `select` reads a stream (a source table, or `STREAM(t)`), so runs as a preview.
    fn reads_streams(&self, select: &weir_sql::Select) -> Result<bool> {
        Ok(!self.stream_tables(&select.query, select.line, false)?.is_empty())
    }

    /// The tables `query` reads as streams, in the order it names them:
    /// - Kafka, file and datagen tables, always;
    /// - the tables it marks `STREAM(t)` (which must be Delta tables or sources);
    /// - in a continuous query (`continuous`, an INSERT INTO) that marks none and reads no
    ///   Kafka, file or datagen table, every Delta table: a Delta-to-Delta pipeline hop.
    ///
    /// Every other Delta or Parquet table is static: read whole, as it is, as the static
    /// side of a join or by a batch query.
    pub(crate) fn stream_tables(&self, query: &str, line: usize, continuous: bool) -> Result<Vec<String>> {
        let (referenced, marked) = weir_planner::batch::referenced_tables_marked(query).map_err(|e| WeirError::at(line, e))?;
        for name in &marked {
            match self.tables.get(name) {
                Some(def) if !def.config.can_stream() => {
                    return Err(WeirError::at(
                        line,
                        format!("STREAM({name}): table '{name}' (connector '{}') cannot be read as a stream; streams are kafka, file, datagen and delta tables", def.config.name()),
                    ));
                }
                Some(_) => {}
                None => return Err(crate::catalog::no_such_table(self, name, line)),
            }
        }
        let config = |t: &String| self.tables.get(t).map(|d| &d.config);
        let reads_source = referenced.iter().any(|t| config(t).is_some_and(ConnectorConfig::is_source));
        let delta_streams = continuous && marked.is_empty() && !reads_source;
        Ok(referenced
            .iter()
            .filter(|t| match config(t) {
                Some(c) if c.is_source() => true,
                Some(ConnectorConfig::Delta(_)) => delta_streams || marked.contains(t),
                _ => false,
            })
            .cloned()
            .collect())
    }

    /// Starts `query` writing to `output`; returns the query and its output schema.
    async fn start_query(&self, query: &str, line: usize, output: Output<'_>, options: QueryOptions) -> Result<(StreamingQuery, SchemaRef)> {
        if self.config.retain_batches == 0 {
            return Err(WeirError::Config(
                "SessionConfig.retain_batches is 0: a checkpoint must keep at least the last batch, which a restart resumes from; use 1 or more (default 100)".into(),
            ));
        }
        let sink_name = output.name().to_string();
        let sink_table = matches!(output, Output::Table(_)).then(|| sink_name.clone());
        // A Delta sink with merge_schema takes the query's columns by name and adds new ones
        // to its table; any other sink takes them by position, as they are.
        let merge_schema = match sink_table.as_ref().and_then(|t| self.tables.get(t)).map(|d| &d.config) {
            Some(ConnectorConfig::Delta(d)) => Some(d.sink.merge_schema),
            _ => None,
        };
        let mut sink: Box<dyn weir_connectors::Sink> = match output {
            Output::Table(table) => {
                let sink_def = self.tables.get(table).ok_or_else(|| {
                    WeirError::at(line, format!("INSERT INTO {table}: no such table; declare it with CREATE TABLE {table} WITH (connector = 'delta', path = '...')"))
                })?;
                if !sink_def.config.is_sink() {
                    return Err(WeirError::at(line, format!("INSERT INTO {table}: connector '{}' is a source, not a sink", sink_def.config.name())));
                }
                self.table_sink(table, sink_def, line)?
            }
            Output::Preview(tx) => Box::new(weir_connectors::channel::ChannelSink::new(tx)),
        };

        // Sources: the tables the query reads as streams.
        let streams = self.stream_tables(query, line, sink_table.is_some())?;
        // In the order the script declared them: rows of an earlier one win ties.
        let mut stream_defs: Vec<(&String, &TableDef)> = self.tables.iter().filter(|(n, _)| streams.contains(n)).collect();
        stream_defs.sort_by_key(|(_, def)| def.declared);
        let mut sources = Vec::new();
        for (name, def) in stream_defs {
            let config = match (&def.config, &options.starting_offsets) {
                (ConnectorConfig::Kafka(k), Some(start)) if def.create.options.get("starting_offsets").is_none() => {
                    ConnectorConfig::Kafka(weir_sql::config::KafkaConfig { starting_offsets: start.clone(), ..k.clone() })
                }
                _ => def.config.clone(),
            };
            // A Delta table without declared columns that a query of this session writes
            // (the hop before, in the same script) has that query's columns, also before its
            // first commit creates it.
            let declared = def.declared_schema().or_else(|| match def.config {
                ConnectorConfig::Delta(_) => self.queries().into_iter().find(|q| q.is_active() && q.sink() == Some(name.as_str())).map(|q| q.output_schema()),
                _ => None,
            });
            let source = make_source(name, &config, declared).await.map_err(|e| WeirError::at(def.create.line, e))?;
            sources.push((name.clone(), def, source));
        }
        let target = sink.target_schema().await.map_err(|e| WeirError::at(line, e))?;
        let (mut statics, static_defs) = self.open_static_tables(query, line, &streams).await?;
        let defs: Vec<SourceDef> = sources
            .iter()
            .map(|(n, def, s)| SourceDef {
                name: n.clone(),
                schema: s.schema(),
                event_time: def.create.watermark.as_ref().map(|w| w.column.clone()),
            })
            .collect();
        let compiled = compile(query, &defs, &static_defs, target, self.config.threads).await.map_err(|e| {
            // The planner knows the sink's columns, not where it is: name it.
            let m = e.to_string();
            match m.contains("the sink table") {
                // An existing Delta table takes other columns by name with merge_schema.
                true if merge_schema == Some(false) && m.starts_with("the query produces") => WeirError::at(
                    line,
                    format!(
                        "{m} (the sink table is {}); set merge_schema = true on '{sink_name}' to write the query's columns into the table by name, adding its new ones",
                        sink.description()
                    ),
                ),
                true => WeirError::at(line, format!("{m} (the sink table is {})", sink.description())),
                false => WeirError::at(line, m),
            }
        })?;
        statics.retain(compiled.static_tables());
        let used: Vec<String> = compiled.sources().map(str::to_string).collect();
        let mut run_sources: Vec<RunSource> = sources
            .into_iter()
            .filter(|(n, _, _)| used.contains(n))
            .map(|(name, def, source)| RunSource {
                watermark: def.create.watermark.as_ref().map(|w| (w.column.clone(), w.delay)),
                name,
                source,
                dead_letter: false,
            })
            .collect();
        for s in &run_sources {
            if let Some((column, _)) = &s.watermark {
                let field = s.source.schema().field_with_name(column).cloned().map_err(|_| {
                    WeirError::at(line, format!("source '{}': WATERMARK column '{column}' is not in its schema", s.name))
                })?;
                if !matches!(field.data_type(), arrow::datatypes::DataType::Timestamp(_, _)) {
                    return Err(WeirError::at(line, format!("source '{}': WATERMARK column '{column}' must be a timestamp, it is {}", s.name, weir_sql::types::sql_name(field.data_type()))));
                }
            }
        }

        let mut warnings = Vec::new();
        let crate::operators::Planned { operators, specs: state_operators, late_tables, mut late_sinks } =
            crate::operators::plan(self, &compiled, &run_sources, &sink_name, line, &mut warnings)?;
        self.check_written_tables(sink_table.as_deref(), line, &run_sources, &late_tables)?;

        // The checkpoint: lock it, then check it belongs to this query.
        let location = match &options.checkpoint {
            Some(c) => c.clone(),
            None => self.config.checkpoint_root.join(&sink_name).display().to_string(),
        };
        let run_id = uuid::Uuid::new_v4().to_string();
        let checkpoint_storage = self.checkpoint_storage(&location, sink_table.as_deref());
        let checkpoint = Arc::new(Checkpoint::open_with(&location, &checkpoint_storage, &run_id, self.config.checkpoint_lease).await?);
        if checkpoint.is_unsafe() {
            warnings.push(format!(
                "checkpoint {}: storage.allow_unsafe_rename = true, so no lease keeps a second runner out, and where the store cannot write conditionally, entries are checked, then written; run one runner at a time",
                checkpoint.display()
            ));
        }
        let identity_sources: BTreeMap<String, String> =
            run_sources.iter().map(|s| (s.name.clone(), s.source.description())).collect();
        let identity_sink = sink.description();
        let output_schema = compiled.output_schema();
        let sink_columns = output_schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), weir_sql::types::sql_name(f.data_type())))
            .collect::<Vec<_>>()
            .join(", ");
        let mut watermark_policy = options.watermark_policy;
        // With merge_schema, a run whose output has other columns than the checkpoint recorded
        // (a query changed to emit one more) writes them by name: recorded once the sink opens.
        let mut widened = None;
        let id = match checkpoint.metadata().await? {
            Some(meta) => {
                if let Some(before) = &meta.sink_columns
                    && *before != sink_columns
                {
                    if merge_schema != Some(true) {
                        return Err(WeirError::at(
                            line,
                            format!(
                                "the sink {} changed since this query last wrote to it: its columns were ({before}) and are now ({sink_columns}); weir writes nothing into a table whose columns someone else changed. Restore the table, start over with a new --checkpoint, or set merge_schema = true on '{sink_name}' to write the query's columns into the table by name",
                                identity_sink
                            ),
                        ));
                    }
                    widened = Some(Metadata { sink_columns: Some(sink_columns.clone()), ..meta.clone() });
                }
                if let Some(before) = &meta.state_operators
                    && *before != state_operators
                {
                    return Err(WeirError::at(line, state_operators_changed(before, &state_operators, &checkpoint.display())));
                }
                if let Some(kept) = meta.watermark_policy.as_deref().and_then(|p| p.parse::<WatermarkPolicy>().ok())
                    && kept != watermark_policy
                {
                    warnings.push(format!(
                        "the checkpoint was made with watermark policy '{}', which it keeps (as Spark does); '{}' is ignored. Start over with a new --checkpoint to change it",
                        kept.name(),
                        watermark_policy.name()
                    ));
                    watermark_policy = kept;
                }
                if meta.sources != identity_sources || meta.sink != identity_sink {
                    return Err(WeirError::at(
                        line,
                        format!(
                            "checkpoint {} belongs to a different query: it reads {} and writes {}, but this query reads {} and writes {}; use another --checkpoint, or delete it to start over",
                            checkpoint.display(),
                            describe_sources(&meta.sources),
                            meta.sink,
                            describe_sources(&identity_sources),
                            identity_sink
                        ),
                    ));
                }
                meta.id
            }
            None => {
                let meta = Metadata {
                    version: FORMAT_VERSION,
                    id: uuid::Uuid::new_v4().to_string(),
                    query: query.to_string(),
                    sources: identity_sources,
                    sink: identity_sink,
                    sink_columns: Some(sink_columns),
                    state_operators: Some(state_operators),
                    watermark_policy: Some(watermark_policy.name().to_string()),
                    weir_version: env!("CARGO_PKG_VERSION").to_string(),
                    created_at_ms: now_millis(),
                };
                checkpoint.write_metadata(&meta).await?;
                meta.id
            }
        };
        // Each table has its own txn app id: two tables sharing one would take each other's
        // commits of a batch for their own.
        sink.open(&output_schema, &AppId::sink(&id), &checkpoint).await.map_err(|e| WeirError::at(line, e))?;
        warnings.extend(sink.take_warnings());
        if let Some(meta) = widened {
            checkpoint.replace_metadata(&meta).await?;
        }
        for (sinks, tables) in late_sinks.iter_mut().zip(&late_tables) {
            for (late_sink, late) in sinks.iter_mut().zip(tables) {
                let app_id = AppId::side_table(&id, &late.sink_name);
                late_sink
                    .sink
                    .open(&late.schema, &app_id, &checkpoint)
                    .await
                    .map_err(|e| WeirError::at(line, format!("late-rows table: {e}")))?;
            }
        }

        let mut bad_sinks = Vec::with_capacity(run_sources.len());
        for s in &mut run_sources {
            let Some((path, schema)) = s.source.dead_letter() else {
                bad_sinks.push(None);
                continue;
            };
            let schema = crate::runner::with_batch_id(&schema);
            let storage = self.storage_of(&s.name);
            let config = ConnectorConfig::Delta(DeltaConfig::at(path, storage));
            let table = format!("{}_bad_rows", s.name);
            let mut bad_sink = make_sink(&table, &config, None, &self.memory).map_err(|e| WeirError::at(line, e))?;
            bad_sink
                .open(&schema, &AppId::side_table(&id, &table), &checkpoint)
                .await
                .map_err(|e| WeirError::at(line, format!("dead-letter table of '{}': {e}", s.name)))?;
            s.dead_letter = true;
            bad_sinks.push(Some(crate::runner::DeadLetter { source: s.name.clone(), sink: bad_sink }));
        }

        let name = options.name.clone().unwrap_or_else(|| sink_name.clone());
        let tables = (run_sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>(), sink_table.clone(), Arc::clone(&output_schema));
        let shared = Arc::new(Shared::new(self.listeners.clone()));
        let started = QueryStartedEvent {
            id: id.clone(),
            run_id: run_id.clone(),
            name: name.clone(),
            checkpoint: checkpoint.display(),
            timestamp: iso_millis(now_millis()),
            warnings,
        };
        for l in &self.listeners {
            l.on_query_started(&started);
        }
        let runner = Runner {
            id: id.clone(),
            run_id: run_id.clone(),
            name: name.clone(),
            checkpoint: Arc::clone(&checkpoint),
            sources: run_sources,
            out: crate::runner::Output::new(crate::runner::Sinks::new(sink, bad_sinks, late_sinks)),
            compiled,
            operators,
            trigger: options.trigger,
            watermark_policy,
            retain_batches: self.config.retain_batches,
            shared: Arc::clone(&shared),
            statics,
        };
        let task_shared = Arc::clone(&shared);
        let (task_id, task_run_id) = (id.clone(), run_id.clone());
        let task_checkpoint = Arc::clone(&checkpoint);
        let task = tokio::spawn(async move {
            let outcome = runner.run().await;
            // The next runner need not wait for this one's lease to expire.
            task_checkpoint.release().await;
            let event = QueryTerminatedEvent {
                id: task_id,
                run_id: task_run_id,
                exception: outcome.as_ref().err().map(ToString::to_string),
            };
            if let Some(e) = &event.exception {
                task_shared.set_exception(e.clone());
            }
            task_shared.ended();
            for l in &task_shared.listeners {
                l.on_query_terminated(&event);
            }
            outcome
        });
        let query = StreamingQuery::new(id, run_id, name, checkpoint.display(), tables, shared, task);
        self.queries.lock().expect("queries lock").push(query.clone());
        Ok((query, output_schema))
    }
}

impl Session {
    /// The store settings of a query's checkpoint at `location`: the session's
    /// (`checkpoint.storage.*`), else those of its Delta sink when the checkpoint is on the
    /// same kind of store (`s3://` both, say).
    fn checkpoint_storage(&self, location: &str, sink: Option<&str>) -> StorageOptions {
        if !self.config.checkpoint_storage.is_empty() {
            return self.config.checkpoint_storage.clone();
        }
        let scheme = |l: &str| l.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match (scheme(location), sink.and_then(|s| self.tables.get(s)).map(|t| &t.config)) {
            (Some(cs), Some(ConnectorConfig::Delta(c))) if cs != "file" && scheme(&c.path).as_ref() == Some(&cs) => c.storage.clone(),
            _ => StorageOptions::new(),
        }
    }

    /// Opens the static tables (Delta, Parquet) that `query` reads, for its stream-static
    /// joins: those it does not read as `streams`.
    pub(crate) async fn open_static_tables(&self, query: &str, line: usize, streams: &[String]) -> Result<(StaticTables, Vec<weir_planner::StaticDef>)> {
        let referenced = weir_planner::batch::referenced_tables(query).map_err(|e| WeirError::at(line, e))?;
        let tables: Vec<(&str, &ConnectorConfig)> = referenced
            .iter()
            .filter(|n| !streams.contains(n))
            .filter_map(|n| self.tables.get(n).map(|d| (n.as_str(), &d.config)))
            .filter(|(_, c)| matches!(c, ConnectorConfig::Delta(_) | ConnectorConfig::Parquet(_)))
            .collect();
        StaticTables::open(&tables).await.map_err(|e| WeirError::at(line, e))
    }

    /// The object store settings (`storage.*` options) of the declared table `table`.
    fn storage_of(&self, table: &str) -> StorageOptions {
        self.tables.get(table).map(|t| t.config.storage()).unwrap_or_default()
    }

    /// Refuses a query that would write two of its Delta tables (the sink, dead-letter and
    /// late-rows tables) at one path, or one inside another's directory: their commits and
    /// files would mix. The message names both options. Nothing is created: a query refused
    /// here leaves no directory behind.
    fn check_written_tables(&self, sink: Option<&str>, line: usize, sources: &[RunSource], late_tables: &[Vec<crate::operators::LateTable>]) -> Result<()> {
        let line_of = |table: &str| self.tables.get(table).map_or(line, |t| t.create.line);
        let mut written: Vec<(String, String, StorageOptions)> = Vec::new();
        if let Some(sink) = sink
            && let Some(ConnectorConfig::Delta(c)) = self.tables.get(sink).map(|t| &t.config)
        {
            written.push((format!("path = '{}' of table '{sink}' (line {})", c.path, line_of(sink)), c.path.clone(), c.storage.clone()));
        }
        for s in sources {
            if let Some((path, _)) = s.source.dead_letter() {
                written.push((format!("dead_letter_path = '{path}' of table '{}' (line {})", s.name, line_of(&s.name)), path, self.storage_of(&s.name)));
            }
        }
        for late in late_tables.iter().flatten() {
            let (source, path) = (&late.source, &late.path);
            written.push((format!("late_rows_path = '{path}' of table '{source}' (line {})", line_of(source)), path.clone(), self.storage_of(source)));
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        for (option, path, storage) in written {
            let url = Location::url_of(&path, &storage).map_err(|e| WeirError::at(line, format!("{option}: {e}")))?.to_string();
            let url = if url.ends_with('/') { url } else { format!("{url}/") };
            for (other, other_url) in &seen {
                let clash = if url == *other_url {
                    format!("{other} and {option} are the same Delta table ({url})")
                } else if url.starts_with(other_url.as_str()) {
                    format!("{option} is inside {other} ({other_url})")
                } else if other_url.starts_with(url.as_str()) {
                    format!("{other} is inside {option} ({url})")
                } else {
                    continue;
                };
                return Err(WeirError::at(
                    line,
                    format!("{clash}: each table a query writes needs a directory of its own, or their commits and files mix; give one of them another path"),
                ));
            }
            seen.push((option, url));
        }
        // A Delta table read as a stream must not be one the query writes: each batch would
        // read the commits of the one before, forever.
        for s in sources {
            let Some(ConnectorConfig::Delta(c)) = self.tables.get(&s.name).map(|t| &t.config) else { continue };
            let Ok(location) = Location::resolve_with(&c.path, false, &c.storage) else { continue };
            let url = location.url.to_string();
            let url = if url.ends_with('/') { url } else { format!("{url}/") };
            if let Some((written, _)) = seen.iter().find(|(_, w)| *w == url || w.starts_with(url.as_str()) || url.starts_with(w.as_str())) {
                return Err(WeirError::at(
                    line,
                    format!(
                        "the query reads table '{}' as a stream and writes the same Delta table ({written}): each batch would read its own commits again; write to another table",
                        s.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Batches a preview's query may have done before the reader takes them: a slow reader
/// holds the query back instead of letting batches pile up.
const PREVIEW_QUEUE: usize = 8;

/// Checks a table's object store URL and `storage.*` options when it is declared (unknown
/// keys, a scheme weir cannot reach, options on a local path), without touching the store.
fn check_storage(table: &str, config: &ConnectorConfig) -> std::result::Result<(), String> {
    let path = match config {
        ConnectorConfig::File(c) => Some(c.path.as_str()),
        ConnectorConfig::Delta(c) => Some(c.path.as_str()),
        ConnectorConfig::Parquet(c) => Some(c.path.as_str()),
        _ => None,
    };
    let storage = config.storage();
    let Some(path) = path else { return Ok(()) };
    let remote = weir_checkpoint::storage::is_object_store_url(path);
    if remote || !storage.is_empty() {
        Location::resolve_with(path, false, &storage).map_err(|e| format!("table '{table}': {e}"))?;
    }
    Ok(())
}

/// The error for a query whose stateful operators keep other state than the checkpoint's.
fn state_operators_changed(before: &[StateOperatorSpec], now: &[StateOperatorSpec], checkpoint: &str) -> String {
    let kind = |s: &StateOperatorSpec| if s.operator.starts_with("dedupe") { "deduplication" } else { "aggregation" };
    let describe = |s: &StateOperatorSpec| match &s.aggregates {
        Some(aggregates) => format!("an aggregation by ({}) of {}", s.keys.join(", "), aggregates.join(", ")),
        None => format!("a deduplication on ({})", s.keys.join(", ")),
    };
    let list = |ops: &[StateOperatorSpec]| if ops.is_empty() { "none".to_string() } else { ops.iter().map(describe).collect::<Vec<_>>().join(", then ") };
    let what = match (before, now) {
        ([], [n]) => format!("the query now has {}, but its checkpoint was made by a query without state", describe(n)),
        ([b], []) => format!("the checkpoint holds the state of {}, which the query no longer has", describe(b)),
        _ if before.len() == now.len() && before.iter().zip(now).all(|(b, n)| kind(b) == kind(n)) => {
            let changes: Vec<String> = before
                .iter()
                .zip(now)
                .filter(|(b, n)| b != n)
                .map(|(b, n)| format!("its {} changed since the checkpoint was made: {}", kind(b), b.differences(n).join("; ")))
                .collect();
            changes.join("; ")
        }
        _ => format!("its stateful operators changed since the checkpoint was made: they were {}, and are now {}", list(before), list(now)),
    };
    format!(
        "{what}; weir cannot reuse state kept for another operator (checkpoint {checkpoint}). Restore the query, or start over with a new --checkpoint"
    )
}

fn describe_sources(sources: &BTreeMap<String, String>) -> String {
    sources.iter().map(|(n, d)| format!("{n}={d}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint that keeps no batch would lose the one a restart resumes from (a purge
    /// with 0 deletes every offsets entry): refused before anything is written.
    #[tokio::test]
    async fn retain_batches_of_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = Session::new(SessionConfig { checkpoint_root: dir.path().join("cp"), retain_batches: 0, ..Default::default() });
        let script = "CREATE TABLE g (id BIGINT) WITH (connector = 'datagen', total_rows = 3);
                      CREATE TABLE out WITH (connector = 'memory');
                      INSERT INTO out SELECT id FROM g;";
        let err = session.execute_script(script, &QueryOptions::default()).await.unwrap_err();
        assert!(matches!(err, WeirError::Config(_)), "{err}");
        assert!(err.to_string().starts_with("SessionConfig.retain_batches is 0:"), "{err}");
        assert!(!dir.path().join("cp").exists(), "nothing is written");
    }

    /// Object store URLs and `storage.*` options are checked when a table is declared, with
    /// the line and table named; `SET checkpoint.storage.*` is a session setting, its secret
    /// values masked.
    #[tokio::test]
    async fn storage_options_are_checked_at_create_table() {
        let mut session = Session::new(SessionConfig::default());
        let err = |session: &mut Session, sql: &str| {
            let statement = weir_sql::parse_script(sql).unwrap().remove(0);
            let Statement::CreateTable(create) = statement else { panic!("{sql}") };
            session.create_table(create).unwrap_err().to_string()
        };
        assert_eq!(
            err(&mut session, "CREATE TABLE t WITH (connector = 'delta', path = 's3://b/t', storage.aws_regoin = 'x')"),
            "line 1: table 't': s3://b/t: unknown option 'storage.aws_regoin' for S3 (object_store's keys, e.g. aws_region, aws_endpoint, aws_access_key_id, aws_secret_access_key, aws_session_token, allow_http)"
        );
        assert_eq!(
            err(&mut session, "\nCREATE TABLE t WITH (connector = 'file', path = '/tmp', format = 'json', storage.aws_region = 'x')"),
            "line 2: table 't': /tmp: storage.aws_region apply to object stores, and this is a local path"
        );
        assert!(err(&mut session, "CREATE TABLE t WITH (connector = 'delta', path = 'hdfs://n/t')").ends_with("not hdfs://"));
        let set = weir_sql::parse_script("SET checkpoint.storage.aws_secret_access_key = 'hush'").unwrap().remove(0);
        let Executed::Set(shown) = session.execute(set, &QueryOptions::default()).await.unwrap() else { panic!("a setting") };
        assert_eq!(shown, "checkpoint.storage.aws_secret_access_key = ****");
        assert_eq!(session.config().checkpoint_storage.get("aws_secret_access_key").map(String::as_str), Some("hush"));
        let other = weir_sql::parse_script("SET result_mode = 'table'").unwrap().remove(0);
        assert!(session.execute(other, &QueryOptions::default()).await.is_err());
    }
}
