//! `weir run` end to end: real files in, a real Delta table out, read back by Python
//! `deltalake` (an independent reader), across runs, bad input and competing runners.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

#[test]
fn file_to_delta_exactly_once_across_runs() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    for (n, range) in [(1, 0..50), (2, 50..100), (3, 100..150)] {
        write_file(&dir.join("in/events"), &format!("{n:03}.json"), &events(range));
    }
    let out = run(&dir, "p.sql", &["--progress", "json"]);
    assert_ok(&out);
    let progress: Vec<Value> =
        stderr(&out).lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(progress.len(), 3, "one progress line per batch:\n{}", stderr(&out));
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["batchId"], i as u64);
        assert_eq!(p["numInputRows"], 50);
        assert_eq!(p["sink"]["numOutputRows"], 25);
        assert!(p["durationMs"]["triggerExecution"].is_u64());
        assert_eq!(p["sources"][0]["endOffset"]["logOffset"], i as u64);
    }

    // A second run with nothing new commits nothing.
    assert_ok(&run(&dir, "p.sql", &[]));
    // New files are taken by the next run, and only they.
    write_file(&dir.join("in/events"), "004.json", &events(150..200));
    write_file(&dir.join("in/events"), "005.json", &events(200..230));
    // Hidden and underscore files are never read.
    write_file(&dir.join("in/events"), "_SUCCESS", &[]);
    write_file(&dir.join("in/events"), ".006.json.tmp", &events(300..310));
    // A batch whose rows are all filtered out commits nothing to Delta.
    let odd: Vec<String> = events(230..240).into_iter().skip(1).step_by(2).collect();
    write_file(&dir.join("in/events"), "006.json", &odd);
    write_file(&dir.join("in/events"), "007.json", &events(240..250));
    assert_ok(&run(&dir, "p.sql", &[]));

    let table = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(table.rows(), expected_rows((0..230).chain(240..250)));
    let id = query_id(&dir.join(".weir/checkpoints/clean"));
    let commits = table.commits();
    assert_eq!(commits.len(), 6, "one Delta commit per non-empty batch:\n{commits:#?}");
    for (n, c) in commits.iter().enumerate() {
        let txns = c["txns"].as_array().unwrap();
        assert_eq!(txns.len(), 1, "commit {n} carries one txn");
        assert_eq!(txns[0]["appId"], id.as_str());
        // Batch 5 (file 006) wrote nothing, so table version 5 holds batch 6.
        let batch = if n < 5 { n } else { n + 1 };
        assert_eq!(txns[0]["version"], batch as u64, "table version {n} holds batch {batch}");
        assert!(!c["adds"].as_array().unwrap().is_empty());
    }
}

