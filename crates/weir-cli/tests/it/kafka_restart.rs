//! The Kafka broker killed and started again while weir runs. The broker is durable (tansu
//! with S3 storage served by `moto_server`, see `support/kafka.rs`), so it comes back with
//! its topics and records. A running query must warn, wait and go on; a query started while
//! the broker is down must fail and name it; either way every event lands exactly once.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::kafka::*;
use crate::support::*;

/// How long one wait for weir may take before the test fails (a hang is a failure).
const LIMIT: Duration = Duration::from_secs(60);

const UNAVAILABLE: &str = "weir: warning: source 'events' is unavailable";
const REACHABLE: &str = "weir: warning: source 'events' is reachable again";

/// The script of both tests: every event of topic `events` (4 partitions, from the earliest
/// offset, `per_trigger` a batch) into the Delta table `out`, one row per message, so a
/// message read twice shows up twice. `connect_timeout` is short, so an outage is noticed
/// (and a start without a broker fails) within seconds. The consumer fetches little at a
/// time: otherwise librdkafka would have the whole backlog in memory before the broker goes
/// away, and the outage would only be seen between batches, never in the middle of a read.
fn script(broker: &Broker, per_trigger: u64) -> String {
    let options = format!(
        ", starting_offsets = 'earliest', max_offsets_per_trigger = '{per_trigger}',
         properties.max.partition.fetch.bytes = '65536', properties.queued.max.messages.kbytes = '64',
         properties.fetch.queue.backoff.ms = '10'"
    );
    events_script(broker, "events", "", &options, "out", "INSERT INTO out SELECT * FROM events;")
        .replace("connect_timeout = '5s'", "connect_timeout = '1s'")
}

/// Events `range` (event `n` to partition `n % 4`) in record batches of 50, so that the
/// consumer's small fetches (see [`script`]) each take a few of them.
fn send_events(broker: &Broker, range: std::ops::Range<u64>) {
    broker.send_in_batches("events", event_messages(range), 50);
}

/// `weir run p.sql --trigger <trigger> --progress human` in the background, its stderr in a
/// file; killed (SIGKILL) on drop.
struct Running {
    child: Option<Child>,
    log: PathBuf,
}

impl Running {
    fn start(dir: &Path, trigger: &str, name: &str) -> Self {
        let log = dir.join(format!("{name}.stderr"));
        let child = weir(dir)
            .args(["run", "p.sql", "--trigger", trigger, "--progress", "human"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child: Some(child), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Rows read so far: the sum of the `weir: batch N: R rows in` lines.
    fn rows_in(&self) -> u64 {
        self.log()
            .lines()
            .filter_map(|l| l.strip_prefix("weir: batch ")?.split_once(": ")?.1.split_once(" rows in")?.0.parse::<u64>().ok())
            .sum()
    }

    /// Waits until `ready` holds, failing the test if weir ends first or `LIMIT` passes.
    fn wait_for(&mut self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !ready(self) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weir ended ({status}) before {what}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {what} within {LIMIT:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that weir is still running.
    fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("weir ended ({status}) {when}; it should have waited for the broker:\n{}", self.log());
        }
    }

    /// SIGKILLs weir, which must still be running.
    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "weir was still running when killed: {status}\n{}", self.log());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- weir stderr ({}) ---\n{}", self.log.display(), self.log());
        }
    }
}

/// Checks the table after the last run: events `0..n` each exactly once, one commit per
/// batch with consecutive txn versions, and every committed batch in the table once.
fn assert_exactly_once(dir: &Path, n: u64, what: &str) {
    let table = DeltaView::read_columns(&dir.join("out"), &["event_id"]);
    let got = table.json["rows"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
    assert_each_once(got, ids(0..n), what);
    let checkpoint = dir.join(".weir/checkpoints/out");
    let commits = assert_consecutive_txns(&table, &checkpoint);
    assert_eq!(commits, batch_files(&checkpoint.join("commits")), "{what}: every committed batch is one Delta commit");
    assert_eq!(batch_files(&checkpoint.join("offsets")), commits, "{what}: no batch left without its commit");
}

/// The broker is SIGKILLed while a `--trigger 0s` query is working through a backlog (so in
/// the middle of reading a batch), stays away for a few seconds and comes back with its data:
/// the query warns, does not exit, goes on when the broker is back, and takes what was
/// produced after the restart. Then the same once more while the query is idle, caught up.
#[test]
fn kafka_broker_restart_mid_run_the_query_waits_and_goes_on() {
    const BEFORE: u64 = 12_000;
    const AFTER: u64 = 4_000;
    const LAST: u64 = 1_000;
    let mut broker = Broker::start_durable();
    broker.create_topic("events", EVENT_PARTITIONS);
    send_events(&broker, 0..BEFORE);
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), script(&broker, 1000)).unwrap();
    let commits = dir.join(".weir/checkpoints/out/commits");

    let mut run = Running::start(&dir, "0s", "weir");
    run.wait_for("two commits", |_| batch_files(&commits) >= 2);
    broker.stop();
    let down = Instant::now();
    let committed_at_stop = batch_files(&commits);
    run.wait_for("the unavailable warning", |r| r.log().contains(UNAVAILABLE));
    // Down for a few seconds: weir keeps retrying (with backoff), and does not give up.
    while down.elapsed() < Duration::from_secs(4) {
        run.assert_running("while the broker was down");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "broker down for {:?}; {committed_at_stop} batches committed when it stopped, {} when it came back",
        down.elapsed(),
        batch_files(&commits)
    );
    broker.start_again();
    send_events(&broker, BEFORE..BEFORE + AFTER);
    run.wait_for("the recovery message", |r| r.log().contains(REACHABLE));
    run.wait_for("every event", |r| r.rows_in() >= BEFORE + AFTER);
    let log = run.log();
    assert!(log.find(UNAVAILABLE) < log.find(REACHABLE), "the warning comes before the recovery:\n{log}");
    assert_eq!(run.rows_in(), BEFORE + AFTER, "each message read once:\n{log}");

    // Caught up and idle: the outage shows when the query next lists the topic's partitions
    // (every 5 seconds).
    let warnings = |r: &Running, what: &str| r.log().matches(what).count();
    let (unavailable, reachable) = (warnings(&run, UNAVAILABLE), warnings(&run, REACHABLE));
    broker.stop();
    run.wait_for("the second unavailable warning", |r| warnings(r, UNAVAILABLE) > unavailable);
    run.assert_running("while the broker was down again");
    broker.start_again();
    send_events(&broker, BEFORE + AFTER..BEFORE + AFTER + LAST);
    run.wait_for("the second recovery message", |r| warnings(r, REACHABLE) > reachable);
    run.wait_for("every event", |r| r.rows_in() >= BEFORE + AFTER + LAST);
    assert_eq!(run.rows_in(), BEFORE + AFTER + LAST, "each message read once:\n{}", run.log());
    run.kill();

    // A last run finds nothing left (or finishes a batch the kill interrupted).
    let out = run_within(&dir, "p.sql", &["--progress", "human"], LIMIT);
    assert_ok(&out);
    assert_exactly_once(&dir, BEFORE + AFTER + LAST, "after two broker restarts");
}

