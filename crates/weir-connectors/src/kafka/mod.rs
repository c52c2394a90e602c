//! The Kafka source: explicit partitions, offsets in the checkpoint, exact replays.
//!
//! Offsets are Spark's JSON, `{"topic":{"0":23}}`, each the next offset to read (an exclusive
//! end). Batch N's ends are planned from what fetch responses say a consumer can read (the
//! high watermark, or under read_committed the last stable offset; see `ends.rs`), capped by
//! `max_offsets_per_trigger` in proportion to each partition's backlog, and written to
//! `offsets/N` by the batch loop before the batch runs; reading batch N reads exactly
//! `[start, end)` of every partition, the first time and on a replay. The starting offsets
//! of a new query are resolved once and kept in `sources/<table>/initial.json`, so a restart
//! before the first batch starts from the same place.

mod consumer;
mod ends;
mod queue;
mod records;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};
use weir_checkpoint::Checkpoint;
use weir_sql::config::{BadRows, KafkaConfig, StartingOffsets};

use self::consumer::{KafkaConsumer, Tp, tp_name};
use self::records::{Chunk, Decoder};
use crate::error::{ConnectorError, Result};
use crate::{Backlog, ReadOutput, Source};

/// Next offset to read, per topic and partition.
type Offsets = BTreeMap<Tp, i64>;

/// How often a running query looks for new partitions. Metadata requests wait behind the
/// consumer's long-polling fetches on the broker connection, so not every batch asks.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);

