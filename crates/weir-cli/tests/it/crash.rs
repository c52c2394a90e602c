//! Crash recovery: the `weir` process aborts at each step of the batch loop (failpoints
//! compiled into test builds), is started again, and the Delta table must end up exactly as
//! after an uninterrupted run.

use std::collections::{BTreeMap, HashMap};
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

/// The table's content and shape after an uninterrupted run of the pipeline `setup` makes.
fn uninterrupted(setup: fn(&Path)) -> (Vec<String>, Vec<i64>) {
    let (_tmp, reference) = scratch();
    setup(&reference);
    assert_ok(&run(&reference, "p.sql", &[]));
    outcome(&reference)
}

#[test]
fn every_failpoint_crash_then_restart_is_exactly_once() {
    let expected = uninterrupted(setup);
    assert_eq!(expected.0, expected_rows(0..160));
    assert_eq!(expected.1, vec![0, 1, 2, 3], "one commit per batch");

    for failpoint in FAILPOINTS {
        for batch in [0, 2] {
            let (_tmp, dir) = scratch();
            setup(&dir);
            crash_at(&dir, failpoint, batch, LIMIT);
            // The next batch may have been read while this one committed, but its offsets
            // come only after this batch's commit: a restart re-runs one batch at most.
            let checkpoint = dir.join(".weir/checkpoints/clean");
            assert_eq!(newest_batch(&checkpoint), Some(batch), "after a crash at {failpoint} in batch {batch}");
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
            assert_eq!(newest_batch(&dir.join(".weir/checkpoints/clean")), Some(batch), "after a crash at {failpoint} in batch {batch}");
            assert_ok(&run(&dir, "p.sql", &[]));
            assert_eq!(outcome(&dir), expected, "after a crash at {failpoint} in batch {batch}");
        }
    }
}

