//! The pieces of one batch, each timed alone: decoding a file to Arrow, the deduplication
//! state's memory per key, a Delta commit through weir's sink (by batch size and by log
//! size), a checkpoint entry, and planning a query against executing it on one batch.
//! Inputs are made outside the timed part. README.md has the figures.
//!
//!     cargo bench -p weir-benches --bench micro -- --measurement-time 3 --warm-up-time 1

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tempfile::TempDir;
use tokio::runtime::Runtime;
use weir_benches::{operator, schema};
use weir_checkpoint::{Checkpoint, CommitEntry, FORMAT_VERSION, OffsetsEntry, SourceOffsets};
use weir_connectors::{AppId, Sink};
use weir_connectors::delta::DeltaSink;
use weir_connectors::file::decode::decode_rows;
use weir_planner::{CompiledQuery, SourceDef, compile};
use weir_sql::config::{ConnectorConfig, DeltaConfig, FileConfig};
use weir_sql::{Statement, parse_script};
use weir_state::dedup::DedupMap;
use weir_state::{DedupSpec, Deduplicate};

/// Lines of the decoded file.
const ROWS: usize = 100_000;

/// 2024-01-01T00:00:00Z, in ms: the first event's time; events are 5 ms apart.
const FIRST_EVENT_MS: i64 = 1_704_067_200_000;

/// The event source as a user declares it; `{format}` is `json` or `csv`.
fn events_ddl(format: &str) -> String {
    format!(
        "CREATE TABLE events (
            event_id STRING, user_id BIGINT, amount DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE
        ) WITH (connector = 'file', path = '.', format = '{format}');"
    )
}

/// The whole pipeline: the e2e benchmark's query, into a Delta table.
fn pipeline_script() -> String {
    events_ddl("json")
        + "CREATE TABLE deduped WITH (connector = 'delta', path = 'deduped');
           INSERT INTO deduped SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, ts;"
}

/// The file source's config and schema, from its DDL as the session reads them.
fn file_source(format: &str) -> (FileConfig, SchemaRef) {
    let Some(Statement::CreateTable(create)) = parse_script(&events_ddl(format)).expect("the DDL parses").pop() else {
        panic!("the DDL is one CREATE TABLE")
    };
    let ConnectorConfig::File(config) = ConnectorConfig::from_table(&create).expect("valid options") else {
        panic!("a file table")
    };
    (config, Arc::new(Schema::new(create.columns)))
}

/// Event `i`: `(event_id, user_id, amount, ts)`, as the e2e generator writes them.
fn event(i: usize) -> (String, i64, f64, String) {
    let ts = chrono::DateTime::from_timestamp_millis(FIRST_EVENT_MS + 5 * i as i64).expect("in range");
    (format!("evt-{i:012}"), (i * 7919 % 100_000) as i64, (i % 10_000) as f64 / 4.0, ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// `n` events as newline-delimited JSON.
fn json_text(n: usize) -> Vec<u8> {
    let mut text = String::with_capacity(n * 100);
    for (id, user, amount, ts) in (0..n).map(event) {
        text += &format!("{{\"event_id\":\"{id}\",\"user_id\":{user},\"amount\":{amount:?},\"ts\":\"{ts}\"}}\n");
    }
    text.into_bytes()
}

/// `n` events as CSV with a header.
fn csv_text(n: usize) -> Vec<u8> {
    let mut text = String::from("event_id,user_id,amount,ts\n");
    for (id, user, amount, ts) in (0..n).map(event) {
        text += &format!("{id},{user},{amount:?},{ts}\n");
    }
    text.into_bytes()
}

/// `n` events decoded as the file source decodes them: what a plain query hands the sink.
fn event_batches(n: usize) -> Vec<RecordBatch> {
    let (config, schema) = file_source("json");
    decode_rows(&config, &schema, "events.json", Bytes::from(json_text(n)), false).expect("decodes").batches
}

fn runtime() -> Runtime {
    // As the CLI runs queries: one worker per core.
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    for (format, text) in [("json", json_text(ROWS)), ("csv", csv_text(ROWS))] {
        let (config, schema) = file_source(format);
        let bytes = Bytes::from(text);
        let name = format!("events.{format}");
        let rows: usize = decode_rows(&config, &schema, &name, bytes.clone(), false).expect("decodes").batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, ROWS, "every {format} line is a row");
        group.throughput(Throughput::ElementsAndBytes { elements: ROWS as u64, bytes: bytes.len() as u64 });
        group.bench_function(format, |b| {
            b.iter(|| decode_rows(&config, &schema, &name, bytes.clone(), false).expect("decodes"));
        });
    }
    group.finish();
}

/// Keys put in state to measure its memory.
const STATE_KEYS: usize = 1_000_000;

/// `n` events with distinct event ids and user ids, in batches of 65,536 as `dedup.rs` feeds.
fn distinct_events(n: usize) -> Vec<RecordBatch> {
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from((0..n).map(|i| format!("evt-{i:012}")).collect::<Vec<_>>())),
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            Arc::new(TimestampMillisecondArray::from((0..n as i64).collect::<Vec<_>>())),
        ],
    )
    .expect("valid batch");
    (0..n).step_by(65_536).map(|at| batch.slice(at, 65_536.min(n - at))).collect()
}

