//! A streaming GROUP BY: the event-time window aggregation the runtime runs as
//! `weir_state::WindowAggregate` (Spark's append mode). The planner finds the `Aggregate`
//! node, checks that its groups close with the watermark, and hands over DataFusion's
//! physical group and aggregate expressions over the node's input.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::context::ExecutionProps;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use crate::compile::clean;
use crate::error::{PlanError, Result};
use crate::window_tvf::WindowTvf;

/// Aggregates whose result depends on the order rows arrive in, which a stream split into
/// batches cannot promise.
const ORDER_DEPENDENT: &[&str] = &["first_value", "last_value", "nth_value"];

/// What the runtime needs to build the window operator over its input.
#[derive(Debug, Clone)]
pub struct WindowPlan {
    /// GROUP BY expressions over the input, with their output names.
    pub group_exprs: Vec<(Arc<dyn PhysicalExpr>, String)>,
    /// The group column that says when a group closes, and what to add to it (ms).
    pub time_key: usize,
    /// See `time_key`.
    pub time_offset_ms: i64,
    /// The watermarked source and column the groups close by.
    pub event_time: (String, String),
    /// The aggregates, and each one's `FILTER (WHERE ...)`.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// See `aggregates`.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The operator's input schema.
    pub input_schema: SchemaRef,
    /// Its output (what the stage above reads): the group columns, then the aggregates.
    pub output_schema: SchemaRef,
    /// The group columns as `name TYPE`, and the aggregates as written: what the state
    /// depends on, recorded in the checkpoint.
    pub group_names: Vec<String>,
    /// See `group_names`.
    pub aggregate_names: Vec<String>,
    /// The window, when the groups are one (`None`: grouped by the event time itself).
    pub window: Option<WindowTvf>,
}

