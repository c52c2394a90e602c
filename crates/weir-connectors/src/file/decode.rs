//! Turning one file's bytes into Arrow batches of the source schema, with errors that name
//! the file and the line.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::new_null_array;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weir_sql::config::{FileConfig, FileFormat};

use crate::error::{ConnectorError, Result};

/// Rows per decoded batch.
pub const BATCH_SIZE: usize = 8192;

/// Decodes `bytes` (the whole file `name`) into batches of `schema`.
pub fn decode(config: &FileConfig, schema: &SchemaRef, name: &str, bytes: Bytes) -> Result<Vec<RecordBatch>> {
    match config.format {
        FileFormat::Json => decode_json(schema, name, &bytes),
        FileFormat::Csv => decode_csv(config, schema, name, bytes),
        FileFormat::Parquet => decode_parquet(schema, name, bytes),
    }
}

fn decode_json(schema: &SchemaRef, name: &str, bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    match decode_json_fast(schema, bytes) {
        Ok(batches) => Ok(batches),
        // The fast path decodes many lines at once and cannot say which one failed: find it.
        Err(e) => Err(locate_json_error(schema, name, bytes).unwrap_or_else(|| {
            ConnectorError::BadData(format!("{name}: malformed JSON: {}", clean(&e)))
        })),
    }
}

fn decode_json_fast(schema: &SchemaRef, mut buf: &[u8]) -> std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema)).with_batch_size(BATCH_SIZE).build_decoder()?;
    let mut out = Vec::new();
    loop {
        let read = decoder.decode(buf)?;
        buf = &buf[read..];
        if (buf.is_empty() || read == 0)
            && let Some(batch) = decoder.flush()?
        {
            out.push(batch);
        }
        if buf.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// Decodes line by line until one fails; only runs after the fast path failed.
fn locate_json_error(schema: &SchemaRef, name: &str, bytes: &[u8]) -> Option<ConnectorError> {
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let problem = match std::str::from_utf8(line) {
            Err(e) => Some(format!("invalid UTF-8 at byte {} of the line", e.valid_up_to())),
            Ok(_) => decode_json_fast(schema, line).err().map(|e| clean(&e)),
        };
        if let Some(problem) = problem {
            let snippet: String = String::from_utf8_lossy(line).chars().take(120).collect();
            return Some(ConnectorError::BadData(format!("{name}:{}: malformed JSON: {problem} (line: {snippet})", i + 1)));
        }
    }
    None
}

fn clean(e: &arrow::error::ArrowError) -> String {
    let s = e.to_string();
    for prefix in ["Json error: ", "Parser error: ", "Invalid argument error: ", "Csv error: "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    s
}

fn decode_csv(config: &FileConfig, schema: &SchemaRef, name: &str, bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let bad = |m: String| ConnectorError::BadData(format!("{name}: {m}"));
    // Map the file's columns to the declared ones by header name, so column order in the
    // file does not matter and a missing column is an error instead of shifted values.
    let (file_schema, projection) = if config.header {
        let format = arrow::csv::reader::Format::default().with_header(true).with_delimiter(config.delimiter);
        let (header, _) = format.infer_schema(Cursor::new(&bytes), Some(0)).map_err(|e| bad(clean(&e)))?;
        let fields: Vec<Field> = header
            .fields()
            .iter()
            .map(|h| match schema.field_with_name(h.name()) {
                Ok(f) => f.as_ref().clone().with_nullable(true),
                Err(_) => Field::new(h.name(), DataType::Utf8, true),
            })
            .collect();
        let mut projection = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let idx = header.index_of(f.name()).map_err(|_| {
                bad(format!(
                    "the CSV header has no column '{}' (header: {})",
                    f.name(),
                    header.fields().iter().map(|h| h.name().as_str()).collect::<Vec<_>>().join(",")
                ))
            })?;
            projection.push(idx);
        }
        (Arc::new(Schema::new(fields)), Some(projection))
    } else {
        (Arc::clone(schema), None)
    };
    let mut builder = arrow::csv::ReaderBuilder::new(Arc::clone(&file_schema))
        .with_header(config.header)
        .with_delimiter(config.delimiter)
        .with_batch_size(BATCH_SIZE);
    if let Some(p) = &projection {
        builder = builder.with_projection(p.clone());
    }
    let reader = builder.build(Cursor::new(bytes)).map_err(|e| bad(clean(&e)))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(clean(&e)))?;
        // The projection lists file columns in declared order, and the reader keeps it.
        let batch = match &projection {
            Some(_) => RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec()).map_err(|e| bad(clean(&e)))?,
            None => batch,
        };
        out.push(batch);
    }
    Ok(out)
}

fn decode_parquet(schema: &SchemaRef, name: &str, bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let bad = |m: String| ConnectorError::BadData(format!("{name}: {m}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?
        .with_batch_size(BATCH_SIZE)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(clean(&e)))?;
        out.push(conform(schema, &batch).map_err(bad)?);
    }
    Ok(out)
}

/// Selects and casts `batch`'s columns by name into `schema`; absent nullable columns are NULL.
pub fn conform(schema: &SchemaRef, batch: &RecordBatch) -> std::result::Result<RecordBatch, String> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.schema().index_of(field.name()) {
            Ok(i) => {
                let c = batch.column(i);
                if c.data_type() == field.data_type() {
                    Arc::clone(c)
                } else {
                    arrow::compute::cast(c, field.data_type()).map_err(|e| {
                        format!("column '{}' is {} in the file and cannot become {}: {}", field.name(), c.data_type(), field.data_type(), clean(&e))
                    })?
                }
            }
            Err(_) if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            Err(_) => return Err(format!("the file has no column '{}'", field.name())),
        };
        columns.push(column);
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| clean(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
    }

    fn config(format: FileFormat) -> FileConfig {
        FileConfig { path: "x".into(), format, max_files_per_trigger: None, header: true, delimiter: b',', late_rows: Default::default() }
    }

    #[test]
    fn malformed_json_names_file_and_line() {
        let data = Bytes::from("{\"id\": 1, \"name\": \"a\"}\n\n{\"id\": 2, \"name\": \"b\"\n{\"id\": 3}\n");
        let err = decode(&config(FileFormat::Json), &schema(), "events/1.json", data).unwrap_err().to_string();
        assert!(err.starts_with("events/1.json:3: malformed JSON"), "{err}");
    }

    #[test]
    fn json_type_error_names_line() {
        let data = Bytes::from("{\"id\": 1}\n{\"id\": \"x\"}\n");
        let err = decode(&config(FileFormat::Json), &schema(), "f.json", data).unwrap_err().to_string();
        assert!(err.starts_with("f.json:2: malformed JSON"), "{err}");
    }

    #[test]
    fn csv_maps_columns_by_header_name() {
        let data = Bytes::from("name,extra,id\na,zz,1\nb,yy,2\n");
        let batches = decode(&config(FileFormat::Csv), &schema(), "f.csv", data).unwrap();
        let b = &batches[0];
        assert_eq!(b.schema(), schema());
        assert_eq!(b.num_rows(), 2);
        let ids = b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        assert_eq!(ids.values(), &[1, 2]);
    }

    #[test]
    fn csv_missing_column_is_an_error() {
        let err = decode(&config(FileFormat::Csv), &schema(), "f.csv", Bytes::from("name\na\n")).unwrap_err().to_string();
        assert_eq!(err, "f.csv: the CSV header has no column 'id' (header: name)");
    }
}
