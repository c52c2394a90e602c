//! Compiling a continuous query once: SQL -> DataFusion logical plan -> checked for
//! streaming -> cast to the sink's schema -> physical plan. Each batch then only executes.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::compute::can_cast_types;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::common::nested_struct::adapt_batch_to_schema;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, cast, col};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, collect_partitioned};
use datafusion::prelude::SessionConfig;

use weir_sql::types::sql_name;

use crate::chain::{Chain, OperatorPlan};
use crate::error::{PlanError, Result};
use crate::slot::{BatchSlot, SlotExec, SourceTable};
use crate::static_side::{self, Builds, StaticDef};

/// A source table the query may read.
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// Table name.
    pub name: String,
    /// Its rows' schema.
    pub schema: SchemaRef,
    /// Its watermarked event-time column, if any.
    pub event_time: Option<String>,
}

/// One stage of a query: a DataFusion plan over the sources (stage 0) or over the output of
/// the stateful operator below it, read from `input`.
#[derive(Debug)]
struct Stage {
    plan: Arc<dyn ExecutionPlan>,
    input: Option<Arc<BatchSlot>>,
    /// Set when the plan only picks (and renames) columns of the one slot it reads.
    columns: Option<ColumnsOnly>,
}

/// A stage that only picks columns of its input's batches, and renames them: a projection of
/// plain columns over a slot, or the slot alone (`SELECT *`, or the columns a deduplication
/// takes). Such a stage is computed from the input batches directly, batch for batch, as
/// executing the plan would (the slot's scan as `MemoryStream` reads it, then the
/// projection as `ProjectionExec` builds its batches): the same batches, in the same order,
/// without copying the plan, starting a task per partition and passing the batches through
/// channels for every chunk (a quarter of a millisecond each time).
#[derive(Debug)]
struct ColumnsOnly {
    /// The source whose slot the plan reads (stage 0's input comes by name).
    source: String,
    /// The scan's columns of the slot's batches, and the scan's schema.
    scan: Option<Vec<usize>>,
    scan_schema: SchemaRef,
    /// The projection's columns of the scan's output, and its schema.
    picks: Option<(Vec<usize>, SchemaRef)>,
}

impl ColumnsOnly {
    /// `plan`'s columns, if it is only a choice of columns of one slot.
    fn of(plan: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let (slot, picks) = match plan.downcast_ref::<ProjectionExec>() {
            Some(projection) => {
                let slot = projection.input().downcast_ref::<SlotExec>()?;
                let picks = projection
                    .expr()
                    .iter()
                    .map(|e| e.expr.downcast_ref::<PhysicalColumn>().map(PhysicalColumn::index))
                    .collect::<Option<Vec<usize>>>()?;
                (slot, Some((picks, plan.schema())))
            }
            None => (plan.downcast_ref::<SlotExec>()?, None),
        };
        Some(Self { source: slot.source().to_string(), scan: slot.projection().cloned(), scan_schema: slot.schema(), picks })
    }

