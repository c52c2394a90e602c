//! The static tables a streaming query joins with, kept in memory for the planner's joins
//! (`weir_planner::static_side`) and moved to a table's new Delta version between batches.
//!
//! ```text
//! start:        open each table the query reads (columns, for planning)
//! batch N:      newest version of each Delta table -> read it whole if it moved
//!               -> offsets/N records {table: version} -> the batch joins with those rows
//! replay of N:  read the versions offsets/N recorded, whatever the tables hold now
//! ```
//!
//! A Parquet directory has no versions: it is read once, when the query starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use weir_connectors::ConnectorError;
use weir_connectors::static_table::JoinedTable;
use weir_planner::{StaticDef, StaticRows};
use weir_sql::config::ConnectorConfig;

/// One static table and the rows the query's plan reads from it.
struct Joined {
    name: String,
    table: JoinedTable,
    rows: Arc<StaticRows>,
    /// Whether rows are in place, and of which version (`None`: Parquet).
    loaded: Option<Option<i64>>,
}

/// The static tables of one query.
#[derive(Default)]
pub(crate) struct StaticTables {
    tables: Vec<Joined>,
}

impl StaticTables {
    /// Opens the static tables (`(name, config)`, Delta or Parquet) a query may join with,
    /// and returns them with what the planner registers for them.
    pub(crate) async fn open(tables: &[(&str, &ConnectorConfig)]) -> Result<(Self, Vec<StaticDef>), ConnectorError> {
        let mut out = Self::default();
        let mut defs = Vec::new();
        for &(name, config) in tables {
            let table = JoinedTable::open(name, config).await?;
            let rows = Arc::new(StaticRows::new(table.schema()));
            defs.push(StaticDef { name: name.to_string(), rows: Arc::clone(&rows) });
            out.tables.push(Joined { name: name.to_string(), table, rows, loaded: None });
        }
        Ok((out, defs))
    }

    /// Keeps only the tables in `used` (those the planned query reads).
    pub(crate) fn retain(&mut self, used: &[String]) {
        self.tables.retain(|t| used.contains(&t.name));
    }

    /// Before a new batch: each Delta table's newest version, its rows read again when it
    /// moved (Parquet directories are read the first time only). Returns the versions the
    /// batch joins with, for `offsets/N`; `None` when no table has versions.
    pub(crate) async fn refresh(&mut self) -> Result<Option<BTreeMap<String, i64>>, ConnectorError> {
        for t in &mut self.tables {
            let version = t.table.latest_version().await?;
            if t.loaded != Some(version) {
                t.load(version).await?;
            }
        }
        Ok(self.versions())
    }

    /// Before a replay of a batch: the versions it recorded (`recorded`), so it joins with the
    /// same rows as its first run. A table the entry does not name (recorded by a weir
    /// without static joins) is read at its newest version.
    pub(crate) async fn replay(&mut self, recorded: Option<&BTreeMap<String, i64>>) -> Result<(), ConnectorError> {
        for t in &mut self.tables {
            let version = match recorded.and_then(|r| r.get(&t.name)) {
                Some(&v) if t.table.has_versions() => Some(v),
                _ => t.table.latest_version().await?,
            };
            if t.loaded != Some(version) {
                t.load(version).await?;
            }
        }
        Ok(())
    }

    /// The versions of the rows in place, by table; `None` when no table has versions.
    fn versions(&self) -> Option<BTreeMap<String, i64>> {
        let versions: BTreeMap<String, i64> =
            self.tables.iter().filter_map(|t| Some((t.name.clone(), t.loaded.flatten()?))).collect();
        (!versions.is_empty()).then_some(versions)
    }
}

impl Joined {
    /// Reads the table at `version` and puts its rows in place.
    async fn load(&mut self, version: Option<i64>) -> Result<(), ConnectorError> {
        let batches = self.table.read(version).await?;
        let schema = self.rows.schema();
        let mut rows = Vec::with_capacity(batches.len());
        for batch in batches {
            // The query was planned with the table's columns when it started.
            let batch = if batch.schema().fields() == schema.fields() {
                batch
            } else {
                RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec()).map_err(|_| {
                    let show = |s: &arrow::datatypes::Schema| {
                        s.fields().iter().map(|f| format!("{} {}", f.name(), weir_sql::types::sql_name(f.data_type()))).collect::<Vec<_>>().join(", ")
                    };
                    ConnectorError::Config(format!(
                        "static table '{}': its columns at version {} ({}) are not those the query was planned with ({}); restart the query to plan it again",
                        self.name,
                        version.map_or("now".to_string(), |v| v.to_string()),
                        show(&batch.schema()),
                        show(&schema)
                    ))
                })?
            };
            rows.push(batch);
        }
        self.rows.replace(rows);
        self.loaded = Some(version);
        Ok(())
    }
}
