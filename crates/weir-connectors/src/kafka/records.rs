//! Kafka records of one partition, held column by column as they are polled, and their
//! decoding into Arrow: the whole chunk goes through one arrow-json or arrow-csv decoder;
//! only when that fails are messages decoded one by one to find the bad ones.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, Int32Array, Int64Array, ListBuilder, StringArray, StructBuilder, TimestampMicrosecondArray,
    new_null_array,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use rdkafka::message::{Headers, Message, Timestamp};
use weir_sql::config::KafkaFormat;
use weir_sql::ddl::METADATA_KEY;

use crate::json_flat::FlatJson;

/// Rows per decoded batch.
const BATCH_SIZE: usize = 8192;

/// A record's headers: `(key, value)` pairs in order.
pub(crate) type HeaderList = Vec<(String, Option<Vec<u8>>)>;

/// What a chunk keeps of a Kafka record.
pub(crate) trait Record {
    fn offset(&self) -> i64;
    fn timestamp(&self) -> Timestamp;
    fn key(&self) -> Option<&[u8]>;
    fn payload(&self) -> Option<&[u8]>;
    fn headers(&self) -> HeaderList;
}

impl<M: Message> Record for M {
    fn offset(&self) -> i64 {
        Message::offset(self)
    }

    fn timestamp(&self) -> Timestamp {
        Message::timestamp(self)
    }

    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }

    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }

    fn headers(&self) -> HeaderList {
        Message::headers(self)
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default()
    }
}

/// The records of one partition read for one batch.
pub(crate) struct Chunk {
    pub topic: String,
    pub partition: i32,
    pub offsets: Vec<i64>,
    /// Milliseconds since the epoch; `None` when the record has none.
    pub timestamps: Vec<Option<i64>>,
    /// 0: create time, 1: log-append time, -1: none (Spark's `timestampType`).
    pub timestamp_types: Vec<i32>,
    pub keys: BinaryBuilder,
    /// Values back to back; `value_ends[i]` is where record i's value ends.
    pub values: Vec<u8>,
    pub value_ends: Vec<usize>,
    pub value_nulls: Vec<bool>,
    /// Kept only when a column asks for headers.
    pub headers: Option<Vec<HeaderList>>,
}

impl Chunk {
    pub fn new(topic: &str, partition: i32, with_headers: bool) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            offsets: Vec::new(),
            timestamps: Vec::new(),
            timestamp_types: Vec::new(),
            keys: BinaryBuilder::new(),
            values: Vec::new(),
            value_ends: Vec::new(),
            value_nulls: Vec::new(),
            headers: with_headers.then(Vec::new),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn push(&mut self, m: &impl Record) {
        self.offsets.push(m.offset());
        let (ts, kind) = match m.timestamp() {
            Timestamp::NotAvailable => (None, -1),
            Timestamp::CreateTime(t) => (Some(t), 0),
            Timestamp::LogAppendTime(t) => (Some(t), 1),
        };
        self.timestamps.push(ts);
        self.timestamp_types.push(kind);
        self.keys.append_option(m.key());
        match m.payload() {
            Some(v) => {
                self.values.extend_from_slice(v);
                self.value_nulls.push(false);
            }
            None => self.value_nulls.push(true),
        }
        self.value_ends.push(self.values.len());
        if let Some(h) = self.headers.as_mut() {
            h.push(m.headers());
        }
    }

    /// Empties the chunk for the partition's next range, keeping its buffers: a reader fills
    /// a chunk of 50,000 records after another, and a fresh one grew its values by doubling
    /// (a copy of what it held each time) into pages the kernel had to fault in and zero.
    pub fn clear(&mut self) {
        let (records, key_bytes) = (self.offsets.len(), self.keys.values_slice().len());
        self.offsets.clear();
        self.timestamps.clear();
        self.timestamp_types.clear();
        // A builder cannot be emptied in place: a new one, sized for as many again.
        self.keys = BinaryBuilder::with_capacity(records, key_bytes);
        self.values.clear();
        self.value_ends.clear();
        self.value_nulls.clear();
        if let Some(h) = self.headers.as_mut() {
            h.clear();
        }
    }