/// The broker goes away during an `available-now` run, which waits for it and is killed
/// there. A run started while the broker is down fails within `connect_timeout`, names the
/// broker and writes nothing. Once the broker is back, a run finishes the work exactly once.
#[test]
fn kafka_broker_down_at_start_fails_clearly_and_resumes_after_its_restart() {
    const BEFORE: u64 = 10_000;
    const AFTER: u64 = 2_000;
    let mut broker = Broker::start_durable();
    broker.create_topic("events", EVENT_PARTITIONS);
    send_events(&broker, 0..BEFORE);
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), script(&broker, 500)).unwrap();
    let checkpoint = dir.join(".weir/checkpoints/out");

    let mut run = Running::start(&dir, "available-now", "first");
    run.wait_for("two commits", |_| batch_files(&checkpoint.join("commits")) >= 2);
    broker.stop();
    run.wait_for("the unavailable warning", |r| r.log().contains(UNAVAILABLE));
    run.assert_running("after the broker went away");
    run.kill();
    let commits = batch_files(&checkpoint.join("commits"));
    let table_versions = DeltaView::read_columns(&dir.join("out"), &["event_id"]).commits().len();

    let started = Instant::now();
    let out = run_within(&dir, "p.sql", &[], LIMIT);
    let err = stderr(&out);
    assert!(!out.status.success(), "a start without the broker fails:\n{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "connect_timeout = '1s' bounds the wait: {:?}\n{err}", started.elapsed());
    assert!(err.contains(&broker.bootstrap()) && err.contains("connect_timeout"), "the error names the broker:\n{err}");
    assert_eq!(batch_files(&checkpoint.join("commits")), commits, "nothing committed without the broker");
    assert_eq!(DeltaView::read_columns(&dir.join("out"), &["event_id"]).commits().len(), table_versions, "nothing written");

    broker.start_again();
    send_events(&broker, BEFORE..BEFORE + AFTER);
    let out = run_within(&dir, "p.sql", &["--progress", "human"], LIMIT);
    assert_ok(&out);
    assert_exactly_once(&dir, BEFORE + AFTER, "after the broker came back");
}

/// The durable broker itself: topics, records and offsets survive a SIGKILL and a start on
/// the same port, and producing goes on at the next offset.
#[test]
fn kafka_durable_broker_keeps_its_data_across_restarts() {
    let mut broker = Broker::start_durable();
    broker.create_topic("keep", 2);
    let first = broker.send("keep", (0..100u64).map(|n| Message::value(event_json(n)).partition((n % 2) as i32)));
    let address = broker.bootstrap();
    broker.stop();
    assert!(!broker.is_running());
    broker.start_again();
    assert_eq!(broker.bootstrap(), address, "the same port");
    let second = broker.send("keep", (100..110u64).map(|n| Message::value(event_json(n)).partition((n % 2) as i32)));
    assert_eq!(second.iter().filter(|p| p.0 == 0).map(|p| p.1).min(), Some(50), "offsets go on after the restart");
    broker.restart();
    let read = broker.consume_all("keep", 2);
    for p in 0..2 {
        let want: Vec<(i64, Vec<u8>)> = first
            .iter()
            .chain(&second)
            .zip(0..110u64)
            .filter(|((partition, _), _)| *partition == p)
            .map(|((_, offset), n)| (*offset, event_json(n).into_bytes()))
            .collect();
        let got: Vec<(i64, Vec<u8>)> = read[&p].iter().map(|m| (m.offset, m.value.clone().unwrap())).collect();
        assert_eq!(got, want, "partition {p} after two restarts");
    }
}
