//! The session's catalog statements: `SHOW TABLES`, `DESCRIBE t`, `DROP TABLE t`, and the
//! ones about its queries (`SHOW QUERIES`, `SHOW PROGRESS q`, `STOP QUERY q`), as data that
//! the shell prints and Python hands back.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use weir_sql::config::{ConnectorConfig, is_secret_property};

use crate::error::{Result, WeirError};
use crate::query::StreamingQuery;
use crate::session::{Session, TableDef};

/// What `DESCRIBE t` shows of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDescription {
    /// The table.
    pub name: String,
    /// Its connector (`kafka`, `file`, `delta`, ...).
    pub connector: String,
    /// What it is: `source`, `sink`, `static`, or `sink, stream, static` (a Delta table:
    /// written by queries, read as a stream by pipeline hops and `STREAM(t)`, and whole by
    /// batch queries and joins).
    pub kind: String,
    /// Declared columns: name, SQL type, nullable; empty when the table declares none.
    pub columns: Vec<(String, String, bool)>,
    /// `WATERMARK FOR ...`: the event-time column and the delay as written.
    pub watermark: Option<(String, String)>,
    /// The `WITH` options (connector first), secret values shown as `****`.
    pub options: Vec<(String, String)>,
}

impl TableDescription {
    /// The columns as a table: `column_name, data_type, is_nullable`.
    pub fn columns_batch(&self) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("column_name", DataType::Utf8, false),
            Field::new("data_type", DataType::Utf8, false),
            Field::new("is_nullable", DataType::Boolean, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(self.columns.iter().map(|c| c.0.as_str()))),
            Arc::new(StringArray::from_iter_values(self.columns.iter().map(|c| c.1.as_str()))),
            Arc::new(BooleanArray::from(self.columns.iter().map(|c| c.2).collect::<Vec<_>>())),
        ];
        RecordBatch::try_new(schema, columns).expect("columns match their schema")
    }
}

/// The kind of table a connector makes.
fn kind(config: &ConnectorConfig) -> &'static str {
    match (config.is_source(), config.is_sink(), config.is_static()) {
        (true, _, _) => "source",
        (_, true, true) if config.can_stream() => "sink, stream, static",
        (_, true, true) => "sink, static",
        (_, true, false) => "sink",
        _ => "static",
    }
}

