//! The librdkafka consumer of one Kafka source: explicit assignment, one queue per partition,
//! and reads of exact offset ranges.
//!
//! Every method blocks (librdkafka calls with timeouts); the source calls them from
//! `spawn_blocking`. Correctness never rests on what the broker's `ListOffsets` says about
//! the end of a partition (tansu, the test broker, gets it wrong after bulk produces): batch
//! ends come from what fetch responses carry, and reads stop by offset. librdkafka caches a
//! partition's high watermark (`rd_kafka_get_watermark_offsets`); its last stable offset,
//! the end of what a read_committed consumer gets, only reaches the application in the
//! statistics (`ls_offset`), which weir asks for every [`STATS_INTERVAL_MS`] under
//! read_committed. A thread of the consumer serves its main queue (errors, statistics).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, TopicPartitionList as Tpl};
use weir_sql::config::KafkaConfig;

use super::ends::{OnEof, OnRecord, RangeRead, readable_end};
use super::queue::{Polled, RecordQueue};
use super::records::{Chunk, Record};
use crate::error::{ConnectorError, Result};

/// A topic and partition.
pub(crate) type Tp = (String, i32);

/// `TopicPartition` display used in every message: `topic 'events' partition 2`.
pub(crate) fn tp_name(tp: &Tp) -> String {
    format!("topic '{}' partition {}", tp.0, tp.1)
}

/// How often librdkafka reports statistics under read_committed, for the last stable
/// offsets (`properties.statistics.interval.ms` may change it). A batch's end is at most this
/// much older than the newest fetch response. A report is a few KB (5.6 KB for one partition).
pub(crate) const STATS_INTERVAL_MS: u64 = 100;

/// Records taken off a partition's queue per poll: enough that the per-call costs (a lock
/// round, clock reads) vanish, few enough that the pointers stay in the L1 cache.
const POLL_RECORDS: usize = 1024;

/// Keeps librdkafka's last client-level error (broker down, authentication failed) so that
/// timeouts can say why, and each partition's last stable offset from the statistics.
#[derive(Default)]
pub(crate) struct Context {
    last_error: Mutex<Option<String>>,
    /// `ls_offset` of each partition in the newest statistics: under read_committed the last
    /// stable offset of its newest fetch response (the high watermark when the broker has
    /// none). Partitions not fetched yet are absent.
    stable: Mutex<HashMap<Tp, i64>>,
}

/// The part of librdkafka's statistics (STATISTICS.md) weir reads.
#[derive(serde::Deserialize)]
struct Stats {
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(serde::Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

#[derive(serde::Deserialize)]
struct PartitionStats {
    partition: i32,
    ls_offset: i64,
}

impl ClientContext for Context {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _fac: &str, _message: &str) {
        // librdkafka's own log lines may echo configuration; errors reach us via `error`.
    }

    fn error(&self, error: KafkaError, reason: &str) {
        *self.last_error.lock().expect("not poisoned") = Some(format!("{error} ({reason})"));
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let stats: Stats = match serde_json::from_slice(statistics) {
            Ok(stats) => stats,
            Err(e) => {
                *self.last_error.lock().expect("not poisoned") = Some(format!("unreadable librdkafka statistics: {e}"));
                return;
            }
        };
        let mut stable = self.stable.lock().expect("not poisoned");
        for (topic, t) in stats.topics {
            // Partition -1 is librdkafka's unassigned queue; -1001 means not fetched yet.
            for p in t.partitions.into_values().filter(|p| p.partition >= 0 && p.ls_offset >= 0) {
                stable.insert((topic.clone(), p.partition), p.ls_offset);
            }
        }
    }
}

impl ConsumerContext for Context {}

/// An assigned partition: its own queue (partitions are read in parallel) and where it is.
struct PartitionState {
    queue: RecordQueue,
    /// The offset the queue yields next; `None`: unknown, seek before reading.
    position: Option<i64>,
}

type Assignment = HashMap<Tp, Arc<Mutex<PartitionState>>>;

/// How a read of `[start, end)` went for one partition.
#[derive(Debug, Default)]
pub(crate) struct ReadReport {
    /// Offsets skipped because the broker no longer had them (`fail_on_data_loss = false`).
    pub lost: u64,
    /// What to tell the user about it.
    pub warnings: Vec<String>,
    /// Bytes of the keys and values read.
    pub bytes: u64,
}

/// Where a partition's log ends, as of the newest fetch responses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogEnd {
    /// The high watermark.
    pub high: i64,
    /// What the consumer can read up to: the high watermark, or with read_committed the last
    /// stable offset.
    pub readable: i64,
}

