//! The Kafka source end to end: a real broker (tansu) per test, messages produced with
//! rdkafka, the real `weir` binary, and the Delta table read back by the independent reader.
//! Expected rows come from what the test produced (and where the producer says each message
//! landed), never from the broker's offsets.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::Timestamp;
use serde_json::Value;

use crate::support::kafka::*;
use crate::support::*;

/// How long one `weir run` may take before the test fails (a hang is a failure).
const LIMIT: Duration = Duration::from_secs(120);

/// The progress objects in a run's stderr (`--progress json`): lines that are JSON with a
/// `batchId`.
fn progress(out: &std::process::Output) -> Vec<Value> {
    stderr(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("batchId").is_some())
        .collect()
}

/// Checks that `offsets` is Spark's Kafka offsets object `{"topic": {"0": 12, "1": 7, …}}`
/// naming every partition of `topic`, and returns the sum of the offsets.
fn offsets_total(offsets: &Value, topic: &str, partitions: i32, what: &str) -> i64 {
    let shape = || format!("{what} should look like {{\"{topic}\": {{\"0\": 12, \"1\": 7, …}}}}, not {offsets}");
    let topics = offsets.as_object().unwrap_or_else(|| panic!("{}", shape()));
    assert_eq!(topics.keys().collect::<Vec<_>>(), [topic], "{}", shape());
    let by_partition = topics[topic].as_object().unwrap_or_else(|| panic!("{}", shape()));
    let mut names: Vec<i32> = by_partition.keys().map(|p| p.parse().unwrap_or_else(|_| panic!("{}", shape()))).collect();
    names.sort_unstable();
    assert_eq!(names, (0..partitions).collect::<Vec<_>>(), "{}", shape());
    by_partition.values().map(|o| o.as_i64().unwrap_or_else(|| panic!("{}", shape()))).sum()
}

/// Checks the progress of one run of a plain (one row per message) query over `topic`:
/// batch ids from `first_batch` on, at most `cap` rows each, each batch starting where the
/// previous one ended (`start` before the first); returns the last end (sum of offsets).
fn check_progress(progress: &[Value], topic: &str, partitions: i32, first_batch: u64, start: i64, cap: i64) -> i64 {
    let mut end_before = start;
    for (i, p) in progress.iter().enumerate() {
        let batch = first_batch + i as u64;
        assert_eq!(p["batchId"], batch, "{p}");
        let rows = p["numInputRows"].as_i64().unwrap();
        assert!(rows <= cap, "batch {batch}: {rows} rows, above max_offsets_per_trigger {cap}");
        let source = &p["sources"][0];
        // Spark leaves startOffset null in a query's very first batch.
        if !(batch == 0 && source["startOffset"].is_null()) {
            let begin = offsets_total(&source["startOffset"], topic, partitions, &format!("batch {batch} startOffset"));
            assert_eq!(begin, end_before, "batch {batch} starts where batch {} ended", batch as i64 - 1);
        }
        let end = offsets_total(&source["endOffset"], topic, partitions, &format!("batch {batch} endOffset"));
        assert_eq!(end - end_before, rows, "batch {batch} has one row per offset of its range");
        offsets_total(&source["latestOffset"], topic, partitions, &format!("batch {batch} latestOffset"));
        end_before = end;
    }
    end_before
}

