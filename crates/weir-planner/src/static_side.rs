//! The static side of stream-static joins: a Delta table or Parquet directory joined with a
//! stream, held in memory and swapped between batches when the table gets a new version.
//!
//! A query is planned once. The runtime puts a static table's rows into its [`StaticRows`]
//! before a batch (and again when the table moves to a new version); the plan reads them
//! through [`StaticExec`]. Each join of a stream with a static table runs as DataFusion's
//! `HashJoinExec` in `CollectLeft` mode with the static side as the build side and the stream
//! as the probe side, so every chunk of the stream is joined on its own and keeps its order:
//!
//! - [`StaticBuildSide`], a physical optimizer rule run right after DataFusion's join
//!   selection, swaps a join whose static side is on the right (`stream LEFT JOIN table`
//!   becomes a right join with the table as build side). Statistics play no part: joins are
//!   never reordered by size (`join_reordering` is off) nor hash-partitioned
//!   (`repartition_joins` is off).
//! - [`finish`] checks the planned joins (refusing anything but a stream probing a static
//!   build side) and puts a [`ProbeOrderExec`] under each join's probe side, so a right
//!   join's unmatched probe rows come in place rather than after the matched ones.
//! - [`Builds`] keeps each join's hash table from one chunk to the next: the plan is reset
//!   per chunk except for those joins, whose build is made again only when a static table's
//!   rows change.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::{TableType, source_as_provider};
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, Join, LogicalPlan};
use datafusion::physical_expr::expressions::Column as ColumnExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType, reset_plan_states};
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::compile::clean;
use crate::error::{PlanError, Result};
use crate::slot::SlotExec;

/// The rows of one static table, as the current batch joins with them. The runtime replaces
/// them between batches; each replacement makes a new generation, which drops the joins'
/// hash tables built from the old rows.
#[derive(Debug)]
pub struct StaticRows {
    schema: SchemaRef,
    state: Mutex<(u64, Arc<Vec<RecordBatch>>)>,
    /// How many times a plan has read the rows (a join's build reads them once per build).
    scans: std::sync::atomic::AtomicU64,
}

impl StaticRows {
    /// Empty rows of `schema` (the table's columns).
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema, state: Mutex::new((0, Arc::new(Vec::new()))), scans: Default::default() }
    }

    /// The table's columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Puts the table's rows in place: every batch must have [`StaticRows::schema`]. Joins
    /// build their hash tables again from them at their next run.
    pub fn replace(&self, batches: Vec<RecordBatch>) {
        let mut state = self.state.lock().expect("static rows lock");
        *state = (state.0 + 1, Arc::new(batches));
    }

    /// Changes with every [`StaticRows::replace`].
    pub fn generation(&self) -> u64 {
        self.state.lock().expect("static rows lock").0
    }

    /// How many times plans have read the rows: once per hash table built from them.
    pub fn scans(&self) -> u64 {
        self.scans.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn batches(&self) -> Arc<Vec<RecordBatch>> {
        self.scans.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::clone(&self.state.lock().expect("static rows lock").1)
    }
}

/// A static table a query may join with: its name and the rows the runtime keeps in it.
#[derive(Debug, Clone)]
pub struct StaticDef {
    /// Table name.
    pub name: String,
    /// Its rows (and columns).
    pub rows: Arc<StaticRows>,
}

/// A static table registered in DataFusion's catalog.
#[derive(Debug)]
struct StaticTable {
    name: String,
    rows: Arc<StaticRows>,
}

#[async_trait]
impl TableProvider for StaticTable {
    fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.rows.schema().project(p)?),
            None => self.rows.schema(),
        };
        // One partition: the build side of a `CollectLeft` join is one, and its rows stay in
        // the table's order (which of several matches comes first never depends on threads).
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
        .with_scheduling_type(SchedulingType::Cooperative);
        Ok(Arc::new(StaticExec {
            table: self.name.clone(),
            schema,
            projection: projection.cloned(),
            rows: Arc::clone(&self.rows),
            properties: Arc::new(properties),
        }))
    }
}

/// The leaf of a plan that reads a static table's current rows.
#[derive(Debug)]
pub struct StaticExec {
    table: String,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    rows: Arc<StaticRows>,
    properties: Arc<PlanProperties>,
}

impl StaticExec {
    /// The static table this leaf reads.
    pub fn table(&self) -> &str {
        &self.table
    }
}

impl DisplayAs for StaticExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticExec: table={}", self.table)
    }
}