/// `connector = 'kafka'`.
pub struct KafkaSource {
    name: String,
    config: KafkaConfig,
    decoder: Arc<Decoder>,
    consumer: Option<Arc<KafkaConsumer>>,
    /// Where the query started (batch 0's start).
    initial: Option<Offsets>,
    /// The ends a run with trigger `available-now` stops at.
    frozen: Option<Offsets>,
    /// When partitions were last listed; they are listed again after `DISCOVERY_INTERVAL`.
    discovered_at: Option<Instant>,
    /// Offsets skipped because the broker no longer had them (`fail_on_data_loss = false`).
    lost: std::sync::atomic::AtomicU64,
    /// The newest planned batch's readable log ends (see `LogEnd`) and its ends, for lag in progress.
    lag: Mutex<Option<(Offsets, Offsets)>>,
    warnings: Mutex<Vec<String>>,
    /// The reader threads of the last read. A new read waits for them, so that two reads
    /// never fetch the same partition at once (a read restarted after an outage).
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl KafkaSource {
    /// A source for table `name`; nothing is contacted until `restore`.
    pub fn new(name: &str, config: KafkaConfig, declared: Option<SchemaRef>) -> Result<Self> {
        let declared = declared.filter(|s| !s.fields().is_empty());
        let decoder =
            Decoder::new(config.format, config.delimiter, declared).with_checks(config.max_row_bytes, config.event_time.clone());
        Ok(Self {
            name: name.to_string(),
            config,
            decoder: Arc::new(decoder),
            consumer: None,
            initial: None,
            frozen: None,
            discovered_at: None,
            lost: Default::default(),
            readers: Mutex::default(),
            lag: Mutex::new(None),
            warnings: Mutex::new(Vec::new()),
        })
    }

    fn consumer(&self) -> Result<Arc<KafkaConsumer>> {
        self.consumer.as_ref().map(Arc::clone).ok_or_else(|| ConnectorError::Config("kafka source used before restore".into()))
    }

    /// A partition chunk's rows; its warnings and lost offsets go to the source's counters.
    fn take_report(&self, decoded: records::Decoded, report: consumer::ReadReport, place: crate::ChunkPlace) -> ReadOutput {
        for w in report.warnings {
            self.warn(w);
        }
        self.lost.fetch_add(report.lost, std::sync::atomic::Ordering::Relaxed);
        ReadOutput { batches: decoded.batches, bad_rows: decoded.bad.into_iter().collect(), place, bytes: report.bytes, rows_hint: None }
    }

    fn initial_path(&self) -> String {
        format!("sources/{}/initial.json", self.name)
    }

    /// Every partition of every topic the table reads.
    fn discover(consumer: &KafkaConsumer, config: &KafkaConfig, timeout: Duration) -> Result<Vec<Tp>> {
        let mut tps = Vec::new();
        for topic in &config.topics {
            for p in consumer.partitions(topic, timeout)? {
                tps.push((topic.clone(), p));
            }
        }
        Ok(tps)
    }

    /// Resolves `starting_offsets` against the broker.
    fn resolve_start(consumer: &KafkaConsumer, config: &KafkaConfig, tps: &[Tp]) -> Result<Offsets> {
        let wanted = |tp: &Tp| -> i64 {
            match &config.starting_offsets {
                StartingOffsets::Earliest => -2,
                StartingOffsets::Latest => -1,
                StartingOffsets::Explicit(map) => map.get(&tp.0).and_then(|m| m.get(&tp.1)).copied().unwrap_or(-2),
            }
        };
        if let StartingOffsets::Explicit(map) = &config.starting_offsets {
            for (topic, parts) in map {
                for p in parts.keys() {
                    if !tps.contains(&(topic.clone(), *p)) {
                        return Err(ConnectorError::Config(format!(
                            "option 'starting_offsets' names topic '{topic}' partition {p}, which does not exist"
                        )));
                    }
                }
            }
        }
        let mut out = Offsets::new();
        let mut latest = Vec::new();
        for tp in tps {
            match wanted(tp) {
                -2 => {
                    out.insert(tp.clone(), consumer.earliest(tp)?);
                }
                -1 => latest.push(tp.clone()),
                n => {
                    out.insert(tp.clone(), n);
                }
            }
        }
        if !latest.is_empty() {
            // The end is what fetch responses say, not ListOffsets (see consumer.rs): fetch
            // from the earliest offset once to learn it.
            let mut at = Offsets::new();
            for tp in &latest {
                at.insert(tp.clone(), consumer.earliest(tp)?);
            }
            let mut all = out.clone();
            all.extend(at);
            consumer.assign(&all)?;
            let ends = consumer.ends(&latest, consumer_patience(config))?;
            out.extend(ends.into_iter().map(|(tp, end)| (tp, end.readable)));
        }
        Ok(out)
    }

    fn parse(&self, value: &Value) -> Result<Offsets> {
        parse_offsets(value).map_err(|m| {
            ConnectorError::Config(format!("kafka source '{}': offsets in the checkpoint are not {{topic: {{partition: offset}}}}: {m}: {value}", self.name))
        })
    }

    fn warn(&self, message: String) {
        self.warnings.lock().expect("not poisoned").push(format!("source '{}': {message}", self.name));
    }
}

fn consumer_patience(config: &KafkaConfig) -> Duration {
    config.connect_timeout
}

/// `{"topic":{"0":23}}` -> offsets.
fn parse_offsets(value: &Value) -> std::result::Result<Offsets, String> {
    let mut out = Offsets::new();
    let topics = value.as_object().ok_or("not an object")?;
    for (topic, parts) in topics {
        let parts = parts.as_object().ok_or_else(|| format!("topic '{topic}' is not an object"))?;
        for (p, o) in parts {
            let p: i32 = p.parse().map_err(|_| format!("'{p}' is not a partition"))?;
            let o = o.as_i64().ok_or_else(|| format!("offset of {topic}/{p} is not a number"))?;
            out.insert((topic.clone(), p), o);
        }
    }
    Ok(out)
}

/// One partition's lag: how far the broker's log is past a position (`weir checkpoint show`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The position (the next offset the query reads).
    pub offset: i64,
    /// The broker's high watermark (the offset after the last record).
    pub end: i64,
    /// `end - offset`, at least 0.
    pub lag: i64,
}