/// Filling empty state with a million keys, then the state's own memory figure
/// (`stateOperators.memoryUsedBytes` in progress) per key, printed once.
fn dedup_state(c: &mut Criterion) {
    let input = distinct_events(STATE_KEYS);
    let mut group = c.benchmark_group("dedup_fill_1m_keys");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(STATE_KEYS as u64));
    for (name, key) in [("string_key", 0), ("bigint_key", 1)] {
        let mut printed = false;
        group.bench_function(name, |b| {
            b.iter_batched(
                || operator(key, 60_000),
                |mut op| {
                    op.process_batch(&input, 0).expect("processes");
                    // Returned, so the state is freed outside the timed part.
                    op
                },
                BatchSize::PerIteration,
            );
            if !printed {
                printed = true;
                print_bytes_per_key(name, key, &input);
            }
        });
    }
    group.finish();
}

fn print_bytes_per_key(name: &str, key: usize, input: &[RecordBatch]) {
    let mut encoded = vec![Vec::new()];
    let first: ArrayRef = input[0].column(key).slice(0, 1);
    weir_state::key::encode_column(&first, &mut encoded);
    let mut op = operator(key, 60_000);
    op.process_batch(input, 0).expect("processes");
    let metrics = op.take_metrics();
    eprintln!(
        "dedup state, {name} ({} encoded bytes): {} keys, memoryUsedBytes {} = {:.1} bytes per key",
        encoded[0].len(),
        metrics.num_rows_total,
        metrics.memory_used_bytes,
        metrics.memory_used_bytes as f64 / metrics.num_rows_total as f64
    );
}

/// A Delta table in its own temporary directory, written by weir's sink as a query writes
/// it: one commit per batch id.
struct DeltaTarget {
    dir: TempDir,
    sink: DeltaSink,
    next_batch: u64,
}

impl DeltaTarget {
    const QUERY_ID: &str = "bench-query";

    /// A new target; with `template`, its table starts as a copy of the template's.
    fn new(rt: &Runtime, template: Option<&DeltaTarget>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let table = dir.path().join("table");
        if let Some(t) = template {
            copy_dir(&t.dir.path().join("table"), &table);
        }
        let config = DeltaConfig::at(table.display().to_string(), Default::default());
        let mut sink = DeltaSink::new("deduped", config, None).expect("sink");
        let checkpoint = Arc::new(Checkpoint::open(&dir.path().join("checkpoint").display().to_string()).expect("checkpoint"));
        let schema = file_source("json").1;
        rt.block_on(sink.open(&schema, &AppId::sink(Self::QUERY_ID), &checkpoint)).expect("sink opens");
        Self { dir, sink, next_batch: template.map_or(0, |t| t.next_batch) }
    }

    /// Commits `batches` as the next batch.
    fn commit(&mut self, rt: &Runtime, batches: &[RecordBatch]) {
        let done = rt.block_on(self.sink.commit(self.next_batch, batches.to_vec())).expect("commits");
        assert!(done.written, "batch {} is new", self.next_batch);
        self.next_batch += 1;
    }

