//! Crash recovery: the `weir` process aborts at each step of the batch loop (failpoints
//! compiled into test builds), is started again, and the Delta table must end up exactly as
//! after an uninterrupted run.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

const FAILPOINTS: &[&str] = &["after_offsets", "after_execute", "after_sink_commit", "after_commit_log"];

fn setup(dir: &Path) {
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    for n in 0..4u64 {
        write_file(&dir.join("in/events"), &format!("{n:03}.json"), &events(n * 40..n * 40 + 40));
    }
}

/// How long a crashed run may take.
const LIMIT: Duration = Duration::from_secs(120);

/// The table's content and shape, for comparison with the uninterrupted run.
fn outcome(dir: &Path) -> (Vec<String>, Vec<i64>) {
    let table = DeltaView::read(&dir.join("out/clean"));
    let id = query_id(&dir.join(".weir/checkpoints/clean"));
    let txns = table.txns();
    assert!(txns.iter().all(|(app, _)| *app == id), "every txn is this query's");
    (table.rows(), txns.into_iter().map(|(_, v)| v).collect())
}

#[test]
fn every_failpoint_crash_then_restart_is_exactly_once() {
    let (_ref_tmp, reference) = scratch();
    setup(&reference);
    assert_ok(&run(&reference, "p.sql", &[]));
    let expected = outcome(&reference);
    assert_eq!(expected.0, expected_rows(0..160));
    assert_eq!(expected.1, vec![0, 1, 2, 3], "one commit per batch");

    for failpoint in FAILPOINTS {
        for batch in [0, 2] {
            let (_tmp, dir) = scratch();
            setup(&dir);
            crash_at(&dir, failpoint, batch, LIMIT);
            let restarted = run(&dir, "p.sql", &[]);
            assert_ok(&restarted);
            assert_eq!(outcome(&dir), expected, "after a crash at {failpoint} in batch {batch}");
            // The crashed batch is re-run, except when it was fully committed.
            let replayed = stderr(&restarted).contains("replayed after a restart");
            assert_eq!(replayed, *failpoint != "after_commit_log", "{failpoint}:{batch}: {}", stderr(&restarted));
        }
    }
}

const DEDUP_PIPELINE: &str = "
CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = 1);

CREATE TABLE clean WITH (connector = 'delta', path = 'out/clean');

INSERT INTO clean SELECT DISTINCT ON (id) id, user, amount, ts FROM events ORDER BY id, ts;
";

