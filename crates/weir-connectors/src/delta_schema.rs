//! What a Delta sink writes into its table beyond the rows: with `merge_schema`, where the
//! query's columns go in an existing table and the wider schema the commit that first writes
//! a new column carries; and the `delta.*` table properties, checked when the query starts and
//! set when the sink creates the table. `delta.rs` calls these; nothing here writes.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::DeltaTableError;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::{Metadata, StructField, StructType};
use url::Url;

use crate::delta::columns_shape;
use crate::error::{ConnectorError, Result};

/// With `merge_schema`: the schema of the files the sink writes into an existing table of
/// `table` columns for a query producing `output`, and where each column comes from. The
/// table's columns come first, in their order, taken from the output column of the same name
/// or written as NULL when it has none; the output's other columns follow, nullable. A
/// column in both must fit the table's type (the same Delta type, or a number, text, binary
/// or time type of the same kind, cast); a NOT NULL column must be produced.
pub(crate) fn merge_columns(name: &str, url: &Url, table: &SchemaRef, output: &SchemaRef) -> Result<(SchemaRef, Vec<Option<usize>>)> {
    let mut fields = Vec::with_capacity(table.fields().len() + output.fields().len());
    let mut placement = Vec::with_capacity(fields.capacity());
    for field in table.fields() {
        match output.index_of(field.name()) {
            Ok(i) if !fits(output.field(i).data_type(), field.data_type()) => {
                return Err(ConnectorError::Config(format!(
                    "table '{name}': the query writes column '{}' as {}, and the existing Delta table at {url} holds it as {}; merge_schema adds columns, it changes no column's type: cast it in the SELECT",
                    field.name(),
                    weir_sql::types::sql_name(output.field(i).data_type()),
                    weir_sql::types::sql_name(field.data_type())
                )));
            }
            Ok(i) => placement.push(Some(i)),
            Err(_) if !field.is_nullable() => {
                return Err(ConnectorError::Config(format!(
                    "table '{name}': the existing Delta table at {url} has the NOT NULL column '{}', which the query does not produce; with merge_schema the table's columns a query lacks are written as NULL, so this one must be in the SELECT",
                    field.name()
                )));
            }
            Err(_) => placement.push(None),
        }
        fields.push(Arc::clone(field));
    }
    for (i, field) in output.fields().iter().enumerate() {
        if table.field_with_name(field.name()).is_err() {
            fields.push(Arc::new(field.as_ref().clone().with_nullable(true)));
            placement.push(Some(i));
        }
    }
    Ok((Arc::new(Schema::new(fields)), placement))
}

/// Whether a column of type `from` may be written to a table column of type `to`: the same
/// Delta type, or one of the same kind (numbers, text, binary, dates and times) that casts.
fn fits(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let shape = |t: &DataType| -> Option<Vec<(String, String)>> {
        let columns: StructType = (&Schema::new(vec![Field::new("c", t.clone(), true)])).try_into_kernel().ok()?;
        Some(columns_shape(&columns))
    };
    let kind = |t: &DataType| match t {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32 | Float64 | Decimal128(_, _) | Decimal256(_, _) => 1,
        Utf8 | LargeUtf8 | Utf8View => 2,
        Binary | LargeBinary | BinaryView => 3,
        Date32 | Date64 | Timestamp(_, _) => 4,
        _ => 0,
    };
    let same = from == to || (shape(from).is_some() && shape(from) == shape(to)) || (kind(from) != 0 && kind(from) == kind(to));
    same && arrow::compute::can_cast_types(from, to)
}

/// The table's metadata with the columns of `written` it lacks added (nullable), when there
/// are any: the `metaData` action of the commit whose files first hold them. A column the
/// table has with another type (changed by someone else since the sink opened it) fails the
/// commit.
pub(crate) fn merged_metadata(metadata: &Metadata, table: &StructType, written: &StructType) -> deltalake::DeltaResult<Option<Metadata>> {
    let one = |f: &StructField| columns_shape(&StructType::try_new([f.clone()]).expect("one field has no duplicate name"));
    let mut fields: Vec<_> = table.fields().cloned().collect();
    for field in written.fields() {
        match table.field(field.name()) {
            Some(existing) if one(existing) != one(field) => {
                return Err(DeltaTableError::Generic(format!(
                    "the table's column '{}' is {:?} now, and the files written hold {:?}: another writer changed the table since the sink opened it; start the query again",
                    field.name(),
                    existing.data_type(),
                    field.data_type()
                )));
            }
            Some(_) => {}
            None => fields.push(StructField::new(field.name().clone(), field.data_type().clone(), true)),
        }
    }
    if fields.len() == table.fields().len() {
        return Ok(None);
    }
    // As delta-rs's own schema evolution writes it: the same metadata, the new schema.
    let schema = StructType::try_new(fields)?;
    let mut value = serde_json::to_value(metadata)?;
    value["schemaString"] = serde_json::Value::String(serde_json::to_string(&schema)?);
    Ok(Some(serde_json::from_value(value)?))
}

