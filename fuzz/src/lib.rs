//! Helpers shared by the fuzz targets: the schemas rows are decoded into, declared in SQL
//! and parsed by weir itself, so they are exactly what a real `CREATE TABLE` gives.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use weir_sql::config::ConnectorConfig;
use weir_sql::ddl::{Statement, parse_script};

/// Every column type JSON can decode into, nested ones included.
pub const NESTED_COLUMNS: &str = "i BIGINT, n INT, sm SMALLINT, ti TINYINT, f DOUBLE, r FLOAT, s STRING, b BOOLEAN, \
     ts TIMESTAMP, ntz TIMESTAMP_NTZ, d DATE, dec DECIMAL(10,2), big DECIMAL(38,9), bin BINARY, \
     tags ARRAY<STRING>, nums ARRAY<BIGINT>, st STRUCT<a BIGINT, b STRING, c ARRAY<DOUBLE>>, \
     m MAP<STRING, BIGINT>, req STRING NOT NULL";

/// The column types CSV can decode into (no nested or binary types).
pub const FLAT_COLUMNS: &str = "i BIGINT, n INT, sm SMALLINT, ti TINYINT, f DOUBLE, r FLOAT, s STRING, b BOOLEAN, \
     ts TIMESTAMP, ntz TIMESTAMP_NTZ, d DATE, dec DECIMAL(10,2), big DECIMAL(38,9), req BIGINT NOT NULL";

/// Kafka metadata columns, appended to the value columns of a Kafka table.
pub const KAFKA_METADATA_COLUMNS: &str = "part INT METADATA FROM 'partition', off BIGINT METADATA FROM 'offset', \
     k STRING METADATA FROM 'key', kts TIMESTAMP METADATA FROM 'timestamp', topic STRING METADATA VIRTUAL";

/// The declared schema of `CREATE TABLE t (<columns>) WITH (<options>)`, checked by the
/// connector config as weir checks it. Panics if weir refuses the table (a bug in the target).
pub fn declared_schema(columns: &str, options: &str) -> SchemaRef {
    let sql = format!("CREATE TABLE t ({columns}) WITH ({options})");
    let mut statements = parse_script(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let Some(Statement::CreateTable(table)) = statements.pop() else { panic!("{sql}: not a CREATE TABLE") };
    ConnectorConfig::from_table(&table).unwrap_or_else(|e| panic!("{sql}: {e}"));
    Arc::new(Schema::new(table.columns))
}