    /// Times `iters` commits of `batches`, into a new table (or a copy of `template`'s) that
    /// already holds one commit (or the template's), so creating the table is not timed.
    fn time_commits(rt: &Runtime, template: Option<&DeltaTarget>, batches: &[RecordBatch], iters: u64) -> Duration {
        let mut target = Self::new(rt, template);
        if template.is_none() {
            target.commit(rt, batches);
        }
        let started = Instant::now();
        for _ in 0..iters {
            target.commit(rt, batches);
        }
        started.elapsed()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Latency of one commit by batch size. Each sample starts a new table, so the log stays
/// short (see `delta_commit_log` for a long one).
fn delta_commit(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("delta_commit");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for rows in [1, 1_000, 100_000] {
        let batches = event_batches(rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(BenchmarkId::new("rows", rows), |b| {
            b.iter_custom(|iters| DeltaTarget::time_commits(&rt, None, &batches, iters));
        });
    }
    group.finish();
}

/// Latency of a 1-row commit when the table already has about 0, 100 and 1,000 versions.
/// Each sample copies a prepared table, so it starts at that size and grows by its
/// iterations only (tens).
fn delta_commit_log(c: &mut Criterion) {
    let rt = runtime();
    let batches = event_batches(1);
    let mut group = c.benchmark_group("delta_commit_log");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for versions in [1, 100, 1_000] {
        let mut template: Option<DeltaTarget> = None;
        group.bench_function(BenchmarkId::new("versions", versions), |b| {
            // Prepared here, so a filter that skips this benchmark skips the preparation.
            let template = template.get_or_insert_with(|| {
                let mut t = DeltaTarget::new(&rt, None);
                for _ in 0..versions {
                    t.commit(&rt, &batches);
                }
                t
            });
            b.iter_custom(|iters| DeltaTarget::time_commits(&rt, Some(template), &batches, iters));
        });
    }
    group.finish();
}

/// Writing the two checkpoint entries of a batch: offsets before it runs, commit after.
fn checkpoint(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let cp = Checkpoint::open(&dir.path().display().to_string()).expect("checkpoint");
    let offsets = |batch_id: u64| OffsetsEntry {
        version: FORMAT_VERSION,
        batch_id,
        batch_watermark_ms: FIRST_EVENT_MS,
        late_events_watermark_ms: FIRST_EVENT_MS,
        batch_timestamp_ms: FIRST_EVENT_MS,
        sources: BTreeMap::from([(
            "events".to_string(),
            SourceOffsets { start: Some(json!({ "logOffset": batch_id })), end: json!({ "logOffset": batch_id + 1 }) },
        )]),
        source_watermarks_ms: Some(BTreeMap::from([("events".to_string(), FIRST_EVENT_MS)])),
        static_versions: None,
        run_id: None,
    };
    let commit = CommitEntry { version: FORMAT_VERSION, next_batch_watermark_ms: FIRST_EVENT_MS, num_output_rows: 100_000, sink_version: Some(1), source_watermarks_ms: Some(BTreeMap::from([("events".to_string(), FIRST_EVENT_MS)])), run_id: None, state_sizes: None };
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(20);
    let mut next = 0;
    group.bench_function("offsets_entry", |b| {
        b.iter_batched(
            || {
                next += 1;
                offsets(next)
            },
            |entry| rt.block_on(cp.write_offsets(&entry)).expect("writes"),
            BatchSize::SmallInput,
        );
    });
    let mut next = 0;
    group.bench_function("commit_entry", |b| {
        b.iter(|| {
            next += 1;
            rt.block_on(cp.write_commit(next, &commit)).expect("writes");
        });
    });
    group.finish();
}

/// Parses the script and compiles its query, as `Session::start` does before the first
/// batch (without opening the source and the sink).
async fn plan(script: &str) -> CompiledQuery {
    let mut sources = Vec::new();
    let mut query = None;
    for statement in parse_script(script).expect("parses") {
        match statement {
            Statement::CreateTable(create) if ConnectorConfig::from_table(&create).expect("valid options").is_source() => {
                let schema = Arc::new(Schema::new(create.columns.clone()));
                sources.push(SourceDef { name: create.name, schema, event_time: create.watermark.map(|w| w.column) });
            }
            Statement::Insert(insert) => query = Some(insert.query),
            _ => {}
        }
    }
    compile(&query.expect("an INSERT"), &sources, &[], None, 2).await.expect("compiles")
}

/// Planning happens once per query; what each batch pays is executing the compiled plans.
fn planning(c: &mut Criterion) {
    let rt = runtime();
    let script = pipeline_script();
    let mut group = c.benchmark_group("plan");
    group.sample_size(20);
    group.bench_function("parse_and_compile", |b| b.iter(|| rt.block_on(plan(&script))));

    let compiled = rt.block_on(plan(&script));
    let Some(weir_planner::OperatorPlan::Dedup(dedup)) = compiled.operators().first() else { panic!("DISTINCT ON deduplicates") };
    let spec = DedupSpec {
        key_columns: dedup.key_columns.clone(),
        event_time: dedup.event_time.as_ref().map(|(column, _)| (*column, 600_000)),
        order: dedup.order,
        output_columns: dedup.output_columns.clone(),
        output_schema: Arc::clone(&dedup.output_schema),
        late: None,
    };
    let input = event_batches(10);
    group.throughput(Throughput::Elements(10));
    group.bench_function("execute_10_rows", |b| {
        b.iter_batched(
            || Deduplicate::new(spec.clone(), DedupMap::default()),
            |mut op| {
                rt.block_on(async {
                    let rows = compiled.run_pre(BTreeMap::from([("events".to_string(), input.clone())])).await.expect("runs");
                    let rows = op.process_batch(&rows, 0).expect("deduplicates");
                    compiled.run_above(0, rows).await.expect("runs")
                })
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, decode, dedup_state, delta_commit, delta_commit_log, checkpoint, planning);
criterion_main!(benches);
