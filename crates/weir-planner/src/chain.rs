//! Cutting a query into stages around its stateful operators.
//!
//! A streaming query is a chain: the sources feed stage 0, a DataFusion plan of row-by-row
//! operators; its output feeds the first stateful operator, whose output feeds stage 1, and
//! so on up to the sink:
//!
//! ```text
//! sources -> stage 0 -> operator 0 -> stage 1 -> operator 1 -> ... -> stage n -> sink
//! ```
//!
//! The planner finds the stateful node nearest the top of the logical plan (a deduplication,
//! `dedup.rs`, or an aggregation, `aggregate.rs`), replaces it with a scan of a slot that the
//! runtime fills with the operator's output, and goes on below it. Each stage stays a
//! DataFusion plan, planned once; the runtime knows operators only by their
//! [`OperatorPlan`].

use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchemaRef;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col};

use crate::aggregate::{self, WindowPlan};
use crate::compile::clean;
use crate::dedup::{self, DedupPlan};
use crate::error::{PlanError, Result};
use crate::slot::{BatchSlot, SourceTable};
use crate::window_tvf::WindowTvf;

/// Name of the table a stage reads the operator below it from.
pub const OPERATOR_TABLE: &str = "__weir_operator";

/// A stateful operator as planned.
#[derive(Debug, Clone)]
pub enum OperatorPlan {
    /// Keep the first row of each key (`DISTINCT`, `DISTINCT ON`, `ROW_NUMBER() = 1`).
    Dedup(DedupPlan),
    /// An event-time window aggregation (append mode).
    Window(WindowPlan),
}

impl OperatorPlan {
    /// What it is, for plans and messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Dedup(d) => format!("Deduplicate: keys={:?}", d.key_names),
            Self::Window(w) => format!(
                "WindowAggregate: groups=[{}], aggregates=[{}]{}",
                w.group_names.join(", "),
                w.aggregate_names.join(", "),
                w.window.as_ref().map(|w| format!(", window={}", w.describe())).unwrap_or_default()
            ),
        }
    }
}

/// A query cut into stages: `plans[0]` reads the sources, `plans[i + 1]` reads operator `i`'s
/// output from `slots[i]`.
pub(crate) struct Chain {
    pub plans: Vec<LogicalPlan>,
    pub slots: Vec<Arc<BatchSlot>>,
    pub operators: Vec<OperatorPlan>,
}

/// What the cut needs to know of the query's tables.
pub(crate) struct Tables<'a> {
    /// `(source, column)` for sources with a watermark.
    pub event_times: &'a [(String, String)],
    /// The query's windowing calls.
    pub windows: &'a [WindowTvf],
}

/// Cuts `plan` at each stateful node over a stream, from the top down. (A DISTINCT or GROUP
/// BY over static tables alone, in a subquery joined with the stream, stays in its stage.)
pub(crate) fn split(plan: LogicalPlan, tables: &Tables<'_>, partitions: usize) -> Result<Chain> {
    let mut above = Vec::new();
    let mut current = plan;
    while let Some(cut) = cut_topmost(&current, tables, partitions)? {
        current = cut.below;
        above.push((cut.operator, cut.above, cut.slot));
    }
    let mut chain = Chain { plans: vec![current], slots: Vec::new(), operators: Vec::new() };
    for (operator, plan, slot) in above.into_iter().rev() {
        chain.plans.push(plan);
        chain.slots.push(slot);
        chain.operators.push(operator);
    }
    Ok(chain)
}

/// A plan cut at one stateful node.
struct Cut {
    /// The operator's input.
    below: LogicalPlan,
    operator: OperatorPlan,
    /// The plan above the operator, reading `slot`.
    above: LogicalPlan,
    slot: Arc<BatchSlot>,
}

/// The stateful node nearest the top of `plan`, cut out.
fn cut_topmost(plan: &LogicalPlan, tables: &Tables<'_>, partitions: usize) -> Result<Option<Cut>> {
    let mut found: Option<(LogicalPlan, OperatorPlan)> = None;
    let mut error: Option<PlanError> = None;
    let rewritten = plan
        .clone()
        .transform_down(|node| {
            if error.is_some() {
                return Ok(Transformed::no(node));
            }
            let hit = match stateful(&node, tables) {
                Ok(Some(hit)) => hit,
                Ok(None) => return Ok(Transformed::no(node)),
                Err(e) => {
                    error = Some(e);
                    return Ok(Transformed::no(node));
                }
            };
            if found.is_some() {
                error = Some(PlanError::Unsupported(
                    "a streaming query runs one chain of stateful operators, one above the other; this one has two side by side (e.g. two aggregations or deduplications joined by UNION ALL): deduplicate or aggregate once, above the union".into(),
                ));
                return Ok(Transformed::no(node));
            }
            let replacement = slot_scan(node.schema(), partitions)?;
            found = Some(hit);
            Ok(Transformed::new(replacement, true, TreeNodeRecursion::Jump))
        })
        .map_err(|e| PlanError::Plan(clean(&e)))?;
    if let Some(e) = error {
        return Err(e);
    }
    let Some((below, operator)) = found else { return Ok(None) };
    let above = rewritten.data;
    let slot = post_slot(&above)?;
    Ok(Some(Cut { below, operator, above, slot }))
}

/// The operator `node` is, with its input plan; `None` for a stateless node, or one that
/// reads no stream.
fn stateful(node: &LogicalPlan, tables: &Tables<'_>) -> Result<Option<(LogicalPlan, OperatorPlan)>> {
    let (event_times, windows) = (tables.event_times, tables.windows);
    if !matches!(node, LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) | LogicalPlan::Filter(_)) || !crate::static_side::reads_stream(node) {
        return Ok(None);
    }
    if let LogicalPlan::Aggregate(a) = node {
        let window = aggregate::plan(a, windows, event_times)?;
        return Ok(Some((aggregate::input(a), OperatorPlan::Window(window))));
    }
    match dedup::recognise(node)? {
        Some(found) => {
            let (pre, plan) = dedup::plan(found, event_times)?;
            Ok(Some((pre, OperatorPlan::Dedup(plan))))
        }
        None => Ok(None),
    }
}

/// A scan of an operator's output, re-qualified as the replaced node's schema.
fn slot_scan(schema: &DFSchemaRef, partitions: usize) -> datafusion::error::Result<LogicalPlan> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| Field::new(format!("__o{i}"), f.data_type().clone(), true))
        .collect();
    let table = SourceTable::new(OPERATOR_TABLE, Arc::new(Schema::new(fields)), Arc::new(BatchSlot::default()), partitions);
    let exprs: Vec<Expr> = schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| col(format!("__o{i}")).alias_qualified(qualifier.cloned(), field.name()))
        .collect();
    LogicalPlanBuilder::scan(OPERATOR_TABLE, provider_as_source(Arc::new(table)), None)?.project(exprs)?.build()
}

/// The slot of the scan [`slot_scan`] put into `post`.
fn post_slot(post: &LogicalPlan) -> Result<Arc<BatchSlot>> {
    let mut slot = None;
    post.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == OPERATOR_TABLE
            && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<SourceTable>()
        {
            slot = Some(table.slot());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| PlanError::Plan(clean(&e)))?;
    slot.ok_or_else(|| PlanError::Plan("internal: an operator's slot was not found in the plan above it".into()))
}