/// One source's consumer.
pub(crate) struct KafkaConsumer {
    consumer: Client,
    /// A `group_id` was given: the group gets each batch's end committed (asynchronously),
    /// so the client's destroy, which sends what is still queued, is waited for.
    commits_to_group: bool,
    /// `isolation.level = read_committed` (librdkafka's default): reads stop at the last
    /// stable offset, so batches do too.
    read_committed: bool,
    /// Serves the main queue until `stop`; partitions have queues of their own.
    server: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    assigned: Mutex<Assignment>,
    servers: String,
    fail_on_data_loss: bool,
    /// How long a read or a metadata call may make no progress before it is reported as
    /// the broker being unavailable.
    patience: Duration,
    /// How long EOF must hold before a gap at the end of a range is believed (see `read`).
    eof_grace: Duration,
}

impl KafkaConsumer {
    /// Creates the consumer; does not contact the broker yet.
    pub fn new(source: &str, config: &KafkaConfig) -> Result<Self> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.bootstrap_servers)
            // assign() needs a group id even though nothing is committed without `group_id`.
            .set("group.id", config.group_id.clone().unwrap_or_else(|| format!("weir-{source}")))
            .set("client.id", "weir")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "100")
            // librdkafka prefetches until a partition's queue holds this many messages or this
            // many KiB (defaults 100,000 and 65,536). With 100,000 messages, the fetch of a batch
            // of 125,000 offsets per partition stalled half way and every other batch waited for
            // the broker; at 500,000 the next batch is fetched while this one is processed and
            // committed (benches/e2e/kafka: 615,000 -> about 1,000,000 events/s). The byte cap
            // is halved, so that a topic of many partitions prefetches less memory than with
            // librdkafka's defaults, not more.
            .set("queued.min.messages", "500000")
            .set("queued.max.messages.kbytes", "32768")
            .set("socket.connection.setup.timeout.ms", config.connect_timeout.as_millis().max(1000).to_string())
            .set("reconnect.backoff.max.ms", "2000");
        let property = |key: &str| config.properties.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let read_committed = property("isolation.level") != Some("read_uncommitted");
        if read_committed {
            c.set("statistics.interval.ms", STATS_INTERVAL_MS.to_string());
            if property("statistics.interval.ms").is_some_and(|v| v.trim() == "0") {
                return Err(ConnectorError::Config(format!(
                    "kafka source '{source}': option 'properties.statistics.interval.ms' = '0' turns off librdkafka's statistics, \
                     which is where weir learns each partition's last stable offset under isolation.level = read_committed; \
                     leave it out (default {STATS_INTERVAL_MS} ms), or set 'properties.isolation.level' = 'read_uncommitted'"
                )));
            }
        }
        for (k, v) in &config.properties {
            c.set(k, v);
        }
        let fetch_wait = config
            .properties
            .iter()
            .find(|(k, _)| k == "fetch.wait.max.ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(100);
        let consumer: BaseConsumer<Context> = c.create_with_context(Context::default()).map_err(|e| config_error(source, e))?;
        let consumer = Client(Some(Arc::new(consumer)));
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopped) = (Arc::clone(&consumer), Arc::clone(&stop));
        // Statistics come every STATS_INTERVAL_MS and queue up until served, also while the
        // query waits for its next trigger.
        let server = std::thread::Builder::new()
            .name(format!("weir-kafka-{source}"))
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    drop(serving.poll(Duration::from_millis(50)));
                }
            })
            .map_err(|e| ConnectorError::Io(format!("kafka source '{source}': cannot start the consumer's thread: {e}")))?;
        Ok(Self {
            consumer,
            commits_to_group: config.group_id.is_some(),
            read_committed,
            server: Some(server),
            stop,
            assigned: Mutex::new(HashMap::new()),
            servers: config.bootstrap_servers.clone(),
            fail_on_data_loss: config.fail_on_data_loss,
            patience: config.connect_timeout,
            eof_grace: Duration::from_millis(fetch_wait * 2 + 50),
        })
    }

    fn last_error(&self) -> String {
        self.consumer.client().context().last_error.lock().expect("not poisoned").clone().unwrap_or_else(|| "no answer".into())
    }

    fn unavailable(&self, what: &str) -> ConnectorError {
        // librdkafka's error events (connection refused, all brokers down) say why.
        self.serve();
        ConnectorError::Unavailable(format!(
            "cannot reach the Kafka broker at {} within {:?} (option 'connect_timeout') {what}: {}",
            self.servers,
            self.patience,
            self.last_error()
        ))
    }

    /// The partitions of `topic`. A missing topic is an error of its own; an unreachable
    /// broker is `Unavailable` after `timeout`.
    pub fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>> {
        let metadata = match self.consumer.fetch_metadata(Some(topic), timeout) {
            Ok(m) => m,
            Err(KafkaError::MetadataFetch(code)) if !is_transport(&code) => {
                return Err(ConnectorError::Config(format!("kafka: metadata of topic '{topic}' on {}: {code}", self.servers)));
            }
            Err(_) => return Err(self.unavailable(&format!("to read the metadata of topic '{topic}'"))),
        };
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(self.missing_topic(topic));
        };
        match t.error() {
            None => {}
            Some(e) if matches!(RDKafkaErrorCode::from(e), RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                return Err(self.missing_topic(topic));
            }
            Some(e) => {
                return Err(ConnectorError::Unavailable(format!("kafka: topic '{topic}' on {}: {}", self.servers, RDKafkaErrorCode::from(e))));
            }
        }
        if t.partitions().is_empty() {
            return Err(self.missing_topic(topic));
        }
        let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        parts.sort_unstable();
        Ok(parts)
    }

    fn missing_topic(&self, topic: &str) -> ConnectorError {
        ConnectorError::Config(format!(
            "kafka: topic '{topic}' does not exist on {} (weir never creates topics; create it, or fix option 'topic')",
            self.servers
        ))
    }

    /// The earliest offset the broker still has (ListOffsets; used only for `earliest`).
    pub fn earliest(&self, tp: &Tp) -> Result<i64> {
        self.consumer
            .fetch_watermarks(&tp.0, tp.1, self.patience)
            .map(|(low, _)| low.max(0))
            .map_err(|_| self.unavailable(&format!("to find the earliest offset of {}", tp_name(tp))))
    }

    /// Makes the consumer fetch exactly `positions`' partitions, each from its offset. Keeps
    /// the current assignment when the set of partitions has not changed.
    pub fn assign(&self, positions: &BTreeMap<Tp, i64>) -> Result<()> {
        let mut assigned = self.assigned.lock().expect("not poisoned");
        if assigned.len() == positions.len() && positions.keys().all(|tp| assigned.contains_key(tp)) {
            return Ok(());
        }
        // Where a partition's queue already is, it stays there.
        let at: BTreeMap<Tp, i64> = positions
            .iter()
            .map(|(tp, &offset)| {
                let now = assigned.get(tp).and_then(|s| s.lock().expect("not poisoned").position);
                (tp.clone(), now.unwrap_or(offset))
            })
            .collect();
        let mut tpl = TopicPartitionList::new();
        for (tp, &offset) in &at {
            tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(offset))
                .map_err(|e| ConnectorError::Config(format!("kafka: cannot assign {}: {e}", tp_name(tp))))?;
        }
        assigned.clear();
        self.consumer.assign(&tpl).map_err(|e| ConnectorError::Unavailable(format!("kafka: assign failed: {e}")))?;
        for (tp, offset) in at {
            let queue = RecordQueue::split(&self.consumer, &tp)
                .ok_or_else(|| ConnectorError::Config(format!("kafka: no queue for {}", tp_name(&tp))))?;
            assigned.insert(tp, Arc::new(Mutex::new(PartitionState { queue, position: Some(offset) })));
        }
        Ok(())
    }

    /// The high watermark of `tp` as of the last fetch response (`None` before the first).
    pub fn cached_high_watermark(&self, tp: &Tp) -> Option<i64> {
        cached_watermarks(&self.consumer, tp).map(|(_, high)| high)
    }

    /// With read_committed, the last stable offset of `tp` in the newest statistics (`None`
    /// before the first after a fetch response); with read_uncommitted, `None`.
    fn stable_offset(&self, tp: &Tp) -> Option<i64> {
        if !self.read_committed {
            return None;
        }
        self.consumer.client().context().stable.lock().expect("not poisoned").get(tp).copied()
    }

    /// Where `tp`'s log ends, as far as fetch responses have told (`None` before they have).
    pub fn cached_end(&self, tp: &Tp) -> Option<LogEnd> {
        let high = self.cached_high_watermark(tp)?;
        let stable = match self.stable_offset(tp) {
            None if self.read_committed => return None,
            stable => stable,
        };
        Some(LogEnd { high, readable: readable_end(high, stable) })
    }

    /// Waits until every assigned partition has had a fetch response (and under
    /// read_committed, statistics after one), then returns where each partition's log ends.
    pub fn ends(&self, tps: &[Tp], timeout: Duration) -> Result<BTreeMap<Tp, LogEnd>> {
        let started = Instant::now();
        loop {
            self.serve();
            let found: BTreeMap<Tp, LogEnd> = tps.iter().filter_map(|tp| self.cached_end(tp).map(|e| (tp.clone(), e))).collect();
            if found.len() == tps.len() {
                return Ok(found);
            }
            if started.elapsed() >= timeout {
                let waiting: Vec<String> = tps.iter().filter(|tp| !found.contains_key(*tp)).map(tp_name).collect();
                return Err(self.unavailable(&format!("to fetch from {}", waiting.join(", "))));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Serves librdkafka's main queue (errors, callbacks); partitions have their own queues.
    fn serve(&self) {
        while let Some(r) = self.consumer.poll(Duration::ZERO) {
            drop(r);
        }
    }

    /// Appends the records of `tp` in `[start, end)` to `chunk`. Offsets inside the range may
    /// be missing (compacted topics, transaction markers, aborted transactions); records are
    /// never read twice or beyond `end`. The stop rule is [`RangeRead`]'s.
    pub fn read(&self, tp: &Tp, start: i64, end: i64, chunk: &mut Chunk) -> Result<ReadReport> {
        let mut report = ReadReport::default();
        let state = self.assigned.lock().expect("not poisoned").get(tp).map(Arc::clone);
        let state = state.ok_or_else(|| ConnectorError::Config(format!("kafka: {} is not assigned", tp_name(tp))))?;
        let mut guard = state.lock().expect("not poisoned");
        let PartitionState { queue, position } = &mut *guard;
        // Dropped (its records destroyed) when the read returns: nothing of librdkafka's is
        // held between reads, and a consumer is never destroyed with records out.
        let polled = &mut Polled::with_capacity(POLL_RECORDS);
        let mut range = RangeRead::new(start, end);
        if *position != Some(start) {
            *position = None;
            self.seek(tp, start)?;
        }
        // A partition-EOF event may be stale (queued when the fetcher reached an older end,
        // before records we have not polled yet). An EOF is believed only when it is the first
        // thing the queue yields after a seek to the position: then the consumer has nothing
        // for us from there to where it stopped, and `RangeRead::eof` says whether that covers
        // the range. Under read_committed it may not (a transaction is open): then wait until
        // the records come, or the last stable offset known passes the end and a new seek
        // checks again.
        let mut eof_at: Option<Instant> = None;
        let mut verifying: Option<Option<i64>> = None; // Some(the LSO known at the seek)
        let mut waiting: Option<i64> = None; // Some(the LSO the consumer stopped at)
        let mut last_progress = Instant::now();
        'reading: while !range.done() {
            // No more than the range's offsets left: without gaps in the range, a poll never
            // takes a record of the next range off the queue.
            let left = usize::try_from(end - range.pos).unwrap_or(usize::MAX);
            queue.poll(Duration::from_millis(10), left, polled);
            if polled.len() == 0 {
                // An EOF to check, or (waiting) an LSO known to be past the end now.
                let check = eof_at.is_some_and(|t| t.elapsed() >= self.eof_grace)
                    || (waiting.is_some() && self.stable_offset(tp).is_some_and(|s| s >= end));
                if check {
                    (eof_at, waiting) = (None, None);
                    // After the seek the consumer stops at the position or later.
                    let known = self.read_committed.then(|| self.stable_offset(tp).map_or(range.pos, |s| s.max(range.pos)));
                    verifying = Some(known);
                    self.seek(tp, range.pos)?;
                }
                if last_progress.elapsed() >= self.patience {
                    *position = None;
                    return Err(match waiting {
                        Some(stable) => self.open_transaction(tp, stable, end),
                        None => self.unavailable(&format!("to read {} from offset {} to {end}", tp_name(tp), range.pos)),
                    });
                }
                continue;
            }
            let mut took = false;
            for i in 0..polled.len() {
                if range.done() {
                    // A gap before the range's end: what follows in `polled` is the queue's
                    // next range, taken off it.
                    *position = None;
                    return Ok(report);
                }
                match polled.get(i) {
                    Ok(m) => {
                        match range.record(m.offset()) {
                            OnRecord::Stale => continue,
                            OnRecord::Past => {
                                // A gap straddled the range's end: the queue has moved on.
                                *position = None;
                                return Ok(report);
                            }
                            OnRecord::Take => chunk.push(&m),
                        }
                        took = true;
                        eof_at = None;
                        verifying = None;
                        waiting = None;
                    }
                    Err(KafkaError::PartitionEOF(_)) => {
                        let Some(stable_at_seek) = verifying.take() else {
                            eof_at.get_or_insert_with(Instant::now);
                            continue;
                        };
                        let high = self.cached_high_watermark(tp).unwrap_or(range.pos);
                        match range.eof(high, stable_at_seek) {
                            OnEof::Gap => {
                                if i + 1 < polled.len() {
                                    // Taken past the EOF: the queue is not at `end`.
                                    *position = None;
                                    return Ok(report);
                                }
                                break 'reading;
                            }
                            OnEof::Wait { stable } => waiting = Some(stable),
                            OnEof::Lost { available } => {
                                let why = "the broker's log ends before the checkpoint's offsets";
                                self.data_loss(tp, range.pos, available, end, why, &mut report)?;
                                *position = None;
                                return Ok(report);
                            }
                        }
                    }
                    Err(KafkaError::MessageConsumption(code))
                        if matches!(code, RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset) =>
                    {
                        let pos = range.pos;
                        let (earliest, latest) = self
                            .consumer
                            .fetch_watermarks(&tp.0, tp.1, self.patience)
                            .map_err(|_| self.unavailable(&format!("to find the offsets of {}", tp_name(tp))))?;
                        if pos > latest {
                            self.data_loss(tp, pos, latest, end, "the broker's log ends before the checkpoint's offsets", &mut report)?;
                            *position = None;
                            return Ok(report);
                        }
                        if earliest <= pos {
                            *position = None;
                            return Err(ConnectorError::Unavailable(format!("kafka: {} offset {pos}: {code}", tp_name(tp))));
                        }
                        self.data_loss(tp, pos, earliest, end, "the offsets were removed from the broker (retention?)", &mut report)?;
                        range.pos = earliest.min(end);
                        if !range.done() {
                            self.seek(tp, range.pos)?;
                        }
                        (eof_at, verifying, waiting) = (None, None, None);
                        last_progress = Instant::now();
                        // The rest of `polled` was fetched before the seek.
                        continue 'reading;
                    }
                    Err(e) => {
                        // Transient fetch errors: librdkafka retries by itself, within patience.
                        *self.consumer.client().context().last_error.lock().expect("not poisoned") = Some(e.to_string());
                        if last_progress.elapsed() >= self.patience {
                            *position = None;
                            return Err(self.unavailable(&format!("to read {} from offset {} to {end}", tp_name(tp), range.pos)));
                        }
                    }
                }
            }
            if took {
                last_progress = Instant::now();
            }
        }
        *position = Some(end);
        Ok(report)
    }

    /// A read that waited `connect_timeout` for a transaction below its end: retried with
    /// backoff by the batch loop, which says so.
    fn open_transaction(&self, tp: &Tp, stable: i64, end: i64) -> ConnectorError {
        ConnectorError::Unavailable(format!(
            "kafka: {}: this batch ends at offset {end}, but the last stable offset is {stable}: a transaction that is \
             still open holds the offsets in between (the batch was planned past it, by an earlier weir or under \
             isolation.level = read_uncommitted); waiting for its producer to commit or abort it",
            tp_name(tp)
        ))
    }

    /// Moves `tp`'s fetch position; its queue drops what it had fetched.
    fn seek(&self, tp: &Tp, offset: i64) -> Result<()> {
        let started = Instant::now();
        loop {
            match self.consumer.seek(&tp.0, tp.1, Offset::Offset(offset), Duration::from_secs(5)) {
                Ok(()) => break,
                Err(_) if started.elapsed() < self.patience => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(ConnectorError::Unavailable(format!("kafka: cannot seek {} to offset {offset}: {e}", tp_name(tp)))),
            }
        }
        Ok(())
    }

    /// Offsets `[wanted, available)` are gone: an error, or (`fail_on_data_loss = false`) a
    /// warning and a count.
    fn data_loss(&self, tp: &Tp, wanted: i64, available: i64, end: i64, why: &str, report: &mut ReadReport) -> Result<()> {
        let message = format!(
            "kafka: {}: wanted offset {wanted}, but the broker has {}: {why}",
            tp_name(tp),
            if available > wanted { format!("nothing before offset {available}") } else { format!("nothing from offset {available} on") }
        );
        if self.fail_on_data_loss {
            return Err(ConnectorError::BadData(format!(
                "{message}; set fail_on_data_loss = 'false' to skip lost offsets and go on"
            )));
        }
        let lost = if available > wanted { available.min(end) - wanted } else { end - wanted } as u64;
        report.lost += lost;
        report.warnings.push(format!("{message}; skipped {lost} offsets (fail_on_data_loss = false)"));
        Ok(())
    }

    /// Commits `ends` to the consumer group (for lag monitoring only).
    pub fn commit(&self, ends: &BTreeMap<Tp, i64>) -> Result<()> {
        let mut tpl = Tpl::new();
        for (tp, &o) in ends {
            tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(o))
                .map_err(|e| ConnectorError::Config(format!("kafka: {e}")))?;
        }
        self.consumer.commit(&tpl, CommitMode::Async).map_err(|e| ConnectorError::Unavailable(format!("kafka: group commit: {e}")))
    }
}

