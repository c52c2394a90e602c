//! Windowing table functions, as Flink SQL and RisingWave write them:
//!
//! ```sql
//! SELECT window_start, window_end, user_id, count(*)
//! FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
//! GROUP BY window_start, window_end, user_id
//!
//! FROM HOP(events, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)   -- slide, then size
//! ```
//!
//! Before planning, each call becomes a derived table over its first argument (a table or a
//! common table expression) with two more columns, `window_start` and `window_end`, of the
//! time column's type. Windows start on multiples of the slide (the size, for a tumbling
//! window) from the epoch and hold `[window_start, window_end)`. A hopping window repeats each
//! row once per window holding it, so every row of the result is a (row, window) pair. Rows
//! without a time are in no window (as Spark's `window()` drops them).
//!
//! The rewrite keeps the user's alias, or the table's name, so `events.user_id` still works.
//!
//! Spark's spelling is accepted too, for Spark users: `window(ts, '10 minutes'[, '5
//! minutes'])` in the GROUP BY of a query over one table becomes that table's `TUMBLE` (or
//! `HOP`), grouped by `window_start, window_end`; `window` (or the same call) in the select
//! list and HAVING is the struct `{start, end}`, and `window.start`, `window.end` its fields.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName, Query, Select, SelectItem, SetExpr,
    Statement as SqlStatement, TableFactor, VisitMut, VisitorMut, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{PlanError, Result};

/// One windowing call found in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTvf {
    /// `TUMBLE` or `HOP`.
    pub kind: &'static str,
    /// The table or common table expression it reads, as written.
    pub relation: String,
    /// The time column's name.
    pub time_column: String,
    /// Window size, milliseconds.
    pub size_ms: i64,
    /// Distance between window starts, milliseconds (the size, for a tumbling window).
    pub slide_ms: i64,
}

impl WindowTvf {
    /// What the window's state depends on, whatever table it reads: `TUMBLE(size 60000 ms)`.
    pub fn shape(&self) -> String {
        match self.kind {
            "HOP" => format!("HOP(slide {} ms, size {} ms)", self.slide_ms, self.size_ms),
            _ => format!("{}(size {} ms)", self.kind, self.size_ms),
        }
    }

    /// How the window reads in messages: `TUMBLE(events, ts, 60000 ms)`.
    pub fn describe(&self) -> String {
        match self.kind {
            "HOP" => format!("HOP({}, {}, {} ms, {} ms)", self.relation, self.time_column, self.slide_ms, self.size_ms),
            _ => format!("{}({}, {}, {} ms)", self.kind, self.relation, self.time_column, self.size_ms),
        }
    }
}

/// Rewrites every `TUMBLE(...)` and `HOP(...)` in `statement` into a derived table; returns
/// the windows, in the order they appear.
pub fn rewrite(statement: &mut Statement) -> Result<Vec<WindowTvf>> {
    Ok(rewrite_marked(statement)?.0)
}

/// [`rewrite`], and `STREAM(t)` into `t`: returns the windows and the tables marked so, read
/// as streams (Databricks' spelling for reading a Delta table as a stream).
pub fn rewrite_marked(statement: &mut Statement) -> Result<(Vec<WindowTvf>, Vec<String>)> {
    let Statement::Statement(inner) = statement else { return Ok((Vec::new(), Vec::new())) };
    let mut rewriter = Rewriter { found: Vec::new(), streamed: Vec::new() };
    if let ControlFlow::Break(e) = inner.visit(&mut rewriter) {
        return Err(e);
    }
    Ok((rewriter.found, rewriter.streamed))
}

struct Rewriter {
    found: Vec<WindowTvf>,
    streamed: Vec<String>,
}