#[test]
fn kafka_available_now_batches_and_exactly_once() {
    let broker = Broker::start();
    broker.create_topic("events", EVENT_PARTITIONS);
    broker.send("events", event_messages(0..200_000));
    let (_tmp, dir) = scratch();
    let options = ", starting_offsets = 'earliest', max_offsets_per_trigger = '50000'";
    std::fs::write(dir.join("p.sql"), events_script(&broker, "events", "", options, "out", "INSERT INTO out SELECT * FROM events;"))
        .unwrap();

    let out = run_within(&dir, "p.sql", &["--progress", "json"], Duration::from_secs(300));
    assert_ok(&out);
    let first = progress(&out);
    assert!(first.len() >= 4, "200,000 messages at 50,000 per trigger make at least 4 batches:\n{}", stderr(&out));
    let end = check_progress(&first, "events", EVENT_PARTITIONS, 0, 0, 50_000);
    assert_eq!(end, 200_000, "the last batch ends at the end of every partition");
    let table = DeltaView::read_columns(&dir.join("out"), &["event_id"]);
    let got = |t: &DeltaView| t.json["rows"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
    assert_each_once(got(&table), ids(0..200_000), "after the first run");
    let checkpoint = dir.join(".weir/checkpoints/out");
    assert_eq!(assert_consecutive_txns(&table, &checkpoint), first.len(), "one Delta commit per batch");

    // New messages are taken by the next run, and only they. Before it runs, `weir
    // checkpoint show` tells the lag: the new messages, across the partitions.
    broker.send("events", event_messages(200_000..300_000));
    let show = weir(&dir).args(["checkpoint", "show"]).arg(&checkpoint).args(["--json", "--bootstrap-servers", &broker.bootstrap()]).output().unwrap();
    assert_ok(&show);
    let report: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(report["kafkaLag"]["events"]["total"], 100_000, "{report}");
    assert_eq!(report["kafkaLag"]["events"]["partitions"].as_array().unwrap().len(), EVENT_PARTITIONS as usize, "{report}");
    let text = weir(&dir).args(["checkpoint", "show"]).arg(&checkpoint).args(["--bootstrap-servers", &broker.bootstrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("kafka lag    events: 100000 (events-0 "), "{}", stderr(&text));
    let out = run_within(&dir, "p.sql", &["--progress", "json"], Duration::from_secs(300));
    assert_ok(&out);
    let second = progress(&out);
    assert!(second.len() >= 2, "100,000 messages at 50,000 per trigger:\n{}", stderr(&out));
    let start = offsets_total(&second[0]["sources"][0]["startOffset"], "events", EVENT_PARTITIONS, "second run's startOffset");
    assert_eq!(start, 200_000, "the second run starts where the first ended");
    let end = check_progress(&second, "events", EVENT_PARTITIONS, first.len() as u64, 200_000, 50_000);
    assert_eq!(end, 300_000);
    let table = DeltaView::read_columns(&dir.join("out"), &["event_id"]);
    assert_each_once(got(&table), ids(0..300_000), "after the second run");
    assert_eq!(assert_consecutive_txns(&table, &checkpoint), first.len() + second.len());

    // Nothing new: nothing written.
    assert_ok(&run_within(&dir, "p.sql", &[], LIMIT));
    assert_eq!(DeltaView::read_columns(&dir.join("out"), &["event_id"]).commits().len(), first.len() + second.len());
}

/// Starts `weir run p.sql --trigger available-now` in `dir`, waits until `ready` holds for
/// the checkpoint, SIGKILLs it, and checks the kill landed mid-run.
fn kill_when(dir: &Path, what: &str, ready: impl Fn(&Path) -> bool) {
    let checkpoint = dir.join(".weir/checkpoints/out");
    let log = dir.join(format!("killed-{}.stderr", what.replace(' ', "-")));
    let mut child = weir(dir)
        .args(["run", "p.sql", "--trigger", "available-now", "--progress", "human"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    while !ready(&checkpoint) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("weir ended ({status}) before {what}; the workload is too short:\n{}", std::fs::read_to_string(&log).unwrap());
        }
        assert!(Instant::now() < deadline, "no {what} within {LIMIT:?}:\n{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the kill {what} landed mid-run: {status}\n{}", std::fs::read_to_string(&log).unwrap());
}

#[test]
fn kafka_sigkill_mid_run_exactly_once() {
    let broker = Broker::start();
    broker.create_topic("events", EVENT_PARTITIONS);
    broker.send("events", event_messages(0..100_000));
    let (_tmp, dir) = scratch();
    let options = ", starting_offsets = 'earliest', max_offsets_per_trigger = '5000'";
    std::fs::write(dir.join("p.sql"), events_script(&broker, "events", "", options, "out", "INSERT INTO out SELECT * FROM events;"))
        .unwrap();

    // Killed once two batches have committed, then again while a later batch is in flight
    // (its offsets written, its commit not yet).
    kill_when(&dir, "after two commits", |cp| batch_files(&cp.join("commits")) >= 2);
    let committed = batch_files(&dir.join(".weir/checkpoints/out/commits"));
    kill_when(&dir, "in a batch", |cp| {
        let commits = batch_files(&cp.join("commits"));
        commits > committed && batch_files(&cp.join("offsets")) > commits
    });

    let out = run_within(&dir, "p.sql", &["--progress", "json"], LIMIT);
    assert_ok(&out);
    let table = DeltaView::read_columns(&dir.join("out"), &["event_id"]);
    let got = table.json["rows"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
    assert_each_once(got, ids(0..100_000), "after two kills and a restart");
    let checkpoint = dir.join(".weir/checkpoints/out");
    let commits = assert_consecutive_txns(&table, &checkpoint);
    assert_eq!(commits, batch_files(&checkpoint.join("commits")), "every batch committed to Delta once");
    assert!(commits >= 20, "100,000 messages at 5,000 per trigger: {commits} batches");
}

#[test]
fn kafka_starting_offsets() {
    let broker = Broker::start();
    broker.create_topic("t", 2);
    let produce = |range: std::ops::Range<u64>| {
        let positions = broker.send("t", range.clone().map(|n| Message::value(event_json(n)).partition((n % 2) as i32)));
        range.zip(positions).collect::<Vec<(u64, (i32, i64))>>()
    };
    let mut landed = produce(0..20);
    let (_tmp, dir) = scratch();
    let insert = |sink: &str| format!("INSERT INTO {sink} SELECT * FROM events;");
    let cases = [
        ("out_earliest", ", starting_offsets = 'earliest'"),
        ("out_latest", ", starting_offsets = 'latest'"),
        ("out_default", ""),
        ("out_explicit", r#", starting_offsets = '{"t":{"0":3,"1":-2}}'"#),
    ];
    for (sink, options) in cases {
        std::fs::write(dir.join(format!("{sink}.sql")), events_script(&broker, "t", "", options, sink, &insert(sink))).unwrap();
    }
    let table_ids = |sink: &str| -> Vec<String> {
        if dir.join(sink).join("_delta_log").exists() { string_column(&dir.join(sink), "event_id") } else { Vec::new() }
    };
    // From offset 3 in partition 0, from the start (-2) in partition 1.
    let explicit = |landed: &[(u64, (i32, i64))]| -> Vec<String> {
        ids(landed.iter().filter(|(_, (p, o))| *p == 1 || *o >= 3).map(|(n, _)| *n))
    };

    for (sink, _) in cases {
        assert_ok(&run_within(&dir, &format!("{sink}.sql"), &[], LIMIT));
    }
    assert_each_once(table_ids("out_earliest"), ids(0..20), "earliest");
    assert_each_once(table_ids("out_latest"), [], "'latest' reads nothing that was there at its first start");
    assert_each_once(table_ids("out_default"), [], "the default is 'latest'");
    assert_each_once(table_ids("out_explicit"), explicit(&landed), "explicit offsets {\"t\":{\"0\":3,\"1\":-2}}");

    // The start positions were fixed by the first run: each query now takes exactly the new
    // messages.
    landed.extend(produce(20..30));
    for (sink, _) in cases {
        assert_ok(&run_within(&dir, &format!("{sink}.sql"), &[], LIMIT));
    }
    assert_each_once(table_ids("out_earliest"), ids(0..30), "earliest, second run");
    assert_each_once(table_ids("out_latest"), ids(20..30), "latest, second run: only what came after the first");
    assert_each_once(table_ids("out_default"), ids(20..30), "default, second run");
    assert_each_once(table_ids("out_explicit"), explicit(&landed), "explicit, second run");
}

#[test]
fn kafka_malformed_message_names_position() {
    let broker = Broker::start();
    broker.create_topic("bad", 2);
    broker.send("bad", (0..10u64).map(|n| Message::value(event_json(n)).partition((n % 2) as i32)));
    let (_tmp, dir) = scratch();
    let insert = |sink: &str| format!("INSERT INTO {sink} SELECT * FROM events;");
    std::fs::write(dir.join("fail.sql"), events_script(&broker, "bad", "", ", starting_offsets = 'earliest'", "out", &insert("out")))
        .unwrap();
    let dead_letter = ", starting_offsets = 'earliest', on_bad_row = 'dead_letter', dead_letter_path = 'dlq'";
    std::fs::write(dir.join("dl.sql"), events_script(&broker, "bad", "", dead_letter, "out_dl", &insert("out_dl"))).unwrap();
    assert_ok(&run_within(&dir, "fail.sql", &[], LIMIT));
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids(0..10), "batch 0");

    // Partition 1 gets two good messages, a bad one, and two more; partition 0 two good ones.
    let bad = br#"{"event_id":"e99","user_id":"#;
    let messages = [
        Message::value(event_json(10)).partition(1),
        Message::value(event_json(11)).partition(1),
        Message::value(&bad[..]).partition(1),
        Message::value(event_json(12)).partition(1),
        Message::value(event_json(13)).partition(1),
        Message::value(event_json(14)).partition(0),
        Message::value(event_json(15)).partition(0),
    ];
    let positions = broker.send("bad", messages);
    assert_eq!(positions[2], (1, 7), "the bad message's position");

    for attempt in ["first", "second"] {
        let out = run_within(&dir, "fail.sql", &[], LIMIT);
        assert!(!out.status.success(), "{attempt} run over a malformed message must fail:\n{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("topic 'bad' partition 1 offset 7"), "{attempt} run: the error names the message's position:\n{err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one clear message:\n{err}");
        let table = DeltaView::read(&dir.join("out"));
        assert_eq!(table.commits().len(), 1, "the failed batch committed nothing");
        assert_each_once(string_column(&dir.join("out"), "event_id"), ids(0..10), "only batch 0");
    }

    // With a dead-letter table the run goes on: good rows land once, the bad one in 'dlq'.
    for attempt in ["first", "second"] {
        assert_ok(&run_within(&dir, "dl.sql", &[], LIMIT));
        assert_each_once(string_column(&dir.join("out_dl"), "event_id"), ids(0..16), &format!("{attempt} dead-letter run"));
        let dlq = DeltaView::read(&dir.join("dlq"));
        let columns = dlq.json["columns"].as_array().unwrap();
        for c in ["topic", "partition", "offset", "timestamp", "key", "value", "error", "batch_id"] {
            assert!(columns.iter().any(|have| have == c), "dead-letter column '{c}' in {columns:?}");
        }
        let rows = dlq.json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{attempt} dead-letter run: the bad message once: {rows:?}");
        let row = &rows[0];
        assert_eq!(row["topic"], "bad", "{row}");
        assert_eq!(row["partition"], 1, "{row}");
        assert_eq!(row["offset"], 7, "{row}");
        assert!(row["key"].is_null(), "{row}");
        let value = row["value"].as_str().unwrap_or_default();
        assert!(value == String::from_utf8_lossy(bad) || value == base64(bad), "the message's value as sent: {row}");
        assert!(!row["error"].as_str().unwrap_or_default().is_empty(), "the error says what is wrong: {row}");
        assert!(row["batch_id"].is_i64(), "{row}");
    }
}

#[test]
fn kafka_dedup_distinct_on_with_watermark() {
    let broker = Broker::start();
    broker.create_topic("events", EVENT_PARTITIONS);
    // 20,000 events; every tenth is sent again 1,000 messages later, to the next partition.
    const N: u64 = 20_000;
    let resend = |n: u64| n % 10 == 3;
    let mut messages = Vec::new();
    for n in 0..N + 1000 {
        if n < N {
            messages.extend(event_messages(n..n + 1));
        }
        if n >= 1000 && resend(n - 1000) {
            let again = n - 1000;
            messages.push(Message::value(event_json(again)).partition(((again + 1) % EVENT_PARTITIONS as u64) as i32));
        }
    }
    let sent = messages.len() as u64;
    assert_eq!(sent, N + N / 10);
    broker.send("events", messages);
    let (_tmp, dir) = scratch();
    let watermark = ",\n WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE";
    let options = ", starting_offsets = 'earliest', max_offsets_per_trigger = '5000'";
    let query = "INSERT INTO out SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, ts;";
    std::fs::write(dir.join("p.sql"), events_script(&broker, "events", watermark, options, "out", query)).unwrap();

    let out = run_within(&dir, "p.sql", &["--progress", "json"], LIMIT);
    assert_ok(&out);
    let progress = progress(&out);
    assert!(progress.len() >= 4, "{sent} messages at 5,000 per trigger:\n{}", stderr(&out));
    let (mut rows_in, mut dups, mut late) = (0, 0, 0);
    for p in &progress {
        rows_in += p["numInputRows"].as_u64().unwrap();
        let op = &p["stateOperators"][0];
        dups += op["customMetrics"]["numDroppedDuplicateRows"].as_u64().unwrap();
        late += op["numRowsDroppedByWatermark"].as_u64().unwrap();
    }
    assert_eq!(rows_in, sent);
    assert_eq!(late, 0, "every event is within the watermark delay");
    assert_eq!(dups, N / 10, "every re-sent event is dropped");
    let table = DeltaView::read(&dir.join("out"));
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids(0..N), "deduplicated events");
    assert_consecutive_txns(&table, &dir.join(".weir/checkpoints/out"));
}

#[test]
fn kafka_unreachable_broker_and_missing_topic() {
    let (_tmp, dir) = scratch();
    // Nothing listens on a port just freed.
    let closed = free_port();
    std::fs::write(
        dir.join("down.sql"),
        format!(
            "CREATE TABLE events (event_id STRING)
             WITH (connector = 'kafka', bootstrap_servers = '127.0.0.1:{closed}', topic = 'events',
                   format = 'json', connect_timeout = '2s');
             CREATE TABLE out_down WITH (connector = 'delta', path = 'out_down');
             INSERT INTO out_down SELECT * FROM events;"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = run_within(&dir, "down.sql", &[], Duration::from_secs(60));
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success(), "an unreachable broker is an error:\n{err}");
    assert!(took < Duration::from_secs(15), "connect_timeout = '2s' bounds the wait, but weir took {took:?}:\n{err}");
    assert!(err.contains(&format!("127.0.0.1:{closed}")), "the error names the broker:\n{err}");
    assert!(err.contains("connect_timeout"), "the error names the option that bounds the wait:\n{err}");
    assert!(!dir.join("out_down/_delta_log").exists(), "nothing was written");

    let broker = Broker::start();
    broker.create_topic("events", 1);
    let script = |topic: &str| {
        let query = "INSERT INTO out_missing SELECT * FROM events;";
        events_script(&broker, topic, "", ", starting_offsets = 'earliest'", "out_missing", query)
    };
    std::fs::write(dir.join("missing.sql"), script("no_such_topic")).unwrap();
    let out = run_within(&dir, "missing.sql", &[], Duration::from_secs(60));
    let err = stderr(&out);
    assert!(!out.status.success(), "a missing topic is an error:\n{err}");
    assert!(err.contains("no_such_topic") && err.contains("does not exist"), "the error names the topic:\n{err}");
    assert!(!dir.join("out_missing/_delta_log").exists(), "nothing was written");
}

/// Milliseconds since the epoch of an RFC 3339 / ISO 8601 UTC time as the reader prints it
/// (`2024-01-01T00:00:01.007000+00:00`, `…Z`, or without a zone).
fn parse_ms(text: &str) -> i64 {
    let bad = || -> ! { panic!("not a UTC time: {text}") };
    let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| bad());
    let bare = text.strip_suffix("+00:00").or_else(|| text.strip_suffix('Z')).unwrap_or(text);
    let Some((date, time)) = bare.split_once(['T', ' ']) else { bad() };
    let d: Vec<i64> = date.split('-').map(num).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(num).collect();
    if d.len() != 3 || t.len() != 3 {
        bad();
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let ms = num(&format!("{frac:0<3}")[..3]);
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms
}

#[test]
fn kafka_metadata_columns() {
    assert_eq!(parse_ms("2024-01-01T00:00:01.007000+00:00"), EPOCH_2024_MS + 1007);
    let broker = Broker::start();
    broker.create_topic("m", 3);
    let created = |n: u64| EPOCH_2024_MS + 3_600_000 + n as i64 * 1000 + 7;
    let messages: Vec<Message> = (0..30u64)
        .map(|n| {
            let m = Message::value(event_json(n)).partition((n % 3) as i32).timestamp(created(n));
            if n % 10 == 5 { m } else { m.key(format!("k{n}")) }
        })
        .collect();
    let positions = broker.send("m", messages);
    let (_tmp, dir) = scratch();
    let columns = ",
       part INT METADATA FROM 'partition',
       off BIGINT METADATA FROM 'offset',
       k STRING METADATA FROM 'key',
       tp STRING METADATA FROM 'topic',
       kts TIMESTAMP METADATA FROM 'timestamp'";
    std::fs::write(
        dir.join("p.sql"),
        events_script(&broker, "m", columns, ", starting_offsets = 'earliest'", "out", "INSERT INTO out SELECT * FROM events;"),
    )
    .unwrap();
    assert_ok(&run_within(&dir, "p.sql", &[], LIMIT));

    let table = DeltaView::read(&dir.join("out"));
    assert_eq!(
        table.json["columns"],
        serde_json::json!(["event_id", "user_id", "amount", "ts", "part", "off", "k", "tp", "kts"])
    );
    let rows = table.json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 30);
    for row in rows {
        let n: u64 = row["event_id"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(row["user_id"], n % 1000, "{row}");
        assert_eq!(row["amount"].as_f64(), Some(event_amount(n)), "{row}");
        assert_eq!(parse_ms(row["ts"].as_str().unwrap()), EPOCH_2024_MS + n as i64, "{row}");
        let (partition, offset) = positions[n as usize];
        assert_eq!(row["part"], partition, "{row}");
        assert_eq!(row["off"], offset, "{row}");
        if n % 10 == 5 {
            assert!(row["k"].is_null(), "no key, NULL: {row}");
        } else {
            assert_eq!(row["k"], format!("k{n}"), "{row}");
        }
        assert_eq!(row["tp"], "m", "{row}");
        assert_eq!(parse_ms(row["kts"].as_str().unwrap()), created(n), "the record's timestamp: {row}");
    }
}

#[test]
fn kafka_raw_format() {
    let broker = Broker::start();
    broker.create_topic("r", 2);
    let created = |n: u64| EPOCH_2024_MS + n as i64 * 1000;
    let messages: Vec<Message> = (0..10u64)
        .map(|n| {
            let mut m = Message::value(format!("v{n}, not JSON")).partition((n % 2) as i32).timestamp(created(n));
            if n != 3 {
                m = m.key(format!("k{n}"));
            }
            if n % 2 == 0 {
                m = m.header("trace", format!("t{n}")).header("n", vec![n as u8]);
            }
            m
        })
        .collect();
    let positions = broker.send("r", messages);
    let (_tmp, dir) = scratch();
    let source = format!(
        "CREATE TABLE raw_events WITH (connector = 'kafka', bootstrap_servers = '{}', topic = 'r', format = 'raw',
           starting_offsets = 'earliest', connect_timeout = '5s', properties.fetch.wait.max.ms = '50');",
        broker.bootstrap()
    );
    // OFFSET is reserved in DataFusion's SQL: the column is written "offset" in a query.
    std::fs::write(
        dir.join("v.sql"),
        format!(
            "{source}
             CREATE TABLE out_v WITH (connector = 'delta', path = 'out_v');
             INSERT INTO out_v SELECT CAST(value AS STRING) AS v, partition, \"offset\" FROM raw_events;"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("all.sql"),
        format!(
            "{source}
             CREATE TABLE out_all WITH (connector = 'delta', path = 'out_all');
             INSERT INTO out_all SELECT * FROM raw_events;"
        ),
    )
    .unwrap();
    assert_ok(&run_within(&dir, "v.sql", &[], LIMIT));
    assert_ok(&run_within(&dir, "all.sql", &[], LIMIT));

    let mut want: Vec<String> = (0..10u64)
        .map(|n| {
            let (partition, offset) = positions[n as usize];
            serde_json::json!({"v": format!("v{n}, not JSON"), "partition": partition, "offset": offset}).to_string()
        })
        .collect();
    want.sort();
    assert_eq!(DeltaView::read(&dir.join("out_v")).rows(), want);

    let table = DeltaView::read(&dir.join("out_all"));
    assert_eq!(
        table.json["columns"],
        serde_json::json!(["key", "value", "topic", "partition", "offset", "timestamp", "timestamp_type", "headers"])
    );
    let rows = table.json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    for row in rows {
        let value = row["value"].as_str().unwrap();
        let n = (0..10u64).find(|n| base64(format!("v{n}, not JSON").as_bytes()) == value).unwrap_or_else(|| {
            panic!("value is the message's bytes (base64 in the reader): {row}")
        });
        let (partition, offset) = positions[n as usize];
        if n == 3 {
            assert!(row["key"].is_null(), "{row}");
        } else {
            assert_eq!(row["key"], base64(format!("k{n}").as_bytes()), "{row}");
        }
        assert_eq!(row["topic"], "r", "{row}");
        assert_eq!(row["partition"], partition, "{row}");
        assert_eq!(row["offset"], offset, "{row}");
        assert_eq!(parse_ms(row["timestamp"].as_str().unwrap()), created(n), "{row}");
        assert_eq!(row["timestamp_type"], 0, "CreateTime: {row}");
        let headers = row["headers"].to_string();
        if n % 2 == 0 {
            for part in ["\"trace\"", &base64(format!("t{n}").as_bytes()), "\"n\"", &base64(&[n as u8])] {
                assert!(headers.contains(part), "headers hold {part}: {row}");
            }
        } else {
            assert!(row["headers"].is_null() || row["headers"] == serde_json::json!([]), "no headers: {row}");
        }
    }
}

/// The harness itself: topics, produce and consume against the broker, and a restart.
#[test]
fn kafka_broker_harness_smoke() {
    let mut broker = Broker::start();
    broker.create_topic("smoke", EVENT_PARTITIONS);
    let started = Instant::now();
    let positions = broker.send("smoke", event_messages(0..1000));
    eprintln!("produced 1000 messages in {:?}", started.elapsed());
    let read = broker.consume_all("smoke", EVENT_PARTITIONS);
    for p in 0..EVENT_PARTITIONS {
        let got: Vec<(i64, Vec<u8>)> = read[&p].iter().map(|m| (m.offset, m.value.clone().unwrap())).collect();
        let want: Vec<(i64, Vec<u8>)> = (0..1000u64)
            .filter(|n| n % EVENT_PARTITIONS as u64 == p as u64)
            .map(|n| {
                assert_eq!(positions[n as usize].0, p);
                (positions[n as usize].1, event_json(n).into_bytes())
            })
            .collect();
        assert_eq!(got, want, "partition {p} holds its events in order, at the offsets the producer reported");
        assert_eq!(got.iter().map(|m| m.0).collect::<Vec<_>>(), (0..250).collect::<Vec<_>>(), "offsets 0..250");
    }

    // Keys, headers and timestamps round-trip, and `produce` sends to the partition given.
    let mut messages = vec![Message::value("a").key("ka").header("h", "hv").timestamp(EPOCH_2024_MS + 5).partition(1)];
    messages.push(Message::value("b").partition(1));
    broker.create_topic("meta", 2);
    let positions = broker.send("meta", messages);
    assert_eq!(positions, [(1, 0), (1, 1)]);
    let landed = broker.produce("meta", Some(0), [(Some(b"k".to_vec()), b"c".to_vec()), (None, b"d".to_vec())]);
    assert_eq!(landed, [(0, 0), (0, 1)]);
    let read = broker.consume_all("meta", 2);
    let a = &read[&1][0];
    assert_eq!(
        (a.key.as_deref(), a.value.as_deref(), a.timestamp, a.headers.clone()),
        (Some(&b"ka"[..]), Some(&b"a"[..]), Timestamp::CreateTime(EPOCH_2024_MS + 5), vec![("h".to_string(), b"hv".to_vec())])
    );
    assert_eq!(read[&1][1].key, None);
    assert_eq!(read[&0].iter().map(|m| m.value.clone().unwrap()).collect::<Vec<_>>(), [b"c".to_vec(), b"d".to_vec()]);

    // A restarted broker listens on the same address again (empty: in-memory storage).
    let address = broker.bootstrap();
    broker.restart();
    assert_eq!(broker.bootstrap(), address);
    broker.create_topic("smoke", 1);
    broker.produce("smoke", None, (0..10).map(|i| (None, vec![i])));
    assert_eq!(broker.consume_all("smoke", 1)[&0].len(), 10);
    broker.stop();
}

/// A topic deleted and created again has offsets below the checkpoint's: with the default
/// `fail_on_data_loss` the query stops and names topic, partition, wanted and available
/// offsets; with `false` it warns, waits for the log to pass the checkpoint, and goes on.
#[test]
fn kafka_data_loss_when_the_topic_is_recreated() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    broker.send("t", (0..10).map(|n| Message::value(event_json(n))));
    let (_tmp, dir) = scratch();
    let script = |options: &str| events_script(&broker, "t", "", options, "out", "INSERT INTO out SELECT * FROM events;");
    std::fs::write(dir.join("p.sql"), script(", starting_offsets = 'earliest'")).unwrap();
    assert_ok(&run_within(&dir, "p.sql", &[], LIMIT));
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids(0..10), "before the topic is re-created");

    broker.delete_topic("t");
    broker.create_topic("t", 1);
    broker.send("t", (100..103).map(|n| Message::value(event_json(n))));
    let out = run_within(&dir, "p.sql", &[], LIMIT);
    assert!(!out.status.success(), "a log behind the checkpoint must stop the query:\n{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("topic 't' partition 0: the checkpoint is at offset 10 but the broker's log ends at 3")
            && err.contains("fail_on_data_loss = 'false'"),
        "{err}"
    );

    std::fs::write(dir.join("p.sql"), script(", starting_offsets = 'earliest', fail_on_data_loss = 'false'")).unwrap();
    let out = run_within(&dir, "p.sql", &[], LIMIT);
    assert_ok(&out);
    assert!(stderr(&out).contains("weir: warning: source 'events': kafka: topic 't' partition 0: the checkpoint is at offset 10"), "{}", stderr(&out));
    // Offsets 3..10 of the new log are behind the checkpoint and skipped; 10.. are read.
    broker.send("t", (103..115).map(|n| Message::value(event_json(n))));
    assert_ok(&run_within(&dir, "p.sql", &[], LIMIT));
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids((0..10).chain(110..115)), "after going on");
}

/// A broker that stops answering mid-run: the query warns, retries, and goes on when the
/// broker is back, with every message exactly once.
#[test]
fn kafka_broker_pause_is_retried_and_the_query_goes_on() {
    let broker = Broker::start();
    broker.create_topic("t", 2);
    broker.send("t", (0..100).map(|n| Message::value(event_json(n)).partition((n % 2) as i32)));
    let (_tmp, dir) = scratch();
    let script = events_script(&broker, "t", "", ", starting_offsets = 'earliest'", "out", "INSERT INTO out SELECT * FROM events;");
    std::fs::write(dir.join("p.sql"), script.replace("connect_timeout = '5s'", "connect_timeout = '1s'")).unwrap();
    let log = dir.join("weir.stderr");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = weir(&dir)
        .args(["run", "p.sql", "--trigger", "0s", "--metrics-addr", &addr])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let wait_for = |what: &str, ready: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if ready(&text) {
                return;
            }
            assert!(Instant::now() < deadline, "no {what} within 60 s:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("first batch", &|t| t.contains("weir: batch 0:"));
    broker.pause();
    wait_for("warning", &|t| t.contains("weir: warning: source 'events' is unavailable"));
    broker.resume();
    broker.send("t", (100..150).map(|n| Message::value(event_json(n)).partition((n % 2) as i32)));
    wait_for("recovery", &|t| t.contains("weir: warning: source 'events' is reachable again"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("out/_delta_log").exists() || string_column(&dir.join("out"), "event_id").len() < 150 {
        assert!(Instant::now() < deadline, "the new messages never landed:\n{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The outage in the metrics: attempts made again, and the time it lasted.
    let scraped = crate::metrics::scrape(&addr);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(crate::metrics::sample(&scraped, "weir_source_retries_total", &["query=out"]) >= 1.0, "{scraped}");
    assert!(crate::metrics::sample(&scraped, "weir_source_unavailable_seconds_total", &["query=out"]) > 0.5, "{scraped}");
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids(0..150), "after the pause");
}

/// With `group_id`, each batch's end offsets are committed to the group (for lag tools), and
/// weir still starts from its checkpoint, not from the group.
#[test]
fn kafka_group_id_gets_each_batch_end() {
    let broker = Broker::start();
    broker.create_topic("t", 2);
    broker.send("t", (0..30).map(|n| Message::value(event_json(n)).partition((n % 2) as i32)));
    let (_tmp, dir) = scratch();
    let options = ", starting_offsets = 'earliest', group_id = 'lag-watch', max_offsets_per_trigger = '10'";
    std::fs::write(dir.join("p.sql"), events_script(&broker, "t", "", options, "out", "INSERT INTO out SELECT * FROM events;"))
        .unwrap();
    assert_ok(&run_within(&dir, "p.sql", &[], LIMIT));
    assert_eq!(broker.committed("lag-watch", "t", 2), [Some(15), Some(15)]);
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids(0..30), "with a group id");
}

/// Every file under `dir`, read as text (lossy), for searching.
fn all_text_under(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Values of secret-looking `properties.*` never show: not in errors, progress JSON, nor
/// anywhere in the checkpoint.
#[test]
fn kafka_secret_properties_are_never_shown() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    broker.send("t", (0..10).map(|n| Message::value(event_json(n))));
    let (_tmp, dir) = scratch();
    // librdkafka accepts these with PLAINTEXT and does not use them: the query runs.
    let secrets = ", starting_offsets = 'earliest', properties.ssl.key.password = 'hunter2-key', properties.sasl.password = 'hunter2-sasl', properties.sasl.username = 'hunter2-user'";
    std::fs::write(dir.join("p.sql"), events_script(&broker, "t", "", secrets, "out", "INSERT INTO out SELECT * FROM events;")).unwrap();
    let out = run_within(&dir, "p.sql", &["--progress", "json"], LIMIT);
    assert_ok(&out);
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    assert!(!all_text_under(&dir.join(".weir")).contains("hunter2"), "a secret reached the checkpoint");

    // An error that involves the security settings.
    let port = free_port();
    let failing = events_script(&broker, "t", "", secrets, "out2", "INSERT INTO out2 SELECT * FROM events;")
        .replace(&broker.bootstrap(), &format!("127.0.0.1:{port}"))
        .replace("connect_timeout = '5s'", "connect_timeout = '1s', properties.security.protocol = 'SASL_PLAINTEXT', properties.sasl.mechanism = 'PLAIN'");
    std::fs::write(dir.join("q.sql"), failing).unwrap();
    let out = run_within(&dir, "q.sql", &[], LIMIT);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("127.0.0.1:{port}")), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));

    // A one-letter secret does not mangle the message: secrets are kept out by field, not
    // searched for in the text.
    std::fs::write(dir.join("u.sql"), std::fs::read_to_string(dir.join("q.sql")).unwrap().replace("'hunter2-user'", "'u'").replace("out2", "out3")).unwrap();
    let out = run_within(&dir, "u.sql", &[], LIMIT);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("(option 'connect_timeout')"), "{}", stderr(&out));

    // A secret setting librdkafka refuses (this build has no OAUTHBEARER OIDC) is named, its
    // value not shown.
    let refused = events_script(&broker, "t", "", ", properties.sasl.oauthbearer.client.secret = 'hunter2-oauth'", "out4", "INSERT INTO out4 SELECT * FROM events;");
    std::fs::write(dir.join("r.sql"), refused).unwrap();
    let out = run_within(&dir, "r.sql", &[], LIMIT);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("librdkafka refused 'properties.sasl.oauthbearer.client.secret' (a secret: its value is not shown)"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

/// The JSON source `events` on topic `t` from its start, with `options`, into Delta table `sink`.
fn txn_script(broker: &Broker, options: &str, sink: &str) -> String {
    let options = format!(", starting_offsets = 'earliest'{options}");
    events_script(broker, "t", "", &options, sink, &format!("INSERT INTO {sink} SELECT * FROM events;"))
}

/// Events `range`, event `n` to partition `n % 2`.
fn two_partitions(range: std::ops::Range<u64>) -> impl Iterator<Item = Message> {
    range.map(|n| Message::value(event_json(n)).partition((n % 2) as i32))
}

/// Events `range`, all to partition 0.
fn partition_0(range: std::ops::Range<u64>) -> impl Iterator<Item = Message> {
    range.map(|n| Message::value(event_json(n)).partition(0))
}

#[test]
fn kafka_batches_end_at_the_last_stable_offset() {
    let broker = Broker::start();
    broker.create_topic("t", 2);
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("committed.sql"), txn_script(&broker, "", "out")).unwrap();
    let uncommitted = ", properties.isolation.level = 'read_uncommitted'";
    std::fs::write(dir.join("uncommitted.sql"), txn_script(&broker, uncommitted, "out_u")).unwrap();

    // Partition 0: e0-e18 (even), then an open transaction e20-e29 at offsets 10-19 (its last
    // stable offset is 10), then e30-e38 (even). Partition 1 has no transaction: e1-e39 (odd).
    broker.send("t", two_partitions(0..20));
    let upstream = broker.transactional_producer("upstream");
    upstream.begin();
    let in_txn = upstream.send("t", partition_0(20..30));
    assert_eq!(in_txn.first(), Some(&(0, 10)), "the transaction starts at offset 10 of partition 0");
    broker.send("t", two_partitions(30..40));
    let odd = |range: std::ops::Range<u64>| range.filter(|n| n % 2 == 1).collect::<Vec<u64>>();

    let out = run_within(&dir, "committed.sql", &["--progress", "json"], LIMIT);
    assert_ok(&out);
    let batches = progress(&out);
    let end = &batches.last().expect("a batch ran")["sources"][0]["endOffset"]["t"];
    let ends = (&end["0"], &end["1"]);
    assert_eq!(ends, (&Value::from(10), &Value::from(15)), "partition 0 ends at its last stable offset, partition 1 at its end: {end}");
    let readable: Vec<u64> = (0..20).chain(odd(30..40)).collect();
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids(readable.clone()), "while the transaction is open");

    // read_uncommitted reads to the high watermark, the open transaction included, as before.
    assert_ok(&run_within(&dir, "uncommitted.sql", &[], LIMIT));
    assert_each_once(string_column(&dir.join("out_u"), "event_id"), ids(0..40), "read_uncommitted");

    // Committed: the next run takes the transaction and what follows it, each once.
    upstream.commit();
    assert_ok(&run_within(&dir, "committed.sql", &[], LIMIT));
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids(0..40), "after the commit");

    // Aborted: e40-e49 in a transaction, e50-e59 written while it is open, then aborted, then
    // e60-e69. The run completes its ranges across the abort marker.
    upstream.begin();
    upstream.send("t", partition_0(40..50));
    broker.send("t", two_partitions(50..60));
    upstream.abort();
    broker.send("t", two_partitions(60..70));
    assert_ok(&run_within(&dir, "committed.sql", &[], LIMIT));
    let got = string_column(&dir.join("out"), "event_id");
    let aborted = ids(40..50);
    let seen_aborted = got.iter().filter(|id| aborted.contains(id)).count();
    eprintln!("records of the aborted transaction read: {seen_aborted} of {}", aborted.len());
    // Kafka lists aborted transactions in fetch responses and librdkafka drops their records;
    // tansu 0.6.0 lists none, so they come through (docs/kafka-research.md). Either way, once.
    let expected: Vec<u64> = if seen_aborted == 0 { (0..40).chain(50..70).collect() } else { (0..70).collect() };
    assert_each_once(got, ids(expected), "after the abort");
}

