//! The file source across restarts: its record of seen files survives the compaction of the
//! file lists whatever the sources did around it, and a batch reads the bytes its list
//! recorded, or stops naming the file that changed.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// The ids of a table's rows, sorted.
fn ids(table: &Path) -> Vec<i64> {
    let mut ids: Vec<i64> = DeltaView::read(table).json["rows"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids
}

/// Source `a` takes its only file in batch 0 and is idle from then on, while `b` runs past
/// the compaction of the file lists at batch 100: a restart must not read `a`'s file again.
#[test]
fn a_source_idle_across_the_compaction_reads_no_file_twice() {
    let (_tmp, dir) = scratch();
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE a (id BIGINT) WITH (connector = 'file', path = 'in/a', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE b (id BIGINT) WITH (connector = 'file', path = 'in/b', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE t WITH (connector = 'delta', path = 'out/t');
         INSERT INTO t SELECT id FROM a UNION ALL SELECT id FROM b;",
    )
    .unwrap();
    write_file(&dir.join("in/a"), "a.json", &(0..3).map(|i| format!(r#"{{"id": {i}}}"#)).collect::<Vec<_>>());
    for n in 0..130u64 {
        write_file(&dir.join("in/b"), &format!("{n:03}.json"), &[format!(r#"{{"id": {}}}"#, 1000 + n)]);
    }
    let expected: Vec<i64> = (0..3).chain(1000..1130).collect();
    assert_ok(&run(&dir, "p.sql", &[]));
    assert_eq!(ids(&dir.join("out/t")), expected);
    let checkpoint = dir.join(".weir/checkpoints/t");
    assert_eq!(newest_batch(&checkpoint), Some(129));
    // Planned at batch 100, the compaction folds the lists through 98: batch 99 may still
    // be committing then.
    assert!(checkpoint.join("sources/a/compact-98.json").exists(), "the lists were compacted");
    for run_no in 2..=3 {
        assert_ok(&run(&dir, "p.sql", &[]));
        assert_eq!(newest_batch(&checkpoint), Some(129), "run {run_no} has nothing new to read");
        assert_eq!(ids(&dir.join("out/t")), expected, "each id once after run {run_no}");
    }
}

const NO_DATA_PIPELINE: &str = "
CREATE TABLE events (id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1,
      late_rows = 'dead_letter', late_rows_path = 'out/late');
CREATE TABLE clean WITH (connector = 'delta', path = 'out/clean');
INSERT INTO clean SELECT DISTINCT ON (id) id, ts FROM events ORDER BY id, ts;
";

/// Writes file `n` (row id `n`, ten seconds after file `n - 1`: the watermark moves).
fn write_event(dir: &Path, n: u64) {
    write_file(&dir.join("in"), &format!("{n:04}.json"), &[format!(r#"{{"id": {n}, "ts": "2024-01-01T{:02}:{:02}:{:02}Z"}}"#, n / 360, n / 6 % 60, n % 6 * 10)]);
}

/// Runs the query with a 0 s trigger while files `files` arrive one at a time, each once
/// its predecessor's data batch and the no-data batch after it (the watermark moved) are
/// committed; then stops it (Ctrl-C) once it has planned the batch after the last one.
fn run_with_no_data_batches(dir: &Path, files: std::ops::Range<u64>) {
    let log = dir.join("run.log");
    let mut child =
        weir(dir).args(["run", "p.sql", "--trigger", "0s"]).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let checkpoint = dir.join(".weir/checkpoints/clean");
    let wait_for = |what: &Path| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !what.exists() {
            let shown = || std::fs::read_to_string(&log).unwrap_or_default();
            assert!(Instant::now() < deadline, "{} never appeared; weir's stderr:\n{}", what.display(), shown());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut last = 0;
    for n in files {
        write_event(dir, n);
        // File n is batch 2n, its no-data batch 2n + 1.
        last = 2 * n + 1;
        wait_for(&checkpoint.join(format!("commits/{last}.json")));
    }
    // The batch after `last` is planned (and the lists compacted at a boundary) while the
    // query waits for new files.
    if (last + 1).is_multiple_of(100) {
        wait_for(&checkpoint.join(format!("sources/events/compact-{}.json", last - 1)));
    }
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    assert_eq!(newest_batch(&checkpoint), Some(last), "a no-data batch is the last before the stop");
}

/// One watermarked source whose batches alternate between data and no-data, so the batch
/// at each compaction boundary (99, 199) is a no-data one; after each, a run with nothing
/// new must read nothing, and every id is in the table once (none turns up late).
#[test]
fn no_data_batches_at_compaction_boundaries_read_no_file_twice() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), NO_DATA_PIPELINE).unwrap();
    let checkpoint = dir.join(".weir/checkpoints/clean");
    for (files, last) in [(0..50, 99), (50..100, 199), (100..110, 219)] {
        run_with_no_data_batches(&dir, files.clone());
        let out = run(&dir, "p.sql", &[]);
        assert_ok(&out);
        assert_eq!(newest_batch(&checkpoint), Some(last), "nothing new after batch {last}:\n{}", stderr(&out));
        assert_eq!(ids(&dir.join("out/clean")), (0..files.end as i64).collect::<Vec<_>>());
        let late = dir.join("out/late");
        let committed = std::fs::read_dir(late.join("_delta_log")).is_ok_and(|mut d| d.next().is_some());
        assert!(!committed || ids(&late).is_empty(), "no row came back late after batch {last}: {:?}", ids(&late));
    }
}

/// A batch's list is written (the run dies right after its offsets), then its file changes
/// under the same name. Rewritten in place, the file stops the restart with an error naming
/// it, until it is put back as listed (same bytes and modification time); appended to, the
/// batch reads the listed bytes only, says so, and no later batch reads the rest.
#[test]
fn a_file_changed_after_its_batch_was_listed_is_named_or_read_as_listed() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    let events_dir = dir.join("in/events");
    for n in 0..3u64 {
        write_file(&events_dir, &format!("{n:03}.json"), &events(n * 10 + 100..n * 10 + 110));
    }
    crash_at(&dir, "after_offsets", 1, Duration::from_secs(120));
    let file = events_dir.join("001.json");
    let (listed, modified) = (std::fs::read(&file).unwrap(), std::fs::metadata(&file).unwrap().modified().unwrap());

    // Same size, other rows: the batch would change.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, String::from_utf8(listed.clone()).unwrap().replace("\"id\": 11", "\"id\": 99")).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), listed.len() as u64);
    let out = run(&dir, "p.sql", &[]);
    assert!(!out.status.success(), "a rewritten file must stop the batch:\n{}", stderr(&out));
    let shown = format!("{}: the file was rewritten in place since batch 1 listed it ({} bytes modified at ", file.display(), listed.len());
    assert!(stderr(&out).contains(&shown), "{}", stderr(&out));

    // Put back as listed: the batch runs as it was planned (and the run dies after the
    // offsets of batch 2).
    std::fs::write(&file, &listed).unwrap();
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(modified).unwrap();
    crash_at(&dir, "after_offsets", 2, Duration::from_secs(120));
    // Appended to after the listing: the rows past the listed size are no part of any batch.
    let grown = events_dir.join("002.json");
    std::fs::OpenOptions::new().append(true).open(&grown).unwrap().write_all((events(500..502).join("\n") + "\n").as_bytes()).unwrap();
    let out = run(&dir, "p.sql", &[]);
    assert_ok(&out);
    assert!(stderr(&out).contains("002.json grew from"), "{}", stderr(&out));
    assert!(stderr(&out).contains("no batch reads the rest (a file is read once)"), "{}", stderr(&out));
    write_file(&events_dir, "003.json", &events(130..140));
    assert_ok(&run(&dir, "p.sql", &[]));
    assert_eq!(DeltaView::read(&dir.join("out/clean")).rows(), expected_rows(100..140));
}