/// The `delta.*` table properties delta-rs 1.1 sets when it creates a table.
const TABLE_PROPERTIES: &[&str] = &[
    "delta.appendOnly",
    "delta.autoOptimize.autoCompact",
    "delta.autoOptimize.optimizeWrite",
    "delta.checkpointInterval",
    "delta.checkpoint.writeStatsAsJson",
    "delta.checkpoint.writeStatsAsStruct",
    "delta.checkpointPolicy",
    "delta.columnMapping.mode",
    "delta.dataSkippingNumIndexedCols",
    "delta.dataSkippingStatsColumns",
    "delta.deletedFileRetentionDuration",
    "delta.enableChangeDataFeed",
    "delta.enableDeletionVectors",
    "delta.enableExpiredLogCleanup",
    "delta.isolationLevel",
    "delta.logRetentionDuration",
    "delta.minReaderVersion",
    "delta.minWriterVersion",
    "delta.randomizeFilePrefixes",
    "delta.randomPrefixLength",
    "delta.setTransactionRetentionDuration",
    "delta.targetFileSize",
    "delta.tuneFileSizesForRewrites",
];

/// Checks the `delta.*` options of sink `name` before anything runs. delta-rs refuses a key
/// it does not know, but only when it creates the table, at the first commit; and it writes
/// most values unchecked, which Delta readers then ignore. So the key must be one delta-rs
/// knows, and the value one the Delta kernel parses. Column mapping is refused: the sink
/// writes files by column name.
pub(crate) fn check_table_properties(name: &str, properties: &[(String, String)]) -> Result<()> {
    for (key, value) in properties {
        if key.parse::<deltalake::TableProperty>().is_err() {
            let hint = weir_sql::options::nearest(key, TABLE_PROPERTIES).map(|n| format!("; did you mean '{n}'?")).unwrap_or_default();
            return Err(ConnectorError::Config(format!(
                "table '{name}': unknown Delta table property '{key}'{hint} (delta-rs sets {})",
                TABLE_PROPERTIES.join(", ")
            )));
        }
        let bad = |wanted: &str| ConnectorError::Config(format!("table '{name}': option '{key}' = '{value}' is not {wanted}"));
        let version = |range: std::ops::RangeInclusive<u32>| value.parse::<u32>().ok().filter(|v| range.contains(v)).map(|_| ());
        match key.as_str() {
            "delta.minReaderVersion" => version(1..=3).ok_or_else(|| bad("a reader version from 1 to 3"))?,
            "delta.minWriterVersion" => version(2..=7).ok_or_else(|| bad("a writer version from 2 to 7"))?,
            "delta.columnMapping.mode" if value != "none" => {
                return Err(bad("supported: weir writes data files by column name, so it cannot create a column-mapped table; leave the option out"));
            }
            _ => {
                let parsed = delta_kernel::table_properties::TableProperties::from([(key.as_str(), value.as_str())]);
                if parsed.unknown_properties.contains_key(key) {
                    return Err(bad(match key.as_str() {
                        "delta.checkpointInterval" | "delta.randomPrefixLength" => "a positive whole number",
                        "delta.deletedFileRetentionDuration" | "delta.logRetentionDuration" | "delta.setTransactionRetentionDuration" => {
                            "an interval such as 'interval 7 days' (units: nanoseconds to weeks)"
                        }
                        "delta.targetFileSize" => "a positive number of bytes",
                        "delta.dataSkippingStatsColumns" => "a comma-separated list of column names",
                        _ => "'true' or 'false'",
                    }));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
        Arc::new(Schema::new(fields.iter().map(|(n, t, null)| Field::new(*n, t.clone(), *null)).collect::<Vec<_>>()))
    }

    #[test]
    fn merged_columns_keep_the_table_first_and_add_new_ones_nullable() {
        let url = Url::parse("file:///t/").unwrap();
        let table = schema(&[("id", DataType::Int64, false), ("p", DataType::Utf8, true), ("gone", DataType::Float64, true)]);
        let output = schema(&[("new", DataType::Utf8, false), ("id", DataType::Int32, true), ("p", DataType::Utf8View, true)]);
        let (written, placement) = merge_columns("t", &url, &table, &output).unwrap();
        let names: Vec<_> = written.fields().iter().map(|f| (f.name().as_str(), f.is_nullable())).collect();
        assert_eq!(names, [("id", false), ("p", true), ("gone", true), ("new", true)]);
        assert_eq!(placement, [Some(1), Some(2), None, Some(0)]);

        let e = merge_columns("t", &url, &table, &schema(&[("id", DataType::Utf8, true)])).unwrap_err().to_string();
        assert!(e.contains("the query writes column 'id' as STRING") && e.contains("holds it as BIGINT"), "{e}");
        let e = merge_columns("t", &url, &table, &schema(&[("p", DataType::Utf8, true)])).unwrap_err().to_string();
        assert!(e.contains("has the NOT NULL column 'id', which the query does not produce"), "{e}");
        assert!(fits(&DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None), &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)));
        assert!(!fits(&DataType::Boolean, &DataType::Int64));
    }
}
