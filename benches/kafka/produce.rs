//! Produces deterministic JSON events to a Kafka topic, fast, for the Kafka benchmark.
//!
//!     kafka-produce BROKERS TOPIC EVENTS [FIRST] [PARTITIONS]
//!
//! Event i is `{"event_id":"evt-<id>","user_id":<i % 100000>,"amount":<…>,"ts":"<2024-01-01 + i ms>"}`
//! on partition `i % PARTITIONS` (default 4), where id is i, except that every tenth event
//! repeats the id of the event 7 before it (10% duplicates, 7 ms apart). FIRST (default 0) is
//! the first i. Prints the time taken and exits non-zero if any record was not delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

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

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: kafka-produce BROKERS TOPIC EVENTS [FIRST] [PARTITIONS]");
        std::process::exit(2);
    }
    let (brokers, topic) = (&args[0], &args[1]);
    let events: u64 = args[2].parse().expect("EVENTS is a number");
    let first: u64 = args.get(3).map_or(0, |a| a.parse().expect("FIRST is a number"));
    let partitions: u64 = args.get(4).map_or(4, |a| a.parse().expect("PARTITIONS is a number"));
    let producer: ThreadedProducer<Counts> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Counts::default())
        .expect("producer");
    let started = Instant::now();
    for i in first..first + events {
        let value = event(i);
        let key = format!("{}", i % 100_000);
        let mut record = BaseRecord::to(topic).payload(&value).key(&key).partition((i % partitions) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("cannot produce: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let ctx = producer.context();
    let (ok, failed) = (ctx.delivered.load(Ordering::Relaxed), ctx.failed.load(Ordering::Relaxed));
    let secs = started.elapsed().as_secs_f64();
    println!("produced {ok} events to {topic} in {secs:.1} s ({:.0}/s)", ok as f64 / secs);
    if failed > 0 || ok != events {
        eprintln!("{failed} events were not delivered");
        std::process::exit(1);
    }
}