    fn value(&self, i: usize) -> Option<&[u8]> {
        if self.value_nulls[i] {
            return None;
        }
        let from = if i == 0 { 0 } else { self.value_ends[i - 1] };
        Some(&self.values[from..self.value_ends[i]])
    }

    fn position(&self, i: usize) -> String {
        format!("topic '{}' partition {} offset {}", self.topic, self.partition, self.offsets[i])
    }
}

/// The Arrow type of each Kafka metadata key.
pub(crate) fn metadata_type(key: &str) -> DataType {
    match key {
        "key" | "value" => DataType::Binary,
        "topic" => DataType::Utf8,
        "partition" | "timestamp_type" => DataType::Int32,
        "offset" => DataType::Int64,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "headers" => headers_type(),
        other => unreachable!("metadata key '{other}' was checked by the config"),
    }
}

fn header_fields() -> Fields {
    Fields::from(vec![Field::new("key", DataType::Utf8, true), Field::new("value", DataType::Binary, true)])
}

fn headers_type() -> DataType {
    DataType::List(Arc::new(Field::new("element", DataType::Struct(header_fields()), true)))
}

/// Spark's columns of a `raw` Kafka source.
pub(crate) fn raw_schema() -> SchemaRef {
    let names = ["key", "value", "topic", "partition", "offset", "timestamp", "timestamp_type", "headers"];
    Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, metadata_type(n), true)).collect::<Vec<_>>()))
}

/// The schema of a dead-letter table of a Kafka source.
pub(crate) fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, true),
        Field::new("partition", DataType::Int32, true),
        Field::new("offset", DataType::Int64, true),
        Field::new("timestamp", metadata_type("timestamp"), true),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// Where each output column comes from.
#[derive(Debug, Clone)]
enum ColumnSource {
    /// Column `i` of the decoded value.
    Value(usize),
    /// A record field (`partition`, `key`, ...; `value` for raw).
    Metadata(String),
}

/// Turns chunks into batches of the table's schema.
#[derive(Debug)]
pub(crate) struct Decoder {
    format: KafkaFormat,
    delimiter: u8,
    schema: SchemaRef,
    /// The declared columns the value decodes into, in declared order.
    value_schema: SchemaRef,
    columns: Vec<ColumnSource>,
    pub with_headers: bool,
    /// A value longer than this is a bad record.
    max_row_bytes: Option<u64>,
    /// The event-time column: a row without one is a bad record.
    event_time: Option<String>,
}

/// What a chunk decoded into.
pub(crate) struct Decoded {
    pub batches: Vec<RecordBatch>,
    /// Records that did not decode, as dead-letter rows (empty unless collecting them).
    pub bad: Option<RecordBatch>,
}

impl Decoder {
    /// For a table with `declared` columns (`None`: raw without declared columns).
    pub fn new(format: KafkaFormat, delimiter: u8, declared: Option<SchemaRef>) -> Self {
        let schema = match (&declared, format) {
            (Some(d), _) => Arc::clone(d),
            (None, _) => raw_schema(),
        };
        let mut value_fields = Vec::new();
        let mut columns = Vec::new();
        for f in schema.fields() {
            let meta = f.metadata().get(METADATA_KEY).cloned();
            match (meta, format) {
                (Some(key), _) => columns.push(ColumnSource::Metadata(key)),
                (None, KafkaFormat::Raw) => columns.push(ColumnSource::Metadata(f.name().clone())),
                (None, _) => {
                    columns.push(ColumnSource::Value(value_fields.len()));
                    value_fields.push(f.as_ref().clone().with_metadata(Default::default()));
                }
            }
        }
        let with_headers = columns.iter().any(|c| matches!(c, ColumnSource::Metadata(k) if k == "headers"));
        Self {
            format,
            delimiter,
            schema,
            value_schema: Arc::new(Schema::new(value_fields)),
            columns,
            with_headers,
            max_row_bytes: None,
            event_time: None,
        }
    }