impl ExecutionPlan for StaticExec {
    fn name(&self) -> &str {
        "StaticExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let batches = self.rows.batches().as_ref().clone();
        let stream = MemoryStream::try_new(batches, Arc::clone(&self.schema), self.projection.clone())?;
        Ok(Box::pin(stream))
    }
}

/// Passes the stream's rows to a join's probe side as they come, and says so to the join.
///
/// DataFusion's hash join emits a right join's probe rows in their order only when its
/// probe side declares an ordering; otherwise it puts each slice's unmatched rows after the
/// matched ones. The stream's rows are in arrival order (source, file, line), which no
/// column expresses, so this node declares an ordering by the first column. It is put in
/// place after the optimizer has run ([`finish`]), where only the join reads that claim.
#[derive(Debug)]
pub struct ProbeOrderExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl ProbeOrderExec {
    fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let schema = input.schema();
        let mut equivalence = EquivalenceProperties::new(Arc::clone(&schema));
        if let Some(first) = schema.fields().first() {
            let column: Arc<dyn PhysicalExpr> = Arc::new(ColumnExpr::new(first.name(), 0));
            equivalence = EquivalenceProperties::new_with_orderings(Arc::clone(&schema), [[PhysicalSortExpr::new_default(column)]]);
        }
        let properties = PlanProperties::new(
            equivalence,
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Self { input, properties: Arc::new(properties) }
    }
}

impl DisplayAs for ProbeOrderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProbeOrderExec: stream rows in arrival order")
    }
}

impl ExecutionPlan for ProbeOrderExec {
    fn name(&self) -> &str {
        "ProbeOrderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(Self::new(input))),
            _ => Err(datafusion::error::DataFusionError::Internal("ProbeOrderExec takes one child".into())),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// What weir joins, said in every refusal.
/// How to join Delta tables with each other: which one is the stream.
const DELTA_STREAMS: &str = "a query that reads only Delta tables reads each as a stream: mark the stream with STREAM(t) (FROM STREAM(events) e JOIN customers c ON ...) and the other Delta tables are read whole";

const SUPPORTED: &str = "weir joins a stream with a static table (connector 'delta' or 'parquet'): INNER JOIN either way round, <stream> LEFT JOIN <table>, <table> RIGHT JOIN <stream>, [NOT] EXISTS and IN over a table, each with an equality condition between them (ON s.k = t.k)";

/// Why a join of the logical plan cannot run over a stream, if it cannot. Joins turned from
/// subqueries by the optimizer are checked in the physical plan by [`finish`].
pub(crate) fn check_join(join: &Join) -> Option<String> {
    let (left, right) = (reads_stream(&join.left), reads_stream(&join.right));
    let table = |plan: &LogicalPlan| static_names(plan).join(", ");
    let why = match (left, right, join.join_type) {
        (true, true, _) => format!("joins of two streams are not supported (each side would need state); {SUPPORTED}; to read several streams as one, use UNION ALL; {DELTA_STREAMS}"),
        (false, false, _) => format!(
            "a join of static tables with each other ({}) is not supported in a streaming query; join each of them with the stream: (<stream> JOIN a ON ...) JOIN b ON ...",
            [table(&join.left), table(&join.right)].into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" and ")
        ),
        (_, _, JoinType::Full) => format!(
            "FULL OUTER JOIN with a stream is not supported: it would have to emit the rows of the static table that no stream row matches, and a stream never ends; {SUPPORTED}"
        ),
        (false, true, JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark)
        | (true, false, JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark) => {
            let kept = if left { table(&join.right) } else { table(&join.left) };
            format!(
                "this {} keeps the rows of the static table '{kept}' by whether a stream row matches them, which a stream never settles; put the stream on the kept side (<stream> LEFT JOIN {kept}) or use INNER JOIN. {SUPPORTED}",
                join_name(join.join_type)
            )
        }
        _ => return None,
    };
    Some(why)
}

/// Whether `plan` reads a stream: a table that is not static (a source, or the slot of a
/// stateful operator's output).
pub(crate) fn reads_stream(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && !is_static(scan)
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn is_static(scan: &datafusion::logical_expr::TableScan) -> bool {
    source_as_provider(&scan.source).is_ok_and(|p| p.downcast_ref::<StaticTable>().is_some())
}

/// The static tables `plan` reads, for messages.
fn static_names(plan: &LogicalPlan) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && is_static(scan)
        {
            names.push(scan.table_name.to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

fn join_name(t: JoinType) -> &'static str {
    match t {
        JoinType::Inner => "INNER JOIN",
        JoinType::Left => "LEFT JOIN",
        JoinType::Right => "RIGHT JOIN",
        JoinType::Full => "FULL JOIN",
        JoinType::LeftSemi | JoinType::RightSemi => "semi join (EXISTS, IN)",
        JoinType::LeftAnti | JoinType::RightAnti => "anti join (NOT EXISTS, NOT IN)",
        JoinType::LeftMark | JoinType::RightMark => "mark join (EXISTS or IN under OR)",
    }
}

/// A context for planning a streaming query: joins are planned as `CollectLeft` hash joins
/// in the order the query writes them, and [`StaticBuildSide`] puts each static table on
/// the build side. `statics` are registered as tables.
///
/// Round-robin repartitioning is off: a stream's leaf already has a partition per thread,
/// and a static side spread over partitions would reach its join's build in an order that
/// depends on threads (and need merging back, which `keeps_row_order` refuses).
pub(crate) fn context(config: SessionConfig, statics: &[StaticDef]) -> Result<SessionContext> {
    let config = config
        .set_bool("datafusion.optimizer.repartition_joins", false)
        .set_bool("datafusion.optimizer.join_reordering", false)
        .set_bool("datafusion.optimizer.enable_round_robin_repartition", false);
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules.iter().position(|r| r.name() == "join_selection").map_or(0, |i| i + 1);
    rules.insert(at, Arc::new(StaticBuildSide));
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rules(rules)
        .build();
    let ctx = SessionContext::new_with_state(state);
    for def in statics {
        let table = StaticTable { name: def.name.clone(), rows: Arc::clone(&def.rows) };
        ctx.register_table(def.name.as_str(), Arc::new(table)).map_err(|e| PlanError::Plan(clean(&e)))?;
    }
    Ok(ctx)
}

/// Puts the static side of every stream-static hash join on its build side (left), where
/// DataFusion planned it on the right.
#[derive(Debug)]
pub struct StaticBuildSide;

impl PhysicalOptimizerRule for StaticBuildSide {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>()
                && plan_reads_stream(join.left())
                && !plan_reads_stream(join.right())
                && join.join_type().supports_swap()
                && !join.null_aware
            {
                return join.swap_inputs(PartitionMode::CollectLeft).map(Transformed::yes);
            }
            Ok(Transformed::no(node))
        })
        .data()
    }