#[test]
fn kafka_replay_past_an_open_transaction_waits_for_it() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let (_tmp, dir) = scratch();
    broker.send("t", partition_0(0..10));
    let upstream = broker.transactional_producer("upstream");
    upstream.begin();
    upstream.send("t", partition_0(10..20));
    broker.send("t", partition_0(20..30));

    // Batch 0 planned under read_uncommitted, past the last stable offset (10), and not run:
    // what an earlier weir, which planned every batch at the high watermark, left behind.
    let uncommitted = ", properties.isolation.level = 'read_uncommitted'";
    std::fs::write(dir.join("p.sql"), txn_script(&broker, uncommitted, "out")).unwrap();
    crash_at(&dir, "after_offsets", 0, LIMIT);
    let planned: Value = serde_json::from_slice(&std::fs::read(dir.join(".weir/checkpoints/out/offsets/0.json")).unwrap()).unwrap();
    assert_eq!(planned["sources"]["events"]["end"]["t"]["0"], 30, "batch 0 ends at the high watermark: {planned}");

    // Replayed under read_committed, it stops at the open transaction and waits: it neither
    // skips [10, 30) nor finishes before the commit. The wait outlasts connect_timeout (5 s),
    // so the batch loop retries the read and says why.
    std::fs::write(dir.join("p.sql"), txn_script(&broker, "", "out")).unwrap();
    let log = dir.join("replay.stderr");
    let mut child = weir(&dir)
        .args(["run", "p.sql", "--trigger", "available-now"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    let early = child.try_wait().unwrap();
    if early.is_some() {
        let table = if dir.join("out/_delta_log").exists() { string_column(&dir.join("out"), "event_id") } else { Vec::new() };
        panic!("the replay ended ({early:?}) with the transaction still open, with {table:?}:\n{}", std::fs::read_to_string(&log).unwrap());
    }
    upstream.commit();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the replay did not end within {LIMIT:?} of the commit:\n{}", std::fs::read_to_string(&log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the replay failed ({status}):\n{stderr}");
    assert!(
        stderr.contains("this batch ends at offset 30, but the last stable offset is 10: a transaction that is still open"),
        "the wait is reported:\n{stderr}"
    );
    assert_each_once(string_column(&dir.join("out"), "event_id"), ids(0..30), "batch 0 replayed after the commit");
}
