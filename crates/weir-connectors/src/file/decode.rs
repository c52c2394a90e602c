//! Turning one file's bytes into Arrow batches of the source schema, with errors that name
//! the file and the line.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::new_null_array;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;
use weir_sql::config::{FileConfig, FileFormat};

use super::read::{Body, FileRange};
use crate::error::{ConnectorError, Result};
use crate::json_flat::FlatJson;

/// Rows per decoded batch.
pub const BATCH_SIZE: usize = 8192;

/// Decodes `bytes` (the whole file `name`) into batches of `schema`; the first bad row is an
/// error naming the file and line.
pub fn decode(config: &FileConfig, schema: &SchemaRef, name: &str, bytes: Bytes) -> Result<Vec<RecordBatch>> {
    decode_rows(config, schema, name, bytes, false).map(|d| d.batches)
}

/// A line that could not become a row.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based line number in the file.
    pub line: u64,
    /// The line as it is in the file.
    pub raw: Vec<u8>,
    /// Why it was refused.
    pub error: String,
}

/// What a file decoded into.
#[derive(Debug, Default)]
pub struct FileDecoded {
    /// The good rows.
    pub batches: Vec<RecordBatch>,
    /// The bad lines (only when collecting them).
    pub bad: Vec<BadLine>,
}

/// Decodes a whole file. A line is bad when it does not decode, is longer than
/// `max_row_bytes`, or has no event time (when the table has a WATERMARK). With
/// `collect_bad` bad lines are returned; otherwise the first is an error.
pub fn decode_rows(config: &FileConfig, schema: &SchemaRef, name: &str, bytes: Bytes, collect_bad: bool) -> Result<FileDecoded> {
    let decoded = match config.format {
        FileFormat::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| ConnectorError::BadData(format!("{name}: not a readable Parquet file: {e}")))?;
            check_parquet_event_time(config, name, 0, decode_parquet(schema, name, reader)?)?
        }
        FileFormat::Json | FileFormat::Csv => decode_text(config, schema, name, &bytes, None)?,
    };
    PieceDecoded { decoded, lines: 0 }.placed(name, 0, collect_bad)
}

/// What a piece of a file decoded into (the file source reads files a piece at a time: whole
/// lines of JSON, whole records of CSV, whole row groups of Parquet).
#[derive(Debug)]
pub struct PieceDecoded {
    /// The rows, and the bad lines numbered from the piece's first line.
    decoded: FileDecoded,
    /// Line ends in the piece: the lines before the next piece of the file.
    pub lines: u64,
}

impl PieceDecoded {
    /// The piece's rows, with its bad lines numbered in the file (`lines_before` lines come
    /// before the piece). Without `collect_bad`, the first bad line is an error naming the
    /// file and the line.
    pub fn placed(self, name: &str, lines_before: u64, collect_bad: bool) -> Result<FileDecoded> {
        let mut decoded = self.decoded;
        for bad in &mut decoded.bad {
            bad.line += lines_before;
        }
        match decoded.bad.first() {
            Some(first) if !collect_bad => Err(ConnectorError::BadData(format!("{name}:{}: {}", first.line, first.error))),
            _ => Ok(decoded),
        }
    }
}

/// Decodes a piece of the file `name` (see [`PieceDecoded`]); finds all its bad lines,
/// numbered from the piece's first line.
pub(crate) fn decode_piece(config: &FileConfig, schema: &SchemaRef, name: &str, body: Body) -> Result<PieceDecoded> {
    Ok(match body {
        Body::Parquet { metadata, row_groups, bytes } => {
            let first_row: i64 = metadata.metadata().row_groups().iter().take(row_groups.first().copied().unwrap_or(0)).map(|rg| rg.num_rows()).sum();
            let batches = decode_row_groups(schema, name, metadata, row_groups, bytes)?;
            PieceDecoded { decoded: check_parquet_event_time(config, name, first_row.max(0) as u64, batches)?, lines: 0 }
        }
        Body::Text { bytes, header } => {
            PieceDecoded { decoded: decode_text(config, schema, name, &bytes, header.as_deref())?, lines: count_line_ends(&bytes) }
        }
    })
}