/// The librdkafka client, shared with the thread serving its main queue and with the
/// partitions' queues; taken out when the consumer is dropped (see there).
struct Client(Option<Arc<BaseConsumer<Context>>>);

impl std::ops::Deref for Client {
    type Target = Arc<BaseConsumer<Context>>;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("taken only when dropped")
    }
}

impl Drop for KafkaConsumer {
    /// Stops the thread serving the main queue, then destroys the client, the partitions'
    /// queues first. Both wait: the thread for its poll (up to 50 ms), librdkafka's destroy
    /// for its own threads to wind down (about 80 ms more here); a run over Kafka spent
    /// 130 ms in this drop after its last batch, where a run over files exits in 10. Unless
    /// the group gets commits, a thread of its own does it and nothing waits for it: the
    /// client holds nothing the query needs (its batches are committed by then), and a
    /// process that exits meanwhile (`weir run` after its last batch) ends the destroy as
    /// a crash would, losing nothing. With `group_id` the destroy sends the last batch's
    /// group commit, still queued, so it is waited for.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let server = self.server.take();
        let assigned = std::mem::take(&mut *self.assigned.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let client = self.consumer.0.take();
        let close = move || {
            if let Some(server) = server {
                let _ = server.join();
            }
            drop(assigned);
            drop(client);
        };
        match self.commits_to_group {
            true => close(),
            // Were the thread not to start, the closure would be dropped with the error,
            // and the client destroyed here, the serving thread left to end on its own.
            false => drop(std::thread::Builder::new().name("weir-kafka-close".into()).spawn(close)),
        }
    }
}

