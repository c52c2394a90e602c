//! Finding deduplication in a query and splitting the plan around it.
//!
//! Three spellings mean "keep the first row of each key" and become one streaming
//! `Deduplicate` operator:
//!
//! ```sql
//! SELECT DISTINCT a, b, ts FROM s                                      -- key: every column
//! SELECT DISTINCT ON (k) * FROM s ORDER BY k, ts                       -- key: k
//! SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn FROM s) WHERE rn = 1
//! ```
//!
//! The plan is cut there (`chain.rs`): the stage below computes the operator's input (the
//! output columns, then the key columns, then the event-time column), and the stage above
//! reads the operator's output from a slot. All stay DataFusion plans, planned once.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{BinaryExpr, Distinct, Expr, LogicalPlan, LogicalPlanBuilder, Operator, SortExpr, cast, lit};

use crate::compile::clean;
use crate::error::{PlanError, Result};

/// What the runtime needs to build the operator over `pre`'s output.
#[derive(Debug, Clone)]
pub struct DedupPlan {
    /// Columns of `pre`'s output that are the key.
    pub key_columns: Vec<usize>,
    /// Key column names as the user wrote them, for messages.
    pub key_names: Vec<String>,
    /// The event-time column in `pre`'s output and the source whose watermark governs it.
    pub event_time: Option<(usize, String)>,
    /// The column of `pre`'s output that orders each key's rows after the keys (`ORDER BY
    /// k, ts`), ascending, and where its NULLs go; `None` when the query orders by the keys
    /// alone (or not at all).
    pub order: Option<(usize, arrow::compute::SortOptions)>,
    /// Columns of `pre`'s output that form the operator's output.
    pub output_columns: Vec<usize>,
    /// The operator's output schema (what `post` reads).
    pub output_schema: SchemaRef,
    /// The output columns' names as the query knows them.
    pub output_names: Vec<String>,
    /// Which spelling it came from (`distinct`, `distinctOn`, `rowNumberFirst`).
    pub spelling: &'static str,
    /// The operator's input schema (`pre`'s output).
    pub input_schema: SchemaRef,
}

/// The node found, in plan-independent terms.
pub(crate) struct Found {
    input: Arc<LogicalPlan>,
    /// Output expressions over `input`, one per field of `schema`.
    select: Vec<Expr>,
    keys: Vec<Expr>,
    /// What orders a key's rows after the keys.
    order: Option<SortExpr>,
    schema: DFSchemaRef,
    spelling: &'static str,
}