/// How far the broker at `servers` (librdkafka `properties` besides) is past `offsets`
/// (`{topic: {partition: offset}}`, a Kafka source's offsets in a checkpoint), now. The ends
/// come from fetch responses, as the source's own do (a ListOffsets answer is not always the
/// high watermark). For monitoring: nothing is committed, and the records fetched are
/// dropped.
pub async fn lag_now(servers: &str, properties: &[(String, String)], offsets: &Value, timeout: Duration) -> Result<Vec<PartitionLag>> {
    let offsets = parse_offsets(offsets).map_err(|m| ConnectorError::Config(format!("not Kafka offsets ({m}): {offsets}")))?;
    let mut all = vec![("isolation.level".to_string(), "read_uncommitted".to_string())];
    all.extend(properties.iter().cloned());
    let config = KafkaConfig {
        bootstrap_servers: servers.to_string(),
        topics: Vec::new(),
        format: weir_sql::config::KafkaFormat::Raw,
        starting_offsets: StartingOffsets::Earliest,
        max_offsets_per_trigger: None,
        fail_on_data_loss: false,
        group_id: Some("weir-checkpoint-show".to_string()),
        connect_timeout: timeout,
        delimiter: b',',
        bad_rows: BadRows::default(),
        properties: all,
        late_rows: Default::default(),
        max_row_bytes: None,
        event_time: None,
        storage: Default::default(),
    };
    blocking(move || {
        let consumer = KafkaConsumer::new("lag", &config)?;
        consumer.assign(&offsets)?;
        let tps: Vec<Tp> = offsets.keys().cloned().collect();
        let ends = consumer.ends(&tps, timeout)?;
        Ok(offsets
            .into_iter()
            .map(|((topic, partition), offset)| {
                let end = ends.get(&(topic.clone(), partition)).map_or(offset, |e| e.high);
                PartitionLag { topic, partition, offset, end, lag: (end - offset).max(0) }
            })
            .collect())
    })
    .await
}

fn to_json(offsets: &Offsets) -> Value {
    let mut topics: Map<String, Value> = Map::new();
    for ((topic, p), o) in offsets {
        let entry = topics.entry(topic.clone()).or_insert_with(|| Value::Object(Map::new()));
        entry.as_object_mut().expect("object").insert(p.to_string(), json!(o));
    }
    Value::Object(topics)
}

/// Whether `ends` (a batch's, after [`rate_limit`]) leave records before `latest` behind.
fn held_back(latest: &Offsets, ends: &Offsets) -> bool {
    ends.iter().any(|(tp, end)| latest.get(tp).is_some_and(|l| l > end))
}

/// Spark's rate limit: `limit` records shared across partitions in proportion to their
/// backlog; every partition with a backlog moves by at least one record.
fn rate_limit(starts: &Offsets, latest: &Offsets, limit: Option<u64>) -> Offsets {
    let backlog = |tp: &Tp| (latest[tp] - starts.get(tp).copied().unwrap_or(0)).max(0);
    let total: i64 = latest.keys().map(backlog).sum();
    latest
        .iter()
        .map(|(tp, &until)| {
            let begin = starts.get(tp).copied().unwrap_or(0);
            let end = match limit {
                Some(limit) if total > limit as i64 => {
                    let share = limit as f64 * backlog(tp) as f64 / total as f64;
                    let step = if share < 1.0 { share.ceil() } else { share.floor() } as i64;
                    (begin + step).min(until)
                }
                _ => until,
            };
            (tp.clone(), end.max(begin))
        })
        .collect()
}

/// Offsets of one partition per chunk of a batch's read (see `read_chunks`).
const CHUNK_MESSAGES: i64 = 50_000;

/// The chunk size: [`CHUNK_MESSAGES`], or `WEIR_KAFKA_CHUNK_MESSAGES` when set (a tuning
/// knob; the tests use it to show that results do not depend on how partitions are cut).
fn chunk_messages() -> i64 {
    static CHUNK: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *CHUNK.get_or_init(|| crate::tuning_knob("WEIR_KAFKA_CHUNK_MESSAGES", CHUNK_MESSAGES))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ConnectorError::Io(format!("kafka task failed: {e}")))?
}

