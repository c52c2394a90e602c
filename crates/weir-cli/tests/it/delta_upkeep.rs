//! Upkeep of the Delta tables pipelines write, end to end: `weir optimize` and `weir vacuum`
//! on a streamed table, the sink's `auto_compact` racing a `weir optimize` loop, a query
//! changed to emit one more column (`merge_schema`), and `delta.*` table properties, all read
//! back by the independent reader.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// The standard pipeline, its sink partitioned by user, with `sink_options` added.
fn pipeline(sink_options: &str) -> String {
    PIPELINE.replace("path = 'out/clean')", &format!("path = 'out/clean', partition_by = 'user'{sink_options})"))
}

/// `weir <args>` in `dir`, within a minute.
fn weir_cmd(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = weir(dir);
    cmd.args(args);
    output_within(cmd, Duration::from_secs(120))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn data_files_on_disk(table: &DeltaView) -> usize {
    table.json["dataFilesOnDisk"].as_array().unwrap().len()
}

#[test]
fn optimize_and_vacuum_a_streamed_table() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), pipeline("")).unwrap();
    for n in 0..4u64 {
        write_file(&dir.join("in/events"), &format!("{n:03}.json"), &events(n * 50..n * 50 + 50));
    }
    assert_ok(&run(&dir, "p.sql", &[]));
    let before = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(before.rows(), expected_rows(0..200));
    // Four batches, each with a file in each of the 7 users' partitions.
    assert_eq!(before.json["activeFiles"], 28);

    // A predicate on other than partition columns is refused, and commits nothing.
    let out = weir_cmd(&dir, &["optimize", "out/clean", "--where", "amount > 5"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--where 'amount > 5'") && stderr(&out).contains("'amount' is not a partition column (the table is partitioned by user)"),
        "{}",
        stderr(&out)
    );
    // One partition, then the rest.
    let out = weir_cmd(&dir, &["optimize", "out/clean", "--where", "user = 'U0'", "--target-size", "64MB"]);
    assert_ok(&out);
    assert!(stdout(&out).contains(": 4 files (") && stdout(&out).contains("removed, 1 files (") && stdout(&out).contains("in 1 partition;"), "{}", stdout(&out));
    let out = weir_cmd(&dir, &["optimize", "out/clean"]);
    assert_ok(&out);
    assert!(stdout(&out).contains(": 24 files (") && stdout(&out).contains("removed, 6 files ("), "{}", stdout(&out));

    let optimized = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(optimized.rows(), before.rows(), "compaction changes no row");
    assert_eq!(optimized.json["activeFiles"], 7);
    let commits = optimized.commits();
    let compactions: Vec<&Value> = commits.iter().filter(|c| c["operation"] == "OPTIMIZE").collect();
    assert_eq!(compactions.len(), 2);
    for c in &compactions {
        assert!(c["txns"].as_array().unwrap().is_empty(), "a compaction carries no txn: {c}");
        assert!(c["dataChange"].as_array().unwrap().iter().all(|d| d == false), "nor any change of data: {c}");
    }
    assert_eq!(data_files_on_disk(&optimized), 28 + 7, "the small files stay until VACUUM");

    // Below the table's retention (7 days by default): refused, unless forced.
    let out = weir_cmd(&dir, &["vacuum", "out/clean", "--retain", "1h"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--retain 1 hour is below the Delta table's delta.deletedFileRetentionDuration (7 days)") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    // Within the retention nothing is old enough.
    let out = weir_cmd(&dir, &["vacuum", "out/clean", "--retain", "7d"]);
    assert_ok(&out);
    assert!(stdout(&out).contains(": 0 files (0 B) deleted"), "{}", stdout(&out));
    let out = weir_cmd(&dir, &["vacuum", "out/clean", "--retain", "0s", "--force", "--dry-run"]);
    assert_ok(&out);
    assert!(stdout(&out).contains(": 28 files (") && stdout(&out).contains("would be deleted (dry run)"), "{}", stdout(&out));
    assert_eq!(stdout(&out).lines().filter(|l| l.starts_with("  ") && l.ends_with(".parquet")).count(), 28, "each file listed");
    assert_eq!(data_files_on_disk(&DeltaView::read(&dir.join("out/clean"))), 35, "a dry run deletes nothing");
    let out = weir_cmd(&dir, &["vacuum", "out/clean", "--retain", "0s", "--force"]);
    assert_ok(&out);
    assert!(stdout(&out).contains(": 28 files (") && stdout(&out).contains(") deleted"), "{}", stdout(&out));

    let vacuumed = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(data_files_on_disk(&vacuumed), 7);
    assert_eq!(vacuumed.rows(), before.rows(), "the newest version still reads");

    // The pipeline goes on after its upkeep, exactly once.
    write_file(&dir.join("in/events"), "004.json", &events(200..250));
    assert_ok(&run(&dir, "p.sql", &[]));
    let after = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(after.rows(), expected_rows(0..250));
    let id = query_id(&dir.join(".weir/checkpoints/clean"));
    assert_eq!(after.txns(), (0..5).map(|b| (id.clone(), b)).collect::<Vec<_>>());
}

/// A streaming writer with `auto_compact` and a `weir optimize` loop on the same table, at
/// once: the table ends with the rows of a run that compacted nothing, each batch's txn
/// once, and fewer files than batches.
#[test]
fn auto_compact_and_a_concurrent_optimize_keep_exactly_once() {
    const FILES: u64 = 24;
    let (_tmp, dir) = scratch();
    let compacting = PIPELINE.replace("path = 'out/clean')", "path = 'out/clean', auto_compact = true, auto_compact_min_files = 3)");
    std::fs::write(dir.join("p.sql"), &compacting).unwrap();
    std::fs::write(dir.join("plain.sql"), PIPELINE.replace("out/clean", "out/plain")).unwrap();
    for n in 0..FILES {
        write_file(&dir.join("in/events"), &format!("{n:03}.json"), &events(n * 20..n * 20 + 20));
    }
    assert_ok(&run(&dir, "plain.sql", &["--checkpoint", "cp-plain"]));
    let plain = DeltaView::read(&dir.join("out/plain"));
    assert_eq!(plain.json["activeFiles"], FILES);

    let mut writer = weir(&dir)
        .args(["run", "p.sql", "--trigger", "available-now", "--progress", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Optimize as fast as it goes while the writer runs (once its table exists).
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut runs, mut landed) = (0, 0);
    let status = loop {
        if let Some(status) = writer.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the writer did not finish");
        if !dir.join("out/clean/_delta_log").exists() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let out = weir_cmd(&dir, &["optimize", "out/clean"]);
        runs += 1;
        if out.status.success() {
            landed += usize::from(!stdout(&out).contains("nothing to compact"));
        } else {
            // Losing to the sink's compaction of the same files is the one way to fail.
            assert!(stderr(&out).contains("removed already"), "{}", stderr(&out));
        }
    };
    let err = {
        use std::io::Read;
        let mut s = String::new();
        writer.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    assert!(status.success(), "the writer failed:\n{err}");
    assert!(runs > 0, "no optimize ran beside the writer");

    let table = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(table.rows(), plain.rows(), "compaction changed the rows (landed {landed} of {runs} optimize runs)");
    let id = query_id(&dir.join(".weir/checkpoints/clean"));
    assert_eq!(table.txns(), (0..FILES as i64).map(|b| (id.clone(), b)).collect::<Vec<_>>(), "each batch's txn once, in order");
    let compactions: Vec<Value> = table.commits().into_iter().filter(|c| c["operation"] == "OPTIMIZE").collect();
    assert!(!compactions.is_empty());
    for c in &compactions {
        assert!(c["txns"].as_array().unwrap().is_empty() && c["dataChange"].as_array().unwrap().iter().all(|d| d == false), "{c}");
    }
    let active = table.json["activeFiles"].as_u64().unwrap();
    assert!(active < FILES / 2, "{active} files after compactions of {FILES} batches' files");
    // The sink says what it compacted in its progress.
    let progress: Vec<Value> = err.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let reported = progress.iter().filter(|p| p["sink"]["metrics"]["compactionRemovedFiles"].is_u64()).count();
    let warned = err.lines().filter(|l| l.contains("compaction after batch") && l.contains("skipped")).count();
    assert!(reported + warned > 0, "the sink never compacted:\n{err}");
}

/// A query changed to emit one more column: refused without merge_schema, naming it; with
/// it, the column is added to the table, old rows read NULL in it, and the checkpoint records
/// the wider output.
#[test]
fn merge_schema_lets_a_query_add_a_column() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    assert_ok(&run(&dir, "p.sql", &[]));

    let wider = PIPELINE.replace("amount FROM events", "amount, amount * 2 AS doubled FROM events");
    std::fs::write(dir.join("q.sql"), &wider).unwrap();
    write_file(&dir.join("in/events"), "002.json", &events(10..20));
    let out = run(&dir, "q.sql", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("q.sql:7: the query produces 4 columns (id, user, amount, doubled) but the sink table has 3")
            && stderr(&out).contains("set merge_schema = true on 'clean'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(DeltaView::read(&dir.join("out/clean")).commits().len(), 1, "nothing more was written");

    std::fs::write(dir.join("r.sql"), wider.replace("path = 'out/clean')", "path = 'out/clean', merge_schema = true)")).unwrap();
    assert_ok(&run(&dir, "r.sql", &[]));
    let table = DeltaView::read(&dir.join("out/clean"));
    assert_eq!(table.json["columns"], serde_json::json!(["id", "user", "amount", "doubled"]));
    let mut wanted: Vec<String> = (0..20u64)
        .filter(|i| i % 2 == 0)
        .map(|i| {
            let amount = i as f64 * 1.5;
            let doubled = if i < 10 { Value::Null } else { (amount * 2.0).into() };
            serde_json::json!({ "id": i, "user": format!("U{}", i % 7), "amount": amount, "doubled": doubled }).to_string()
        })
        .collect();
    wanted.sort();
    assert_eq!(table.rows(), wanted);
    let id = query_id(&dir.join(".weir/checkpoints/clean"));
    assert_eq!(table.txns(), [(id.clone(), 0), (id, 1)], "the same query, one commit per batch");
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join(".weir/checkpoints/clean/metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["sinkColumns"], "id BIGINT, user STRING, amount DOUBLE, doubled DOUBLE");

    // The narrower query again, still with merge_schema: its rows leave the new column NULL.
    std::fs::write(dir.join("s.sql"), PIPELINE.replace("path = 'out/clean')", "path = 'out/clean', merge_schema = true)")).unwrap();
    write_file(&dir.join("in/events"), "003.json", &events(20..24));
    assert_ok(&run(&dir, "s.sql", &[]));
    let rows = DeltaView::read(&dir.join("out/clean")).rows();
    assert!(rows.contains(&serde_json::json!({ "id": 22, "user": "U1", "amount": 33.0, "doubled": null }).to_string()), "{rows:?}");
}

/// `delta.*` options are the table's properties when the sink creates it, as another reader
/// sees them; an unknown one is refused before anything runs; vacuum goes by the table's own
/// retention.
#[test]
fn table_properties_are_set_at_creation() {
    let (_tmp, dir) = scratch();
    let properties = ", delta.appendOnly = 'true', delta.checkpointInterval = '5', delta.deletedFileRetentionDuration = 'interval 1 second'";
    std::fs::write(dir.join("bad.sql"), pipeline(&properties.replace("appendOnly", "appendOnli"))).unwrap();
    write_file(&dir.join("in/events"), "001.json", &events(0..10));
    let out = run(&dir, "bad.sql", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown Delta table property 'delta.appendOnli'; did you mean 'delta.appendOnly'?"), "{}", stderr(&out));
    assert!(!dir.join("out/clean").exists() || !dir.join("out/clean/_delta_log").exists(), "nothing was written");

    std::fs::write(dir.join("p.sql"), pipeline(properties)).unwrap();
    write_file(&dir.join("in/events"), "002.json", &events(10..20));
    assert_ok(&run(&dir, "p.sql", &[]));
    let table = DeltaView::read(&dir.join("out/clean"));
    let configuration = &table.json["configuration"];
    assert_eq!(configuration["delta.appendOnly"], "true", "{configuration}");
    assert_eq!(configuration["delta.checkpointInterval"], "5", "{configuration}");
    assert_eq!(configuration["delta.deletedFileRetentionDuration"], "interval 1 second", "{configuration}");

    // Compaction is allowed in an append-only table (it changes no data), and the table's own
    // retention of one second is the minimum VACUUM keeps to.
    assert_ok(&weir_cmd(&dir, &["optimize", "out/clean"]));
    let compacted = DeltaView::read(&dir.join("out/clean"));
    let removed = compacted.commits().iter().filter(|c| c["operation"] == "OPTIMIZE").map(|c| c["removes"].as_array().unwrap().len()).sum::<usize>();
    assert!(removed >= 2, "{:#?}", compacted.commits());
    std::thread::sleep(Duration::from_millis(1500));
    let out = weir_cmd(&dir, &["vacuum", "out/clean", "--retain", "0s"]);
    assert!(!out.status.success() && stderr(&out).contains("below the Delta table's delta.deletedFileRetentionDuration (1 second)"), "{}", stderr(&out));
    let out = weir_cmd(&dir, &["vacuum", "out/clean", "--retain", "1s"]);
    assert_ok(&out);
    assert!(stdout(&out).contains(&format!(": {removed} files (")), "the {removed} compacted-away files: {}", stdout(&out));
    assert_eq!(DeltaView::read(&dir.join("out/clean")).rows(), expected_rows(0..20));

    // Another run with other properties leaves the table's as they are, and says so.
    std::fs::write(dir.join("q.sql"), pipeline(&properties.replace("'5'", "'9'"))).unwrap();
    write_file(&dir.join("in/events"), "003.json", &events(20..30));
    let out = run(&dir, "q.sql", &[]);
    assert_ok(&out);
    assert!(stderr(&out).contains("option 'delta.checkpointInterval' = '9' is not applied"), "{}", stderr(&out));
    assert_eq!(DeltaView::read(&dir.join("out/clean")).json["configuration"]["delta.checkpointInterval"], "5");
}
