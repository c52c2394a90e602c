//! Tables a program provides rather than declares in SQL: a sink whose batches go to the
//! program's function (`foreach_batch`, Spark's `foreachBatch`) and a static table of rows
//! the program holds (`arrow`). Python's `session.register_sink` and
//! `session.register_table` are these; the CLI has neither.
//!
//! Both are tables of the session's catalog like any other (`SHOW TABLES`, `DESCRIBE`,
//! `DROP TABLE`); what SQL cannot hold, the function and the rows, is kept here by name.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use weir_connectors::foreach_batch::{BatchFunction, ForeachBatchSink};
use weir_connectors::{ConnectorError, Sink, make_sink};
use weir_sql::config::ConnectorConfig;
use weir_sql::{CreateTable, Options};

use crate::error::{Result, WeirError};
use crate::session::{Session, TableDef};

/// What a program registered with the session's tables.
#[derive(Default)]
pub(crate) struct Registered {
    /// The function of each `foreach_batch` table that has one.
    functions: HashMap<String, Arc<dyn BatchFunction>>,
    /// The rows of each `arrow` table, and their schema.
    rows: HashMap<String, (SchemaRef, Vec<RecordBatch>)>,
}

impl Registered {
    /// Forgets what table `name` had (it was dropped).
    pub(crate) fn forget(&mut self, name: &str) {
        self.functions.remove(name);
        self.rows.remove(name);
    }
}

/// A catalog entry for a table the program made: no SQL, no options.
fn program_table(name: &str, connector: &str, columns: Vec<arrow::datatypes::Field>) -> CreateTable {
    CreateTable { name: name.to_string(), columns, watermark: None, connector: connector.to_string(), options: Options::default(), line: 0 }
}

impl Session {
    /// Sends the batches of every query that writes table `name` to `function`: each batch
    /// once it is done, its rows in the query's output schema; a batch replayed after a crash
    /// again, with the same id and rows (Spark's `foreachBatch` rule). Declares `name` as a
    /// `foreach_batch` table unless `CREATE TABLE name (...) WITH (connector =
    /// 'foreach_batch')` declared it already, with columns the query's output must fit.
    /// Queries started before keep the function they had.
    pub fn register_sink(&mut self, name: &str, function: Arc<dyn BatchFunction>) -> Result<()> {
        match self.tables.get(name).map(|d| &d.config) {
            None => {
                let declared = self.next_declaration();
                let def = TableDef { create: program_table(name, "foreach_batch", Vec::new()), config: ConnectorConfig::ForeachBatch, declared };
                self.tables.insert(name.to_string(), def);
            }
            Some(ConnectorConfig::ForeachBatch) => {}
            Some(other) => {
                return Err(WeirError::Config(format!(
                    "table '{name}' is declared with connector '{}'; a function can only take the batches of a 'foreach_batch' table: drop it first, or register the function under another name",
                    other.name()
                )));
            }
        }
        self.registered.functions.insert(name.to_string(), function);
        Ok(())
    }

    /// Declares the static table `name` holding `rows`, which batch queries read (lookups,
    /// tests). The rows are shared, not copied. An `arrow` table of that name gets the new
    /// rows; a table of another connector is left alone, with an error.
    pub fn register_table(&mut self, name: &str, schema: SchemaRef, rows: Vec<RecordBatch>) -> Result<()> {
        if let Some(i) = rows.iter().position(|b| b.schema().fields() != schema.fields()) {
            return Err(WeirError::Config(format!(
                "table '{name}': record batch {i} has columns ({}), not the table's ({})",
                columns(&rows[i].schema()),
                columns(&schema)
            )));
        }
        match self.tables.get(name).map(|d| &d.config) {
            None => {
                let create = program_table(name, "arrow", schema.fields().iter().map(|f| f.as_ref().clone()).collect());
                let declared = self.next_declaration();
                self.tables.insert(name.to_string(), TableDef { create, config: ConnectorConfig::Arrow, declared });
            }
            Some(ConnectorConfig::Arrow) => {
                if let Some(def) = self.tables.get_mut(name) {
                    def.create.columns = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                }
            }
            Some(other) => {
                return Err(WeirError::Config(format!(
                    "table '{name}' is already declared with connector '{}'; drop it first, or register the rows under another name",
                    other.name()
                )));
            }
        }
        self.registered.rows.insert(name.to_string(), (schema, rows));
        Ok(())
    }

    /// The sink that writes table `def` (`INSERT INTO name` on `line`).
    pub(crate) fn table_sink(&self, name: &str, def: &TableDef, line: usize) -> Result<Box<dyn Sink>> {
        if def.config != ConnectorConfig::ForeachBatch {
            return make_sink(name, &def.config, def.declared_schema(), &self.memory).map_err(|e| WeirError::at(def.create.line, e));
        }
        let function = self.registered.functions.get(name).ok_or_else(|| {
            WeirError::at(
                line,
                format!("INSERT INTO {name}: table '{name}' (connector 'foreach_batch') has no function to take its batches; register one first (Python: session.register_sink('{name}', fn))"),
            )
        })?;
        Ok(Box::new(ForeachBatchSink::new(name, def.declared_schema(), Arc::clone(function))))
    }

    /// Registers static table `name` (`def`) in a batch query's context.
    pub(crate) async fn register_static_table(&self, ctx: &SessionContext, name: &str, def: &TableDef) -> std::result::Result<(), ConnectorError> {
        match (&def.config, self.registered.rows.get(name)) {
            (ConnectorConfig::Arrow, Some((schema, rows))) => {
                weir_connectors::static_table::register_rows(ctx, name, Arc::clone(schema), rows.clone())
            }
            (config, _) => weir_connectors::static_table::register_static(ctx, name, config).await,
        }
    }
}

fn columns(schema: &Schema) -> String {
    schema.fields().iter().map(|f| format!("{} {}", f.name(), weir_sql::types::sql_name(f.data_type()))).collect::<Vec<_>>().join(", ")
}
