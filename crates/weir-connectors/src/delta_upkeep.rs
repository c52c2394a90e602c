//! Upkeep of a Delta table a streaming query writes: compaction of its small files
//! (`weir optimize`, and the sink's `auto_compact` after a batch's commit) and removal of the
//! files no version needs any more (`weir vacuum`). Both are delta-rs's operations (its
//! OPTIMIZE and VACUUM builders); this module opens the table the way the sink does, checks
//! what the user asked for before anything is written, and reports what was done.
//!
//! A streaming write commits many small files, one set per batch. Compaction rewrites them
//! into files of the target size in one commit whose `add` and `remove` actions carry
//! `dataChange = false`: the table's rows stay the same, only their files change, and no
//! `txn` action is written, so a query's recorded batch is untouched. Every table is opened
//! through the guard of `delta_guard.rs`, which keeps two compactions of the same files from
//! both landing (delta-rs 1.1 would let them, and the rows would then be in the table twice).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, FunctionArguments, Value};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use deltalake::operations::optimize::{Metrics, OptimizeType};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::table::config::TablePropertiesExt;
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, FilterOp, FilterValue};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use object_store::local::LocalFileSystem;
use url::Url;
use weir_checkpoint::{LocalDisk, Location, StorageOptions};

use crate::delta_guard::RemoveOnce;
use crate::delta_journal::{Journal, JournaledStore};
use crate::error::{ConnectorError, Result};

/// The size compaction aims at when neither the command, the sink's `target_file_size` nor
/// the table's `delta.targetFileSize` says: 128 MiB, the size Databricks' auto compaction
/// writes.
pub const DEFAULT_TARGET_SIZE: u64 = 128 << 20;

/// Small files that start the sink's compaction (`auto_compact_min_files`) when not set:
/// 50, as Databricks' `autoCompact.minNumFiles`.
pub const DEFAULT_MIN_FILES: u64 = 50;

/// What `weir optimize` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptimizeOptions {
    /// The size of the files written; files at least this big are left alone. `None`: the
    /// table's `delta.targetFileSize`, else [`DEFAULT_TARGET_SIZE`].
    pub target_size: Option<u64>,
    /// Only the partitions this predicate on partition columns selects, such as
    /// `day = '2024-01-01' AND region IN ('eu', 'us')`.
    pub partition_filter: Option<String>,
    /// Z-order the files of each partition by these columns instead of compacting them.
    pub zorder_by: Vec<String>,
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptimizeReport {
    /// The table, as a URL.
    pub table: String,
    /// Files removed (still readable by older versions until VACUUM).
    pub files_removed: u64,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Their bytes.
    pub bytes_added: u64,
    /// Partitions that had files rewritten.
    pub partitions: u64,
    /// The target size used.
    pub target_size: u64,
    /// The table's version afterwards.
    pub version: Option<u64>,
}

impl OptimizeReport {
    fn new(table: &Url, metrics: &Metrics, target_size: u64, version: Option<u64>) -> Self {
        Self {
            table: table.to_string(),
            files_removed: metrics.num_files_removed,
            bytes_removed: metrics.files_removed.total_size.max(0) as u64,
            files_added: metrics.num_files_added,
            bytes_added: metrics.files_added.total_size.max(0) as u64,
            partitions: metrics.partitions_optimized,
            target_size,
            version,
        }
    }
}

impl fmt::Display for OptimizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.files_removed == 0 {
            return write!(f, "{}: nothing to compact (target size {})", self.table, bytes(self.target_size));
        }
        write!(
            f,
            "{}: {} files ({}) removed, {} files ({}) added in {} partition{}; table version {}",
            self.table,
            self.files_removed,
            bytes(self.bytes_removed),
            self.files_added,
            bytes(self.bytes_added),
            self.partitions,
            if self.partitions == 1 { "" } else { "s" },
            self.version.map_or_else(|| "?".to_string(), |v| v.to_string())
        )
    }
}

/// What `weir vacuum` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacuumOptions {
    /// Files removed from the table longer ago than this are deleted. `None`: the table's
    /// `delta.deletedFileRetentionDuration` (7 days unless set).
    pub retain: Option<Duration>,
    /// List what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Allow a retention below the table's `delta.deletedFileRetentionDuration`.
    pub force: bool,
    /// Also delete files that no version of the table references and that are older than the
    /// retention (files of writes that never committed), as Spark's VACUUM does. Without it,
    /// only files the log removed are deleted.
    pub full: bool,
}

/// What a vacuum deleted, or would delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacuumReport {
    /// The table, as a URL.
    pub table: String,
    /// The files, relative to the table.
    pub files: Vec<String>,
    /// Their bytes, as far as known.
    pub bytes: u64,
    /// Nothing was deleted: the files would be.
    pub dry_run: bool,
}