    /// Values over `max_row_bytes` and rows without an `event_time` are bad records.
    pub fn with_checks(mut self, max_row_bytes: Option<u64>, event_time: Option<String>) -> Self {
        self.max_row_bytes = max_row_bytes;
        self.event_time = event_time;
        self
    }

    fn too_long(&self, chunk: &Chunk, i: usize) -> Option<String> {
        let (limit, len) = (self.max_row_bytes?, chunk.value(i).map_or(0, <[u8]>::len) as u64);
        (len > limit).then(|| format!("the message is {len} bytes, over max_row_bytes = {limit}"))
    }

    /// The table's schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Decodes `chunk`. Bad records fail the call, or with `collect_bad` become dead-letter rows.
    pub fn decode(&self, chunk: &Chunk, collect_bad: bool) -> Result<Decoded, String> {
        if chunk.len() == 0 {
            return Ok(Decoded { batches: Vec::new(), bad: None });
        }
        let mut all: Vec<usize> = (0..chunk.len()).collect();
        let mut bad: Vec<(usize, String)> = Vec::new();
        if self.max_row_bytes.is_some() {
            all.retain(|&i| match self.too_long(chunk, i) {
                Some(e) => {
                    bad.push((i, e));
                    false
                }
                None => true,
            });
        }
        let fast = if self.format == KafkaFormat::Raw { Ok(Vec::new()) } else { self.decode_values(chunk, &all) };
        let rows = match self.format {
            KafkaFormat::Raw => vec![(all, None)],
            _ => match fast {
                Ok(batches) => batches_with_rows(batches, &all),
                Err(_) => {
                    // Find the bad records one by one, then decode the good ones together.
                    let mut good = Vec::with_capacity(chunk.len());
                    for &i in &all {
                        match self.decode_values(chunk, &[i]) {
                            Ok(_) => good.push(i),
                            Err(e) => bad.push((i, format!("cannot decode the value as {}: {e}", self.format_name()))),
                        }
                    }
                    let batches = if good.is_empty() { Vec::new() } else { self.decode_values(chunk, &good)? };
                    batches_with_rows(batches, &good)
                }
            },
        };
        let keys = chunk.keys.finish_cloned();
        let mut out = Vec::with_capacity(rows.len());
        for (indices, values) in rows {
            if indices.is_empty() {
                continue;
            }
            let batch =
                self.assemble(chunk, &keys, &indices, values.as_ref()).map_err(|e| format!("{}: {e}", chunk.position(indices[0])))?;
            out.push(self.split_event_time(batch, &indices, &mut bad)?);
        }
        if !collect_bad && let Some((i, e)) = bad.iter().min_by_key(|(i, _)| *i) {
            return Err(format!("{}: {e}", chunk.position(*i)));
        }
        bad.sort_by_key(|(i, _)| *i);
        let bad = (!bad.is_empty()).then(|| dead_letter_rows(chunk, &keys, &bad));
        Ok(Decoded { batches: out, bad })
    }