#[async_trait]
impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.decoder.schema()
    }

    fn description(&self) -> String {
        // Spark's description; the servers are left out so that moving brokers keeps the
        // checkpoint valid.
        format!("KafkaV2[Subscribe[{}]]", self.config.topics.join(","))
    }

    fn dead_letter(&self) -> Option<(String, SchemaRef)> {
        match &self.config.bad_rows {
            BadRows::DeadLetter(path) => Some((path.clone(), records::dead_letter_schema())),
            BadRows::Fail => None,
        }
    }

    async fn restore(&mut self, checkpoint: &Arc<Checkpoint>, _last_batch: Option<u64>, recorded_end: Option<&Value>) -> Result<()> {
        let consumer = Arc::new(KafkaConsumer::new(&self.name, &self.config)?);
        self.consumer = Some(Arc::clone(&consumer));
        let config = self.config.clone();
        let c = Arc::clone(&consumer);
        let tps = blocking(move || Self::discover(&c, &config, config.connect_timeout)).await?;
        let stored: Option<Value> = checkpoint.get_json(&self.initial_path()).await?;
        self.initial = match stored {
            Some(v) => Some(self.parse(&v)?),
            None if recorded_end.is_none() => {
                let (c, config, tps2) = (Arc::clone(&consumer), self.config.clone(), tps.clone());
                let initial = blocking(move || Self::resolve_start(&c, &config, &tps2)).await?;
                match checkpoint.put_json_new(&self.initial_path(), &to_json(&initial)).await {
                    Ok(()) => Some(initial),
                    Err(weir_checkpoint::CheckpointError::Conflict { .. }) => {
                        let v: Option<Value> = checkpoint.get_json(&self.initial_path()).await?;
                        v.map(|v| self.parse(&v)).transpose()?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => None,
        };
        let mut positions = match recorded_end {
            Some(v) => self.parse(v)?,
            None => self.initial.clone().unwrap_or_default(),
        };
        for tp in tps {
            positions.entry(tp).or_insert(0);
        }
        blocking(move || consumer.assign(&positions)).await
    }

    async fn freeze_available(&mut self) -> Result<()> {
        let consumer = self.consumer()?;
        let config = self.config.clone();
        let frozen = blocking(move || {
            let tps = Self::discover(&consumer, &config, config.connect_timeout)?;
            let mut positions = Offsets::new();
            for tp in &tps {
                positions.insert(tp.clone(), 0);
            }
            consumer.assign(&positions)?;
            let ends = consumer.ends(&tps, consumer_patience(&config))?;
            Ok(ends.into_iter().map(|(tp, end)| (tp, end.readable)).collect::<Offsets>())
        })
        .await?;
        self.frozen = Some(frozen);
        Ok(())
    }

    async fn backlog(&self, position: Option<&Value>) -> Result<Option<Backlog>> {
        let Some(frozen) = &self.frozen else { return Ok(None) };
        let starts = match position {
            Some(v) => self.parse(v)?,
            None => self.initial.clone().unwrap_or_default(),
        };
        let amount = frozen.iter().map(|(tp, &end)| u64::try_from(end - starts.get(tp).copied().unwrap_or(0)).unwrap_or(0)).sum();
        Ok(Some(Backlog { amount, unit: "offsets" }))
    }

    async fn plan_batch(&mut self, _checkpoint: &Arc<Checkpoint>, _batch_id: u64, start: Option<&Value>) -> Result<Option<Value>> {
        let starts = match start {
            Some(v) => self.parse(v)?,
            None => self.initial.clone().ok_or_else(|| {
                ConnectorError::Config(format!("kafka source '{}': the checkpoint has no {}", self.name, self.initial_path()))
            })?,
        };
        let consumer = self.consumer()?;
        let config = self.config.clone();
        let frozen = self.frozen.clone();
        let starts2 = starts.clone();
        let discover = self.discovered_at.is_none_or(|t| t.elapsed() >= DISCOVERY_INTERVAL);
        if discover {
            self.discovered_at = Some(Instant::now());
        }
        let (latest, warnings) = blocking(move || {
            let mut warnings = Vec::new();
            let mut positions = starts2.clone();
            let found = if discover { Self::discover(&consumer, &config, Duration::from_secs(5).min(config.connect_timeout))? } else { Vec::new() };
            for tp in found {
                if let std::collections::btree_map::Entry::Vacant(e) = positions.entry(tp) {
                    // A partition added to the topic: read it from its beginning.
                    warnings.push(format!("new partition: {} is read from offset 0", tp_name(e.key())));
                    e.insert(0);
                }
            }
            consumer.assign(&positions)?;
            let tps: Vec<Tp> = positions.keys().cloned().collect();
            let ends = consumer.ends(&tps, consumer_patience(&config))?;
            let mut latest = Offsets::new();
            for (tp, &start) in &positions {
                let consumer::LogEnd { high, readable } = ends[tp];
                // Under read_committed nothing at or past the last stable offset can be read
                // yet: the batch ends there, even when it is below the start (then it waits).
                let mut end = readable.max(start);
                if high < start {
                    let message = format!(
                        "kafka: {}: the checkpoint is at offset {start} but the broker's log ends at {high} (was the topic deleted and created again?)",
                        tp_name(tp)
                    );
                    if config.fail_on_data_loss {
                        return Err(ConnectorError::BadData(format!("{message}; set fail_on_data_loss = 'false' to go on from where the checkpoint is")));
                    }
                    warnings.push(format!("{message}; waiting for the log to pass offset {start} (fail_on_data_loss = false)"));
                    end = start;
                }
                if let Some(f) = &frozen {
                    end = end.min(f.get(tp).copied().unwrap_or(start)).max(start);
                }
                latest.insert(tp.clone(), end);
            }
            Ok((latest, warnings))
        })
        .await?;
        for w in warnings {
            self.warn(w);
        }
        let ends = rate_limit(&starts, &latest, self.config.max_offsets_per_trigger);
        *self.lag.lock().expect("not poisoned") = Some((latest, ends.clone()));
        let any_new = ends.iter().any(|(tp, &end)| end > starts.get(tp).copied().unwrap_or(0));
        Ok(any_new.then(|| to_json(&ends)))
    }

    fn has_more(&self) -> bool {
        self.lag.lock().expect("not poisoned").as_ref().is_some_and(|(latest, ends)| held_back(latest, ends))
    }

    async fn latest_offset(&self) -> Option<Value> {
        let consumer = self.consumer.as_ref()?;
        let (_, ends) = self.lag.lock().expect("not poisoned").clone()?;
        let latest: Offsets =
            ends.iter().map(|(tp, &end)| (tp.clone(), consumer.cached_end(tp).map_or(end, |e| e.readable).max(end))).collect();
        Some(to_json(&latest))
    }

    fn metrics(&self) -> BTreeMap<String, Value> {
        let Some((_, ends)) = self.lag.lock().expect("not poisoned").clone() else { return BTreeMap::new() };
        let Some(consumer) = self.consumer.as_ref() else { return BTreeMap::new() };
        let lag: Offsets =
            ends.iter().map(|(tp, &end)| (tp.clone(), (consumer.cached_end(tp).map_or(end, |e| e.readable) - end).max(0))).collect();
        if lag.is_empty() {
            return BTreeMap::new();
        }
        let (min, max) = (lag.values().min().copied().unwrap_or(0), lag.values().max().copied().unwrap_or(0));
        let avg = lag.values().sum::<i64>() as f64 / lag.len() as f64;
        // Spark's three metrics (as strings, like Spark's), and the lag of each partition.
        BTreeMap::from([
            ("minOffsetsBehindLatest".to_string(), json!(min.to_string())),
            ("maxOffsetsBehindLatest".to_string(), json!(max.to_string())),
            ("avgOffsetsBehindLatest".to_string(), json!(format!("{avg:.1}"))),
            ("offsetsBehindLatest".to_string(), to_json(&lag)),
            ("numOffsetsLost".to_string(), json!(self.lost.load(std::sync::atomic::Ordering::Relaxed))),
        ])
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().expect("not poisoned"))
    }

    async fn read(&self, checkpoint: &Arc<Checkpoint>, start: Option<&Value>, end: &Value) -> Result<ReadOutput> {
        ReadOutput::collect(self.read_chunks(checkpoint, start, end)).await
    }

    /// Chunks of at most [`chunk_messages`] offsets of a partition, taken from the
    /// partitions in turn (partition order, then offset order). Each partition is read and
    /// decoded ahead on its own thread: while one waits for the broker, another decodes,
    /// and the batch loop works on the chunks already there.
    fn read_chunks<'a>(
        &'a self,
        _checkpoint: &'a Arc<Checkpoint>,
        start: Option<&'a Value>,
        end: &'a Value,
    ) -> BoxStream<'a, Result<ReadOutput>> {
        let readers = async move {
            let starts = match start {
                Some(v) => self.parse(v)?,
                None => self.initial.clone().ok_or_else(|| {
                    ConnectorError::Config(format!("kafka source '{}': the checkpoint has no {}", self.name, self.initial_path()))
                })?,
            };
            let ends = self.parse(end)?;
            let consumer = self.consumer()?;
            let ranges: Vec<(Tp, i64, i64)> = ends
                .iter()
                .map(|(tp, &end)| (tp.clone(), starts.get(tp).copied().unwrap_or(0), end))
                .filter(|(_, s, e)| e > s)
                .collect();
            // The records of the read: its rows, bar control records and compacted gaps.
            let records: i64 = ranges.iter().map(|(_, s, e)| e - s).sum();
            let mut positions: Offsets = ends.clone();
            for (tp, s, _) in &ranges {
                positions.insert(tp.clone(), *s);
            }
            // The threads of a read given up (its stream dropped) stop at their next chunk.
            let previous = std::mem::take(&mut *self.readers.lock().expect("not poisoned"));
            let assigning = Arc::clone(&consumer);
            blocking(move || {
                for thread in previous {
                    let _ = thread.join();
                }
                assigning.assign(&positions)
            })
            .await?;
            let collect_bad = matches!(self.config.bad_rows, BadRows::DeadLetter(_));
            let with_headers = self.decoder.with_headers;
            let chunk_messages = chunk_messages();
            let mut readers = Vec::with_capacity(ranges.len());
            let mut threads = Vec::with_capacity(ranges.len());
            for (tp, start, end) in ranges {
                // Two chunks ahead per partition bound the memory a batch takes.
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                let (consumer, decoder) = (Arc::clone(&consumer), Arc::clone(&self.decoder));
                let name = format!("weir-kafka-{}-{}", tp.0, tp.1);
                let thread = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || {
                        let mut at = start;
                        let mut chunk = Chunk::new(&tp.0, tp.1, with_headers);
                        while at < end {
                            let to = at.saturating_add(chunk_messages).min(end);
                            chunk.clear();
                            let result = consumer.read(&tp, at, to, &mut chunk).and_then(|mut report| {
                                report.bytes = (chunk.values.len() + chunk.keys.values_slice().len()) as u64;
                                Ok((decoder.decode(&chunk, collect_bad).map_err(ConnectorError::BadData)?, report))
                            });
                            let failed = result.is_err();
                            // A closed queue: the batch stopped reading (it failed elsewhere).
                            if tx.blocking_send(result).is_err() || failed {
                                return;
                            }
                            at = to;
                        }
                    })
                    .map_err(|e| ConnectorError::Io(format!("cannot start a kafka reader thread: {e}")))?;
                threads.push(thread);
                readers.push(Some(rx));
            }
            *self.readers.lock().expect("not poisoned") = threads;
            Ok::<_, ConnectorError>((readers, u64::try_from(records).ok()))
        };
        futures::stream::once(readers)
            .map_ok(move |(readers, records)| {
                // Each partition's chunks are numbered: a chunk's place is (partition's index
                // in the batch, chunk number), whatever order the partitions take turns in.
                let seqs = vec![0u32; readers.len()];
                futures::stream::unfold((readers, seqs, 0usize, records), move |(mut readers, mut seqs, mut turn, mut records)| async move {
                    // The next partition in turn that still has chunks.
                    while readers.iter().any(Option::is_some) {
                        let i = turn % readers.len();
                        turn += 1;
                        let Some(rx) = readers[i].as_mut() else { continue };
                        match rx.recv().await {
                            Some(result) => {
                                let place = crate::ChunkPlace { part: i as u32, seq: seqs[i] };
                                seqs[i] += 1;
                                let chunk = result
                                    .map(|(decoded, report)| {
                                        let mut chunk = self.take_report(decoded, report, place);
                                        // The first chunk says how many rows the read holds.
                                        chunk.rows_hint = records.take();
                                        chunk
                                    })
                                    .map_err(|e| match e {
                                        ConnectorError::BadData(m) => ConnectorError::BadData(format!("kafka source '{}': {m}", self.name)),
                                        other => other,
                                    });
                                return Some((chunk, (readers, seqs, turn, records)));
                            }
                            None => readers[i] = None,
                        }
                    }
                    None
                })
            })
            .try_flatten()
            .boxed()
    }

    async fn committed(&self, end: &Value) -> Result<()> {
        if self.config.group_id.is_none() {
            return Ok(());
        }
        let ends = self.parse(end)?;
        let consumer = self.consumer()?;
        blocking(move || consumer.commit(&ends)).await
    }
}