#[test]
fn ctrl_c_stops_after_the_batch_in_flight() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    let child = weir(&dir)
        .args(["run", "p.sql", "--trigger", "0s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join(".weir/checkpoints/clean/commits/0.json").exists() {
        assert!(Instant::now() < deadline, "batch 0 never committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a requested stop exits 0:\n{}", stderr(&out));
    assert!(stderr(&out).contains("stopping after the batch in flight"), "{}", stderr(&out));
    assert_eq!(DeltaView::read(&dir.join("out/clean")).rows(), expected_rows(0..10));
}

/// SIGTERM (an orchestrator's stop) in the middle of a batch: the batch completes, the
/// process exits 0, and the next run runs nothing again.
#[test]
fn sigterm_mid_batch_stops_after_the_batch() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    // Big enough for the batch to take a while in a debug build.
    write_file(&dir.join("in/events"), "001.json", &events(0..400_000));
    let child = weir(&dir).args(["run", "p.sql", "--trigger", "0s"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let cp = dir.join(".weir/checkpoints/clean");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cp.join("offsets/0.json").exists() {
        assert!(Instant::now() < deadline, "batch 0 never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(!cp.join("commits/0.json").exists(), "the signal landed while batch 0 ran");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "SIGTERM stops cleanly, exit 0:\n{}", stderr(&out));
    assert!(stderr(&out).contains("SIGTERM: stopping after the batch in flight"), "{}", stderr(&out));
    assert!(cp.join("commits/0.json").exists(), "the batch in flight completed");
    assert!(!cp.join("offsets/1.json").exists(), "no batch after it");
    let again = run(&dir, "p.sql", &[]);
    assert_ok(&again);
    assert!(!stderr(&again).contains("batch 0:"), "batch 0 is not run again:\n{}", stderr(&again));
    assert_eq!(DeltaView::read_columns(&dir.join("out/clean"), &["id"]).rows().len(), 200_000);
}

/// `--trigger available-now` on a terminal draws a progress bar over the files there were
/// at the start, instead of a line per batch; a warning is written above it. The rows land
/// as with lines, and a pipe (every other test here) still gets a line per batch.
#[test]
fn available_now_on_a_terminal_shows_a_progress_bar() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    for n in 0..12u64 {
        write_file(&dir.join("in/events"), &format!("{n:03}.json"), &events(n * 1000..(n + 1) * 1000));
    }
    let mut cmd = weir(&dir);
    cmd.args(["run", "p.sql", "--trigger", "available-now"]).env("TERM", "xterm").env("NO_COLOR", "1");
    let mut p = rexpect::session::spawn_command(cmd, Some(120_000)).expect("weir runs on a pseudo-terminal");
    let screen = p.exp_eof().expect("weir ends");
    // The bar's last state: every file, the rows, the outcome.
    assert!(screen.contains("=] 12/12 files (100%) 12,000 rows, "), "a full bar at the end:\n{screen}");
    assert!(screen.contains("[===>"), "a bar part way:\n{screen}");
    assert!(screen.contains("weir: query 'clean': 12,000 rows in 12 batches, "), "{screen}");
    assert!(!screen.contains("batch 0:"), "no batch lines under a bar:\n{screen}");
    // Log lines still come, above the bar.
    assert!(screen.contains("weir: query 'clean'"), "{screen}");
    assert_eq!(DeltaView::read_columns(&dir.join("out/clean"), &["id"]).rows().len(), 6_000);

    // A second run finds nothing to do, and draws no bar.
    let mut cmd = weir(&dir);
    cmd.args(["run", "p.sql", "--trigger", "available-now"]).env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(120_000)).expect("weir runs on a pseudo-terminal");
    let screen = p.exp_eof().expect("weir ends");
    assert!(!screen.contains(" files ("), "{screen}");
}

#[test]
fn malformed_json_names_file_and_line_and_commits_nothing() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    let mut bad = events(10..20);
    bad[2] = r#"{"id": 12, "user": "u5", "amount": "#.to_string();
    write_file(&dir.join("in/events"), "002.json", &bad);
    write_file(&dir.join("in/events"), "003.json", &events(20..30));

    let out = run(&dir, "p.sql", &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("in/events/002.json:3: malformed JSON"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one clear message:\n{err}");
    let table = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(table.commits().len(), 1, "only batch 0 was committed");
    assert_eq!(table.rows(), expected_rows(0..10));

    // Running again without fixing the file fails the same way, and writes nothing.
    let again = run(&dir, "p.sql", &[]);
    assert!(!again.status.success() && stderr(&again).contains("002.json:3: malformed JSON"));

    // Replace the file with a fixed one: the batch is re-run and everything lands once.
    write_file(&dir.join("in/events"), "002.json", &events(10..20));
    assert_ok(&run(&dir, "p.sql", &[]));
    let table = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(table.rows(), expected_rows(0..30));
    assert_eq!(table.txns().iter().map(|t| t.1).collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[test]
fn second_runner_on_a_checkpoint_in_use_fails_at_once() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    let mut first = weir(&dir).args(["run", "p.sql", "--trigger", "1s"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Wait until the first runner holds the checkpoint.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join(".weir/checkpoints/clean/commits/0.json").exists() {
        assert!(Instant::now() < deadline, "first runner never committed batch 0");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = run(&dir, "p.sql", &[]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!second.status.success());
    let err = stderr(&second);
    assert!(err.contains("is in use by another weir process (pid "), "{err}");
    assert!(err.contains("stop it first, or use another --checkpoint"), "{err}");

    // Once the first runner is gone (even killed), the checkpoint is free again.
    assert_ok(&run(&dir, "p.sql", &[]));
}

#[test]
fn a_checkpoint_of_another_query_is_refused() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    std::fs::write(dir.join("other.sql"), PIPELINE.replace("out/clean", "out/other")).unwrap();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    assert_ok(&run(&dir, "p.sql", &["--checkpoint", "cp"]));
    let out = run(&dir, "other.sql", &["--checkpoint", "cp"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("other.sql:7: checkpoint") && err.contains("belongs to a different query"), "{err}");
    assert!(err.contains("out/clean") && err.contains("out/other"), "{err}");
    assert!(!dir.join("out/other/_delta_log").exists(), "nothing was written");
}

#[test]
fn script_errors_name_file_and_line_before_anything_runs() {
    let (_tmp, dir) = scratch();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    let cases = [
        (PIPELINE.replace("max_files_per_trigger", "max_file_per_trigger"), "p.sql:3: unknown option 'max_file_per_trigger' for table 'events' (connector 'file'); did you mean 'max_files_per_trigger'?"),
        (PIPELINE.replace("'in/events'", "'in/nowhere'"), "p.sql:2: table 'events': source directory "),
        (PIPELINE.replace("upper(user) AS user", "upper(user)"), "p.sql:7: output column 'upper(events.user)' needs a plain name"),
        (PIPELINE.replace("FROM events", "FROM evnts"), "p.sql:7: table 'evnts' not found"),
    ];
    for (script, wanted) in cases {
        std::fs::write(dir.join("p.sql"), &script).unwrap();
        let out = run(&dir, "p.sql", &[]);
        assert!(!out.status.success(), "{wanted}");
        assert!(stderr(&out).contains(wanted), "wanted '{wanted}' in:\n{}", stderr(&out));
        assert!(!dir.join("out/clean").join("_delta_log").exists());
    }
}

#[test]
fn quickstart_example_writes_a_partitioned_table() {
    let (_tmp, dir) = scratch();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/examples/quickstart.sql");
    let out = run(&dir, script.to_str().unwrap(), &[]);
    assert_ok(&out);
    let table = DeltaView::read(&dir.join("out/large_payments"));
    assert_eq!(table.json["partitionColumns"], serde_json::json!(["day"]));
    let rows = table.json["rows"].as_array().unwrap();
    assert!(rows.len() > 40_000 && rows.len() < 60_000, "about half of 100,000 rows: {}", rows.len());
    assert!(rows.iter().all(|r| r["amount"].as_f64().unwrap() > 250.0));
    let mut ids: Vec<i64> = rows.iter().map(|r| r["payment_id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), rows.len(), "every payment once");
    assert_eq!(table.commits().len(), 4);
    for c in table.commits() {
        for pv in c["partitionValues"].as_array().unwrap() {
            assert!(pv["day"].as_str().unwrap().starts_with("2024-01-0"), "partition value in the log: {pv}");
        }
    }
}

/// The windows example: 100 seconds of generated events in 10-second windows per currency;
/// nine windows close (the tenth waits for a watermark past its end), each row once.
#[test]
fn windows_example_writes_each_closed_window_once() {
    let (_tmp, dir) = scratch();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/examples/windows.sql");
    assert_ok(&run(&dir, script.to_str().unwrap(), &[]));
    let table = DeltaView::read(&dir.join("out/per_10s"));
    let rows = table.json["rows"].as_array().unwrap();
    let mut groups: Vec<(String, String)> =
        rows.iter().map(|r| (r["window_start"].as_str().unwrap().to_string(), r["currency"].as_str().unwrap().to_string())).collect();
    groups.sort();
    groups.dedup();
    assert_eq!((rows.len(), groups.len()), (27, 27), "nine windows of three currencies, each once");
    let payments: i64 = rows.iter().map(|r| r["payments"].as_i64().unwrap()).sum();
    assert_eq!(payments, 90_000, "the events of the nine closed windows");
    // Again: nothing new is written.
    assert_ok(&run(&dir, script.to_str().unwrap(), &[]));
    assert_eq!(DeltaView::read(&dir.join("out/per_10s")).json["rows"].as_array().unwrap().len(), 27);
}

#[test]
fn a_query_that_does_not_fit_an_existing_delta_table_is_refused() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    assert_ok(&run(&dir, "p.sql", &[]));
    let cases = [
        ("SELECT id, upper(user) AS user, amount", "SELECT id, user", "the query produces 2 columns (id, user) but the sink table has 3 (id BIGINT, user STRING, amount DOUBLE)"),
        ("SELECT id, upper(user) AS user, amount", "SELECT id, user, user AS amount", "column 3 of the query ('amount', STRING) cannot be written to column 'amount' (DOUBLE)"),
    ];
    for (from, to, wanted) in cases {
        std::fs::write(dir.join("q.sql"), PIPELINE.replace(from, to)).unwrap();
        let out = run(&dir, "q.sql", &["--checkpoint", "other-cp"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(&format!("q.sql:7: {wanted}")), "wanted '{wanted}' in:\n{}", stderr(&out));
    }
    assert_eq!(DeltaView::read(&dir.join("out/clean")).commits().len(), 1, "nothing more was written");
}

#[test]
fn parquet_source_takes_its_schema_from_the_files() {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    let (_tmp, dir) = scratch();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    std::fs::create_dir_all(dir.join("in/pq")).unwrap();
    for n in 0..2i64 {
        let ids: Vec<i64> = (n * 5..n * 5 + 5).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(StringArray::from(ids.iter().map(|i| format!("u{i}")).collect::<Vec<_>>())),
                Arc::new(Float64Array::from(ids.iter().map(|i| *i as f64 / 2.0).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(dir.join(format!("in/pq/part-{n}.parquet"))).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&schema), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE pq WITH (connector = 'file', path = 'in/pq', format = 'parquet');
         CREATE TABLE out WITH (connector = 'delta', path = 'out/pq');
         INSERT INTO out SELECT id, user, amount * 2 AS amount2 FROM pq WHERE id % 2 = 0;",
    )
    .unwrap();
    assert_ok(&run(&dir, "p.sql", &[]));
    let table = DeltaView::read(&dir.join("out/pq"));
    assert_eq!(table.json["columns"], serde_json::json!(["id", "user", "amount2"]));
    let want: Vec<String> = {
        let mut v: Vec<String> = [0i64, 2, 4, 6, 8]
            .iter()
            .map(|i| serde_json::json!({"id": i, "user": format!("u{i}"), "amount2": *i as f64}).to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(table.rows(), want);
}

/// Deduplication on event_id with a watermark over a file stream with duplicates and late
/// rows: the table holds each on-time event once, and the progress counters add up.
#[test]
fn dedup_stream_counts_add_up() {
    let (_tmp, dir) = scratch();
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE events (event_id STRING, user_id BIGINT, amount DOUBLE, ts TIMESTAMP,
           WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1,
               late_rows = 'dead_letter', late_rows_path = 'out/late');
         CREATE TABLE deduped WITH (connector = 'delta', path = 'out/deduped');
         INSERT INTO deduped SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, ts;",
    )
    .unwrap();
    // 10 files of 2,000 events one second apart; about 10% are re-sent within a minute
    // (duplicates), and from the third file on, 20 events an hour old are late.
    let mut expected_ids = Vec::new();
    let mut late_ids = Vec::new();
    let (mut sent, mut late_sent) = (0u64, 0u64);
    for f in 0..10u64 {
        let mut lines = Vec::new();
        for i in 0..2000u64 {
            let n = f * 2000 + i;
            let line = |secs: u64| {
                format!(r#"{{"event_id": "e{n}", "user_id": {}, "amount": 1.5, "ts": "{}"}}"#, n % 97, ts(3600 + secs))
            };
            lines.push(line(n));
            expected_ids.push(format!("e{n}"));
            if n % 10 == 3 {
                lines.push(line(n + 30));
            }
        }
        if f >= 2 {
            for j in 0..20u64 {
                lines.push(format!(r#"{{"event_id": "late{f}-{j}", "user_id": 0, "amount": 0, "ts": "{}"}}"#, ts(j)));
                late_ids.push(format!("late{f}-{j}"));
                late_sent += 1;
            }
        }
        sent += lines.len() as u64;
        write_file(&dir.join("in"), &format!("{f:03}.json"), &lines);
    }
    let out = run(&dir, "p.sql", &["--progress", "json"]);
    assert_ok(&out);
    let (mut rows_in, mut rows_out, mut dups, mut late) = (0, 0, 0, 0);
    for line in stderr(&out).lines().filter(|l| l.starts_with('{')) {
        let p: Value = serde_json::from_str(line).unwrap();
        rows_in += p["numInputRows"].as_u64().unwrap();
        rows_out += p["sink"]["numOutputRows"].as_u64().unwrap();
        let op = &p["stateOperators"][0];
        assert_eq!(op["operatorName"], "dedupeWithinWatermark");
        dups += op["customMetrics"]["numDroppedDuplicateRows"].as_u64().unwrap();
        late += op["numRowsDroppedByWatermark"].as_u64().unwrap();
        assert!(op["memoryUsedBytes"].as_u64().unwrap() > 0 || op["numRowsTotal"] == 0);
    }
    assert_eq!(rows_in, sent);
    assert_eq!(rows_in, rows_out + dups + late, "rows in = rows out + duplicates + late");
    assert_eq!(late, late_sent);
    assert_eq!(dups, 2000);

    let table = DeltaView::read(&dir.join("out/deduped"));
    let mut ids: Vec<String> = table.json["rows"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    expected_ids.sort();
    assert_eq!(ids, expected_ids, "every on-time event exactly once, no late one");

    // The late rows went to the dead-letter table, each once, with their event time.
    let run_again = run(&dir, "p.sql", &[]);
    assert_ok(&run_again);
    let late_table = DeltaView::read(&dir.join("out/late"));
    let mut got: Vec<String> = late_table.json["rows"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
    got.sort();
    late_ids.sort();
    assert_eq!(got, late_ids);
    assert_eq!(late_table.json["columns"], serde_json::json!(["event_id", "user_id", "amount", "ts"]));
}

/// Three sources in one deduplication: `a` and `b` name the same late-rows table, `c` none.
/// The late rows of `a` and `b` go to their table, each once; `c`'s are dropped, counted.
#[test]
fn each_source_s_late_rows_go_to_its_own_late_rows_table() {
    let (_tmp, dir) = scratch();
    let source = |name: &str, late: &str| {
        format!(
            "CREATE TABLE {name} (event_id STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
             WITH (connector = 'file', path = 'in/{name}', format = 'json', max_files_per_trigger = 1{late});\n"
        )
    };
    let shared = ", late_rows = 'dead_letter', late_rows_path = 'out/late_ab'";
    let script = format!(
        "{}{}{}CREATE TABLE deduped WITH (connector = 'delta', path = 'out/deduped');
         INSERT INTO deduped SELECT DISTINCT ON (event_id) event_id, ts
         FROM (SELECT * FROM a UNION ALL SELECT * FROM b UNION ALL SELECT * FROM c) ORDER BY event_id, ts;",
        source("c", ""),
        source("a", shared),
        source("b", shared)
    );
    std::fs::write(dir.join("p.sql"), script).unwrap();
    // Each source: rows an hour in, in each of three files; the third (read by the third
    // batch, the first that drops rows at or below an earlier batch's watermark) also has
    // three rows from the first minute, late by then.
    let mut late_ab = Vec::new();
    for name in ["a", "b", "c"] {
        let on_time = |from: u64| (from..from + 5).map(|i| format!(r#"{{"event_id": "{name}{i}", "ts": "{}"}}"#, ts(3600 + i))).collect::<Vec<_>>();
        write_file(&dir.join("in").join(name), "1.json", &on_time(0));
        write_file(&dir.join("in").join(name), "2.json", &on_time(10));
        let mut third = on_time(20);
        for j in 0..3 {
            third.push(format!(r#"{{"event_id": "{name}-late{j}", "ts": "{}"}}"#, ts(j)));
            if name != "c" {
                late_ab.push(format!("{name}-late{j}"));
            }
        }
        write_file(&dir.join("in").join(name), "3.json", &third);
    }
    let out = run(&dir, "p.sql", &["--progress", "json"]);
    assert_ok(&out);
    let late: u64 = stderr(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["stateOperators"][0]["numRowsDroppedByWatermark"].as_u64().unwrap())
        .sum();
    assert_eq!(late, 9, "every source's late rows are counted");
    let rows = |table: &str| -> Vec<String> {
        let view = DeltaView::read(&dir.join(table));
        let mut ids: Vec<String> = view.json["rows"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    late_ab.sort();
    assert_eq!(rows("out/late_ab"), late_ab);
    assert_eq!(rows("out/deduped").len(), 45, "fifteen on-time rows of each source");
}

/// `2024-01-01T00:00:00Z` plus `secs`.
fn ts(secs: u64) -> String {
    format!("2024-01-01T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The file source's per-batch file lists are compacted every 100 batches; across restarts
/// every file is still taken exactly once.
#[test]
fn file_lists_are_compacted_and_files_stay_exactly_once() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    for n in 0..120u64 {
        write_file(&dir.join("in/events"), &format!("{n:04}.json"), &events(n * 2..n * 2 + 2));
    }
    // Stop part-way (trigger once, several times), so restarts cross the compaction.
    for _ in 0..3 {
        let out = weir(&dir).args(["run", "p.sql", "--trigger", "once", "--progress", "none"]).output().unwrap();
        assert_ok(&out);
    }
    assert_ok(&run(&dir, "p.sql", &["--progress", "none"]));
    let logs: Vec<String> = std::fs::read_dir(dir.join(".weir/checkpoints/clean/sources/events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Planned at batch 100, the compaction folds the lists through 98 (batch 99 may still be
    // committing then): it and the lists of batches 99 to 119 are left.
    assert!(logs.contains(&"compact-98.json".to_string()), "{logs:?}");
    assert!(logs.len() <= 22, "old file lists are removed: {logs:?}");
    for n in 120..125u64 {
        write_file(&dir.join("in/events"), &format!("{n:04}.json"), &events(n * 2..n * 2 + 2));
    }
    assert_ok(&run(&dir, "p.sql", &["--progress", "none"]));
    let table = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(table.rows(), expected_rows(0..250));
}

/// Two different queries append to one Delta table at the same time: both land, each exactly
/// once, each with its own `txn` app id and consecutive versions (Delta's optimistic
/// concurrency resolves the racing commits).
#[test]
fn two_queries_append_to_one_delta_table_concurrently() {
    let (_tmp, dir) = scratch();
    for (q, base) in [("a", 0u64), ("b", 10_000)] {
        std::fs::write(
            dir.join(format!("{q}.sql")),
            format!(
                "CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE)
                 WITH (connector = 'file', path = 'in/{q}', format = 'json', max_files_per_trigger = 1);
                 CREATE TABLE sink_{q} WITH (connector = 'delta', path = 'out/shared');
                 INSERT INTO sink_{q} SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;"
            ),
        )
        .unwrap();
        for n in 0..8u64 {
            write_file(&dir.join(format!("in/{q}")), &format!("{n:03}.json"), &events(base + n * 20..base + n * 20 + 20));
        }
    }
    let spawn = |q: &str| {
        weir(&dir)
            .args(["run", &format!("{q}.sql"), "--trigger", "available-now"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_ok(&out);
    }
    let table = DeltaView::read(&dir.join("out/shared"));
    assert_eq!(table.rows(), expected_rows((0..160).chain(10_000..10_160)));
    for q in ["a", "b"] {
        let id = query_id(&dir.join(format!(".weir/checkpoints/sink_{q}")));
        let versions: Vec<i64> = table.txns().into_iter().filter(|(app, _)| *app == id).map(|(_, v)| v).collect();
        assert_eq!(versions, (0..8).collect::<Vec<i64>>(), "query {q}: one commit per batch, in order");
    }
}

/// A restart whose deduplication keeps other state than the checkpoint holds is refused,
/// naming what changed; a change that keeps the state's meaning (the ORDER BY, the output
/// columns) is not.
#[test]
fn a_changed_deduplication_is_refused_on_restart() {
    let (_tmp, dir) = scratch();
    let script = |keys: &str, delay: &str, select: &str| {
        format!(
            "CREATE TABLE events (event_id STRING, user_id BIGINT, ts TIMESTAMP,
               WATERMARK FOR ts AS ts - INTERVAL '{delay}' MINUTE)
             WITH (connector = 'file', path = 'in', format = 'json');
             CREATE TABLE out WITH (connector = 'delta', path = 'out');
             INSERT INTO out SELECT DISTINCT ON ({keys}) {select} FROM events ORDER BY {keys}, ts;"
        )
    };
    write_file(&dir.join("in"), "1.json", &[format!(r#"{{"event_id": "a", "user_id": 1, "ts": "{}"}}"#, ts(10))]);
    std::fs::write(dir.join("p.sql"), script("event_id", "10", "event_id, user_id, ts")).unwrap();
    assert_ok(&run(&dir, "p.sql", &[]));

    for (keys, delay, wanted) in [
        ("user_id", "10", "keys (event_id STRING) became (user_id BIGINT)"),
        ("event_id", "5", "watermark delay 600000 ms became 300000 ms"),
    ] {
        std::fs::write(dir.join("p.sql"), script(keys, delay, "event_id, user_id, ts")).unwrap();
        let out = run(&dir, "p.sql", &[]);
        assert!(!out.status.success(), "{keys}, {delay}: a changed deduplication must be refused");
        let err = stderr(&out);
        assert!(err.contains("its deduplication changed since the checkpoint was made") && err.contains(wanted), "{err}");
        assert!(err.contains("--checkpoint"), "says what to do: {err}");
    }
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE events (event_id STRING, user_id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'file', path = 'in', format = 'json');
         CREATE TABLE out WITH (connector = 'delta', path = 'out');
         INSERT INTO out SELECT event_id, user_id, ts FROM events;",
    )
    .unwrap();
    let out = run(&dir, "p.sql", &[]);
    assert!(stderr(&out).contains("which the query no longer has"), "{}", stderr(&out));

    // Another output expression over the same keys, delay and event time is the same state.
    std::fs::write(dir.join("p.sql"), script("event_id", "10", "event_id, user_id + 0 AS user_id, ts")).unwrap();
    assert_ok(&run(&dir, "p.sql", &[]));
}

#[test]
fn a_changed_window_aggregation_is_refused_on_restart() {
    let (_tmp, dir) = scratch();
    let script = |select: &str| {
        format!(
            "CREATE TABLE events (event_id STRING, user_id BIGINT, ts TIMESTAMP,
               WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
             WITH (connector = 'file', path = 'in', format = 'json');
             CREATE TABLE out WITH (connector = 'delta', path = 'out');
             INSERT INTO out {select};"
        )
    };
    let window = "SELECT window_start, user_id, count(*) AS n FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, user_id";
    write_file(&dir.join("in"), "1.json", &[format!(r#"{{"event_id": "a", "user_id": 1, "ts": "{}"}}"#, ts(10))]);
    std::fs::write(dir.join("p.sql"), script(window)).unwrap();
    assert_ok(&run(&dir, "p.sql", &[]));
    assert!(dir.join(".weir/checkpoints/out/state/window-0").is_dir(), "the window keeps its state in its own directory");

    for (select, wanted) in [
        (
            "SELECT window_start, user_id, sum(user_id) AS n FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, user_id",
            "its aggregation changed since the checkpoint was made: aggregates (count(1)) became (sum(events.user_id))",
        ),
        (
            "SELECT window_start, user_id, count(*) AS n FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, user_id, event_id",
            "keys (window_start TIMESTAMP, window_end TIMESTAMP, user_id BIGINT) became (window_start TIMESTAMP, window_end TIMESTAMP, user_id BIGINT, event_id STRING)",
        ),
        (
            "SELECT window_start, user_id, count(*) AS n FROM TUMBLE(events, ts, INTERVAL '2' MINUTE) GROUP BY window_start, window_end, user_id",
            "window TUMBLE(size 60000 ms) became TUMBLE(size 120000 ms)",
        ),
    ] {
        std::fs::write(dir.join("p.sql"), script(select)).unwrap();
        let out = run(&dir, "p.sql", &[]);
        assert!(!out.status.success(), "{select}: a changed aggregation must be refused");
        let err = stderr(&out);
        assert!(err.contains(wanted) && err.contains("--checkpoint"), "{err}");
    }
    let dedup_then_window = "WITH d AS (SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, ts) SELECT window_start, user_id, count(*) AS n FROM TUMBLE(d, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, user_id";
    std::fs::write(dir.join("p.sql"), script(dedup_then_window)).unwrap();
    let err = stderr(&run(&dir, "p.sql", &[]));
    assert!(err.contains("they were an aggregation by (") && err.contains("and are now a deduplication on (event_id STRING), then an aggregation by ("), "{err}");
    // Other output expressions over the same groups and aggregates are the same state.
    std::fs::write(dir.join("p.sql"), script(&window.replace("count(*) AS n", "count(*) * 1 AS n"))).unwrap();
    assert_ok(&run(&dir, "p.sql", &[]));
}

/// A hopping window with a late-rows table: a (row, window) pair whose window has closed is
/// written there once, with the window it was late for, while the same row still counts in
/// its other windows; progress names the operator and counts late groups.
#[test]
fn a_window_writes_its_late_pairs_to_the_late_rows_table() {
    let (_tmp, dir) = scratch();
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE events (event_id STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
         WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1,
               late_rows = 'dead_letter', late_rows_path = 'out/late');
         CREATE TABLE counts WITH (connector = 'delta', path = 'out/counts');
         INSERT INTO counts SELECT CAST(extract(epoch FROM window_start) AS BIGINT) AS start, count(*) AS n
         FROM HOP(events, ts, INTERVAL '10' SECOND, INTERVAL '20' SECOND) GROUP BY window_start, window_end;",
    )
    .unwrap();
    let at = |id: &str, secs: u64| format!(r#"{{"event_id": "{id}", "ts": "1970-01-01T00:00:{secs:02}Z"}}"#);
    // Watermarks after each batch: 30 s, 35 s, 49 s. A row is late by the previous batch's
    // watermark: in batch 2 (late at 30 s), "b" at 25 s is in the windows [10, 30) (closed:
    // late) and [20, 40) (open).
    write_file(&dir.join("in"), "000.json", &[at("a", 5), at("x", 40)]);
    write_file(&dir.join("in"), "001.json", &[at("y", 45)]);
    write_file(&dir.join("in"), "002.json", &[at("b", 25), at("z", 59)]);
    let out = run(&dir, "p.sql", &["--progress", "json"]);
    assert_ok(&out);
    let mut late = 0;
    for line in stderr(&out).lines().filter(|l| l.starts_with('{')) {
        let p: Value = serde_json::from_str(line).unwrap();
        let op = &p["stateOperators"][0];
        assert_eq!(op["operatorName"], "stateStoreSave");
        late += op["numRowsDroppedByWatermark"].as_u64().unwrap();
    }
    assert_eq!(late, 1);
    let late_rows = DeltaView::read(&dir.join("out/late")).rows();
    assert_eq!(late_rows.len(), 1, "{late_rows:?}");
    assert!(late_rows[0].contains(r#""event_id":"b""#) && late_rows[0].contains(r#""window_start":"1970-01-01T00:00:10"#), "{late_rows:?}");
    // Windows closed by the last watermark (49 s): [-10, 10) a, [0, 20) a, [20, 40) b.
    let counts = DeltaView::read(&dir.join("out/counts")).rows();
    let row = |start: i64, n: i64| serde_json::json!({"start": start, "n": n}).to_string();
    let mut expected = vec![row(-10, 1), row(0, 1), row(20, 1)];
    expected.sort();
    assert_eq!(counts, expected);
}

/// `weir checkpoint show`: the query, the newest batch and whether it committed, the state
/// operator with its rows and files; `weir checkpoint state`: the state's keys. Both read
/// without the lock, so they also work while a run holds it.
#[test]
fn checkpoint_show_tells_what_a_checkpoint_holds() {
    let (_tmp, dir) = scratch();
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE events (id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE out WITH (connector = 'delta', path = 'out');
         INSERT INTO out SELECT DISTINCT ON (id) id, ts FROM events ORDER BY id, ts;",
    )
    .unwrap();
    for f in 0..2 {
        write_file(&dir.join("in"), &format!("{f}.json"), &[format!(r#"{{"id": {f}, "ts": "2024-01-02T00:00:00Z"}}"#)]);
    }
    crash_at(&dir, "after_offsets", 1, Duration::from_secs(60));
    let cp = dir.join(".weir/checkpoints/out");
    let show = |extra: &[&str]| {
        let out = weir(&dir).args(["checkpoint", "show"]).arg(&cp).args(extra).output().unwrap();
        assert_ok(&out);
        String::from_utf8(out.stdout).unwrap()
    };
    let text = show(&[]);
    assert!(text.contains("last batch   1 (planned, not committed: the next run replays it)"), "{text}");
    // The state as of the last committed batch: batch 0's key.
    assert!(text.contains("state        dedup: 1 rows ("), "{text}");
    assert!(text.contains(&format!("query id     {}", query_id(&cp))), "{text}");
    // The state's rows, as the next run restores them: id 0, kept until the watermark
    // passes its time plus the delay.
    let state = |extra: &[&str]| weir(&dir).args(["checkpoint", "state"]).arg(&cp).args(extra).output().unwrap();
    let out = state(&[]);
    assert_ok(&out);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("| id | expires_at           |") && table.contains("| 0  | 2024-01-02T00:10:00Z |"), "{table}");
    assert!(table.contains("1 rows: state of operator dedup (dedupe"), "{table}");
    let out = state(&["--key", "id=1"]);
    assert_ok(&out);
    assert!(String::from_utf8(out.stdout).unwrap().contains("0 rows: "), "a key not in state");
    for (args, message) in [
        (&["--key", "user=1"][..], "the state has no column 'user'; its columns: id, expires_at"),
        (&["--operator", "window-1"][..], "has no operator 'window-1'; its operators: dedup"),
        (&["--batch", "1"][..], "batch 1 is not committed"),
    ] {
        let out = state(args);
        assert!(!out.status.success() && stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    // While a run holds the checkpoint, and after it committed.
    let mut child = weir(&dir).args(["run", "p.sql", "--trigger", "1s"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cp.join("commits/1.json").exists() {
        assert!(Instant::now() < deadline, "batch 1 never committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let json: serde_json::Value = serde_json::from_str(&show(&["--json"])).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(json["lastBatch"]["batchId"], 1, "{json}");
    assert_eq!(json["lastBatch"]["committed"], true, "{json}");
    assert_eq!(json["lastBatch"]["outputRows"], 1, "{json}");
    assert_eq!(json["stateOperators"][0]["id"], "dedup", "{json}");
    assert!(json["stateOperators"][0]["files"].as_u64().unwrap() >= 2, "{json}");
    assert_eq!(json["stateOperators"][0]["rows"], 2, "{json}");
    // Both keys now, as JSON lines; one by its key.
    let out = state(&["--json", "--key", "id=1"]);
    assert_ok(&out);
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, vec![serde_json::json!({"id": 1, "expires_at": "2024-01-02T00:10:00Z"})]);
    assert_eq!(String::from_utf8(state(&["--json"]).stdout).unwrap().lines().count(), 2);
    let missing = weir(&dir).args(["checkpoint", "show", "nowhere"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("nowhere"), "{}", stderr(&missing));
}

/// `weir checkpoint state` on a window aggregation: its open groups, with a row of partial
/// aggregates for each batch that touched a group (merged, they are the group's state).
#[test]
fn checkpoint_state_shows_open_window_groups() {
    let (_tmp, dir) = scratch();
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE events (user STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE out WITH (connector = 'delta', path = 'out');
         INSERT INTO out SELECT window_start, user, count(*) AS n FROM TUMBLE(events, ts, INTERVAL '10' MINUTE) GROUP BY window_start, user;",
    )
    .unwrap();
    let event = |user: &str, minute: u32| format!(r#"{{"user": "{user}", "ts": "2024-01-02T00:{minute:02}:00Z"}}"#);
    write_file(&dir.join("in"), "0.json", &[event("u1", 1), event("u1", 2), event("u2", 3)]);
    write_file(&dir.join("in"), "1.json", &[event("u1", 5)]);
    assert_ok(&run(&dir, "p.sql", &[]));
    let cp = dir.join(".weir/checkpoints/out");
    let out = weir(&dir).args(["checkpoint", "state"]).arg(&cp).args(["--json"]).output().unwrap();
    assert_ok(&out);
    let rows: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(rows.iter().all(|r| r["closes_at"] == "2024-01-02T00:10:00Z" && r["window_start"] == "2024-01-02T00:00:00Z"), "{rows:#?}");
    let count = |user: &str| -> u64 { rows.iter().filter(|r| r["user"] == user).map(|r| r["count(1) (partial)"].as_u64().unwrap()).sum() };
    assert_eq!((count("u1"), count("u2")), (3, 1), "{rows:#?}");
    let show = weir(&dir).args(["checkpoint", "show"]).arg(&cp).output().unwrap();
    assert!(String::from_utf8(show.stdout).unwrap().contains("2 rows ("), "two groups in state");
}

/// `--log-format json`: every stderr line a JSON object; batch lines carry the query, its id
/// and the batch id as fields. `--log-level warn` leaves the info lines out.
#[test]
fn logs_are_json_lines_with_query_and_batch_fields() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    let out = run(&dir, "p.sql", &["--log-format", "json"]);
    assert_ok(&out);
    let lines: Vec<Value> = stderr(&out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let batch = lines.iter().find(|l| l["message"].as_str().is_some_and(|m| m.starts_with("batch 0:"))).expect("a line for batch 0");
    assert_eq!(batch["level"], "INFO", "{batch}");
    assert_eq!(batch["query"], "clean", "{batch}");
    assert_eq!(batch["batch_id"], 0, "{batch}");
    assert_eq!(batch["query_id"].as_str(), Some(query_id(&dir.join(".weir/checkpoints/clean")).as_str()), "{batch}");
    assert_eq!(batch["rows_in"], 10, "{batch}");
    assert!(batch["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{batch}");

    write_file(&dir.join("in/events"), "002.json", &events(10..20));
    let out = run(&dir, "p.sql", &["--log-level", "warn"]);
    assert_ok(&out);
    assert!(!stderr(&out).contains("batch 1:"), "info lines are left out:\n{}", stderr(&out));
    assert_eq!(DeltaView::read(&dir.join("out/clean")).rows(), expected_rows(0..20));
    let bad = weir(&dir).args(["run", "p.sql", "--log-level", "loud"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("log level 'loud'"), "{}", stderr(&bad));
}