impl VisitorMut for Rewriter {
    type Break = PlanError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<PlanError> {
        if let SetExpr::Select(select) = query.body.as_mut()
            && let Err(e) = self.spark_window(select)
        {
            return ControlFlow::Break(e);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<PlanError> {
        let TableFactor::Table { name, alias, args: Some(args), .. } = factor else { return ControlFlow::Continue(()) };
        let kind = match function_name(name).as_deref() {
            Some("tumble") => "TUMBLE",
            Some("hop") => "HOP",
            Some("stream") => "STREAM",
            _ => return ControlFlow::Continue(()),
        };
        let alias = alias.as_ref().map(|a| a.name.to_string());
        if kind == "STREAM" {
            return match stream(&args.args, alias) {
                Ok((table, replacement)) => {
                    self.streamed.push(table);
                    *factor = replacement;
                    ControlFlow::Continue(())
                }
                Err(e) => ControlFlow::Break(e),
            };
        }
        match replace(kind, &args.args, alias) {
            Ok((window, replacement)) => {
                self.found.push(window);
                *factor = replacement;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

impl Rewriter {
    /// Spark's `GROUP BY window(ts, size[, slide])`, rewritten as described in the module docs.
    fn spark_window(&mut self, select: &mut Select) -> Result<()> {
        let GroupByExpr::Expressions(groups, _) = &mut select.group_by else { return Ok(()) };
        let Some(at) = groups.iter().position(|g| spark_window_args(g).is_some()) else { return Ok(()) };
        let call = groups[at].clone();
        let args = spark_window_args(&call).expect("found");
        let usage = "window(<event-time column>, '<size>'[, '<slide>']) in GROUP BY reads one table: write FROM <table> ... GROUP BY window(ts, '10 minutes'), or FROM TUMBLE(<table>, ts, INTERVAL '10' MINUTE) ... GROUP BY window_start, window_end";
        if !(2..=3).contains(&args.len()) || select.from.len() != 1 || !select.from[0].joins.is_empty() {
            return Err(PlanError::Plan(format!("{usage} (this query: '{call}')")));
        }
        let TableFactor::Table { name, alias, args: None, .. } = &select.from[0].relation else {
            return Err(PlanError::Plan(format!("{usage} (this query: '{call}')")));
        };
        let relation = Expr::CompoundIdentifier(name.0.iter().filter_map(|p| p.as_ident().cloned()).collect());
        let arg = |e: &Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(e.clone()));
        let (kind, tvf_args) = match args.as_slice() {
            [ts, size] => ("TUMBLE", vec![arg(&relation), arg(ts), arg(size)]),
            [ts, size, slide] => ("HOP", vec![arg(&relation), arg(ts), arg(slide), arg(size)]),
            _ => unreachable!("checked above"),
        };
        let (window, factor) = replace(kind, &tvf_args, alias.as_ref().map(|a| a.name.to_string()))?;
        self.found.push(window);
        select.from[0].relation = factor;
        groups.splice(at..=at, [Expr::Identifier(Ident::new("window_start")), Expr::Identifier(Ident::new("window_end"))]);
        let window_struct = parse_expr("named_struct('start', window_start, 'end', window_end)")?;
        // Spark names these output columns `window`, `start` and `end`.
        for item in &mut select.projection {
            let SelectItem::UnnamedExpr(e) = item else { continue };
            let name = match &*e {
                Expr::Identifier(i) if i.value.eq_ignore_ascii_case("window") && i.quote_style.is_none() => "window",
                _ if *e == call => "window",
                Expr::CompoundIdentifier(parts) if parts.len() == 2 && parts[0].value.eq_ignore_ascii_case("window") => {
                    match parts[1].value.to_ascii_lowercase().as_str() {
                        "start" => "start",
                        "end" => "end",
                        _ => continue,
                    }
                }
                _ => continue,
            };
            *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: Ident::new(name) };
        }
        let mut rewrite = |e: &mut Expr| {
            let field = match &*e {
                Expr::CompoundIdentifier(parts) if parts.len() == 2 && parts[0].value.eq_ignore_ascii_case("window") => {
                    Some(parts[1].value.to_ascii_lowercase())
                }
                _ => None,
            };
            match field.as_deref() {
                Some("start") => *e = Expr::Identifier(Ident::new("window_start")),
                Some("end") => *e = Expr::Identifier(Ident::new("window_end")),
                _ if *e == call => *e = window_struct.clone(),
                _ if matches!(&*e, Expr::Identifier(i) if i.value.eq_ignore_ascii_case("window") && i.quote_style.is_none()) => {
                    *e = window_struct.clone();
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        };
        let _ = visit_expressions_mut(&mut select.projection, &mut rewrite);
        let _ = visit_expressions_mut(&mut select.having, &mut rewrite);
        Ok(())
    }
}

/// The arguments of a `window(...)` call.
fn spark_window_args(e: &Expr) -> Option<Vec<Expr>> {
    let Expr::Function(f) = e else { return None };
    if function_name(&f.name).as_deref() != Some("window") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else { return None };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn parse_expr(sql: &str) -> Result<Expr> {
    Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| PlanError::Plan(format!("internal: {sql}: {e}")))
}

fn function_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [part] => part.as_ident().map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// `STREAM(t) [AS a]`: the table it names, and `t [AS a]`.
fn stream(args: &[FunctionArg], alias: Option<String>) -> Result<(String, TableFactor)> {
    let bad = |what: String| PlanError::Plan(format!("{what}; write STREAM(<table>), e.g. SELECT * FROM STREAM(bronze)"));
    let ident = match args {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(i)))] => i,
        [other] => return Err(bad(format!("STREAM takes a table's name, not '{other}'"))),
        _ => return Err(bad(format!("STREAM takes one table, not {} arguments", args.len()))),
    };
    let sql = match &alias {
        Some(a) => format!("SELECT * FROM {ident} AS {a}"),
        None => format!("SELECT * FROM {ident}"),
    };
    let factor = parse_from(&sql).ok_or_else(|| PlanError::Plan(format!("internal: cannot read back '{sql}'")))?;
    Ok((ident.value.clone(), factor))
}

/// The derived table for one call, and what it is.
fn replace(kind: &'static str, args: &[FunctionArg], alias: Option<String>) -> Result<(WindowTvf, TableFactor)> {
    let usage = match kind {
        "HOP" => "HOP(<table>, <event-time column>, INTERVAL '<slide>', INTERVAL '<size>')",
        _ => "TUMBLE(<table>, <event-time column>, INTERVAL '<size>')",
    };
    let bad = |what: String| PlanError::Plan(format!("{what}; write {usage}, e.g. {}", example(kind)));
    let exprs: Vec<&Expr> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(bad(format!("{kind} takes plain arguments, not '{other}'"))),
        })
        .collect::<Result<_>>()?;
    let wanted = if kind == "HOP" { 4 } else { 3 };
    if exprs.len() != wanted {
        return Err(bad(format!("{kind} takes {wanted} arguments, not {}", exprs.len())));
    }
    let relation = match exprs[0] {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => exprs[0].to_string(),
        other => return Err(bad(format!("{kind}'s first argument must name a table or a WITH query, not '{other}'"))),
    };
    let (time_sql, time_column) = match exprs[1] {
        Expr::Identifier(i) => (i.to_string(), i.value.clone()),
        Expr::CompoundIdentifier(parts) => (exprs[1].to_string(), parts.last().map(|p| p.value.clone()).unwrap_or_default()),
        other => return Err(bad(format!("{kind}'s second argument must name the event-time column, not '{other}'"))),
    };
    let duration = |e: &Expr, what: &str| -> Result<i64> {
        let ms = duration_ms(e).ok_or_else(|| bad(format!("{kind}'s {what} '{e}' is not a duration such as INTERVAL '1' MINUTE")))?;
        if ms <= 0 {
            return Err(bad(format!("{kind}'s {what} must be positive, not '{e}'")));
        }
        Ok(ms)
    };
    let (size_ms, slide_ms) = match kind {
        "HOP" => (duration(exprs[3], "size")?, duration(exprs[2], "slide")?),
        _ => {
            let size = duration(exprs[2], "size")?;
            (size, size)
        }
    };
    if slide_ms > size_ms {
        return Err(bad(format!(
            "HOP's slide ({slide_ms} ms) is longer than its size ({size_ms} ms), which would leave rows in no window"
        )));
    }
    let interval = |ms: i64| format!("INTERVAL '{ms} milliseconds'");
    let source = format!("SELECT * FROM {relation} WHERE {time_sql} IS NOT NULL");
    let with_start = if kind == "HOP" {
        let first = format!("date_bin({}, {time_sql})", interval(slide_ms));
        let windows = (size_ms + slide_ms - 1) / slide_ms;
        let starts: Vec<String> =
            (0..windows).map(|i| if i == 0 { first.clone() } else { format!("{first} - {}", interval(i * slide_ms)) }).collect();
        format!(
            "SELECT * FROM (SELECT *, unnest(make_array({})) AS window_start FROM ({source})) WHERE window_start + {} > {time_sql}",
            starts.join(", "),
            interval(size_ms)
        )
    } else {
        format!("SELECT *, date_bin({}, {time_sql}) AS window_start FROM ({source})", interval(size_ms))
    };
    let name = alias.unwrap_or_else(|| match exprs[0] {
        Expr::CompoundIdentifier(parts) => parts.last().map(ToString::to_string).unwrap_or_default(),
        other => other.to_string(),
    });
    let sql = format!("SELECT * FROM (SELECT *, window_start + {} AS window_end FROM ({with_start})) AS {name}", interval(size_ms));
    let factor = parse_from(&sql).ok_or_else(|| PlanError::Plan(format!("internal: the rewrite of {kind} did not parse: {sql}")))?;
    Ok((WindowTvf { kind, relation, time_column, size_ms, slide_ms }, factor))
}

/// `INTERVAL '1' MINUTE`, `INTERVAL '90 seconds'` or `'10 minutes'` in milliseconds.
fn duration_ms(e: &Expr) -> Option<i64> {
    let text = e.to_string();
    let text = text.trim();
    let text = text.strip_prefix("INTERVAL").or_else(|| text.strip_prefix("interval")).unwrap_or(text);
    let spec: String = text.chars().filter(|c| *c != '\'').collect();
    let d = weir_sql::interval::parse_duration(&spec).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// The first FROM relation of `SELECT ... FROM <relation>`.
fn parse_from(sql: &str) -> Option<TableFactor> {
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql).ok()?;
    let SqlStatement::Query(query) = statements.pop()? else { return None };
    let Query { body, .. } = *query;
    let SetExpr::Select(select) = *body else { return None };
    let mut select = *select;
    if select.from.is_empty() {
        return None;
    }
    Some(select.from.swap_remove(0).relation)
}

fn example(kind: &str) -> &'static str {
    match kind {
        "HOP" => "FROM HOP(events, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)",
        _ => "FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn rewritten(sql: &str) -> Result<(Vec<WindowTvf>, String)> {
        let mut statement = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        let found = rewrite(&mut statement)?;
        Ok((found, statement.to_string()))
    }

