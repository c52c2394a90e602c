//! The query's chain of stateful operators as the runtime builds it from the plan: each
//! operator with its state directory, its late-rows tables, and what the checkpoint records
//! of it (`stateOperators` in `metadata.json`).

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use weir_checkpoint::StateOperatorSpec;
use weir_connectors::make_sink;
use weir_planner::{CompiledQuery, DedupPlan, OperatorPlan, WindowPlan};
use weir_sql::config::{ConnectorConfig, DeltaConfig, LateRows};
use weir_sql::types::sql_name;
use weir_state::{DedupOperator, DedupSpec, Deduplicate, StateFiles, StatefulOperator, WindowAggregate, WindowSpec};

use crate::error::{Result, WeirError};
use crate::runner::{ChainOp, LateSink, RunSource};
use crate::session::Session;

/// Batches between two snapshots of an operator's state.
const SNAPSHOT_EVERY: u64 = 10;

/// A late-rows table one operator writes.
#[derive(Debug, Clone)]
pub(crate) struct LateTable {
    /// The source whose `late_rows_path` it is.
    pub source: String,
    /// Whose late rows it takes: those of the sources of these indexes among the query's
    /// (the first operator, which takes the sources' rows), or all of the operator's.
    pub rows_of: Option<Vec<usize>>,
    pub path: String,
    pub schema: SchemaRef,
    /// The name its sink goes by in the checkpoint (its journal) and in its `txn` app id.
    pub sink_name: String,
}

/// What [`plan`] builds.
pub(crate) struct Planned {
    /// The operators, from the sources up.
    pub operators: Vec<ChainOp>,
    /// What the checkpoint records of them, in the same order.
    pub specs: Vec<StateOperatorSpec>,
    /// The late-rows tables of each operator: those of the first operator whose rows can be
    /// late, one for each source that asks for one.
    pub late_tables: Vec<Vec<LateTable>>,
    /// Their sinks, in the same order.
    pub late_sinks: Vec<Vec<LateSink>>,
}