    /// Moves rows without an event time (row r came from record `indices[r]`) to `bad`.
    fn split_event_time(&self, batch: RecordBatch, indices: &[usize], bad: &mut Vec<(usize, String)>) -> Result<RecordBatch, String> {
        let Some(column) = &self.event_time else { return Ok(batch) };
        let Some(ts) = batch.column_by_name(column) else { return Ok(batch) };
        if ts.null_count() == 0 {
            return Ok(batch);
        }
        for (r, &i) in indices.iter().enumerate() {
            if ts.is_null(r) {
                bad.push((i, format!("the event-time column '{column}' is NULL or missing")));
            }
        }
        let keep = arrow::compute::is_not_null(ts).map_err(|e| clean(&e))?;
        arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| clean(&e))
    }

    fn format_name(&self) -> &'static str {
        match self.format {
            KafkaFormat::Json => "JSON",
            KafkaFormat::Csv => "CSV",
            KafkaFormat::Raw => "raw",
        }
    }

    /// Decodes the values of `indices` into batches of `value_schema`, checking that each
    /// record gives exactly one row.
    fn decode_values(&self, chunk: &Chunk, indices: &[usize]) -> Result<Vec<RecordBatch>, String> {
        match self.format {
            KafkaFormat::Json => self.decode_json(chunk, indices),
            KafkaFormat::Csv => self.decode_csv(chunk, indices),
            KafkaFormat::Raw => unreachable!("raw values are not decoded"),
        }
    }

    fn decode_json(&self, chunk: &Chunk, indices: &[usize]) -> Result<Vec<RecordBatch>, String> {
        // A NULL or blank value (a tombstone) is a row of NULLs.
        let value = |i: usize| chunk.value(i).filter(|v| !v.iter().all(u8::is_ascii_whitespace)).unwrap_or(b"{}");
        // Flat objects of plain values straight into the columns; anything else (and every
        // error) through arrow-json, one value at a time.
        if let Some(mut flat) = FlatJson::new(&self.value_schema, BATCH_SIZE)
            && indices.iter().all(|&i| flat.push_value(value(i)).is_some())
            && let Some(batches) = flat.finish()
        {
            return Ok(batches);
        }
        let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&self.value_schema))
            .with_batch_size(BATCH_SIZE)
            .build_decoder()
            .map_err(|e| clean(&e))?;
        let mut out = Vec::new();
        for &i in indices {
            let value = value(i);
            if std::str::from_utf8(value).is_err() {
                return Err("invalid UTF-8".into());
            }
            let before = decoder.len();
            let mut buf = value;
            while !buf.is_empty() {
                let read = decoder.decode(buf).map_err(|e| clean(&e))?;
                buf = &buf[read..];
                if read == 0 {
                    return Err("more than one JSON value in the message".into());
                }
            }
            decoder.decode(b"\n").map_err(|e| clean(&e))?;
            if decoder.has_partial_record() {
                return Err("incomplete JSON value".into());
            }
            if decoder.len() != before + 1 {
                return Err(if decoder.len() == before { "no JSON value".into() } else { "more than one JSON value in the message".into() });
            }
            if decoder.len() >= BATCH_SIZE
                && let Some(b) = decoder.flush().map_err(|e| clean(&e))?
            {
                out.push(b);
            }
        }
        if let Some(b) = decoder.flush().map_err(|e| clean(&e))? {
            out.push(b);
        }
        Ok(out)
    }

    fn decode_csv(&self, chunk: &Chunk, indices: &[usize]) -> Result<Vec<RecordBatch>, String> {
        let mut buf = Vec::with_capacity(chunk.values.len() + indices.len());
        for &i in indices {
            let value = chunk.value(i).unwrap_or_default();
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            let value = value.strip_suffix(b"\r").unwrap_or(value);
            if value.is_empty() || value.contains(&b'\n') && !value.contains(&b'"') {
                return Err("not one CSV record".into());
            }
            if std::str::from_utf8(value).is_err() {
                return Err("invalid UTF-8".into());
            }
            buf.extend_from_slice(value);
            buf.push(b'\n');
        }
        let reader = arrow::csv::ReaderBuilder::new(Arc::clone(&self.value_schema))
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_batch_size(BATCH_SIZE)
            .build(std::io::Cursor::new(buf))
            .map_err(|e| clean(&e))?;
        let mut out = Vec::new();
        let mut rows = 0;
        for b in reader {
            let b = b.map_err(|e| clean(&e))?;
            rows += b.num_rows();
            out.push(b);
        }
        if rows != indices.len() {
            return Err(format!("{rows} CSV records in {} messages", indices.len()));
        }
        Ok(out)
    }

    /// The output batch of the records `indices`, whose decoded values are `values`.
    fn assemble(&self, chunk: &Chunk, keys: &BinaryArray, indices: &[usize], values: Option<&RecordBatch>) -> Result<RecordBatch, String> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (source, field) in self.columns.iter().zip(self.schema.fields()) {
            let array = match source {
                ColumnSource::Value(c) => Arc::clone(values.expect("decoded values").column(*c)),
                ColumnSource::Metadata(key) => metadata_column(chunk, keys, key, indices),
            };
            let array = if array.data_type() == field.data_type() {
                array
            } else {
                arrow::compute::cast(&array, field.data_type())
                    .map_err(|e| format!("column '{}' cannot be {}: {}", field.name(), field.data_type(), clean(&e)))?
            };
            columns.push(array);
        }
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(indices.len())),
        )
        .map_err(|e| clean(&e))
    }
}