    #[test]
    fn stream_marks_a_table() {
        let mut statements = DFParser::parse_sql("SELECT * FROM STREAM(bronze) b JOIN dim ON b.k = dim.k").unwrap();
        let (_, streamed) = rewrite_marked(&mut statements[0]).unwrap();
        assert_eq!(streamed, ["bronze"]);
        assert_eq!(statements[0].to_string(), "SELECT * FROM bronze AS b JOIN dim ON b.k = dim.k");
        let mut statements = DFParser::parse_sql("SELECT * FROM STREAM(1 + 1)").unwrap();
        let e = rewrite_marked(&mut statements[0]).unwrap_err().to_string();
        assert!(e.contains("STREAM takes a table's name"), "{e}");
    }

    #[test]
    fn tumble_and_hop_become_derived_tables() {
        let (found, sql) = rewritten("SELECT window_start, count(*) FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end").unwrap();
        assert_eq!(found, vec![WindowTvf { kind: "TUMBLE", relation: "ev".into(), time_column: "ts".into(), size_ms: 60_000, slide_ms: 60_000 }]);
        assert!(sql.contains("date_bin(INTERVAL '60000 milliseconds', ts)") && sql.contains(") AS ev"), "{sql}");
        let (found, sql) = rewritten("SELECT * FROM hop(ev, ts, INTERVAL '10' SECOND, INTERVAL '25' SECOND) AS w").unwrap();
        assert_eq!((found[0].size_ms, found[0].slide_ms), (25_000, 10_000));
        assert!(sql.contains("- INTERVAL '20000 milliseconds'") && !sql.contains("30000") && sql.contains(") AS w"), "{sql}");
        let (found, _) = rewritten("WITH d AS (SELECT DISTINCT * FROM ev) SELECT * FROM TUMBLE(d, ts, '5 seconds')").unwrap();
        assert_eq!((found[0].relation.as_str(), found[0].size_ms), ("d", 5000));
        assert!(rewritten("SELECT * FROM ev").unwrap().0.is_empty());
    }