/// `\n` bytes in `bytes`, at memory speed: a block's count fits a `u16` lane, which the
/// compiler vectorizes (about 30 GB/s here, against 3 for a plain filter and count).
fn count_line_ends(bytes: &[u8]) -> u64 {
    bytes.chunks(4096).map(|block| u64::from(block.iter().map(|&b| u16::from(b == b'\n')).sum::<u16>())).sum()
}

/// A line of a file (a record of CSV, which may span lines) and the 1-based number of the
/// line it starts on.
type Line<'a> = (u64, &'a [u8]);

/// The non-blank lines of a text file (records of CSV: a quoted field may hold line ends);
/// the CSV header is not one (returned first; `header` when the text is a later piece of
/// the file, without it).
fn data_lines<'a>(config: &FileConfig, bytes: &'a [u8], header: Option<&'a [u8]>) -> (Option<&'a [u8]>, Vec<Line<'a>>) {
    let records = match config.format {
        FileFormat::Csv => super::read::csv::records(bytes, config.delimiter),
        _ => bytes.split(|b| *b == b'\n').collect(),
    };
    let mut next_line = 1;
    let mut lines = records.into_iter().map(|l| {
        let line = next_line;
        next_line += count_line_ends(l) + 1;
        (line, l.strip_suffix(b"\r").unwrap_or(l))
    });
    let header = match header {
        // The header record, without the blank lines before it and its line end.
        Some(h) => {
            let start = h.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(h.len());
            let end = h.iter().rposition(|b| !matches!(b, b'\r' | b'\n')).map_or(start, |e| e + 1);
            Some(&h[start..end])
        }
        // As arrow-csv, the first record that is not empty.
        None if config.format == FileFormat::Csv && config.header => lines.find(|(_, l)| !l.is_empty()).map(|(_, l)| l),
        None => None,
    };
    (header, lines.filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace)).collect())
}

/// Decodes JSON or CSV text: a whole file, or a piece of whole lines or records (`header`:
/// the CSV file's header record, when the piece is not the first).
fn decode_text(config: &FileConfig, schema: &SchemaRef, name: &str, bytes: &Bytes, header: Option<&[u8]>) -> Result<FileDecoded> {
    // An empty file (or only blank lines) has no rows, and a CSV one no header to check.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(FileDecoded::default());
    }
    let too_long = |l: &[u8]| config.max_row_bytes.is_some_and(|m| l.len() as u64 > m);
    let fast_ok = config.max_row_bytes.is_none() || !bytes.split(|b| *b == b'\n').any(too_long);
    // The fast path decodes the whole file at once; it needs line numbers only for rows
    // without an event time.
    if fast_ok {
        let fast = match config.format {
            FileFormat::Json => decode_json_fast(schema, bytes).map_err(|e| clean(&e)),
            _ => decode_csv(config, schema, name, header, bytes.clone()).map_err(|e| e.to_string()),
        };
        match fast {
            Ok(batches) if !missing_event_time(config, &batches) => return Ok(FileDecoded { batches, bad: Vec::new() }),
            Err(e) if config.format == FileFormat::Csv && is_file_level(&e) => return Err(ConnectorError::BadData(e)),
            _ => {}
        }
    }
    // Row by row: find the bad lines, then decode the good ones together.
    // Without collecting, the first bad line in file order is the error: all are found.
    let (header, lines) = data_lines(config, bytes, header);
    let mut good: Vec<(u64, &[u8])> = Vec::with_capacity(lines.len());
    let mut bad = Vec::new();
    for (line, raw) in lines {
        let problem = if too_long(raw) {
            Some(format!("the row is {} bytes, over max_row_bytes = {}", raw.len(), config.max_row_bytes.unwrap_or(0)))
        } else {
            match std::str::from_utf8(raw) {
                Err(e) => Some(format!("{}invalid UTF-8 at byte {} of the line", malformed(config), e.valid_up_to())),
                Ok(_) => decode_lines(config, schema, name, header, &[(line, raw)]).err().map(|e| format!("{}{e}", malformed(config))),
            }
        };
        match problem {
            Some(p) => {
                let error = if config.format == FileFormat::Json {
                    let snippet: String = String::from_utf8_lossy(raw).chars().take(120).collect();
                    if p.starts_with("malformed") { format!("{p} (line: {snippet})") } else { p }
                } else {
                    p
                };
                bad.push(BadLine { line, raw: raw.to_vec(), error });
            }
            None => good.push((line, raw)),
        }
    }
    let batches = if good.is_empty() { Vec::new() } else { decode_lines(config, schema, name, header, &good).map_err(ConnectorError::BadData)? };
    let batches = split_event_time(config, batches, &good, &mut bad)?;
    bad.sort_by_key(|b| b.line);
    Ok(FileDecoded { batches, bad })
}