/// A batch's commit that fails (an error, not a crash) while the next batch is read (one file
/// a batch leaves a backlog, so the loop reads ahead): the run stops with that batch's
/// error, the next batch's offsets are never written and none of its rows is in the table,
/// and a restart ends as an uninterrupted run. For a stateless query (the next batch waits
/// for the commit at its first row) and a deduplication (at its output).
#[test]
fn a_commit_that_fails_stops_the_run_before_the_next_batch_s_offsets() {
    for (stateful, setup) in [(false, setup as fn(&Path)), (true, setup_dedup)] {
        let expected = uninterrupted(setup);
        for batch in [1, 2] {
            let (_tmp, dir) = scratch();
            setup(&dir);
            let mut cmd = weir(&dir);
            cmd.args(["run", "p.sql", "--trigger", "available-now"]).env("WEIR_FAILPOINT", format!("commit_error:{batch}"));
            let out = output_within(cmd, LIMIT);
            let what = format!("stateful {stateful}, commit of batch {batch}");
            assert!(!out.status.success(), "{what}: the run fails");
            assert!(stderr(&out).contains(&format!("batch {batch}: failpoint commit_error hit in batch {batch}")), "{what}: {}", stderr(&out));
            let checkpoint = dir.join(".weir/checkpoints/clean");
            assert_eq!(newest_batch(&checkpoint), Some(batch), "{what}: no offsets after the failed batch's");
            assert!(!checkpoint.join(format!("commits/{batch}.json")).exists(), "{what}");
            let txns: Vec<i64> = DeltaView::read(&dir.join("out/clean")).txns().into_iter().map(|(_, v)| v).collect();
            assert_eq!(txns, (0..batch as i64).collect::<Vec<_>>(), "{what}: the batches before it, and nothing after");
            assert_ok(&run(&dir, "p.sql", &[]));
            assert_eq!(outcome(&dir), expected, "{what}: after a restart");
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
    let expected = uninterrupted(setup);

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
    let expected = uninterrupted(setup);

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

/// Every failpoint of the batch loop and the Delta sink, in the order a batch reaches them.
const ALL_FAILPOINTS: &[&str] =
    &["after_offsets", "after_execute", "before_delta_commit", "after_delta_commit", "after_sink_commit", "after_state_commit", "after_commit_log"];

/// `2024-01-01T00:00:00Z` in ms.
const WINDOW_BASE_MS: i64 = 1_704_067_200_000;
const WINDOW_MS: i64 = 10_000;
const WINDOW_DELAY_MS: i64 = 5_000;
/// Files, one per batch: more than the 10 batches after which the state is first snapshotted
/// (`9.snapshot`), so a restart after batch 10 loads a snapshot and the deltas after it.
const WINDOW_FILES: u64 = 14;

/// One input event of the windowed pipelines.
#[derive(Clone, Debug)]
struct Ev {
    id: u64,
    user: String,
    amount: f64,
    ts_ms: i64,
}

impl Ev {
    fn json(&self) -> String {
        let ms = self.ts_ms - WINDOW_BASE_MS;
        // Within 2024-01-01 or, for late rows of the first files, the last minutes of 2023.
        let (day, ms) = if ms < 0 { ("2023-12-31", ms + 86_400_000) } else { ("2024-01-01", ms) };
        let ts = format!("{day}T{:02}:{:02}:{:02}.{:03}Z", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        format!(r#"{{"id": {}, "user": "{}", "amount": {}, "ts": "{ts}"}}"#, self.id, self.user, self.amount)
    }
}

/// The files of the windowed pipelines, in name (and batch) order. File `n` holds ids
/// `20n .. 20n + 30`, id `i` at `i / 2` seconds: 15 s of event time, so 10-second windows
/// span two or three files and their partial aggregates carry across batches. The last ten
/// ids of a file come again at the start of the next one (the same time, another amount: a
/// duplicate for the dedup, a second row for a plain window). From the third file on, files
/// also have rows behind the watermark: a new id 30 s back and a copy of an id of three files
/// before (late for the dedup and the window), and a copy of an id of two files before, at
/// its time (late for the dedup, whose rule is the row's time; on time for the window, whose
/// rule is the window's end, and emitted in the same batch). Amounts are multiples of 1/4, so
/// every sum is exact in any order and the model's sums equal weir's bit for bit.
fn window_files() -> Vec<Vec<Ev>> {
    let ev = |id: u64, file: u64| Ev {
        id,
        user: format!("u{}", id % 3),
        amount: (id % 17) as f64 * 0.25 + file as f64 * 100.0,
        ts_ms: WINDOW_BASE_MS + id as i64 * 500,
    };
    (0..WINDOW_FILES)
        .map(|n| {
            let mut rows: Vec<Ev> = (20 * n..20 * n + 30).map(|id| ev(id, n)).collect();
            if n >= 2 {
                rows.insert(7, Ev { id: 10_000 + n, user: "late".into(), amount: 1.0, ts_ms: WINDOW_BASE_MS + (n as i64 * 10 - 30) * 1000 });
                rows.push(ev(20 * (n - 2) + 3, n));
            }
            if n >= 3 {
                rows.insert(15, ev(20 * (n - 3) + 3, n));
            }
            rows
        })
        .collect()
}

/// Count and sum per (window start ms, user).
type Groups = BTreeMap<(i64, String), (u64, f64)>;

/// Per (window start, user): count and sum, by Spark's append mode over the batches
/// `batches` (one per file), then a final no-data batch. Batch N's watermark is
/// `max event time of batches 0..N - delay`; a (row, window) pair whose window ends at or
/// below the previous batch's watermark is late and dropped; a group is written once the
/// watermark reaches its end, so the table ends with every group ending at or below the
/// final watermark. With `dedup`, rows go through `DISTINCT ON (id) … ORDER BY id, ts`
/// first: a late row goes, a key held drops its rows, a new key keeps its first row and is
/// held until the batch watermark reaches its time + delay. Also returns how many rows were
/// late and how many were duplicates.
fn window_model(batches: &[Vec<Ev>], dedup: bool) -> (Groups, u64, u64) {
    let (mut watermark, mut late_watermark, mut max_ts) = (0i64, 0i64, i64::MIN);
    let mut groups = Groups::new();
    let mut held: HashMap<u64, i64> = HashMap::new();
    let (mut late, mut dups) = (0, 0);
    for rows in batches {
        let mut new_keys = Vec::new();
        for e in rows {
            let start = e.ts_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
            if (dedup && e.ts_ms <= late_watermark) || start + WINDOW_MS <= late_watermark {
                late += 1;
                continue;
            }
            if dedup {
                if held.contains_key(&e.id) || new_keys.contains(&e.id) {
                    dups += 1;
                    continue;
                }
                new_keys.push(e.id);
                held.insert(e.id, e.ts_ms + WINDOW_DELAY_MS);
            }
            let g = groups.entry((start, e.user.clone())).or_insert((0, 0.0));
            g.0 += 1;
            g.1 += e.amount;
        }
        if watermark > 0 {
            held.retain(|_, expires| *expires > watermark);
        }
        max_ts = rows.iter().map(|e| e.ts_ms).fold(max_ts, i64::max);
        late_watermark = watermark;
        watermark = watermark.max(max_ts - WINDOW_DELAY_MS);
    }
    groups.retain(|(start, _), _| start + WINDOW_MS <= watermark);
    (groups, late, dups)
}

/// ISO time as the independent reader prints a UTC timestamp of 2024-01-01.
fn reader_time(ms: i64) -> String {
    let s = (ms - WINDOW_BASE_MS) / 1000;
    assert!((0..86_400).contains(&s) && ms % 1000 == 0, "window bounds stay on whole seconds of 2024-01-01");
    format!("2024-01-01T{:02}:{:02}:{:02}+00:00", s / 3600, s / 60 % 60, s % 60)
}

fn window_pipeline(dedup: bool) -> String {
    let from = if dedup { "TUMBLE(d, ts, INTERVAL '10' SECOND)" } else { "TUMBLE(events, ts, INTERVAL '10' SECOND)" };
    let with = if dedup { "WITH d AS (SELECT DISTINCT ON (id) * FROM events ORDER BY id, ts)" } else { "" };
    format!(
        "CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE, ts TIMESTAMP,
           WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE agg WITH (connector = 'delta', path = 'out/agg');
         INSERT INTO agg {with}
         SELECT window_start, window_end, user, count(*) AS n, sum(amount) AS total, avg(amount) AS mean
         FROM {from}
         GROUP BY window_start, window_end, user;"
    )
}

fn setup_window(dir: &Path, dedup: bool) {
    std::fs::write(dir.join("p.sql"), window_pipeline(dedup)).unwrap();
    for (n, rows) in window_files().iter().enumerate() {
        write_file(&dir.join("in/events"), &format!("{n:03}.json"), &rows.iter().map(Ev::json).collect::<Vec<_>>());
    }
}

/// The windowed table's rows (sorted, as the reader gives them) and its txn versions, after
/// checking that each (window, user) is in it once and every txn is this query's.
fn window_outcome(dir: &Path, what: &str) -> (Vec<String>, Vec<i64>) {
    let table = DeltaView::read(&dir.join("out/agg"));
    let id = query_id(&dir.join(".weir/checkpoints/agg"));
    let txns = table.txns();
    assert!(txns.iter().all(|(app, _)| *app == id), "{what}: every txn is this query's: {txns:?}");
    let mut groups: Vec<(String, String, String)> = table.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["window_start"].to_string(), r["window_end"].to_string(), r["user"].to_string()))
        .collect();
    let all = groups.len();
    groups.sort();
    groups.dedup();
    assert_eq!(groups.len(), all, "{what}: a (window, user) is written more than once");
    (table.rows(), txns.into_iter().map(|(_, v)| v).collect())
}

/// Checks an uninterrupted run's table against [`window_model`].
fn check_window_model(dir: &Path, dedup: bool) {
    let (model, late, dups) = window_model(&window_files(), dedup);
    assert!(model.len() > 30 && late >= WINDOW_FILES, "the data must span many windows and have late rows: {} groups, {late} late", model.len());
    assert!(!dedup || dups >= 100, "the dedup must drop duplicates: {dups}");
    let table = DeltaView::read(&dir.join("out/agg"));
    let mut got = BTreeMap::new();
    for r in table.json["rows"].as_array().unwrap() {
        let key = (r["window_start"].as_str().unwrap().to_string(), r["user"].as_str().unwrap().to_string());
        let (n, total, mean) = (r["n"].as_u64().unwrap(), r["total"].as_f64().unwrap(), r["mean"].as_f64().unwrap());
        assert_eq!(r["window_end"].as_str().unwrap(), reader_time(weir_window_end(&key.0)), "{r}");
        // The reader prints floats in their shortest form; parsing them back may be off by
        // an ulp, so the mean is compared within a hair of the model's sum / n.
        let want_mean = total / n as f64;
        assert!((mean - want_mean).abs() <= want_mean.abs() * 1e-12, "{r}: mean vs total / n");
        got.insert(key, (n, total));
    }
    let want: BTreeMap<(String, String), (u64, f64)> = model.into_iter().map(|((start, user), v)| ((reader_time(start), user), v)).collect();
    assert_eq!(got, want, "the uninterrupted run's table vs the model (dedup: {dedup})");
}

/// The end of the 10-second window starting at `start` as the reader prints it, in ms.
fn weir_window_end(start: &str) -> i64 {
    let hms: Vec<i64> = start["2024-01-01T".len()..start.len() - "+00:00".len()].split(':').map(|p| p.parse().unwrap()).collect();
    WINDOW_BASE_MS + (hms[0] * 3600 + hms[1] * 60 + hms[2]) * 1000 + WINDOW_MS
}

/// Crashes a windowed pipeline (`dedup`: with a deduplication before the window) at every
/// failpoint of batches `batches`, restarts it, and compares the table with an
/// uninterrupted run's, which must equal the model.
fn crash_windowed_pipeline(dedup: bool, batches: &[u64]) {
    let (_ref_tmp, reference) = scratch();
    setup_window(&reference, dedup);
    assert_ok(&run(&reference, "p.sql", &[]));
    check_window_model(&reference, dedup);
    let expected = window_outcome(&reference, "the uninterrupted run");
    let state = reference.join(".weir/checkpoints/agg/state");
    let window_dir = if dedup { "window-1" } else { "window-0" };
    assert!(state.join(window_dir).join("9.snapshot").exists(), "the window's state is snapshotted after batch 9");
    assert_eq!(state.join("dedup").join("9.snapshot").exists(), dedup, "the dedup's state is snapshotted after batch 9");
    for &batch in batches {
        assert!(expected.1.contains(&(batch as i64)), "batch {batch} writes rows, so every failpoint of the sink is reached: {:?}", expected.1);
    }

    for failpoint in ALL_FAILPOINTS {
        for &batch in batches {
            let (_tmp, dir) = scratch();
            setup_window(&dir, dedup);
            crash_at(&dir, failpoint, batch, LIMIT);
            // The next batch may have been read while this one committed, but its offsets
            // come only after this batch's commit: a restart re-runs one batch at most.
            let checkpoint = dir.join(".weir/checkpoints/agg");
            assert_eq!(newest_batch(&checkpoint), Some(batch), "after a crash at {failpoint} in batch {batch}");
            let restarted = run(&dir, "p.sql", &[]);
            assert_ok(&restarted);
            let what = format!("dedup {dedup}: after a crash at {failpoint} in batch {batch}");
            assert_eq!(window_outcome(&dir, &what), expected, "{what}:\n{}", stderr(&restarted));
        }
    }
}

/// A tumbling window's partial aggregates (count, sum, avg per window and user) carry across
/// batches, are snapshotted after batch 9, and some rows are late. A crash at every
/// failpoint of batches 2, 9 (the snapshot's) and 11 (restored from the snapshot and a delta),
/// then a restart, leaves the very table of an uninterrupted run: each window written once,
/// with the same values.
#[test]
fn windowed_query_crash_at_every_failpoint_restores_state_exactly() {
    crash_windowed_pipeline(false, &[2, 9, 11]);
}

/// The deduplication's snapshot of batch 9 is made from its state files while batch 10 runs.
/// A crash with the snapshot half written (its first rows in its staging file) loses
/// nothing: the restart removes the staging file, loads the state from the deltas instead,
/// and leaves the table of an uninterrupted run.
#[test]
fn a_crash_while_a_snapshot_is_made_from_the_files_loses_nothing() {
    let (_ref_tmp, reference) = scratch();
    setup_window(&reference, true);
    assert_ok(&run(&reference, "p.sql", &[]));
    let expected = window_outcome(&reference, "the uninterrupted run");
    let (_tmp, dir) = scratch();
    setup_window(&dir, true);
    crash_at(&dir, "during_state_snapshot", 9, LIMIT);
    let state = dir.join(".weir/checkpoints/agg/state/dedup");
    let names = || -> Vec<String> { std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect() };
    let crashed = names();
    assert!(crashed.iter().any(|n| n.starts_with("9.snapshot#")) && !crashed.iter().any(|n| n == "9.snapshot"), "half written: {crashed:?}");
    let restarted = run(&dir, "p.sql", &[]);
    assert_ok(&restarted);
    assert_eq!(window_outcome(&dir, "after a crash while a snapshot was made"), expected, "{}", stderr(&restarted));
    assert!(!names().iter().any(|n| n.contains('#')), "the staging file is gone: {:?}", names());
}

/// The same with a deduplication before the window (`WITH d AS (SELECT DISTINCT ON (id) …)
/// … FROM TUMBLE(d, …)`): two operators, each with its own state, deltas and snapshots, must
/// both come back as they were.
#[test]
fn dedup_then_window_crash_at_every_failpoint_restores_state_exactly() {
    crash_windowed_pipeline(true, &[3, 10, 12]);
}