/// Five files; each shares ten ids with the next (duplicates across batches, so a lost
/// state would show), and each has one row far behind the watermark (late).
fn setup_dedup(dir: &Path) {
    std::fs::write(dir.join("p.sql"), DEDUP_PIPELINE).unwrap();
    for n in 0..5u64 {
        let mut lines: Vec<String> = (n * 20..n * 20 + 30)
            .map(|id| format!(r#"{{"id": {id}, "user": "u{n}", "amount": {id}.5, "ts": "2024-01-01T00:{:02}:{:02}Z"}}"#, id / 60, id % 60))
            .collect();
        lines.push(format!(r#"{{"id": {}, "user": "late", "amount": 0, "ts": "2024-01-01T00:00:00Z"}}"#, 1000 + n));
        write_file(&dir.join("in/events"), &format!("{n:03}.json"), &lines);
    }
}

#[test]
fn stateful_query_crash_at_every_failpoint_restores_state_exactly() {
    let (_ref_tmp, reference) = scratch();
    setup_dedup(&reference);
    assert_ok(&run(&reference, "p.sql", &[]));
    let expected = outcome(&reference);
    // Ids 0..110 once each; the late rows of the first two files pass (no watermark yet).
    assert_eq!(expected.0.len(), 110 + 2, "{:?}", expected.0.len());
    assert!(std::fs::read_dir(reference.join(".weir/checkpoints/clean/state/dedup")).unwrap().count() > 0);

    for failpoint in FAILPOINTS.iter().copied().chain(["after_state_commit"]) {
        for batch in [1, 3] {
            let (_tmp, dir) = scratch();
            setup_dedup(&dir);
            crash_at(&dir, failpoint, batch, LIMIT);
            assert_ok(&run(&dir, "p.sql", &[]));
            assert_eq!(outcome(&dir), expected, "after a crash at {failpoint} in batch {batch}");
        }
    }
}

/// Every `.parquet` file under `table`, relative to it (hidden `_`/`.` folders skipped).
fn parquet_files(table: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() && !name.starts_with('_') && !name.starts_with('.') {
                walk(root, &path, out);
            } else if name.ends_with(".parquet") {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(table, table, &mut out);
    out.sort();
    out
}

/// A crash after the data files of a batch are written but before its Delta commit leaves
/// files no snapshot references. The restart removes exactly those (weir recorded them before
/// writing them), never a file someone else put there, and the table ends up as after an
/// uninterrupted run.
#[test]
fn orphan_data_files_of_a_crashed_commit_are_removed() {
    let (_ref_tmp, reference) = scratch();
    setup(&reference);
    assert_ok(&run(&reference, "p.sql", &[]));
    let expected = outcome(&reference);

    for batch in [0, 2] {
        let (_tmp, dir) = scratch();
        setup(&dir);
        crash_at(&dir, "before_delta_commit", batch, LIMIT);
        let table = dir.join("out/clean");
        let on_disk = parquet_files(&table);
        let referenced: Vec<String> = if table.join("_delta_log").exists() {
            DeltaView::read(&table).commits().iter().flat_map(|c| c["adds"].as_array().unwrap().clone()).map(|a| a.as_str().unwrap().to_string()).collect()
        } else {
            Vec::new()
        };
        let orphans: Vec<&String> = on_disk.iter().filter(|f| !referenced.contains(f)).collect();
        assert!(!orphans.is_empty(), "batch {batch}: the crash should leave the batch's data files: {on_disk:?}");
        // Someone else's file in the table folder, which weir must leave alone.
        std::fs::write(table.join("part-00000-not-weirs.parquet"), b"someone else's").unwrap();

        assert_ok(&run(&dir, "p.sql", &[]));
        assert_eq!(outcome(&dir), expected, "after a crash before the Delta commit of batch {batch}");
        let referenced: Vec<String> =
            DeltaView::read(&table).commits().iter().flat_map(|c| c["adds"].as_array().unwrap().clone()).map(|a| a.as_str().unwrap().to_string()).collect();
        let mut left: Vec<String> = parquet_files(&table).into_iter().filter(|f| !referenced.contains(f)).collect();
        left.sort();
        assert_eq!(left, ["part-00000-not-weirs.parquet"], "batch {batch}: only the foreign file may be unreferenced");
        let pending = dir.join(".weir/checkpoints/clean/sinks/clean/pending");
        assert_eq!(std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0), 0, "the journal is empty after recovery");
    }
}

/// Directory names that URLs and object-store paths must encode: a space, non-ASCII
/// characters, `%` (which also looks like an encoding itself) and `#`.
const AWKWARD_DIRS: &[&str] = &["c dé", "c d%20é #1"];

/// The records of the data files a Delta sink wrote, left in the checkpoint under `dir`.
fn journal_records(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(".weir/checkpoints/clean/sinks/clean/pending")).map(|d| d.count()).unwrap_or(0)
}

/// The data files the table's log adds, as paths relative to the table (decoded once).
fn logged_files(table: &Path) -> Vec<String> {
    DeltaView::read(table).commits().iter().flat_map(|c| c["adds"].as_array().unwrap().clone()).map(|a| a.as_str().unwrap().to_string()).collect()
}

/// A crash after a batch's Delta commit and before the checkpoint's records of its data files
/// are cleared leaves records of committed files. The restart keeps those files, with the
/// input, table and checkpoint under a directory whose name URLs encode; and a table at such
/// a path opens again after its first commit.
#[test]
fn committed_files_survive_a_crash_before_their_records_are_cleared() {
    let (_ref_tmp, reference) = scratch();
    setup(&reference);
    assert_ok(&run(&reference, "p.sql", &[]));
    let expected = outcome(&reference);

    for name in AWKWARD_DIRS {
        for batch in [0, 2] {
            let (_tmp, root) = scratch();
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            setup(&dir);
            crash_at(&dir, "after_delta_commit", batch, LIMIT);
            assert!(journal_records(&dir) > 0, "{name:?}, batch {batch}: the crash leaves the records of committed files");
            assert_ok(&run(&dir, "p.sql", &[]));
            assert_eq!(outcome(&dir), expected, "{name:?}: after a crash after the Delta commit of batch {batch}");
            let table = dir.join("out/clean");
            for file in logged_files(&table) {
                assert!(table.join(&file).exists(), "{name:?}, batch {batch}: committed file {file} was deleted");
            }
            assert_eq!(journal_records(&dir), 0, "{name:?}, batch {batch}: the journal is empty after the restart");
        }
    }
}

/// Runs Python `code` with the independent reader's packages; `TABLE` is the table's path.
/// The interpreter leaves with `os._exit` once the code is done: deltalake's `optimize`
/// leaves native threads behind that sometimes abort a normal interpreter shutdown
/// ("terminate called without an active exception") after the work completed.
fn python_on(table: &Path, code: &str) -> String {
    let python = std::env::var("WEIR_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let code = format!("{code}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)");
    let out = std::process::Command::new(python).arg("-c").arg(code).env("TABLE", table).output().unwrap();
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A committed file that a later commit removed is still part of the versions before that
/// commit, which readers can still travel back to: the restart's sweep keeps it too.
#[test]
fn files_of_older_readable_versions_survive_the_sweep() {
    let (_tmp, dir) = scratch();
    setup(&dir);
    crash_at(&dir, "after_delta_commit", 1, LIMIT);
    let table = dir.join("out/clean");
    let before = logged_files(&table);
    assert_eq!(before.len(), 2, "batches 0 and 1 are committed: {before:?}");
    // Another writer compacts the table: version 2 removes both files.
    python_on(&table, "import os; from deltalake import DeltaTable; DeltaTable(os.environ['TABLE']).optimize.compact()");

    assert_ok(&run(&dir, "p.sql", &[]));
    for file in &before {
        assert!(table.join(file).exists(), "{file}, removed by the compaction, is still in version 1 and must stay");
    }
    let rows = python_on(&table, "import os; from deltalake import DeltaTable; print(DeltaTable(os.environ['TABLE'], version=1).to_pyarrow_table().num_rows)");
    assert_eq!(rows.trim(), expected_rows(0..80).len().to_string(), "version 1 is still readable");
    assert_eq!(DeltaView::read(&table).rows(), expected_rows(0..160));
    assert_eq!(journal_records(&dir), 0);
}
