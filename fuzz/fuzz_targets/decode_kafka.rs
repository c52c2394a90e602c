//! The Kafka source's JSON and CSV value decoding, through
//! `weir_connectors::kafka::decode_values` (one partition's chunk, bad records collected as
//! dead-letter rows): any messages must decode or fail with an error, never panic, and every
//! message must end up either as a row or as a dead-letter row.
//!
//! Input: one control byte, then the messages' values separated by 0xFF (a byte valid UTF-8
//! never contains). A value that is exactly 0xFE is a NULL value (a tombstone). Control bits:
//! - bit 0: 0 JSON, 1 CSV
//! - bit 1: JSON value columns: 0 nested, 1 flat (CSV always flat)
//! - bit 2: 1 adds Kafka metadata columns (partition, offset, key, timestamp, topic)

#![no_main]

use std::sync::LazyLock;

use arrow_schema::SchemaRef;
use libfuzzer_sys::fuzz_target;
use weir_connectors::kafka::decode_values;
use weir_fuzz::{FLAT_COLUMNS, KAFKA_METADATA_COLUMNS, NESTED_COLUMNS, declared_schema};
use weir_sql::config::KafkaFormat;

const OPTIONS: &str = "connector = 'kafka', bootstrap_servers = 'localhost:9092', topic = 't', format = 'json'";

static SCHEMAS: LazyLock<[SchemaRef; 4]> = LazyLock::new(|| {
    [
        declared_schema(NESTED_COLUMNS, OPTIONS),
        declared_schema(FLAT_COLUMNS, OPTIONS),
        declared_schema(&format!("{NESTED_COLUMNS}, {KAFKA_METADATA_COLUMNS}"), OPTIONS),
        declared_schema(&format!("{FLAT_COLUMNS}, {KAFKA_METADATA_COLUMNS}"), OPTIONS),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else { return };
    let format = if control & 1 == 0 { KafkaFormat::Json } else { KafkaFormat::Csv };
    let flat = format == KafkaFormat::Csv || control & 2 != 0;
    let schema = &SCHEMAS[usize::from(flat) + 2 * usize::from(control & 4 != 0)];
    let values: Vec<Option<&[u8]>> = body.split(|b| *b == 0xFF).map(|v| (v != [0xFE]).then_some(v)).collect();
    if let Ok((good, bad)) = decode_values(format, Some(schema.clone()), &values) {
        assert_eq!(good + bad, values.len(), "messages lost: {good} rows + {bad} dead-letter rows");
    }
});