/// The operator's input (a projection over the node's input: the output columns, then the
/// keys and the event time that are not among them, then the order column) and the
/// operator. `event_times` lists `(source, column)` for sources with a watermark.
///
/// A key or event time that is an output column is that column, not a copy of it: the
/// operator then keeps a batch's candidate rows without their encoded keys and expiries and
/// makes a winner's again from its columns (`weir_state::dedup`'s `Derived`).
pub(crate) fn plan(found: Found, event_times: &[(String, String)]) -> Result<(LogicalPlan, DedupPlan)> {
    let mut exprs: Vec<Expr> = found.select.iter().enumerate().map(|(i, e)| e.clone().alias(format!("__o{i}"))).collect();
    let n = exprs.len();
    let output_of = |e: &Expr| found.select.iter().position(|s| s == e || matches!(s, Expr::Alias(a) if *a.expr == *e));
    let mut key_columns = Vec::with_capacity(found.keys.len());
    for (j, k) in found.keys.iter().enumerate() {
        key_columns.push(match output_of(k) {
            Some(i) => i,
            None => {
                exprs.push(k.clone().alias(format!("__k{j}")));
                exprs.len() - 1
            }
        });
    }
    let event_time = event_time_column(&found.input, event_times).map(|(column, source)| {
        let at = match output_of(&Expr::Column(column.clone())) {
            Some(i) => i,
            None => {
                exprs.push(Expr::Column(column.clone()).alias("__t"));
                exprs.len() - 1
            }
        };
        (at, source, column)
    });
    // The order column: the event time's when the query orders by it, else its own.
    let order = found.order.as_ref().map(|sort| {
        let options = arrow::compute::SortOptions { descending: !sort.asc, nulls_first: sort.nulls_first };
        match &event_time {
            Some((i, _, column)) if matches!(&sort.expr, Expr::Column(c) if c == column) => (*i, options),
            _ => {
                exprs.push(sort.expr.clone().alias("__s"));
                (exprs.len() - 1, options)
            }
        }
    });
    let event_time = event_time.map(|(i, source, _)| (i, source));
    let pre = LogicalPlanBuilder::from(Arc::unwrap_or_clone(found.input))
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(|e| PlanError::Plan(clean(&e)))?;
    let pre_fields = pre.schema().fields();
    let output_schema = Arc::new(Schema::new(
        (0..n).map(|i| Field::new(format!("__o{i}"), pre_fields[i].data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let dedup = DedupPlan {
        key_columns,
        key_names: found
            .keys
            .iter()
            .map(|k| match k {
                Expr::Column(c) => c.name.clone(),
                other => other.schema_name().to_string(),
            })
            .collect(),
        event_time,
        order,
        output_columns: (0..n).collect(),
        output_schema,
        output_names: found.schema.fields().iter().map(|f| f.name().clone()).collect(),
        spelling: found.spelling,
        input_schema: Arc::new(pre.schema().as_arrow().clone()),
    };
    Ok((pre, dedup))
}

/// Recognises one of the three spellings at `node`.
pub(crate) fn recognise(node: &LogicalPlan) -> Result<Option<Found>> {
    match node {
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let select: Vec<Expr> = input.schema().columns().into_iter().map(Expr::Column).collect();
            Ok(Some(Found {
                input: Arc::clone(input),
                keys: select.clone(),
                select,
                order: None,
                schema: Arc::clone(input.schema()),
                spelling: "distinct",
            }))
        }
        LogicalPlan::Distinct(Distinct::On(on)) => {
            let order = match &on.sort_expr {
                Some(sort) => check_order(&sort[on.on_expr.len().min(sort.len())..], "DISTINCT ON (...) ... ORDER BY <keys>, <event time>")?,
                None => None,
            };
            Ok(Some(Found {
                input: Arc::clone(&on.input),
                select: on.select_expr.clone(),
                keys: on.on_expr.clone(),
                order,
                schema: Arc::clone(&on.schema),
                spelling: "distinctOn",
            }))
        }
        LogicalPlan::Filter(filter) => row_number_first(filter),
        _ => Ok(None),
    }
}

/// `WHERE rn = 1` over `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY ts) AS rn`.
fn row_number_first(filter: &datafusion::logical_expr::Filter) -> Result<Option<Found>> {
    let mut below = filter.input.as_ref();
    if let LogicalPlan::SubqueryAlias(a) = below {
        below = a.input.as_ref();
    }
    let LogicalPlan::Projection(projection) = below else { return Ok(None) };
    let LogicalPlan::Window(window) = projection.input.as_ref() else { return Ok(None) };
    let [Expr::WindowFunction(wf)] = window.window_expr.as_slice() else { return Ok(None) };
    let WindowFunction { fun, params } = wf.as_ref();
    if fun.name() != "row_number" || params.partition_by.is_empty() {
        return Ok(None);
    }
    let window_column = window.window_expr[0].schema_name().to_string();
    // Which output column is the row number?
    let rn_index = projection.expr.iter().position(|e| {
        let inner = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            other => other,
        };
        matches!(inner, Expr::Column(c) if c.name == window_column)
    });
    let Some(rn_index) = rn_index else { return Ok(None) };
    let rn_name = filter.input.schema().field(rn_index).name().clone();
    if !is_first_row_predicate(&filter.predicate, &rn_name) {
        return Ok(None);
    }
    let order = check_order(&params.order_by, "ROW_NUMBER() OVER (PARTITION BY <keys> ORDER BY <event time>)")?;
    let rn_type = filter.input.schema().field(rn_index).data_type().clone();
    let one = cast(lit(ScalarValue::Int64(Some(1))), rn_type);
    let select: Vec<Expr> = projection
        .expr
        .iter()
        .enumerate()
        .map(|(i, e)| if i == rn_index { one.clone() } else { unalias(e) })
        .collect();
    Ok(Some(Found {
        input: Arc::clone(&window.input),
        select,
        keys: params.partition_by.clone(),
        order,
        schema: Arc::clone(filter.input.schema()),
        spelling: "rowNumberFirst",
    }))
}

fn unalias(e: &Expr) -> Expr {
    match e {
        Expr::Alias(a) => a.expr.as_ref().clone(),
        other => other.clone(),
    }
}

/// `rn = 1`, `1 = rn`, `rn <= 1` or `rn < 2`.
fn is_first_row_predicate(predicate: &Expr, rn: &str) -> bool {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else { return false };
    let is_rn = |e: &Expr| matches!(e, Expr::Column(c) if c.name == rn);
    let int = |e: &Expr| match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int64(Some(i)) => Some(*i),
            ScalarValue::Int32(Some(i)) => Some(i64::from(*i)),
            ScalarValue::UInt64(Some(i)) => i64::try_from(*i).ok(),
            _ => None,
        },
        _ => None,
    };
    match (is_rn(left), is_rn(right)) {
        (true, false) => matches!((op, int(right)), (Operator::Eq, Some(1)) | (Operator::LtEq, Some(1)) | (Operator::Lt, Some(2))),
        (false, true) => matches!((op, int(left)), (Operator::Eq, Some(1)) | (Operator::GtEq, Some(1)) | (Operator::Gt, Some(2))),
        _ => false,
    }
}

/// The ordering after the keys: at most one expression, ascending (the first row per key).
fn check_order(order: &[SortExpr], spelling: &str) -> Result<Option<SortExpr>> {
    if let Some(desc) = order.iter().find(|s| !s.asc) {
        return Err(PlanError::Unsupported(format!(
            "ordering by {} DESC keeps the LAST row of each key, which a stream cannot know until it ends; \
             weir keeps the first row of each key: write {spelling} with the event time ascending",
            desc.expr.schema_name()
        )));
    }
    if order.len() > 1 {
        return Err(PlanError::Unsupported(format!(
            "deduplication keeps the first row of each key by one ordering column; after the keys, order only by the event-time column: {spelling}"
        )));
    }
    Ok(order.first().cloned())
}

/// The watermarked event-time column among `input`'s columns, and its source.
fn event_time_column(input: &LogicalPlan, event_times: &[(String, String)]) -> Option<(Column, String)> {
    for (source, column) in event_times {
        let matches = input.schema().columns_with_unqualified_name(column);
        if let [c] = matches.as_slice() {
            return Some(((*c).clone(), source.clone()));
        }
    }
    None
}