    fn name(&self) -> &str {
        "weir_static_build_side"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether a physical plan reads a stream (has a [`SlotExec`] leaf).
fn plan_reads_stream(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        if node.is::<SlotExec>() {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Checks the joins of a planned query and makes it ready to run: every join must be a
/// stream probing a static build side, and gets a [`ProbeOrderExec`] under its probe side.
pub(crate) fn finish(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let mut problem = None;
    plan.apply(|node| {
        problem = join_problem(node);
        Ok(if problem.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })
    .map_err(|e| PlanError::Plan(clean(&e)))?;
    if let Some(why) = problem {
        return Err(PlanError::Unsupported(why));
    }
    plan.transform_up(|node| {
        let Some(join) = node.downcast_ref::<HashJoinExec>() else { return Ok(Transformed::no(node)) };
        if join.right().is::<ProbeOrderExec>() {
            return Ok(Transformed::no(node));
        }
        let probe: Arc<dyn ExecutionPlan> = Arc::new(ProbeOrderExec::new(Arc::clone(join.right())));
        #[allow(deprecated)]
        let join = Arc::clone(&node).with_new_children(vec![Arc::clone(join.left()), probe])?;
        Ok(Transformed::yes(join))
    })
    .data()
    .map_err(|e| PlanError::Plan(clean(&e)))
}

/// Why a node of a physical plan cannot run per chunk of a stream, if it is a join that
/// cannot.
fn join_problem(node: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let Some(join) = node.downcast_ref::<HashJoinExec>() else {
        let name = node.name();
        return (name.contains("Join") || name.contains("Cross")).then(|| {
            format!(
                "this join ({name}) has no equality condition between the stream and the table, which weir needs (cross joins and joins on inequalities alone are not supported); {SUPPORTED}"
            )
        });
    };
    let (build, probe) = (plan_reads_stream(join.left()), plan_reads_stream(join.right()));
    let join_type = *join.join_type();
    Some(match (build, probe) {
        (true, true) => format!("joins of two streams are not supported (each side would need state); {SUPPORTED}; {DELTA_STREAMS}"),
        (false, false) => format!(
            "a join of static tables with each other is not supported in a streaming query; join each of them with the stream. {SUPPORTED}"
        ),
        (true, false) if join.null_aware => "NOT IN (SELECT ...) over a static table is not supported (its NULL rules need the whole stream at once); write NOT EXISTS (SELECT 1 FROM <table> t WHERE t.k = s.k)".to_string(),
        (false, true) if join.partition_mode() != &PartitionMode::CollectLeft => {
            format!("internal: the join of a stream with a static table was planned as {:?}, not with the table as its build side; report it", join.partition_mode())
        }
        (false, true) if matches!(join_type, JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti) => return None,
        _ => format!("this {} of a stream with a static table is not supported; {SUPPORTED}", join_name(join_type)),
    })
}

/// Whether `node` is a stream-static join that keeps the stream's rows in order within each
/// partition (see `keeps_row_order` in `compile.rs`): a `CollectLeft` hash join whose build
/// side is static and whose probe side, the stream, goes through a [`ProbeOrderExec`].
pub(crate) fn keeps_order(node: &Arc<dyn ExecutionPlan>) -> bool {
    if node.is::<StaticExec>() || node.is::<ProbeOrderExec>() {
        return true;
    }
    let Some(join) = node.downcast_ref::<HashJoinExec>() else { return false };
    join.partition_mode() == &PartitionMode::CollectLeft
        && matches!(join.join_type(), JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti)
        && join.right().is::<ProbeOrderExec>()
        && !plan_reads_stream(join.left())
        && join.left().output_partitioning().partition_count() == 1
        && join.right().output_partitioning().partition_count() == node.output_partitioning().partition_count()
}

/// The static tables a planned query reads.
pub(crate) fn tables_in(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply(|node| {
        if let Some(exec) = node.downcast_ref::<StaticExec>()
            && !names.iter().any(|n| n == exec.table())
        {
            names.push(exec.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

/// The hash tables of a compiled query's stream-static joins, kept from one run of a plan
/// to the next while the static rows they were built from stay the same.
///
/// Executing a plan again needs a copy whose one-shot state is fresh (`reset_plan_states`).
/// For a `CollectLeft` hash join that state is the build side, shared by every copy made
/// without resetting the join itself. So each plan with a static join keeps a *live* copy,
/// reset when a static table's rows change, and every run resets everything in it but those
/// joins: the first run after a change builds their hash tables, the later ones probe them.
#[derive(Debug, Default)]
pub struct Builds {
    live: Mutex<Vec<Live>>,
}

#[derive(Debug)]
struct Live {
    /// The compiled plan this copy is of.
    template: Arc<dyn ExecutionPlan>,
    /// The static rows its joins read, and the generation their builds were made from.
    rows: Vec<(Arc<StaticRows>, u64)>,
    plan: Arc<dyn ExecutionPlan>,
}

impl Builds {
    /// A copy of `plan` to execute once: one-shot state fresh, except the hash tables of
    /// stream-static joins while their static rows are the same.
    pub(crate) fn fresh(&self, plan: &Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut live = self.live.lock().expect("builds lock");
        let index = match live.iter().position(|l| Arc::ptr_eq(&l.template, plan)) {
            Some(i) => i,
            None => {
                let rows = static_rows(plan);
                if rows.is_empty() {
                    return reset_plan_states(Arc::clone(plan));
                }
                live.push(Live { template: Arc::clone(plan), rows: rows.into_iter().map(|r| (r, u64::MAX)).collect(), plan: Arc::clone(plan) });
                live.len() - 1
            }
        };
        let entry = &mut live[index];
        if entry.rows.iter().any(|(rows, seen)| rows.generation() != *seen) {
            entry.plan = reset_plan_states(Arc::clone(&entry.template))?;
            for (rows, seen) in &mut entry.rows {
                *seen = rows.generation();
            }
        }
        reset_keeping_builds(Arc::clone(&entry.plan))
    }
}

/// The static rows read by `plan`.
fn static_rows(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<StaticRows>> {
    let mut rows: Vec<Arc<StaticRows>> = Vec::new();
    let _ = plan.apply(|node| {
        if let Some(exec) = node.downcast_ref::<StaticExec>()
            && !rows.iter().any(|r| Arc::ptr_eq(r, &exec.rows))
        {
            rows.push(Arc::clone(&exec.rows));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    rows
}

/// `reset_plan_states`, except for stream-static joins: a copy of such a join made with new
/// children shares its build side with the original, so the hash table built by an earlier
/// run is probed again.
fn reset_keeping_builds(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if let Some(join) = node.downcast_ref::<HashJoinExec>()
            && join.partition_mode() == &PartitionMode::CollectLeft
            && !plan_reads_stream(join.left())
        {
            return Ok(Transformed::yes(node));
        }
        Arc::clone(&node).reset_state().map(Transformed::yes)
    })
    .data()
}

#[cfg(test)]
mod tests;