impl fmt::Display for VacuumReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would be deleted (dry run)" } else { "deleted" };
        write!(f, "{}: {} files ({}) {verb}", self.table, self.files.len(), bytes(self.bytes))?;
        for file in &self.files {
            write!(f, "\n  {file}")?;
        }
        Ok(())
    }
}

/// `1.5 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A handle on the table at `location`, as the sink opens it: a local table as `file:///`
/// over a store rooted at its directory (see `delta.rs`) that syncs what it writes, a table
/// in an object store as its URL over the bucket's store; either through the guard.
pub(crate) fn builder(location: &Location, local: Option<Arc<dyn ObjectStore>>) -> deltalake::DeltaResult<DeltaTableBuilder> {
    match (&location.local_dir, local) {
        (Some(_), Some(store)) => {
            let root = Url::parse("file:///").expect("a valid URL");
            Ok(DeltaTableBuilder::from_url(root.clone())?.with_storage_backend(RemoveOnce::wrap(store), root))
        }
        (Some(dir), None) => {
            let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir)?);
            let synced = JournaledStore::new(store, Journal::default(), Arc::new(LocalDisk::new(dir.clone())));
            builder(location, Some(Arc::new(synced)))
        }
        (None, _) => Ok(DeltaTableBuilder::from_url(location.url.clone())?
            .with_storage_backend(RemoveOnce::wrap(Arc::clone(&location.store)), location.url.clone())),
    }
}

/// A DataFusion session for delta-rs's operations on `table` (OPTIMIZE reads the files it
/// compacts with DataFusion) that reads the table's files through the table's own store.
/// A local table's root is `file:///` over a store rooted at its directory, and DataFusion
/// resolves `file://` to the file system's root unless told otherwise; delta-rs registers its
/// store for the table's URL only where the session has none.
pub(crate) fn session_for(table: &DeltaTable) -> Arc<SessionState> {
    let state = deltalake::delta_datafusion::create_session_state_with_spill_config(None, None);
    let log_store = table.log_store();
    state.runtime_env().register_object_store(log_store.root_url(), log_store.root_object_store(None));
    Arc::new(state)
}

/// Opens the existing table at `path` for upkeep.
async fn open(path: &str, storage: &StorageOptions) -> Result<(DeltaTable, Url)> {
    let location =
        Location::resolve_with(path, false, storage).map_err(|e| ConnectorError::Config(format!("no Delta table at {path}: {e}")))?;
    let url = location.url.clone();
    let failed = |e: DeltaTableError| ConnectorError::Delta(format!("Delta table at {url}: cannot open: {e}"));
    let table = match builder(&location, None).map_err(failed)?.load().await {
        Ok(t) => t,
        Err(DeltaTableError::NotATable(_) | DeltaTableError::InvalidTableLocation(_)) => {
            return Err(ConnectorError::Config(format!("no Delta table at {url} (no _delta_log there)")));
        }
        Err(e) => return Err(failed(e)),
    };
    Ok((table, url))
}

/// The size a compaction of `state` aims at: `explicit`, else the table's
/// `delta.targetFileSize`, else [`DEFAULT_TARGET_SIZE`].
pub(crate) fn target_size(explicit: Option<u64>, state: &DeltaTableState) -> u64 {
    explicit.or_else(|| state.table_config().target_file_size.map(|n| n.get())).unwrap_or(DEFAULT_TARGET_SIZE)
}

/// Files of `state` smaller than `target` in partitions holding at least two of them: those
/// a compaction could merge.
pub(crate) fn small_files(state: &DeltaTableState, target: u64) -> u64 {
    let mut by_partition: HashMap<Vec<(String, Option<String>)>, u64> = HashMap::new();
    for file in state.log_data().iter() {
        if u64::try_from(file.size()).is_ok_and(|size| size < target) {
            let mut partition: Vec<_> = file.partition_values_map().into_iter().collect();
            partition.sort();
            *by_partition.entry(partition).or_default() += 1;
        }
    }
    by_partition.values().filter(|n| **n >= 2).sum()
}

/// Compacts `table`'s small files into files of `target` bytes (delta-rs's OPTIMIZE, written
/// as the sink writes Parquet): one commit of `remove` and `add` actions with
/// `dataChange = false`. Returns the table after it, and what was done.
pub(crate) async fn compact(table: &DeltaTable, target: u64) -> deltalake::DeltaResult<(DeltaTable, Metrics)> {
    let target = NonZeroU64::new(target).unwrap_or(NonZeroU64::MIN);
    table
        .clone()
        .optimize()
        .with_type(OptimizeType::Compact)
        .with_target_size(target)
        .with_writer_properties(crate::delta::writer_properties())
        .with_session_state(session_for(table))
        .await
}