    /// The stage's output for `batches`.
    fn run(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let failed = |e: DataFusionError| PlanError::Execution(clean(&e));
        batches
            .iter()
            .map(|batch| {
                // The scan: its columns, as the scan's schema has them.
                let scanned = match &self.scan {
                    Some(columns) => batch.project(columns).map_err(|e| failed(e.into()))?,
                    None => batch.clone(),
                };
                let scanned = match scanned.schema().as_ref() != self.scan_schema.as_ref() && self.scan_schema.contains(scanned.schema().as_ref()) {
                    true => adapt_batch_to_schema(scanned, &self.scan_schema).map_err(failed)?,
                    false => scanned,
                };
                let Some((picks, schema)) = &self.picks else { return Ok(scanned) };
                let columns = picks
                    .iter()
                    .map(|&i| {
                        (i < scanned.num_columns()).then(|| Arc::clone(scanned.column(i))).ok_or_else(|| {
                            PlanError::Execution(format!("internal: a batch of {} columns where column {i} was expected", scanned.num_columns()))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let options = RecordBatchOptions::new().with_row_count(Some(scanned.num_rows()));
                RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options).map_err(|e| failed(e.into()))
            })
            .collect()
    }
}

/// A query planned once, executed per batch: stage 0 reads the sources; each stateful
/// operator (applied by the runtime) takes the output of the stage below it and feeds the
/// stage above it (`chain.rs`).
#[derive(Debug)]
pub struct CompiledQuery {
    stages: Vec<Stage>,
    operators: Vec<OperatorPlan>,
    task_ctx: Arc<TaskContext>,
    slots: BTreeMap<String, Arc<BatchSlot>>,
    output_schema: SchemaRef,
    /// The static tables the plans read, and their joins' hash tables.
    static_tables: Vec<String>,
    builds: Builds,
}

impl CompiledQuery {
    /// Names of the sources the query reads.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    /// Names of the static tables the query joins with.
    pub fn static_tables(&self) -> &[String] {
        &self.static_tables
    }

    /// The schema of the rows the query writes.
    pub fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output_schema)
    }

    /// The physical plans, for `EXPLAIN`-style display: from the sink down.
    pub fn display_plan(&self) -> String {
        let show = |p: &Arc<dyn ExecutionPlan>| datafusion::physical_plan::displayable(p.as_ref()).indent(true).to_string();
        let mut out = String::new();
        for (i, stage) in self.stages.iter().enumerate().rev() {
            out.push_str(&show(&stage.plan));
            if i > 0 {
                out.push_str(&self.operators[i - 1].describe());
                out.push('\n');
            }
        }
        out
    }

    /// The stateful operators, from the sources up.
    pub fn operators(&self) -> &[OperatorPlan] {
        &self.operators
    }

    /// Runs stage 0 (all of a stateless query) over one batch's input rows, by source name.
    pub async fn run_pre(&self, mut inputs: BTreeMap<String, Vec<RecordBatch>>) -> Result<Vec<RecordBatch>> {
        if let Some(columns) = &self.stages[0].columns {
            return columns.run(inputs.remove(&columns.source).unwrap_or_default());
        }
        for (name, slot) in &self.slots {
            slot.set(inputs.remove(name).unwrap_or_default());
        }
        let result = run(&self.stages[0].plan, &self.builds, &self.task_ctx).await;
        for slot in self.slots.values() {
            slot.clear();
        }
        result
    }

    /// Runs the stage above operator `operator` over that operator's output.
    pub async fn run_above(&self, operator: usize, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let stage = self.stages.get(operator + 1).ok_or_else(|| PlanError::Plan(format!("internal: no operator {operator}")))?;
        if let Some(columns) = &stage.columns {
            return columns.run(batches);
        }
        let slot = stage.input.as_ref().expect("stages above an operator read its slot");
        slot.set(batches);
        let result = run(&stage.plan, &self.builds, &self.task_ctx).await;
        slot.clear();
        result
    }
}

/// Executes a fresh copy of `plan`: operators such as repartitions keep per-run state. The
/// partitions run at once, and their outputs are chained in partition order: the plan keeps
/// each partition's rows in order and never moves rows between partitions
/// ([`keeps_row_order`]), so the result holds the input's rows in the input's order, however
/// many partitions there are.
/// The hash tables of stream-static joins are kept while their static rows stay the same
/// ([`Builds`]).
async fn run(plan: &Arc<dyn ExecutionPlan>, builds: &Builds, task_ctx: &Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
    let result = match builds.fresh(plan) {
        Ok(plan) => collect_partitioned(plan, Arc::clone(task_ctx)).await,
        Err(e) => Err(e),
    };
    result.map(|parts| parts.into_iter().flatten().collect()).map_err(|e| PlanError::Execution(clean(&e)))
}

/// Whether `plan` keeps the rows of each input partition in order, in the output partition
/// of the same number (a union's partitions follow its inputs' one after another): it is
/// made only of operators known to work row by row within a partition. The planner refuses
/// what would not (sorts, aggregates, joins), so this holds for the queries it accepts; a
/// plan with anything else is planned again on one partition.
fn keeps_row_order(plan: &Arc<dyn ExecutionPlan>) -> bool {
    const ROW_BY_ROW: &[&str] = &[
        "SlotExec",
        "ProjectionExec",
        "FilterExec",
        "CoalesceBatchesExec",
        "UnnestExec",
        "UnionExec",
        "CooperativeExec",
        "EmptyExec",
        "PlaceholderRowExec",
    ];
    let mut keeps = true;
    let _ = plan.apply(|node| {
        let same_partitions = match node.children().as_slice() {
            [child] => child.output_partitioning().partition_count() == node.output_partitioning().partition_count(),
            _ => true,
        };
        if !(ROW_BY_ROW.contains(&node.name()) || static_side::keeps_order(node)) || !same_partitions {
            keeps = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    keeps
}

/// Plans `query` (a SELECT) over `sources` and the static tables `statics` it may join
/// with, to run on `partitions` partitions at once. `target` is the schema the sink fixes,
/// if any; the output is cast to it by position, otherwise to types every Delta reader can
/// read.
pub async fn compile(
    query: &str,
    sources: &[SourceDef],
    statics: &[StaticDef],
    target: Option<SchemaRef>,
    partitions: usize,
) -> Result<CompiledQuery> {
    let compiled = compile_on(query, sources, statics, target.clone(), partitions.max(1)).await?;
    let keeps = compiled.stages.iter().all(|s| keeps_row_order(&s.plan));
    if keeps || partitions <= 1 {
        return Ok(compiled);
    }
    compile_on(query, sources, statics, target, 1).await
}

async fn compile_on(
    query: &str,
    sources: &[SourceDef],
    statics: &[StaticDef],
    target: Option<SchemaRef>,
    partitions: usize,
) -> Result<CompiledQuery> {
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        // Dynamic filters live in the plan across runs; a reset plan must not keep them.
        .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false);
    let ctx = static_side::context(config, statics)?;
    let mut all_slots = BTreeMap::new();
    for source in sources {
        let slot = Arc::new(BatchSlot::default());
        let table = SourceTable::new(&source.name, Arc::clone(&source.schema), Arc::clone(&slot), partitions);
        ctx.register_table(source.name.as_str(), Arc::new(table)).map_err(|e| PlanError::Plan(clean(&e)))?;
        all_slots.insert(source.name.clone(), slot);
    }
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = state.sql_to_statement(query, &dialect).map_err(|e| PlanError::Plan(keyword_hint(query, clean(&e))))?;
    let windows = crate::window_tvf::rewrite(&mut statement)?;
    let logical = state.statement_to_plan(statement).await.map_err(|e| PlanError::Plan(keyword_hint(query, clean(&e))))?;
    // The watermarks of the sources the query reads (a column of the same name in another
    // declared table must not stand in for a missing watermark).
    let mut read = Vec::new();
    logical
        .apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                read.push(scan.table_name.table().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| PlanError::Plan(clean(&e)))?;
    let event_times: Vec<(String, String)> = sources
        .iter()
        .filter(|s| read.contains(&s.name))
        .filter_map(|s| Some((s.name.clone(), s.event_time.clone()?)))
        .collect();
    let tables = crate::chain::Tables { event_times: &event_times, windows: &windows };
    let Chain { mut plans, slots, operators } = crate::chain::split(logical, &tables, partitions)?;
    for plan in &plans {
        check_streamable(plan)?;
    }
    let top = plans.pop().expect("a chain has a stage above its operators");
    plans.push(conform_output(top, target.as_ref())?);
    let output_schema: SchemaRef = Arc::new(plans.last().expect("the top stage").schema().as_arrow().clone());
    let mut stages = Vec::with_capacity(plans.len());
    for (i, plan) in plans.into_iter().enumerate() {
        let plan = static_side::finish(state.create_physical_plan(&plan).await.map_err(|e| PlanError::Plan(clean(&e)))?)?;
        let columns = ColumnsOnly::of(&plan);
        stages.push(Stage { plan, input: i.checked_sub(1).map(|j| Arc::clone(&slots[j])), columns });
    }

    // The sources the plan really reads.
    let mut used = Vec::new();
    stages[0]
        .plan
        .apply(|node| {
            if let Some(slot) = node.downcast_ref::<SlotExec>() {
                used.push(slot.source().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| PlanError::Plan(clean(&e)))?;
    if used.is_empty() {
        return Err(PlanError::Plan(
            "the query reads no streaming source; name a source table in FROM".to_string(),
        ));
    }
    let slots = all_slots.into_iter().filter(|(name, _)| used.contains(name)).collect();
    let mut static_tables: Vec<String> = Vec::new();
    for stage in &stages {
        for t in static_side::tables_in(&stage.plan) {
            if !static_tables.contains(&t) {
                static_tables.push(t);
            }
        }
    }
    Ok(CompiledQuery { stages, operators, task_ctx: state.task_ctx(), slots, output_schema, static_tables, builds: Builds::default() })
}

/// Refuses what a stateless micro-batch cannot compute exactly.
fn check_streamable(plan: &LogicalPlan) -> Result<()> {
    let mut problem: Option<String> = None;
    plan.apply(|node| {
        // What reads static tables alone (a subquery joined with the stream) runs as in a
        // batch query.
        let over_stream = || static_side::reads_stream(node);
        let why = match node {
            LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) | LogicalPlan::Sort(_) | LogicalPlan::Limit(_) | LogicalPlan::Window(_)
                if !over_stream() =>
            {
                return Ok(TreeNodeRecursion::Jump);
            }
            LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => Some("internal: a stateful node was left in a stage"),
            LogicalPlan::Sort(_) => Some("ORDER BY has no meaning over an unbounded stream: remove it (rows are written per batch)"),
            LogicalPlan::Limit(_) => Some("LIMIT over an unbounded stream is not supported: remove it"),
            LogicalPlan::Window(_) => Some(
                "window functions (OVER ...) over a stream need state; the one weir runs is deduplication: SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY <keys> ORDER BY <event time>) AS rn FROM <source>) WHERE rn = 1",
            ),
            LogicalPlan::Join(join) => {
                problem = static_side::check_join(join);
                None
            }
            LogicalPlan::RecursiveQuery(_) => Some("recursive queries are not supported in a streaming query"),
            _ => None,
        };
        if let Some(why) = why {
            problem = Some(why.to_string());
        }
        if problem.is_some() {
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| PlanError::Plan(clean(&e)))?;
    match problem {
        Some(why) => Err(PlanError::Unsupported(why)),
        None => Ok(()),
    }
}

/// Characters a Delta column name (without column mapping) cannot hold.
const BAD_NAME_CHARS: &[char] = &[' ', ',', ';', '{', '}', '(', ')', '\n', '\t', '='];

/// Adds the final projection: casts to `target` by position, or to Delta-friendly types.
fn conform_output(plan: LogicalPlan, target: Option<&SchemaRef>) -> Result<LogicalPlan> {
    let schema = Arc::clone(plan.schema());
    let mut exprs = Vec::with_capacity(schema.fields().len());
    if let Some(target) = target
        && target.fields().len() != schema.fields().len()
    {
        return Err(PlanError::SchemaMismatch(format!(
            "the query produces {} columns ({}) but the sink table has {} ({})",
            schema.fields().len(),
            schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
            target.fields().len(),
            describe(target)
        )));
    }
    let mut changed = false;
    for (i, (qualifier, field)) in schema.iter().enumerate() {
        let (name, wanted) = match target {
            Some(t) => {
                let tf = t.field(i);
                (tf.name().clone(), tf.data_type().clone())
            }
            None => {
                if field.name().contains(BAD_NAME_CHARS) {
                    return Err(PlanError::SchemaMismatch(format!(
                        "output column '{}' needs a plain name for the sink: add AS <name> in the SELECT",
                        field.name()
                    )));
                }
                (field.name().clone(), delta_type(field.name(), field.data_type())?)
            }
        };
        let from = field.data_type();
        if let Some(t) = target
            && !assignable(from, &wanted)
        {
            return Err(PlanError::SchemaMismatch(format!(
                "column {} of the query ('{}', {}) cannot be written to column '{name}' ({}) of the sink table ({})",
                i + 1,
                field.name(),
                sql_name(from),
                sql_name(&wanted),
                describe(t)
            )));
        }
        let column = col(Column::from((qualifier, field)));
        if from == &wanted && &name == field.name() {
            exprs.push(column);
        } else {
            changed = true;
            let expr = if from == &wanted { column } else { cast(column, wanted) };
            exprs.push(expr.alias(name));
        }
    }
    if !changed {
        return Ok(plan);
    }
    LogicalPlanBuilder::from(plan).project(exprs).and_then(|b| b.build()).map_err(|e| PlanError::Plan(clean(&e)))
}

/// Whether a value of `from` may be stored in a column of `to` (same family, castable).
fn assignable(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let family = |t: &DataType| match t {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32 | Float64 | Decimal128(_, _)
        | Decimal256(_, _) => 1,
        Utf8 | LargeUtf8 | Utf8View => 2,
        Binary | LargeBinary | BinaryView => 3,
        Date32 | Date64 | Timestamp(_, _) => 4,
        Boolean => 5,
        Null => 0,
        _ => 6,
    };
    from == to || ((family(from) == family(to) || family(from) == 0) && can_cast_types(from, to))
}

/// The type a column is written as: view and large types become plain ones, timestamps
/// microseconds (Delta's unit), unsigned integers signed ones.
fn delta_type(name: &str, t: &DataType) -> Result<DataType> {
    use DataType::*;
    Ok(match t {
        Utf8View | LargeUtf8 => Utf8,
        BinaryView | LargeBinary | FixedSizeBinary(_) => Binary,
        Timestamp(_, None) => Timestamp(TimeUnit::Microsecond, None),
        Timestamp(_, Some(_)) => Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Date64 => Date32,
        UInt8 => Int16,
        UInt16 => Int32,
        UInt32 | UInt64 => Int64,
        Float16 => Float32,
        Dictionary(_, value) => delta_type(name, value)?,
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => {
            List(Arc::new(Field::new(f.name(), delta_type(name, f.data_type())?, f.is_nullable())))
        }
        Struct(fields) => {
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                out.push(Field::new(f.name(), delta_type(name, f.data_type())?, f.is_nullable()));
            }
            Struct(Fields::from(out))
        }
        Null => {
            return Err(PlanError::SchemaMismatch(format!(
                "output column '{name}' has no type (a bare NULL): write CAST(NULL AS <type>)"
            )));
        }
        Interval(_) | Duration(_) | Time32(_) | Time64(_) | Union(_, _) | Decimal256(_, _) => {
            return Err(PlanError::SchemaMismatch(format!(
                "output column '{name}' is of type {}, which Delta tables cannot store; cast it (e.g. to STRING or BIGINT)", sql_name(t)
            )));
        }
        other => other.clone(),
    })
}

fn describe(schema: &Schema) -> String {
    schema.fields().iter().map(|f| format!("{} {}", f.name(), sql_name(f.data_type()))).collect::<Vec<_>>().join(", ")
}

/// DataFusion's message without its layer prefixes.
pub fn clean(e: &datafusion::error::DataFusionError) -> String {
    let mut s = e.to_string();
    for prefix in ["Error during planning: ", "Schema error: ", "SQL error: ", "Arrow error: ", "Execution error: ", "External error: ", "ParserError(\"", "This feature is not implemented: "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.to_string();
        }
    }
    s = s.trim_end_matches("\")").replace("datafusion.public.", "");
    if s.starts_with("table '") && s.ends_with("' not found") {
        s.push_str(": declare it with CREATE TABLE ... WITH (connector = 'file', ...) before the query");
    }
    s
}

/// Kafka's raw columns are named like SQL keywords; a parse error in a query that uses them
/// unquoted says how to write them.
fn keyword_hint(query: &str, message: String) -> String {
    let words: Vec<String> = query.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').map(str::to_ascii_lowercase).collect();
    let used: Vec<&str> = ["partition", "offset", "timestamp"].into_iter().filter(|k| words.iter().any(|w| w == k)).collect();
    if used.is_empty() || !message.contains("Expected") {
        return message;
    }
    format!("{message} (note: {} {} SQL keywords; quote them as columns: \"{}\")", used.join(", "), if used.len() > 1 { "are" } else { "is" }, used[0])
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn source() -> SourceDef {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, false),
        ]);
        SourceDef { name: "s".into(), schema: Arc::new(schema), event_time: None }
    }

    /// Five record batches of the source, of 0 (an empty one) to 4 rows, with nulls.
    fn batches(s: &SourceDef) -> Vec<RecordBatch> {
        (0..5i64)
            .map(|b| {
                let ids: Vec<Option<i64>> = (0..b).map(|r| (r != 2).then_some(b * 10 + r)).collect();
                let ks: Vec<Option<String>> = (0..b).map(|r| (r % 2 == 0).then(|| format!("k{}", (b + r) % 3))).collect();
                let vs: Vec<i64> = (0..b).map(|r| r * b).collect();
                RecordBatch::try_new(
                    Arc::clone(&s.schema),
                    vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(ks)), Arc::new(Int64Array::from(vs))],
                )
                .unwrap()
            })
            .collect()
    }

