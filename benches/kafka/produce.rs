//! Produces events to a Kafka topic, fast, for the Kafka benchmarks.
//!
//!     kafka-produce BROKERS TOPIC EVENTS [FIRST] [PARTITIONS]
//!     kafka-produce BROKERS TOPIC --files PATH...
//!
//! The first form makes deterministic events (benches/kafka/run). Event i is
//! `{"event_id":"evt-<id>","user_id":<i % 100000>,"amount":<…>,"ts":"<2024-01-01 + i ms>"}`
//! on partition `i % PARTITIONS` (default 4), where id is i, except that every tenth event
//! repeats the id of the event 7 before it (10% duplicates, 7 ms apart). FIRST (default 0) is
//! the first i.
//!
//! The second form sends each non-empty line of newline-delimited JSON files as one message
//! (benches/e2e/kafka, with the files of benches/e2e/gen.py). A PATH that is a directory
//! stands for its files, by name, leaving out hidden ones. Each message is keyed by the
//! line's `event_id`, and the producer's partitioner puts equal keys on one partition: a
//! duplicate lands after its original, in the same partition, as a keyed producer would
//! send it in production.
//!
//! Prints the time taken and exits non-zero if any record was not delivered.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counts {}

impl ProducerContext for Counts {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Event `i` as one JSON line.
pub fn event(i: u64) -> String {
    let id = if i % 10 == 9 { i - 7 } else { i };
    let ts = chrono::DateTime::from_timestamp_millis(1_704_067_200_000 + i as i64).expect("in range");
    format!(
        r#"{{"event_id":"evt-{id:012}","user_id":{},"amount":{:.2},"ts":"{}"}}"#,
        i % 100_000,
        (i * 7919 % 100_000) as f64 / 100.0,
        ts.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
}

/// The string value of the top-level `"event_id"` field of a JSON line, found by a plain
/// scan: the benchmark's lines are flat objects, and a full parse would halve the rate.
fn event_id(line: &str) -> Option<&str> {
    let after = &line[line.find("\"event_id\"")? + "\"event_id\"".len()..];
    let value = after.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(&value[..value.find('"')?])
}

/// The files PATHS stand for: a file itself, a directory its non-hidden files by name.
fn input_files(paths: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if !path.is_dir() {
            files.push(path.to_path_buf());
            continue;
        }
        let mut inside = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| format!("cannot list {p}: {e}"))? {
            let entry = entry.map_err(|e| format!("cannot list {p}: {e}"))?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().map_err(|e| format!("cannot list {p}: {e}"))?.is_file() {
                inside.push(entry.path());
            }
        }
        if inside.is_empty() {
            return Err(format!("{p} is a directory with no file in it"));
        }
        inside.sort();
        files.extend(inside);
    }
    Ok(files)
}

struct Sender {
    producer: ThreadedProducer<Counts>,
    topic: String,
    sent: u64,
}

impl Sender {
    fn new(brokers: &str, topic: &str) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .create_with_context(Counts::default())
            .expect("producer");
        Self { producer, topic: topic.to_string(), sent: 0 }
    }

    /// Queues one record, waiting while librdkafka's queue is full. No partition: the
    /// partitioner hashes the key.
    fn send(&mut self, key: &str, value: &str, partition: Option<i32>) {
        let mut record = BaseRecord::to(&self.topic).payload(value).key(key);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("cannot produce to {}: {e}", self.topic),
            }
        }
        self.sent += 1;
    }

    /// Waits for every delivery report; the exit code says whether all arrived.
    #[allow(clippy::print_stdout, clippy::print_stderr)]
    fn finish(self, started: Instant) -> i32 {
        self.producer.flush(Duration::from_secs(120)).expect("flush");
        let ctx = self.producer.context();
        let (ok, failed) = (ctx.delivered.load(Ordering::Relaxed), ctx.failed.load(Ordering::Relaxed));
        let secs = started.elapsed().as_secs_f64();
        println!("produced {ok} events to {} in {secs:.1} s ({:.0}/s)", self.topic, ok as f64 / secs);
        if failed > 0 || ok != self.sent {
            eprintln!("{} of {} events were not delivered ({failed} failed)", self.sent - ok, self.sent);
            return 1;
        }
        0
    }
}

/// The first form: `EVENTS [FIRST] [PARTITIONS]`.
fn produce_generated(sender: &mut Sender, args: &[String]) {
    let events: u64 = args[0].parse().expect("EVENTS is a number");
    let first: u64 = args.get(1).map_or(0, |a| a.parse().expect("FIRST is a number"));
    let partitions: u64 = args.get(2).map_or(4, |a| a.parse().expect("PARTITIONS is a number"));
    for i in first..first + events {
        sender.send(&format!("{}", i % 100_000), &event(i), Some((i % partitions) as i32));
    }
}

/// The second form: every line of `files`, keyed by its event_id.
fn produce_lines(sender: &mut Sender, files: &[PathBuf]) -> Result<(), String> {
    for file in files {
        let shown = file.display();
        let reader = BufReader::with_capacity(1 << 20, File::open(file).map_err(|e| format!("cannot open {shown}: {e}"))?);
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| format!("{shown}:{}: cannot read: {e}", n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let key = event_id(&line).ok_or_else(|| format!("{shown}:{}: no \"event_id\" string field to key the message by", n + 1))?;
            sender.send(key, &line, None);
        }
    }
    Ok(())
}

#[allow(clippy::print_stderr)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: kafka-produce BROKERS TOPIC EVENTS [FIRST] [PARTITIONS]\n       kafka-produce BROKERS TOPIC --files PATH...";
    if args.len() < 3 || (args[2] == "--files" && args.len() < 4) {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let mut sender = Sender::new(&args[0], &args[1]);
    let started = Instant::now();
    if args[2] == "--files" {
        let outcome = input_files(&args[3..]).and_then(|files| produce_lines(&mut sender, &files));
        if let Err(e) = outcome {
            eprintln!("kafka-produce: {e}");
            std::process::exit(1);
        }
    } else {
        produce_generated(&mut sender, &args[2..]);
    }
    std::process::exit(sender.finish(started));
}

#[cfg(test)]
mod tests {
    use super::event_id;

    #[test]
    fn event_id_is_found_with_or_without_spaces() {
        assert_eq!(event_id(r#"{"event_id":"evt-1","ts":"x"}"#), Some("evt-1"));
        assert_eq!(event_id(r#"{"user_id": 3, "event_id" : "late-2"}"#), Some("late-2"));
        assert_eq!(event_id(r#"{"event_id": 7}"#), None);
        assert_eq!(event_id(r#"{"id":"a"}"#), None);
    }
}
