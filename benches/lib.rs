//! Workloads shared by weir's benchmarks.

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use weir_state::dedup::DedupMap;
use weir_state::{DedupSpec, Deduplicate};

/// `event_id STRING, user_id BIGINT, ts TIMESTAMP(ms)`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]))
}

/// Events `first..first+n`, one millisecond apart; every tenth repeats the one 7 before it.
pub fn events(first: u64, n: usize) -> RecordBatch {
    let ids: Vec<u64> = (first..first + n as u64).map(|i| if i % 10 == 9 { i - 7 } else { i }).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(ids.iter().map(|i| format!("evt-{i:012}")).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(ids.iter().map(|i| (*i % 100_000) as i64).collect::<Vec<_>>())),
            Arc::new(TimestampMillisecondArray::from((first..first + n as u64).map(|i| i as i64).collect::<Vec<_>>())),
        ],
    )
    .expect("valid batch")
}

/// A deduplication on `key` (0 = event_id string, 1 = user_id bigint) with `delay_ms`.
pub fn operator(key: usize, delay_ms: i64) -> Deduplicate {
    let schema = schema();
    let spec = DedupSpec {
        key_columns: vec![key],
        event_time: Some((2, delay_ms)),
        order: Some((2, Default::default())),
        output_columns: vec![0, 1, 2],
        output_schema: schema,
        late: None,
    };
    Deduplicate::new(spec, DedupMap::default())
}