/// librdkafka's cached low and high watermarks of `tp`, as of the last fetch response. The
/// rdkafka crate has no safe wrapper for `rd_kafka_get_watermark_offsets`.
#[allow(unsafe_code)]
fn cached_watermarks(consumer: &BaseConsumer<Context>, tp: &Tp) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(tp.0.as_str()).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; `topic` is a valid C string
    // for the call, and librdkafka only writes the two i64 out-parameters.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(consumer.client().native_ptr(), topic.as_ptr(), tp.1, &mut low, &mut high)
    };
    (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

fn is_transport(code: &RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
    )
}

/// The error of a consumer librdkafka refused to create. Secrets are kept out by field:
/// librdkafka's message about a setting may quote its value, so for a secret setting only
/// its name is given. No other message weir writes holds a setting's value, so none is
/// searched for secrets (which mangled messages that happened to contain a short secret).
fn config_error(source: &str, e: rdkafka::error::KafkaError) -> ConnectorError {
    let message = match &e {
        rdkafka::error::KafkaError::ClientConfig(_, _, key, _) if weir_sql::config::is_secret_property(key) => {
            format!("kafka source '{source}': librdkafka refused 'properties.{key}' (a secret: its value is not shown)")
        }
        rdkafka::error::KafkaError::ClientConfig(_, description, key, _) => {
            format!("kafka source '{source}': librdkafka refused 'properties.{key}': {description}")
        }
        other => format!("kafka source '{source}': bad consumer settings: {other}"),
    };
    ConnectorError::Config(message)
}