impl Session {
    /// `SHOW TABLES`: `name, connector, kind, watermark`, by name.
    pub fn show_tables(&self) -> RecordBatch {
        let tables: Vec<(&String, &TableDef)> = self.tables().iter().collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("connector", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("watermark", DataType::Utf8, true),
        ]));
        let watermark = |d: &TableDef| d.create.watermark.as_ref().map(|w| format!("{} - INTERVAL '{}'", w.column, humantime_delay(w.delay)));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(tables.iter().map(|(n, _)| n.as_str()))),
            Arc::new(StringArray::from_iter_values(tables.iter().map(|(_, d)| d.config.name()))),
            Arc::new(StringArray::from_iter_values(tables.iter().map(|(_, d)| kind(&d.config)))),
            Arc::new(StringArray::from(tables.iter().map(|(_, d)| watermark(d)).collect::<Vec<_>>())),
        ];
        RecordBatch::try_new(schema, columns).expect("columns match their schema")
    }

    /// `DESCRIBE name`.
    pub fn describe(&self, name: &str, line: usize) -> Result<TableDescription> {
        let def = self.tables().get(name).ok_or_else(|| no_such_table(self, name, line))?;
        let mut options = vec![("connector".to_string(), def.create.connector.clone())];
        for (key, option) in def.create.options.iter() {
            let key = key.to_string();
            let secret = key.strip_prefix("properties.").is_some_and(is_secret_property) || is_secret_property(&key);
            options.push((key, if secret { "****".to_string() } else { option.value.clone() }));
        }
        Ok(TableDescription {
            name: name.to_string(),
            connector: def.config.name().to_string(),
            kind: kind(&def.config).to_string(),
            columns: def
                .create
                .columns
                .iter()
                .map(|f| (f.name().clone(), weir_sql::types::sql_name(f.data_type()), f.is_nullable()))
                .collect(),
            watermark: def.create.watermark.as_ref().map(|w| (w.column.clone(), humantime_delay(w.delay))),
            options,
        })
    }

    /// `DROP TABLE name`: forgets the table (its data stays). Refused while a running query
    /// reads or writes it.
    pub fn drop_table(&mut self, name: &str, line: usize) -> Result<()> {
        if !self.tables().contains_key(name) {
            return Err(no_such_table(self, name, line));
        }
        if let Some(q) = self
            .queries()
            .into_iter()
            .find(|q| q.is_active() && (q.sources().iter().any(|s| s == name) || q.sink() == Some(name)))
        {
            return Err(WeirError::at(
                line,
                format!("table '{name}' is used by the running query '{}' (id {}); stop it first (STOP QUERY {})", q.name(), q.id(), q.name()),
            ));
        }
        self.forget_table(name);
        Ok(())
    }

    /// `SHOW QUERIES`: the queries started with `INSERT INTO` (previews are not listed), oldest
    /// first: `name, id, status, batch, rows_per_second, watermark, last_error`. `batch`, the
    /// rate (rows processed per second, to one decimal) and the watermark are those of the
    /// last batch with progress.
    pub fn show_queries(&self) -> RecordBatch {
        let queries: Vec<StreamingQuery> = self.queries().into_iter().filter(|q| q.sink().is_some()).collect();
        let last: Vec<_> = queries.iter().map(StreamingQuery::last_progress).collect();
        let status = |q: &StreamingQuery| match (q.is_active(), q.exception()) {
            (true, _) => "running".to_string(),
            (false, Some(_)) => "failed".to_string(),
            (false, None) => "stopped".to_string(),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("batch", DataType::UInt64, true),
            Field::new("rows_per_second", DataType::Float64, true),
            Field::new("watermark", DataType::Utf8, true),
            Field::new("last_error", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(queries.iter().map(StreamingQuery::name))),
            Arc::new(StringArray::from_iter_values(queries.iter().map(StreamingQuery::id))),
            Arc::new(StringArray::from_iter_values(queries.iter().map(status))),
            Arc::new(UInt64Array::from(last.iter().map(|p| p.as_ref().map(|p| p.batch_id)).collect::<Vec<_>>())),
            // A rate to one decimal: a listing, not a measurement (recent_progress has those).
            Arc::new(Float64Array::from(
                last.iter().map(|p| p.as_ref().map(|p| (p.processed_rows_per_second * 10.0).round() / 10.0)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                last.iter().map(|p| p.as_ref().and_then(|p| p.event_time.as_ref()).map(|e| e.watermark.clone())).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(queries.iter().map(StreamingQuery::exception).collect::<Vec<_>>())),
        ];
        RecordBatch::try_new(schema, columns).expect("columns match their schema")
    }

    /// The query started with `INSERT INTO` named `name` (the newest, if it was started
    /// more than once), or whose id is `name`.
    pub fn query(&self, name: &str, line: usize) -> Result<StreamingQuery> {
        let queries: Vec<StreamingQuery> = self.queries().into_iter().filter(|q| q.sink().is_some()).collect();
        if let Some(q) = queries.iter().rev().find(|q| q.name() == name || q.id() == name) {
            return Ok(q.clone());
        }
        let known = if queries.is_empty() {
            "no query was started in this session; INSERT INTO <sink> SELECT ... starts one".to_string()
        } else {
            format!("queries: {}", queries.iter().map(StreamingQuery::name).collect::<Vec<_>>().join(", "))
        };
        Err(WeirError::at(line, format!("no query '{name}' ({known})")))
    }

    /// The streaming plan of `query` (a SELECT over sources): the sources it reads, the state
    /// it keeps between batches, and the physical plan each batch runs over its new rows.
    /// Sources are opened to learn their schemas (a Kafka source asks its broker).
    pub async fn explain(&self, query: &str, line: usize) -> Result<String> {
        let read = self.stream_tables(query, line, true)?;
        if read.is_empty() {
            return Err(WeirError::at(
                line,
                "the query reads no source, so it has no streaming plan: a SELECT over static tables (Delta, Parquet) runs once, as a batch query",
            ));
        }
        let mut defs = Vec::new();
        for (name, def) in self.tables().iter().filter(|(n, _)| read.contains(*n)) {
            let declared = (!def.create.columns.is_empty()).then(|| Arc::new(Schema::new(def.create.columns.clone())));
            let source = weir_connectors::make_source(name, &def.config, declared).await.map_err(|e| WeirError::at(def.create.line, e))?;
            defs.push(weir_planner::SourceDef {
                name: name.clone(),
                schema: source.schema(),
                event_time: def.create.watermark.as_ref().map(|w| w.column.clone()),
            });
        }
        let (_, statics) = self.open_static_tables(query, line, &read).await?;
        let compiled = weir_planner::compile(query, &defs, &statics, None, self.config().threads).await.map_err(|e| WeirError::at(line, e))?;
        let sources: Vec<String> = compiled
            .sources()
            .map(|s| format!("{s} ({})", self.tables().get(s).map_or("?", |d| d.config.name())))
            .collect();
        let state = if compiled.operators().is_empty() {
            "none: the query is stateless, each batch runs the whole plan over its new rows only".to_string()
        } else {
            let ops: Vec<String> = compiled
                .operators()
                .iter()
                .map(|op| match op {
                    weir_planner::OperatorPlan::Dedup(d) => {
                        let bound = match &d.event_time {
                            Some((_, source)) => format!("evicted as the watermark of '{source}' passes"),
                            None => "kept for ever (no watermark bounds it)".to_string(),
                        };
                        format!("a deduplication on ({}), {bound}", d.key_names.join(", "))
                    }
                    weir_planner::OperatorPlan::Window(w) => format!(
                        "an aggregation by ({}) of {}, each group written once and dropped when the watermark of '{}' passes its end",
                        w.group_names.join(", "),
                        w.aggregate_names.join(", "),
                        w.event_time.0
                    ),
                })
                .collect();
            format!(
                "{}; in state files kept with the query's checkpoint between batches, one directory per operator; each plan above an operator runs on the rows it outputs",
                ops.join(", then ")
            )
        };
        Ok(format!("sources: {}\nstate: {state}\nper batch:\n{}", sources.join(", "), compiled.display_plan().trim_end()))
    }

    /// `STOP QUERY name`: asks the query to stop after its batch in flight and returns it
    /// (await its termination to know it has stopped).
    pub fn stop_query(&self, name: &str, line: usize) -> Result<StreamingQuery> {
        let query = self.query(name, line)?;
        query.stop();
        Ok(query)
    }
}

pub(crate) fn no_such_table(session: &Session, name: &str, line: usize) -> WeirError {
    let names: Vec<&str> = session.tables().keys().map(String::as_str).collect();
    let known = if names.is_empty() { "no tables are declared".to_string() } else { format!("tables: {}", names.join(", ")) };
    WeirError::at(line, format!("no table '{name}' ({known})"))
}

/// A delay as an interval's text: `10 minutes`, `1 hour 30 minutes`, `500 milliseconds`.
fn humantime_delay(d: std::time::Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0 seconds".into();
    }
    let units = [(86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1000, "second"), (1, "millisecond")];
    let mut rest = ms;
    let mut parts = Vec::new();
    for (size, unit) in units {
        let n = rest / size;
        if n > 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
            rest -= n * size;
        }
    }
    parts.join(" ")
}

/// A DataFusion "table not found" in a batch query, with what to do about it.
pub(crate) fn with_table_hint(message: String) -> String {
    if message.contains("not found") && message.starts_with("table") {
        return message.replace(
            ": declare it with CREATE TABLE ... WITH (connector = 'file', ...) before the query",
            ": declare it first, e.g. CREATE TABLE t WITH (connector = 'delta', path = '...') for a pipeline's output",
        );
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_read_as_intervals() {
        assert_eq!(humantime_delay(std::time::Duration::from_secs(600)), "10 minutes");
        assert_eq!(humantime_delay(std::time::Duration::from_millis(5_400_500)), "1 hour 30 minutes 500 milliseconds");
    }
}