fn malformed(config: &FileConfig) -> &'static str {
    match config.format {
        FileFormat::Json => "malformed JSON: ",
        _ => "malformed CSV: ",
    }
}

/// CSV errors about the whole file (its header), not one line.
fn is_file_level(message: &str) -> bool {
    message.contains("the CSV header has no column")
}

/// Decodes the given lines together (CSV: under the file's header).
fn decode_lines(config: &FileConfig, schema: &SchemaRef, name: &str, header: Option<&[u8]>, lines: &[(u64, &[u8])]) -> std::result::Result<Vec<RecordBatch>, String> {
    let mut buf = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum::<usize>() + header.map_or(0, |h| h.len() + 1));
    if let Some(h) = header {
        buf.extend_from_slice(h);
        buf.push(b'\n');
    }
    for (_, l) in lines {
        buf.extend_from_slice(l);
        buf.push(b'\n');
    }
    let batches = match config.format {
        FileFormat::Json => decode_json_fast(schema, &buf).map_err(|e| clean(&e))?,
        _ => decode_csv(config, schema, name, None, Bytes::from(buf)).map_err(|e| {
            let m = e.to_string();
            without_arrow_line(m.strip_prefix(&format!("{name}: ")).unwrap_or(&m))
        })?,
    };
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != lines.len() {
        return Err(format!("{rows} rows in {} lines", lines.len()));
    }
    Ok(batches)
}