    /// What executing stage `i`'s plan gives for `input` (the path a stage of plain columns skips).
    async fn executed(q: &CompiledQuery, i: usize, input: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let slot = match i {
            0 => Arc::clone(&q.slots["s"]),
            _ => Arc::clone(q.stages[i].input.as_ref().unwrap()),
        };
        slot.set(input);
        let out = run(&q.stages[i].plan, &q.builds, &q.task_ctx).await.unwrap();
        slot.clear();
        out
    }

    #[tokio::test]
    async fn stages_of_plain_columns_give_what_executing_their_plans_gives() {
        let s = source();
        for partitions in [1, 2, 3] {
            for query in [
                "SELECT * FROM s",
                "SELECT v, k AS key, id FROM s",
                "SELECT id, id AS again FROM s",
                "SELECT DISTINCT ON (k) * FROM s ORDER BY k, id",
                "SELECT DISTINCT ON (k) v, id FROM s ORDER BY k, v",
                "SELECT DISTINCT k, v FROM s",
            ] {
                let q = compile(query, std::slice::from_ref(&s), &[], None, partitions).await.unwrap();
                assert!(q.stages[0].columns.is_some(), "{query}: its first stage only picks columns");
                let want = executed(&q, 0, batches(&s)).await;
                let got = q.run_pre(BTreeMap::from([("s".to_string(), batches(&s))])).await.unwrap();
                assert_eq!(got, want, "{query}, {partitions} partitions");
                // The stage above the deduplication reads the operator's output: the first
                // stage's output columns of the same names.
                for i in 1..q.stages.len() {
                    assert!(q.stages[i].columns.is_some(), "{query}: stage {i} only picks columns");
                    let slot_schema = q.stages[i].plan.children()[0].schema();
                    let input: Vec<RecordBatch> = got
                        .iter()
                        .map(|b| {
                            let columns = slot_schema.fields().iter().map(|f| Arc::clone(b.column_by_name(f.name()).unwrap())).collect();
                            RecordBatch::try_new(Arc::clone(&slot_schema), columns).unwrap()
                        })
                        .collect();
                    assert_eq!(q.run_above(i - 1, input.clone()).await.unwrap(), executed(&q, i, input).await, "{query}: stage {i}");
                }
            }
        }
    }

    #[tokio::test]
    async fn stages_that_compute_are_executed() {
        let s = source();
        for query in ["SELECT id + 1 AS id FROM s", "SELECT * FROM s WHERE v > 2", "SELECT k, v FROM s WHERE k IS NOT NULL", "SELECT upper(k) AS k FROM s"] {
            let q = compile(query, std::slice::from_ref(&s), &[], None, 2).await.unwrap();
            assert!(q.stages[0].columns.is_none(), "{query}: its first stage computes");
            let got = q.run_pre(BTreeMap::from([("s".to_string(), batches(&s))])).await.unwrap();
            assert_eq!(got, executed(&q, 0, batches(&s)).await, "{query}");
        }
    }
}
