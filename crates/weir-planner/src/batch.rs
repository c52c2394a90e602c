//! Batch queries: a `SELECT` that reads only static tables (Delta tables, Parquet
//! directories) runs once, now, in a DataFusion context where those tables are registered.
//! The shell and Python use it to look at what a pipeline wrote.

use arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;
use datafusion::sql::resolve::resolve_table_references;

use crate::compile::clean;
use crate::error::{PlanError, Result};

/// The tables `query` reads (lower-cased unless quoted, as DataFusion names them), in name
/// order, not counting the names its `WITH` clauses define.
pub fn referenced_tables(query: &str) -> Result<Vec<String>> {
    Ok(referenced_tables_marked(query)?.0)
}

/// [`referenced_tables`], and those of them marked `STREAM(t)`.
pub fn referenced_tables_marked(query: &str) -> Result<(Vec<String>, Vec<String>)> {
    let mut statements = DFParser::parse_sql(query).map_err(|e| PlanError::Plan(clean(&e)))?;
    let mut tables = Vec::new();
    let mut marked = Vec::new();
    for statement in &mut statements {
        // TUMBLE(events, ...) reads events; STREAM(bronze) reads bronze.
        let (_, streamed) = crate::window_tvf::rewrite_marked(statement)?;
        marked.extend(streamed);
        let (relations, _ctes) = resolve_table_references(statement, true).map_err(|e| PlanError::Plan(clean(&e)))?;
        for r in relations {
            let name = r.table().to_string();
            if !tables.contains(&name) {
                tables.push(name);
            }
        }
    }
    Ok((tables, marked))
}

/// A context for one batch query on `threads` partitions; register its tables, then call
/// [`run_batch`].
pub fn batch_context(threads: usize) -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(threads.max(1)))
}

/// Runs `query` once in `ctx` and returns its rows.
pub async fn run_batch(ctx: &SessionContext, query: &str) -> Result<Vec<RecordBatch>> {
    let frame = ctx.sql(query).await.map_err(|e| PlanError::Plan(clean(&e)))?;
    frame.collect().await.map_err(|e| PlanError::Execution(clean(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_a_query_reads() {
        assert_eq!(referenced_tables("SELECT * FROM Out o JOIN \"Dim\" d ON o.k = d.k").unwrap(), vec!["Dim", "out"]);
        assert_eq!(referenced_tables("WITH x AS (SELECT * FROM t) SELECT * FROM x, t").unwrap(), vec!["t"]);
        assert!(referenced_tables("SELECT 1").unwrap().is_empty());
        assert_eq!(referenced_tables("SELECT count(*) FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) GROUP BY window_start").unwrap(), vec!["ev"]);
        assert!(referenced_tables("SELEKT 1").is_err());
    }

    #[tokio::test]
    async fn a_query_over_nothing_runs() {
        let rows = run_batch(&batch_context(2), "SELECT 1 + 1 AS two").await.unwrap();
        assert_eq!(rows[0].num_rows(), 1);
    }
}