    #[test]
    fn spark_window_in_group_by_becomes_a_windowing_function() {
        let (found, sql) = rewritten(
            "SELECT window.start, window, user_id, count(*) FROM ev GROUP BY window(ts, '10 minutes'), user_id HAVING window.end > now()",
        )
        .unwrap();
        assert_eq!((found[0].kind, found[0].size_ms), ("TUMBLE", 600_000));
        assert!(sql.contains("GROUP BY window_start, window_end, user_id"), "{sql}");
        assert!(sql.starts_with("SELECT window_start AS start, named_struct('start', window_start, 'end', window_end) AS window, user_id"), "{sql}");
        assert!(sql.contains("HAVING window_end > now()"), "{sql}");
        let (found, _) = rewritten("SELECT count(*) FROM ev e GROUP BY window(ts, '1 minute', '10 seconds')").unwrap();
        assert_eq!((found[0].kind, found[0].size_ms, found[0].slide_ms), ("HOP", 60_000, 10_000));
        let e = rewritten("SELECT count(*) FROM ev JOIN d ON true GROUP BY window(ts, '1 minute')").unwrap_err().to_string();
        assert!(e.contains("reads one table"), "{e}");
    }

    #[test]
    fn bad_calls_say_how_to_write_them() {
        for (sql, wanted) in [
            ("SELECT * FROM TUMBLE(ev, ts)", "takes 3 arguments"),
            ("SELECT * FROM TUMBLE(ev, ts, INTERVAL '0' SECOND)", "must be positive"),
            ("SELECT * FROM TUMBLE(ev, ts, 'soon')", "not a duration"),
            ("SELECT * FROM HOP(ev, ts, INTERVAL '2' MINUTE, INTERVAL '1' MINUTE)", "longer than its size"),
            ("SELECT * FROM TUMBLE(1, ts, INTERVAL '1' MINUTE)", "must name a table"),
        ] {
            let e = rewritten(sql).unwrap_err().to_string();
            assert!(e.contains(wanted) && e.contains("e.g."), "{sql}: {e}");
        }
    }
}