#[cfg(test)]
mod tests {
    use weir_sql::config::ConnectorConfig;
    use weir_sql::{Statement, parse_script};

    use super::*;

    fn config(properties: &str) -> KafkaConfig {
        let sql = format!(
            "CREATE TABLE t (v STRING) WITH (connector = 'kafka', bootstrap_servers = '127.0.0.1:9', topic = 't', \
             format = 'json'{properties})"
        );
        let Some(Statement::CreateTable(table)) = parse_script(&sql).unwrap().into_iter().next() else { panic!("a CREATE TABLE") };
        match ConnectorConfig::from_table(&table).unwrap() {
            ConnectorConfig::Kafka(config) => config,
            other => panic!("a kafka config, not {other:?}"),
        }
    }

    #[test]
    fn isolation_level_decides_where_reads_stop() {
        // The consumer is created without contacting the broker.
        let consumer = KafkaConsumer::new("t", &config("")).unwrap();
        assert!(consumer.read_committed, "librdkafka's default, read_committed");
        let consumer = KafkaConsumer::new("t", &config(", properties.isolation.level = 'read_uncommitted'")).unwrap();
        assert!(!consumer.read_committed);
        assert_eq!(consumer.stable_offset(&("t".into(), 0)), None, "read_uncommitted never waits for a last stable offset");
        // read_committed learns last stable offsets from the statistics: they cannot be off.
        let err = KafkaConsumer::new("t", &config(", properties.statistics.interval.ms = '0'")).err().expect("refused");
        assert!(err.to_string().contains("'properties.statistics.interval.ms' = '0'"), "{err}");
        KafkaConsumer::new("t", &config(", properties.statistics.interval.ms = '0', properties.isolation.level = 'read_uncommitted'"))
            .unwrap();
    }

    #[test]
    fn statistics_give_each_partitions_last_stable_offset() {
        let context = Context::default();
        // An excerpt of librdkafka's statistics: partition -1 is its unassigned queue, and
        // -1001 an offset not known yet.
        let stats = br#"{"name": "weir#consumer-1", "topics": {"t": {"topic": "t", "partitions": {
            "0": {"partition": 0, "hi_offset": 7, "ls_offset": 2, "eof_offset": 2},
            "1": {"partition": 1, "hi_offset": -1001, "ls_offset": -1001},
            "-1": {"partition": -1, "hi_offset": -1001, "ls_offset": -1001}}}}}"#;
        context.stats_raw(stats);
        assert_eq!(*context.stable.lock().unwrap(), HashMap::from([(("t".to_string(), 0), 2)]));
        context.stats_raw(br#"{"topics": {"t": {"partitions": {"0": {"partition": 0, "ls_offset": 8}}}}}"#);
        assert_eq!(context.stable.lock().unwrap()[&("t".to_string(), 0)], 8);
        context.stats_raw(b"not json");
        assert!(context.last_error.lock().unwrap().as_deref().is_some_and(|e| e.contains("unreadable librdkafka statistics")));
    }
}