/// Pairs decoded batches with the record indices their rows came from.
fn batches_with_rows(batches: Vec<RecordBatch>, indices: &[usize]) -> Vec<(Vec<usize>, Option<RecordBatch>)> {
    let mut at = 0;
    batches
        .into_iter()
        .map(|b| {
            let rows = indices[at..at + b.num_rows()].to_vec();
            at += b.num_rows();
            (rows, Some(b))
        })
        .collect()
}

/// One metadata column for the records `indices`.
fn metadata_column(chunk: &Chunk, keys: &BinaryArray, key: &str, indices: &[usize]) -> ArrayRef {
    let n = indices.len();
    let contiguous = indices.first().map(|&f| indices.last() == Some(&(f + n - 1))).unwrap_or(true);
    match key {
        "topic" => Arc::new(StringArray::from(vec![chunk.topic.as_str(); n])),
        "partition" => Arc::new(Int32Array::from(vec![chunk.partition; n])),
        "offset" => Arc::new(Int64Array::from(indices.iter().map(|&i| chunk.offsets[i]).collect::<Vec<_>>())),
        "timestamp" => Arc::new(
            TimestampMicrosecondArray::from(indices.iter().map(|&i| chunk.timestamps[i].map(|t| t * 1000)).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        "timestamp_type" => Arc::new(Int32Array::from(indices.iter().map(|&i| chunk.timestamp_types[i]).collect::<Vec<_>>())),
        "key" => {
            if contiguous && n > 0 {
                Arc::new(keys.slice(indices[0], n))
            } else {
                arrow::compute::take(keys, &arrow::array::UInt32Array::from(indices.iter().map(|&i| i as u32).collect::<Vec<_>>()), None)
                    .expect("take keys")
            }
        }
        "value" => {
            let mut b = BinaryBuilder::with_capacity(n, 0);
            for &i in indices {
                b.append_option(chunk.value(i));
            }
            Arc::new(b.finish())
        }
        "headers" => {
            let Some(headers) = &chunk.headers else { return new_null_array(&headers_type(), n) };
            let mut b = ListBuilder::new(StructBuilder::from_fields(header_fields(), 0)).with_field(Arc::new(Field::new(
                "element",
                DataType::Struct(header_fields()),
                true,
            )));
            for &i in indices {
                for (k, v) in &headers[i] {
                    let s = b.values();
                    s.field_builder::<arrow::array::StringBuilder>(0).expect("key").append_value(k);
                    s.field_builder::<BinaryBuilder>(1).expect("value").append_option(v.as_deref());
                    s.append(true);
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
        other => unreachable!("metadata key '{other}' was checked by the config"),
    }
}

/// Dead-letter rows for the records that failed, with their errors.
fn dead_letter_rows(chunk: &Chunk, keys: &BinaryArray, bad: &[(usize, String)]) -> RecordBatch {
    let indices: Vec<usize> = bad.iter().map(|(i, _)| *i).collect();
    let errors = StringArray::from(bad.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>());
    let columns: Vec<ArrayRef> = vec![
        metadata_column(chunk, keys, "topic", &indices),
        metadata_column(chunk, keys, "partition", &indices),
        metadata_column(chunk, keys, "offset", &indices),
        metadata_column(chunk, keys, "timestamp", &indices),
        metadata_column(chunk, keys, "key", &indices),
        metadata_column(chunk, keys, "value", &indices),
        Arc::new(errors),
    ];
    RecordBatch::try_new(dead_letter_schema(), columns).expect("dead-letter rows match their schema")
}

fn clean(e: &arrow::error::ArrowError) -> String {
    let s = e.to_string();
    for prefix in ["Json error: ", "Parser error: ", "Invalid argument error: ", "Csv error: ", "Cast error: "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::OwnedMessage;

    fn chunk(values: &[Option<&str>]) -> Chunk {
        let mut c = Chunk::new("t", 3, false);
        for (i, v) in values.iter().enumerate() {
            let m = OwnedMessage::new(
                v.map(|v| v.as_bytes().to_vec()),
                Some(format!("k{i}").into_bytes()),
                "t".into(),
                Timestamp::CreateTime(1_700_000_000_000 + i as i64),
                3,
                10 + i as i64,
                None,
            );
            c.push(&m);
        }
        c
    }

    fn declared() -> SchemaRef {
        let part = Field::new("part", DataType::Int32, true).with_metadata([(METADATA_KEY.to_string(), "partition".to_string())].into());
        let off = Field::new("off", DataType::Int64, true).with_metadata([(METADATA_KEY.to_string(), "offset".to_string())].into());
        let key = Field::new("k", DataType::Utf8, true).with_metadata([(METADATA_KEY.to_string(), "key".to_string())].into());
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), part, Field::new("name", DataType::Utf8, true), off, key]))
    }

    #[test]
    fn json_values_and_metadata_columns() {
        let d = Decoder::new(KafkaFormat::Json, b',', Some(declared()));
        let out = d.decode(&chunk(&[Some(r#"{"id": 1, "name": "a"}"#), None, Some("{\n \"id\": 3\n}")]), false).unwrap();
        let batch = &out.batches[0];
        assert_eq!(batch.num_rows(), 3);
        let text = arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch)).unwrap().to_string();
        assert!(text.contains("| 1  | 3    | a    | 10  | k0 |"), "{text}");
        assert!(text.contains("|    | 3    |      | 11  | k1 |"), "{text}");
        assert!(text.contains("| 3  | 3    |      | 12  | k2 |"), "{text}");
    }

    #[test]
    fn bad_json_names_the_offset_or_goes_to_dead_letter() {
        let d = Decoder::new(KafkaFormat::Json, b',', Some(declared()));
        let c = chunk(&[Some(r#"{"id": 1}"#), Some(r#"{"id": "x"}"#), Some(r#"{"id": 3}{"id": 4}"#), Some(r#"{"id": 5"#), Some(r#"{"id": 6}"#)]);
        let err = d.decode(&c, false).err().unwrap();
        assert!(err.starts_with("topic 't' partition 3 offset 11: cannot decode the value as JSON"), "{err}");
        let out = d.decode(&c, true).unwrap();
        let good: usize = out.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(good, 2);
        let bad = out.bad.unwrap();
        let offsets = bad.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(offsets.values(), &[11, 12, 13]);
    }

    #[test]
    fn csv_values() {
        let d = Decoder::new(KafkaFormat::Csv, b',', Some(declared()));
        let out = d.decode(&chunk(&[Some("1,a\n"), Some("2,\"b,c\"")]), false).unwrap();
        assert_eq!(out.batches[0].num_rows(), 2);
        let err = d.decode(&chunk(&[Some("1,a"), Some("x,b")]), false).err().unwrap();
        assert!(err.starts_with("topic 't' partition 3 offset 11:"), "{err}");
    }

    #[test]
    fn raw_rows_have_sparks_columns() {
        let d = Decoder::new(KafkaFormat::Raw, b',', None);
        let out = d.decode(&chunk(&[Some("x"), None]), false).unwrap();
        let b = &out.batches[0];
        assert_eq!(b.schema(), raw_schema());
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(1).null_count(), 1);
    }
}