/// Plans `aggregate` as a window operator over its input. `event_times` lists `(source,
/// column)` for the watermarked sources the query reads.
pub(crate) fn plan(aggregate: &Aggregate, windows: &[WindowTvf], event_times: &[(String, String)]) -> Result<WindowPlan> {
    let input = aggregate.input.as_ref();
    let unalias = |e: &Expr| match e {
        Expr::Alias(a) => a.expr.as_ref().clone(),
        other => other.clone(),
    };
    if aggregate.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
        return Err(PlanError::Unsupported("GROUPING SETS, ROLLUP and CUBE are not supported in a streaming query".into()));
    }
    let column_name = |e: &Expr| match unalias(e) {
        Expr::Column(c) => Some(c.name),
        _ => None,
    };
    let names: Vec<Option<String>> = aggregate.group_expr.iter().map(column_name).collect();
    let position = |wanted: &str| names.iter().position(|n| n.as_deref() == Some(wanted));
    let watermarked = |column: &str| event_times.iter().find(|(_, c)| c == column).cloned();

    let (time_key, time_offset_ms, window) = if let (false, Some(i)) = (windows.is_empty(), position("window_end")) {
        (i, 0, Some(one_window(windows, "window_end")?))
    } else if let (false, Some(i)) = (windows.is_empty(), position("window_start")) {
        let window = one_window(windows, "window_start")?;
        (i, window.size_ms, Some(window))
    } else if let Some(i) = names.iter().position(|n| n.as_deref().is_some_and(|n| watermarked(n).is_some())) {
        (i, 0, None)
    } else {
        return Err(PlanError::Unsupported(
            "an aggregation over a stream must group by an event-time window, so that each group is written once when the watermark passes its end: \
             SELECT window_start, window_end, ..., count(*) FROM TUMBLE(<source>, <event time>, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, ... \
             (or HOP(<source>, <event time>, <slide>, <size>)), or by the watermarked event-time column itself"
                .into(),
        ));
    };
    let event_time = match &window {
        // A window over a source table needs that table's watermark on its time column; over
        // a WITH query, the watermark of a source it reads with a column of that name.
        Some(w) => match event_times.iter().find(|(source, _)| source.eq_ignore_ascii_case(&w.relation)) {
            Some((source, column)) if column == &w.time_column => (source.clone(), column.clone()),
            Some(_) => return Err(no_watermark(&w.time_column, &w.describe())),
            None => watermarked(&w.time_column).ok_or_else(|| no_watermark(&w.time_column, &w.describe()))?,
        },
        None => watermarked(names[time_key].as_deref().unwrap_or_default()).expect("found watermarked"),
    };

    let props = ExecutionProps::new();
    // The plan is not analyzed yet: give the expressions the casts DataFusion's type coercion
    // would (avg of a BIGINT over Float64, say).
    let coerce = |e: &Expr| {
        e.clone().rewrite(&mut TypeCoercionRewriter::new(input.schema())).map(|t| t.data).map_err(|e| PlanError::Plan(clean(&e)))
    };
    let input_schema: SchemaRef = Arc::new(input.schema().as_arrow().clone());
    let physical = |e: &Expr| create_physical_expr(e, input.schema(), &props, &PhysicalPlanningContext::default()).map_err(|e| PlanError::Plan(clean(&e)));
    let out = aggregate.schema.fields();
    let mut group_exprs = Vec::with_capacity(aggregate.group_expr.len());
    let mut group_names = Vec::with_capacity(aggregate.group_expr.len());
    for (i, e) in aggregate.group_expr.iter().enumerate() {
        let name = out[i].name().clone();
        group_names.push(format!("{name} {}", weir_sql::types::sql_name(out[i].data_type())));
        group_exprs.push((physical(&coerce(&unalias(e))?)?, name));
    }
    if !matches!(group_exprs[time_key].0.data_type(&input_schema).map_err(|e| PlanError::Plan(clean(&e)))?, DataType::Timestamp(_, _)) {
        return Err(PlanError::Unsupported(format!("the window column '{}' must be a timestamp", out[time_key].name())));
    }
    let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
    let mut filters = Vec::with_capacity(aggregate.aggr_expr.len());
    let mut aggregate_names = Vec::with_capacity(aggregate.aggr_expr.len());
    for e in &aggregate.aggr_expr {
        let shown = e.human_display().to_string();
        if let Expr::AggregateFunction(f) = unalias(e) {
            let name = f.func.name().to_ascii_lowercase();
            if !f.params.order_by.is_empty() || ORDER_DEPENDENT.contains(&name.as_str()) {
                return Err(PlanError::Unsupported(format!(
                    "aggregate {shown} depends on the order rows arrive in, which a stream cut into batches does not fix; \
                     a window can compute aggregates whose partial results merge: count, sum, min, max, avg, approx_distinct, ..."
                )));
            }
        }
        #[allow(deprecated)]
        let (expr, filter, order_by) =
            datafusion::physical_planner::create_aggregate_expr_and_maybe_filter(&coerce(e)?, input.schema(), &input_schema, &props)
                .map_err(|e| PlanError::Plan(clean(&e)))?;
        if !order_by.is_empty() {
            return Err(PlanError::Unsupported(format!("aggregate {shown} depends on the order of rows; a window cannot compute it")));
        }
        aggregate_names.push(shown);
        aggregates.push(expr);
        filters.push(filter);
    }
    let output_schema = Arc::new(Schema::new(
        out.iter().enumerate().map(|(i, f)| Field::new(format!("__o{i}"), f.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    Ok(WindowPlan {
        group_exprs,
        time_key,
        time_offset_ms,
        event_time,
        aggregates,
        filters,
        input_schema,
        output_schema,
        group_names,
        aggregate_names,
        window,
    })
}

/// The one window the query groups by.
fn one_window(windows: &[WindowTvf], column: &str) -> Result<WindowTvf> {
    match windows {
        [w] => Ok(w.clone()),
        [first, rest @ ..] if rest.iter().all(|w| w.size_ms == first.size_ms && (column == "window_end" || w.slide_ms == first.slide_ms)) => {
            Ok(first.clone())
        }
        _ => Err(PlanError::Unsupported(format!(
            "the query has windows of different sizes ({}); group by the window_start and window_end of one of them",
            windows.iter().map(WindowTvf::describe).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn no_watermark(column: &str, window: &str) -> PlanError {
    PlanError::Unsupported(format!(
        "{window} needs a watermark on '{column}': declare WATERMARK FOR {column} AS {column} - INTERVAL '<delay>' on the source table. \
         Without one a window is never complete, so append mode could never write it (Spark refuses this too)"
    ))
}

/// The input plan of an aggregate node.
pub(crate) fn input(aggregate: &Aggregate) -> LogicalPlan {
    aggregate.input.as_ref().clone()
}