/// Decodes Kafka message values as a table with `declared` columns would, for fuzzing and
/// benchmarks: the number of good rows, and the bad records' errors. Never panics.
#[doc(hidden)]
pub fn decode_values(
    format: weir_sql::config::KafkaFormat,
    declared: Option<SchemaRef>,
    values: &[Option<&[u8]>],
) -> std::result::Result<(usize, usize), String> {
    let decoder = Decoder::new(format, b',', declared);
    let mut chunk = Chunk::new("fuzz", 0, decoder.with_headers);
    for (i, v) in values.iter().enumerate() {
        let m = rdkafka::message::OwnedMessage::new(
            v.map(<[u8]>::to_vec),
            None,
            "fuzz".into(),
            rdkafka::Timestamp::CreateTime(i as i64),
            0,
            i as i64,
            None,
        );
        chunk.push(&m);
    }
    let decoded = decoder.decode(&chunk, true)?;
    Ok((decoded.batches.iter().map(|b| b.num_rows()).sum(), decoded.bad.map_or(0, |b| b.num_rows())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(v: &[(&str, i32, i64)]) -> Offsets {
        v.iter().map(|(t, p, o)| ((t.to_string(), *p), *o)).collect()
    }

    #[test]
    fn offsets_round_trip_as_sparks_json() {
        let o = offsets(&[("events", 0, 23), ("events", 1, 40), ("other", 0, 0)]);
        let v = to_json(&o);
        assert_eq!(v.to_string(), r#"{"events":{"0":23,"1":40},"other":{"0":0}}"#);
        assert_eq!(parse_offsets(&v).unwrap(), o);
        assert!(parse_offsets(&json!({"events": {"x": 1}})).is_err());
    }

    #[test]
    fn rate_limit_shares_by_backlog() {
        let starts = offsets(&[("t", 0, 0), ("t", 1, 100), ("t", 2, 50)]);
        let latest = offsets(&[("t", 0, 300), ("t", 1, 200), ("t", 2, 50)]);
        let ends = rate_limit(&starts, &latest, Some(100));
        // Backlogs 300 and 100 of 400: 75 and 25.
        assert_eq!(ends, offsets(&[("t", 0, 75), ("t", 1, 125), ("t", 2, 50)]));
        assert!(held_back(&latest, &ends), "a backlog is left");
        assert_eq!(rate_limit(&starts, &latest, None), latest);
        assert!(!held_back(&latest, &rate_limit(&starts, &latest, None)), "caught up");
        assert!(!held_back(&latest, &rate_limit(&starts, &latest, Some(400))), "the limit takes it all");
        // A tiny share still moves the partition.
        let ends = rate_limit(&offsets(&[("t", 0, 0), ("t", 1, 0)]), &offsets(&[("t", 0, 10_000), ("t", 1, 1)]), Some(10));
        assert_eq!(ends, offsets(&[("t", 0, 9), ("t", 1, 1)]));
    }
}