/// Compacts the small files of the Delta table at `path` (or z-orders them), in the
/// partitions `options.partition_filter` selects.
pub async fn optimize(path: &str, storage: &StorageOptions, options: &OptimizeOptions) -> Result<OptimizeReport> {
    let (table, url) = open(path, storage).await?;
    let state = table.snapshot().map_err(|e| ConnectorError::Delta(format!("Delta table at {url}: cannot read its state: {e}")))?;
    let partition_columns = state.metadata().partition_columns().to_vec();
    let columns: Vec<String> = state.schema().fields().map(|f| f.name().clone()).collect();
    let filters = match &options.partition_filter {
        Some(text) => parse_partition_filter(text, &partition_columns)
            .map_err(|e| ConnectorError::Config(format!("--where '{text}' on the Delta table at {url}: {e}")))?,
        None => Vec::new(),
    };
    for column in &options.zorder_by {
        if !columns.contains(column) {
            return Err(ConnectorError::Config(format!(
                "--zorder-by: the Delta table at {url} has no column '{column}' (its columns: {})",
                columns.join(", ")
            )));
        }
        if partition_columns.contains(column) {
            return Err(ConnectorError::Config(format!(
                "--zorder-by: '{column}' is a partition column of the Delta table at {url}; each file holds one value of it already, so order by other columns"
            )));
        }
    }
    let target = target_size(options.target_size, state);
    let literals: Vec<_> = filters.iter().map(PartitionFilter::literal).collect();
    let kind = match options.zorder_by.is_empty() {
        true => OptimizeType::Compact,
        false => OptimizeType::ZOrder(options.zorder_by.clone()),
    };
    let (table, metrics) = table
        .clone()
        .optimize()
        .with_type(kind)
        .with_filters(&literals)
        .with_target_size(NonZeroU64::new(target).unwrap_or(NonZeroU64::MIN))
        .with_writer_properties(crate::delta::writer_properties())
        .with_session_state(session_for(&table))
        .await
        .map_err(|e| ConnectorError::Delta(format!("Delta table at {url}: optimize failed, nothing was committed: {e}")))?;
    Ok(OptimizeReport::new(&url, &metrics, target, table.version()))
}

/// Deletes the files of the Delta table at `path` that the log removed longer than
/// `options.retain` ago (or lists them, with `dry_run`). A retention below the table's
/// `delta.deletedFileRetentionDuration` (7 days unless set) is refused unless forced: older
/// versions, and readers or writers still working on them, may need those files.
pub async fn vacuum(path: &str, storage: &StorageOptions, options: &VacuumOptions) -> Result<VacuumReport> {
    let (table, url) = open(path, storage).await?;
    let failed = |e: DeltaTableError| ConnectorError::Delta(format!("Delta table at {url}: vacuum failed: {e}"));
    let state = table.snapshot().map_err(failed)?;
    let minimum = state.table_config().deleted_file_retention_duration();
    let retain = options.retain.unwrap_or(minimum);
    if retain < minimum && !options.force {
        return Err(ConnectorError::Config(format!(
            "--retain {} is below the Delta table's delta.deletedFileRetentionDuration ({}) at {url}: readers of older versions, and writers still committing, may need the files removed since then. Retain at least that long, or pass --force to delete them anyway",
            duration(retain),
            duration(minimum)
        )));
    }
    // The sizes of the files the log removed, for the report.
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let log_store = table.log_store();
    let mut tombstones = state.all_tombstones(log_store.as_ref());
    while let Some(t) = tombstones.try_next().await.map_err(failed)? {
        let path = t.path();
        let key = object_store::path::Path::parse(path.as_ref()).map(|p| p.to_string()).unwrap_or_else(|_| path.to_string());
        sizes.insert(key, t.size().unwrap_or(0).max(0) as u64);
    }
    let retention = chrono::Duration::from_std(retain).map_err(|_| ConnectorError::Config(format!("--retain {}: too long", duration(retain))))?;
    let mode = if options.full { VacuumMode::Full } else { VacuumMode::Lite };
    let run = |dry_run: bool| {
        table
            .clone()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(mode.clone())
            .with_dry_run(dry_run)
    };
    // Files never committed have no size in the log: look them up before they go.
    let planned = run(true).await.map_err(failed)?.1.files_deleted;
    let store = log_store.object_store(None);
    for file in &planned {
        if sizes.contains_key(file) {
            continue;
        }
        if let Ok(meta) = store.head(&object_store::path::Path::parse(file).unwrap_or_else(|_| object_store::path::Path::from(file.as_str()))).await {
            sizes.insert(file.clone(), meta.size);
        }
    }
    let files = match options.dry_run {
        true => planned,
        false => run(false).await.map_err(failed)?.1.files_deleted,
    };
    let bytes = files.iter().filter_map(|f| sizes.get(f)).sum();
    Ok(VacuumReport { table: url.to_string(), files, bytes, dry_run: options.dry_run })
}

