//! The datagen source: deterministic rows from a seed and a row counter.
//!
//! Row `i`'s values depend only on the seed, `i` and the column, so a replay of the offsets
//! `{"rows": a}` to `{"rows": b}` yields the same rows. Rows become available at
//! `rows_per_second` from the start of the run (like Spark's rate source), up to `total_rows`.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::{Value, json};
use weir_checkpoint::Checkpoint;
use weir_sql::config::{DatagenConfig, FieldKind, FieldSpec};

use crate::error::{ConnectorError, Result};
use crate::{Backlog, ReadOutput, Source};

const CHUNK: u64 = 8192;

/// Generates rows; see the module docs.
#[derive(Debug)]
pub struct DatagenSource {
    config: DatagenConfig,
    schema: SchemaRef,
    specs: Vec<FieldSpec>,
    /// Rows already recorded when this run started, and when it started.
    base: u64,
    started: Instant,
    /// With `available-now`: rows available at that moment.
    frozen: Option<u64>,
}

impl DatagenSource {
    /// Checks that every column has a type datagen can make.
    pub fn new(config: DatagenConfig, schema: SchemaRef) -> Result<Self> {
        let mut specs = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            if !supported(field.data_type()) {
                return Err(ConnectorError::Config(format!(
                    "datagen cannot make values of type {} (column '{}')",
                    field.data_type(),
                    field.name()
                )));
            }
            let spec = config.fields.iter().find(|(c, _)| c == field.name()).map(|(_, s)| s.clone()).unwrap_or_default();
            specs.push(spec);
        }
        Ok(Self { config, schema, specs, base: 0, started: Instant::now(), frozen: None })
    }

    fn available(&self) -> u64 {
        if let Some(f) = self.frozen {
            return f;
        }
        let by_rate = match self.config.rows_per_second {
            Some(rate) => self.base.saturating_add((self.started.elapsed().as_secs_f64() * rate as f64) as u64),
            None => u64::MAX,
        };
        by_rate.min(self.config.total_rows.unwrap_or(u64::MAX))
    }

    fn micros_per_row(&self) -> i64 {
        match self.config.rows_per_second {
            Some(rate) => (1_000_000 / rate.max(1)) as i64,
            None => 1_000,
        }
    }

    /// Generates rows `[from, to)`.
    pub fn generate(&self, from: u64, to: u64) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(c, f)| self.column(c, f.data_type(), &self.specs[c], from, to))
            .collect();
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|e| ConnectorError::Config(e.to_string()))
    }

    fn column(&self, c: usize, data_type: &DataType, spec: &FieldSpec, from: u64, to: u64) -> ArrayRef {
        let seed = self.config.seed;
        let rand = |row: u64, salt: u64| mix(seed ^ mix(row.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (c as u64 + 1) ^ salt));
        let is_null = |row: u64| spec.null_rate > 0.0 && (rand(row, 0xA5A5) as f64 / u64::MAX as f64) < spec.null_rate;
        let int = |row: u64| -> i64 {
            let min = spec.min.unwrap_or(0.0) as i64;
            match spec.kind {
                FieldKind::Sequence => min.wrapping_add(row as i64),
                FieldKind::Random => {
                    let max = spec.max.map(|m| m as i64).unwrap_or(match spec.cardinality {
                        Some(card) => min + card as i64 - 1,
                        None => i32::MAX as i64,
                    });
                    let span = (max - min).max(0) as u64 + 1;
                    min + (rand(row, 1) % span) as i64
                }
            }
        };
        let float = |row: u64| -> f64 {
            let min = spec.min.unwrap_or(0.0);
            match spec.kind {
                FieldKind::Sequence => min + row as f64,
                FieldKind::Random => {
                    let max = spec.max.unwrap_or(min + 1000.0);
                    let unit = (rand(row, 2) >> 11) as f64 / (1u64 << 53) as f64;
                    ((min + unit * (max - min)) * 100.0).round() / 100.0
                }
            }
        };
        let n = (to - from) as usize;
        macro_rules! build {
            ($builder:expr, $value:expr) => {{
                let mut b = $builder;
                for row in from..to {
                    if is_null(row) {
                        b.append_null();
                    } else {
                        b.append_value($value(row));
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        match data_type {
            DataType::Boolean => build!(BooleanBuilder::with_capacity(n), |r| rand(r, 3) & 1 == 1),
            DataType::Int8 => build!(Int8Builder::with_capacity(n), |r| int(r) as i8),
            DataType::Int16 => build!(Int16Builder::with_capacity(n), |r| int(r) as i16),
            DataType::Int32 => build!(Int32Builder::with_capacity(n), |r| int(r) as i32),
            DataType::Int64 => build!(Int64Builder::with_capacity(n), int),
            DataType::Float32 => build!(Float32Builder::with_capacity(n), |r| float(r) as f32),
            DataType::Float64 => build!(Float64Builder::with_capacity(n), float),
            DataType::Decimal128(p, s) => {
                let scale = 10f64.powi(*s as i32);
                let b = Decimal128Builder::with_capacity(n).with_precision_and_scale(*p, *s).expect("declared decimal is valid");
                build!(b, |r| (float(r) * scale) as i128)
            }
            DataType::Date32 => build!(Date32Builder::with_capacity(n), |r| {
                (self.config.start_time_micros / 86_400_000_000) as i32 + (int(r) % 3650) as i32
            }),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                let step = self.micros_per_row();
                let start = self.config.start_time_micros;
                let value = |r: u64| match spec.kind {
                    // Event time follows the row counter, jittered backwards for realism when random.
                    FieldKind::Sequence => start + r as i64 * step,
                    FieldKind::Random => {
                        let jitter = spec.max.unwrap_or(0.0).max(0.0) as u64 * 1_000_000;
                        start + r as i64 * step - if jitter > 0 { (rand(r, 4) % jitter) as i64 } else { 0 }
                    }
                };
                build!(TimestampMicrosecondBuilder::with_capacity(n).with_timezone_opt(tz.clone()), value)
            }
            DataType::Utf8 => {
                let len = spec.length.unwrap_or(8);
                build!(StringBuilder::with_capacity(n, n * len), |r: u64| {
                    match spec.kind {
                        FieldKind::Sequence => format!("{}", spec.min.unwrap_or(0.0) as i64 + r as i64),
                        FieldKind::Random => {
                            let v = match spec.cardinality {
                                Some(card) => mix(seed ^ (c as u64 + 7) ^ (rand(r, 5) % card)),
                                None => rand(r, 5),
                            };
                            let s = format!("{v:016x}");
                            s[..len.min(16)].to_string()
                        }
                    }
                })
            }
            DataType::Binary => build!(BinaryBuilder::with_capacity(n, n * 8), |r| rand(r, 6).to_le_bytes()),
            other => unreachable!("checked in new(): {other}"),
        }
    }
}

fn supported(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Date32
            | DataType::Timestamp(TimeUnit::Microsecond, _)
            | DataType::Utf8
            | DataType::Binary
    )
}

/// splitmix64's finaliser: a fast, well-mixed hash of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rows(offset: &Value) -> Result<u64> {
    offset.get("rows").and_then(Value::as_u64).ok_or_else(|| ConnectorError::Config(format!("not a datagen offset: {offset}")))
}

#[async_trait]
impl Source for DatagenSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn description(&self) -> String {
        format!("DatagenSource[seed={}, rowsPerSecond={:?}, totalRows={:?}]", self.config.seed, self.config.rows_per_second, self.config.total_rows)
    }

    async fn restore(&mut self, _checkpoint: &Arc<Checkpoint>, _last_batch: Option<u64>, recorded_end: Option<&Value>) -> Result<()> {
        self.base = recorded_end.map(rows).transpose()?.unwrap_or(0);
        self.started = Instant::now();
        Ok(())
    }

    async fn freeze_available(&mut self) -> Result<()> {
        self.frozen = Some(self.available());
        Ok(())
    }

    async fn backlog(&self, position: Option<&Value>) -> Result<Option<Backlog>> {
        let start = position.map(rows).transpose()?.unwrap_or(0);
        Ok(self.frozen.filter(|&f| f != u64::MAX).map(|f| Backlog { amount: f.saturating_sub(start), unit: "rows" }))
    }

    async fn plan_batch(&mut self, _checkpoint: &Arc<Checkpoint>, _batch_id: u64, start: Option<&Value>) -> Result<Option<Value>> {
        let start = start.map(rows).transpose()?.unwrap_or(0);
        let mut end = self.available();
        if end == u64::MAX {
            // Unthrottled and unbounded: one default-sized batch at a time.
            end = start + self.config.max_rows_per_trigger.unwrap_or(100_000);
        }
        if let Some(max) = self.config.max_rows_per_trigger {
            end = end.min(start.saturating_add(max));
        }
        Ok((end > start).then(|| json!({ "rows": end })))
    }

    async fn latest_offset(&self) -> Option<Value> {
        let available = self.available();
        (available != u64::MAX).then(|| json!({ "rows": available }))
    }

    async fn read(&self, _checkpoint: &Arc<Checkpoint>, start: Option<&Value>, end: &Value) -> Result<ReadOutput> {
        let start = start.map(rows).transpose()?.unwrap_or(0);
        let end = rows(end)?;
        let mut out = Vec::with_capacity(((end - start) / CHUNK + 1) as usize);
        let mut from = start;
        while from < end {
            let to = (from + CHUNK).min(end);
            out.push(self.generate(from, to)?);
            from = to;
        }
        let mut out = ReadOutput::from(out);
        out.rows_hint = Some(end.saturating_sub(start));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn rows_depend_only_on_seed_and_row_number() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        ]));
        let config = DatagenConfig {
            seed: 42,
            rows_per_second: None,
            total_rows: Some(100),
            max_rows_per_trigger: None,
            start_time_micros: 0,
            fields: vec![("id".into(), FieldSpec { kind: FieldKind::Sequence, ..Default::default() })],
            late_rows: Default::default(),
            storage: Default::default(),
        };
        let source = DatagenSource::new(config, schema).unwrap();
        let whole = source.generate(0, 100).unwrap();
        let part = source.generate(40, 60).unwrap();
        assert_eq!(whole.slice(40, 20), part);
        let ids = part.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        assert_eq!(ids.value(0), 40);
    }
}