/// arrow-csv numbers lines within the buffer it was given, which is not the file's line:
/// drop its "for line N" / "at line N" (weir names the file's line itself).
fn without_arrow_line(message: &str) -> String {
    let mut out = message.to_string();
    for marker in [" for line ", " at line "] {
        if let Some(at) = out.find(marker) {
            let rest = &out[at + marker.len()..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 {
                out = format!("{}{}", &out[..at], &rest[digits..]);
            }
        }
    }
    out
}

/// Whether some row has a NULL event time.
fn missing_event_time(config: &FileConfig, batches: &[RecordBatch]) -> bool {
    let Some(column) = &config.event_time else { return false };
    batches.iter().any(|b| b.column_by_name(column).is_some_and(|c| c.null_count() > 0))
}

/// Moves rows without an event time (row i came from `lines[i]`) to `bad`.
fn split_event_time(config: &FileConfig, batches: Vec<RecordBatch>, lines: &[(u64, &[u8])], bad: &mut Vec<BadLine>) -> Result<Vec<RecordBatch>> {
    let Some(column) = &config.event_time else { return Ok(batches) };
    if !missing_event_time(config, &batches) {
        return Ok(batches);
    }
    let mut out = Vec::with_capacity(batches.len());
    let mut at = 0;
    for b in batches {
        let ts = b.column_by_name(column).expect("event-time column");
        for i in 0..b.num_rows() {
            if ts.is_null(i) {
                let (line, raw) = lines[at + i];
                bad.push(BadLine { line, raw: raw.to_vec(), error: format!("the event-time column '{column}' is NULL or missing") });
            }
        }
        let keep = arrow::compute::is_not_null(ts).map_err(|e| ConnectorError::BadData(clean(&e)))?;
        out.push(arrow::compute::filter_record_batch(&b, &keep).map_err(|e| ConnectorError::BadData(clean(&e)))?);
        at += b.num_rows();
    }
    Ok(out)
}

/// Parquet rows have no lines: a row without an event time is an error naming its row in
/// the file (`first_row` rows come before `batches`).
fn check_parquet_event_time(config: &FileConfig, name: &str, first_row: u64, batches: Vec<RecordBatch>) -> Result<FileDecoded> {
    if let Some(column) = &config.event_time {
        let mut row = first_row as usize;
        for b in &batches {
            if let Some(ts) = b.column_by_name(column)
                && let Some(i) = (0..b.num_rows()).find(|&i| ts.is_null(i))
            {
                return Err(ConnectorError::BadData(format!("{name}: row {}: the event-time column '{column}' is NULL or missing", row + i + 1)));
            }
            row += b.num_rows();
        }
    }
    Ok(FileDecoded { batches, bad: Vec::new() })
}

/// Decodes newline-delimited JSON: through [`FlatJson`] when it takes the text (flat
/// objects of plain values), else through arrow-json, whose errors the caller reports.
fn decode_json_fast(schema: &SchemaRef, mut buf: &[u8]) -> std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    if let Some(batches) = FlatJson::new(schema, BATCH_SIZE).and_then(|flat| flat.decode_text(buf)) {
        return Ok(batches);
    }
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

fn clean(e: &arrow::error::ArrowError) -> String {
    let s = e.to_string();
    for prefix in ["Json error: ", "Parser error: ", "Invalid argument error: ", "Csv error: "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    s
}

/// Decodes CSV records: a whole file, or a later piece of one without its header record
/// (`header`).
fn decode_csv(config: &FileConfig, schema: &SchemaRef, name: &str, header: Option<&[u8]>, bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let bad = |m: String| ConnectorError::BadData(format!("{name}: {m}"));
    // Map the file's columns to the declared ones by header name, so column order in the
    // file does not matter and a missing column is an error instead of shifted values.
    let (file_schema, projection) = if config.header {
        let format = arrow::csv::reader::Format::default().with_header(true).with_delimiter(config.delimiter);
        let (header, _) = format.infer_schema(Cursor::new(header.unwrap_or(&bytes)), Some(0)).map_err(|e| bad(clean(&e)))?;
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
        .with_header(config.header && header.is_none())
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

/// Row groups `row_groups` of a Parquet file, from the bytes of their column chunks.
pub(crate) fn decode_row_groups(schema: &SchemaRef, name: &str, metadata: ArrowReaderMetadata, row_groups: Vec<usize>, bytes: FileRange) -> Result<Vec<RecordBatch>> {
    decode_parquet(schema, name, ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, metadata).with_row_groups(row_groups))
}

fn decode_parquet<T: ChunkReader + 'static>(schema: &SchemaRef, name: &str, reader: ParquetRecordBatchReaderBuilder<T>) -> Result<Vec<RecordBatch>> {
    let bad = |m: String| ConnectorError::BadData(format!("{name}: {m}"));
    let reader = reader.with_batch_size(BATCH_SIZE).build().map_err(|e| bad(e.to_string()))?;
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
    }

    pub(crate) fn config(format: FileFormat) -> FileConfig {
        FileConfig {
            path: "x".into(),
            format,
            max_files_per_trigger: None,
            header: true,
            delimiter: b',',
            late_rows: Default::default(),
            bad_rows: Default::default(),
            max_row_bytes: None,
            event_time: None,
            storage: Default::default(),
        }
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
    fn bad_lines_are_found_by_size_utf8_type_and_event_time() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())), true),
        ]));
        let mut c = config(FileFormat::Json);
        c.max_row_bytes = Some(60);
        c.event_time = Some("ts".into());
        let mut data = b"{\"id\": 1, \"ts\": \"2024-01-01T00:00:00Z\"}\n{\"id\": 2}\n\n".to_vec();
        data.extend_from_slice(b"{\"id\": 3, \"ts\": \"2024-01-01T00:00:00Z\", \"pad\": \"xxxxxxxxxxxxxxxxxxxxxxxx\"}\n");
        data.extend_from_slice(b"{\"id\": \"\xff\"}\n{\"id\": \"x\", \"ts\": \"2024-01-01T00:00:00Z\"}\n{\"id\": 6, \"ts\": \"2024-01-01T00:00:01Z\"}\n");
        let err = decode(&c, &schema, "f.json", Bytes::from(data.clone())).unwrap_err().to_string();
        assert_eq!(err, "f.json:2: the event-time column 'ts' is NULL or missing");
        let d = decode_rows(&c, &schema, "f.json", Bytes::from(data), true).unwrap();
        assert_eq!(d.batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
        let lines: Vec<u64> = d.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 4, 5, 6]);
        assert_eq!(d.bad[1].error, "the row is 74 bytes, over max_row_bytes = 60");
        assert!(d.bad[2].error.starts_with("malformed JSON: invalid UTF-8 at byte"), "{}", d.bad[2].error);
        assert!(d.bad[3].error.starts_with("malformed JSON: "), "{}", d.bad[3].error);
    }

    #[test]
    fn csv_bad_lines_are_named() {
        let err = decode(&config(FileFormat::Csv), &schema(), "f.csv", Bytes::from("id,name\n1,a\nx,b\n")).unwrap_err().to_string();
        assert!(err.starts_with("f.csv:3: malformed CSV: "), "{err}");
    }

    #[test]
    fn csv_missing_column_is_an_error() {
        let err = decode(&config(FileFormat::Csv), &schema(), "f.csv", Bytes::from("name\na\n")).unwrap_err().to_string();
        assert_eq!(err, "f.csv: the CSV header has no column 'id' (header: name)");
    }

    /// Long DECIMAL texts that arrow-cast 59's parser panicked on (divide by zero, overflow)
    /// or read as a wrong value are bad rows; weir builds a patched arrow-cast (vendor/).
    #[test]
    fn long_decimal_texts_are_bad_rows_not_panics() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Decimal128(10, 2), true)]));
        let nines = "9".repeat(130);
        let texts = [format!("1.{nines}E-1"), "1".repeat(256), "1e99999".to_string(), format!("0.{nines}E+2")];
        for format in [FileFormat::Json, FileFormat::Csv] {
            let mut data = match format {
                FileFormat::Json => "{\"d\": 12.345}\n".to_string(),
                _ => "d\n12.345\n".to_string(),
            };
            for text in &texts {
                data += &match format {
                    FileFormat::Json => format!("{{\"d\": {text}}}\n"),
                    _ => format!("{text}\n"),
                };
            }
            let d = decode_rows(&config(format), &schema, "f", Bytes::from(data), true).unwrap();
            let rows: Vec<RecordBatch> = d.batches;
            assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 3, "{format:?}");
            let values = arrow::compute::concat_batches(&schema, &rows).unwrap();
            let values = values.column(0).as_any().downcast_ref::<arrow::array::Decimal128Array>().unwrap();
            // Extra digits round half away from zero, as Spark's HALF_UP: 12.345 -> 12.35,
            // 1.99..9E-1 -> 0.20, 0.99..9E+2 -> 100.00.
            assert_eq!(values.values().to_vec(), [1235, 20, 10000], "{format:?}");
            let lines: Vec<u64> = d.bad.iter().map(|b| b.line).collect();
            let first = if format == FileFormat::Json { 3 } else { 4 };
            assert_eq!(lines, [first, first + 1], "{format:?}");
            assert!(d.bad[0].error.contains("does not fit in Decimal128(10, 2)"), "{}", d.bad[0].error);
        }
    }
}