/// `7 days`, `36 hours`, `90 seconds`.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{} day{}", s / 86_400, if s == 86_400 { "" } else { "s" }),
        _ if s >= 3_600 && s.is_multiple_of(3_600) => format!("{} hour{}", s / 3_600, if s == 3_600 { "" } else { "s" }),
        _ => format!("{} second{}", s, if s == 1 { "" } else { "s" }),
    }
}

/// One comparison of a partition column with values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionFilter {
    column: String,
    op: FilterOp,
    values: Vec<String>,
}

impl PartitionFilter {
    /// The filter as delta-rs takes it.
    fn literal(&self) -> deltalake::FilterLiteral<'_> {
        let value = match self.op {
            FilterOp::In | FilterOp::NotIn => FilterValue::Set(self.values.iter().map(String::as_str).collect()),
            _ => FilterValue::Scalar(self.values.first().map_or("", String::as_str)),
        };
        (self.column.as_str(), self.op, value)
    }
}

/// Reads `text`, comparisons of partition columns with literals joined by AND (`=`, `!=`,
/// `<>`, `<`, `<=`, `>`, `>=`, `IN (...)`, `NOT IN (...)`), as the partition filters
/// delta-rs's OPTIMIZE selects files by. Any other column is refused: OPTIMIZE picks whole
/// files, and only a partition column's value is the same for every row of a file.
fn parse_partition_filter(text: &str, partition_columns: &[String]) -> std::result::Result<Vec<PartitionFilter>, String> {
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("not a predicate: {e}"))?;
    let mut out = Vec::new();
    conjuncts(&expr, &mut out)?;
    for f in &out {
        if !partition_columns.contains(&f.column) {
            return Err(match partition_columns.is_empty() {
                true => format!("'{}' is not a partition column: the table is not partitioned, so --where cannot select its files", f.column),
                false => format!(
                    "'{}' is not a partition column (the table is partitioned by {}); OPTIMIZE selects whole files, by partition values only",
                    f.column,
                    partition_columns.join(", ")
                ),
            });
        }
    }
    Ok(out)
}

fn conjuncts(expr: &Expr, out: &mut Vec<PartitionFilter>) -> std::result::Result<(), String> {
    let unsupported = || format!("'{expr}' is not a comparison of a partition column with values; write col = 'value', col IN ('a', 'b'), ... joined by AND");
    match expr {
        Expr::Nested(inner) => conjuncts(inner, out),
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            conjuncts(left, out)?;
            conjuncts(right, out)
        }
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Eq => FilterOp::Eq,
                BinaryOperator::NotEq => FilterOp::Ne,
                BinaryOperator::Lt => FilterOp::Lt,
                BinaryOperator::LtEq => FilterOp::Le,
                BinaryOperator::Gt => FilterOp::Gt,
                BinaryOperator::GtEq => FilterOp::Ge,
                _ => return Err(unsupported()),
            };
            let (Some(column), Some(value)) = (column(left), literal(right)) else { return Err(unsupported()) };
            out.push(PartitionFilter { column, op, values: vec![value] });
            Ok(())
        }
        Expr::InList { expr: inner, list, negated } => {
            let Some(column) = column(inner) else { return Err(unsupported()) };
            let values = list.iter().map(literal).collect::<Option<Vec<_>>>().ok_or_else(unsupported)?;
            out.push(PartitionFilter { column, op: if *negated { FilterOp::NotIn } else { FilterOp::In }, values });
            Ok(())
        }
        _ => Err(unsupported()),
    }
}

/// A column name, as written (column names keep their case, quoted or not). A column named
/// like a niladic SQL function (`user`, `current_date`) parses as a call without
/// parentheses: it is the column.
fn column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.clone()),
        Expr::Function(f) if matches!(f.args, FunctionArguments::None) && f.name.0.len() == 1 => Some(f.name.to_string()),
        _ => None,
    }
}

/// A literal's text, as a partition value is written in the log.
fn literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::UnaryOp { op: datafusion::sql::sqlparser::ast::UnaryOperator::Minus, expr } => literal(expr).map(|n| format!("-{n}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