/// Builds the operators of `compiled`'s chain; warnings go to `warnings`.
pub(crate) fn plan(
    session: &Session,
    compiled: &CompiledQuery,
    sources: &[RunSource],
    sink_name: &str,
    line: usize,
    warnings: &mut Vec<String>,
) -> Result<Planned> {
    let mut planned = Planned { operators: Vec::new(), specs: Vec::new(), late_tables: Vec::new(), late_sinks: Vec::new() };
    let mut late_taken = false;
    let delay_of = |source: &str| -> Option<(String, i64)> {
        let s = sources.iter().find(|s| s.name == source)?;
        s.watermark.as_ref().map(|(column, delay)| (column.clone(), delay.as_millis() as i64))
    };
    let late_path = |source: &str| match session.tables.get(source).and_then(|t| t.config.late_rows()) {
        Some(LateRows::DeadLetter(path)) => Some(path.clone()),
        _ => None,
    };
    // The late-rows tables of an operator whose event time is `event_source`'s: the first
    // operator takes each source's rows as they come, so each source's late rows go to that
    // source's table (one table for the sources that name the same path); an operator above
    // another, to `event_source`'s. The table of `event_source` keeps the name a query of
    // one source always gave it.
    let late_tables = |i: usize, event_source: &str, schema: &SchemaRef| -> Vec<LateTable> {
        let named = |source: &str| match source == event_source {
            true => format!("{sink_name}_late_rows"),
            false => format!("{sink_name}_late_rows_{source}"),
        };
        if i > 0 {
            return late_path(event_source)
                .map(|path| LateTable { source: event_source.to_string(), rows_of: None, path, schema: Arc::clone(schema), sink_name: named(event_source) })
                .into_iter()
                .collect();
        }
        let mut tables: Vec<LateTable> = Vec::new();
        for (index, s) in sources.iter().enumerate() {
            let Some(path) = late_path(&s.name) else { continue };
            match tables.iter_mut().find(|t| t.path == path) {
                Some(t) => {
                    t.rows_of.get_or_insert_with(Vec::new).push(index);
                    if s.name == event_source {
                        (t.source, t.sink_name) = (s.name.clone(), named(&s.name));
                    }
                }
                None => tables.push(LateTable { source: s.name.clone(), rows_of: Some(vec![index]), path, schema: Arc::clone(schema), sink_name: named(&s.name) }),
            }
        }
        tables
    };
    for (i, plan) in compiled.operators().iter().enumerate() {
        let (op, files, spec, late): (Box<dyn StatefulOperator>, StateFiles, StateOperatorSpec, Vec<LateTable>) = match plan {
            OperatorPlan::Dedup(d) => {
                check_keys(d, line)?;
                let mut late = None;
                let event_time = match &d.event_time {
                    Some((col, source)) => {
                        let (column, delay) = delay_of(source).unwrap_or_default();
                        let (columns, schema) = dedup_late_rows(d, *col, &column);
                        let tables = if late_taken { Vec::new() } else { late_tables(i, source, &schema) };
                        if !tables.is_empty() {
                            late = Some((columns, schema, tables));
                        }
                        Some((*col, delay, column))
                    }
                    None => {
                        warnings.push(format!(
                            "line {line}: deduplication on ({}) has no watermark, so its state keeps every key forever and grows without bound; declare WATERMARK FOR <event time> AS <event time> - INTERVAL '...' on the source and keep that column in the query",
                            d.key_names.join(", ")
                        ));
                        None
                    }
                };
                let spec = DedupSpec {
                    key_columns: d.key_columns.clone(),
                    event_time: event_time.as_ref().map(|(c, delay, _)| (*c, *delay)),
                    order: d.order,
                    output_columns: d.output_columns.clone(),
                    output_schema: Arc::clone(&d.output_schema),
                    late: late.as_ref().map(|(columns, schema, _)| (columns.clone(), Arc::clone(schema))),
                };
                let name = if event_time.is_some() { "dedupeWithinWatermark" } else { "dedupe" };
                let state = StateOperatorSpec {
                    operator: name.to_string(),
                    keys: d
                        .key_columns
                        .iter()
                        .zip(&d.key_names)
                        .map(|(&c, n)| format!("{n} {}", sql_name(d.input_schema.field(c).data_type())))
                        .collect(),
                    event_time: event_time.as_ref().map(|(_, _, column)| column.clone()),
                    delay_ms: event_time.as_ref().map(|(_, delay, _)| *delay),
                    aggregates: None,
                    window: None,
                };
                // The first deduplication keeps the directory it always had.
                let id = if i == 0 { "dedup".to_string() } else { format!("dedup-{i}") };
                let op = DedupOperator::new(Deduplicate::new(spec, Default::default()), name);
                let files = StateFiles::new(&id, SNAPSHOT_EVERY, op.state_schema());
                (Box::new(op), files, state, late.map(|(_, _, tables)| tables).unwrap_or_default())
            }
            OperatorPlan::Window(w) => {
                let (source, column) = &w.event_time;
                let delay = delay_of(source).map(|(_, d)| d);
                let late = if late_taken { Vec::new() } else { late_tables(i, source, &window_late_rows(w)) };
                let spec = WindowSpec {
                    group_exprs: w.group_exprs.clone(),
                    time_key: w.time_key,
                    time_offset_ms: w.time_offset_ms,
                    aggregates: w.aggregates.clone(),
                    filters: w.filters.clone(),
                    output_schema: Arc::clone(&w.output_schema),
                    late_schema: late.first().map(|t| Arc::clone(&t.schema)),
                };
                let op = WindowAggregate::new(spec).map_err(|e| WeirError::at(line, e))?;
                let state = StateOperatorSpec {
                    operator: op.name().to_string(),
                    keys: w.group_names.clone(),
                    event_time: Some(column.clone()),
                    delay_ms: delay,
                    aggregates: Some(w.aggregate_names.clone()),
                    window: w.window.as_ref().map(|w| w.shape()),
                };
                let files = StateFiles::new(&format!("window-{i}"), SNAPSHOT_EVERY, op.state_schema());
                (Box::new(op), files, state, late)
            }
        };
        let mut late_sinks = Vec::with_capacity(late.len());
        for t in &late {
            late_taken = true;
            // A late-rows table is on the store of the source whose table it is.
            let storage = session.tables.get(&t.source).map(|d| d.config.storage()).unwrap_or_default();
            let config = ConnectorConfig::Delta(DeltaConfig::at(t.path.clone(), storage));
            let sink = make_sink(&t.sink_name, &config, None, &session.memory).map_err(|e| WeirError::at(line, e))?;
            late_sinks.push(LateSink { rows_of: t.rows_of.clone(), sink, begun: false });
        }
        planned.operators.push(ChainOp { op, files, late_tables: !late_sinks.is_empty(), snapshot_job: None });
        planned.late_sinks.push(late_sinks);
        planned.specs.push(spec);
        planned.late_tables.push(late);
    }
    Ok(planned)
}

fn check_keys(d: &DedupPlan, line: usize) -> Result<()> {
    for (&c, name) in d.key_columns.iter().zip(&d.key_names) {
        let t = d.input_schema.field(c).data_type();
        if !weir_state::key::supported(t) {
            return Err(WeirError::at(line, format!("deduplication key '{name}' is of type {}, which cannot be a key; use scalar columns", sql_name(t))));
        }
    }
    Ok(())
}

/// A deduplication's late rows: its output columns, and the event time when the output lacks it.
fn dedup_late_rows(d: &DedupPlan, event_time_col: usize, event_time_name: &str) -> (Vec<usize>, SchemaRef) {
    let mut columns = d.output_columns.clone();
    let mut fields: Vec<Field> =
        d.output_columns.iter().zip(&d.output_names).map(|(&c, name)| Field::new(name, d.input_schema.field(c).data_type().clone(), true)).collect();
    if !d.output_names.iter().any(|n| n == event_time_name) {
        columns.push(event_time_col);
        fields.push(Field::new(event_time_name, d.input_schema.field(event_time_col).data_type().clone(), true));
    }
    (columns, Arc::new(Schema::new(fields)))
}

/// A window's late rows: its whole input row, the window it was late for included.
fn window_late_rows(w: &WindowPlan) -> SchemaRef {
    Arc::new(Schema::new(w.input_schema.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>()))
}
