//! Delta tables read as streams: tables whose commits another engine wrote (Python
//! `deltalake`: partitions with characters paths escape, a checkpoint parquet in the log,
//! compactions, deletes), read by `weir run` into another Delta table and checked with the
//! independent reader and DuckDB.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Appends rows `ids` (`{"id", "p": "p<id % 3> a%b", "ts"}`) to the Delta table `bronze` in
/// `dir` as one commit, partitioned by `p`.
fn append(dir: &Path, ids: std::ops::Range<i64>) {
    append_to(dir, "bronze", ids);
}

/// [`append`] to the table `table`.
fn append_to(dir: &Path, table: &str, ids: std::ops::Range<i64>) {
    let ids: Vec<i64> = ids.collect();
    python_in(
        dir,
        &format!(
            "import pyarrow as pa, datetime\nfrom deltalake import write_deltalake\nids = {ids:?}\n\
             t = pa.table({{'id': pa.array(ids, pa.int64()), 'p': pa.array([f'p{{i % 3}} a%b' for i in ids]), \
             'ts': pa.array([datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=i) for i in ids], pa.timestamp('us', tz='UTC'))}})\n\
             write_deltalake('{table}', t, mode='append', partition_by=['p'])"
        ),
    );
}

/// The ids of a table's rows, as the independent reader reads them, sorted.
fn ids(table: &Path) -> Vec<i64> {
    let view = DeltaView::read_columns(table, &["id"]);
    let mut ids: Vec<i64> = view.json["rows"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids
}

fn span(ids: std::ops::Range<i64>) -> Vec<i64> {
    ids.collect()
}

const SCRIPT: &str = "
CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze', max_files_per_trigger = 2);
CREATE TABLE silver WITH (connector = 'delta', path = 'silver');
INSERT INTO silver SELECT id, p, ts FROM bronze;
";

/// The snapshot (from a checkpoint parquet, after a compaction), then new commits, each file
/// once, with its partition values; a compaction's rewritten files are not read again; a
/// delete stops the query, naming the version and the option, and writes nothing; with
/// `skip_change_commits` the delete is skipped and the commits after it read.
#[test]
fn a_table_written_by_another_engine_streams_exactly_once() {
    let (_tmp, dir) = scratch();
    for i in 0..4 {
        append(&dir, i * 10..(i + 1) * 10);
    }
    python_in(&dir, "from deltalake import DeltaTable\nt = DeltaTable('bronze')\nt.create_checkpoint()\nt.optimize.compact()");
    append(&dir, 40..45);
    assert!(dir.join("bronze/_delta_log/00000000000000000003.checkpoint.parquet").exists());
    std::fs::write(dir.join("p.sql"), SCRIPT).unwrap();
    let out = run(&dir, "p.sql", &[]);
    assert_ok(&out);
    assert_eq!(ids(&dir.join("silver")), span(0..45));
    // Two files per batch at most: the compacted snapshot has a file per partition.
    assert!(stderr(&out).contains("batch 1:"), "{}", stderr(&out));
    let view = DeltaView::read(&dir.join("silver"));
    for row in view.json["rows"].as_array().unwrap() {
        let id = row["id"].as_i64().unwrap();
        assert_eq!(row["p"], json!(format!("p{} a%b", id % 3)), "{row}");
    }

    // New commits, a compaction of them, then a delete.
    append(&dir, 45..50);
    append(&dir, 50..53);
    python_in(&dir, "from deltalake import DeltaTable\nDeltaTable('bronze').optimize.compact()");
    append(&dir, 53..55);
    python_in(&dir, "from deltalake import DeltaTable\nt = DeltaTable('bronze')\nt.delete('id = 54')\nprint(t.version())");
    append(&dir, 55..60);
    let before = DeltaView::read(&dir.join("silver")).commits().len();
    let out = run(&dir, "p.sql", &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("version 10 of the Delta table at bronze removes or rewrites rows (DELETE)") && err.contains("skip_change_commits"), "{err}");
    // The batches before the delete committed; none read past it.
    assert_eq!(ids(&dir.join("silver")), span(0..55));
    let after = DeltaView::read(&dir.join("silver")).commits().len();
    assert!(after > before, "the commits before the delete are read");

    std::fs::write(dir.join("p.sql"), SCRIPT.replace("max_files_per_trigger = 2", "max_files_per_trigger = 2, skip_change_commits = true")).unwrap();
    assert_ok(&run(&dir, "p.sql", &[]));
    // Row 54 was read before its delete; the delete is skipped, not applied.
    assert_eq!(ids(&dir.join("silver")), span(0..60));
    assert_eq!(duckdb_rows(&dir.join("silver"), &["id"]).len(), 60, "DuckDB reads the same table");

    // The offsets are Spark's Delta source's.
    let offsets = dir.join(".weir/checkpoints/silver/offsets");
    let last = std::fs::read_dir(&offsets).unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json")?.parse::<u64>().ok()).max().unwrap();
    let offset: Value = serde_json::from_slice(&std::fs::read(offsets.join(format!("{last}.json"))).unwrap()).unwrap();
    let end = &offset["sources"]["bronze"]["end"];
    assert_eq!(end["reservoirVersion"], json!(11), "{end}");
    assert_eq!(end["isStartingVersion"], json!(false), "{end}");
    assert!(end["reservoirId"].as_str().is_some_and(|id| !id.is_empty()), "{end}");
}

/// `starting_version` reads that commit and those after it; `starting_timestamp` the commits
/// made at or after it (by their log entries' times).
#[test]
fn starting_version_and_starting_timestamp() {
    let (_tmp, dir) = scratch();
    for i in 0..4 {
        append(&dir, i * 10..(i + 1) * 10);
    }
    // Versions 0 and 1 were committed in 2020, 2 and 3 in 2021.
    python_in(
        &dir,
        "import os\nfor v, year in [(0, 2020), (1, 2020), (2, 2021), (3, 2021)]:\n    t = {2020: 1577880000, 2021: 1609502400}[year] + v\n    os.utime(f'bronze/_delta_log/{v:020}.json', (t, t))",
    );
    std::fs::write(
        dir.join("v.sql"),
        "CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze', starting_version = 1);
         CREATE TABLE from_v1 WITH (connector = 'delta', path = 'from_v1');
         INSERT INTO from_v1 SELECT id FROM bronze;",
    )
    .unwrap();
    assert_ok(&run(&dir, "v.sql", &[]));
    assert_eq!(ids(&dir.join("from_v1")), span(10..40), "version 1 holds ids 10..20 (version 0 created the table with 0..10)");
    std::fs::write(
        dir.join("t.sql"),
        "CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze', startingTimestamp = '2020-06-01');
         CREATE TABLE from_ts WITH (connector = 'delta', path = 'from_ts');
         INSERT INTO from_ts SELECT id FROM bronze;",
    )
    .unwrap();
    assert_ok(&run(&dir, "t.sql", &[]));
    assert_eq!(ids(&dir.join("from_ts")), span(20..40));
    // A moment after the newest commit names it.
    std::fs::write(dir.join("late.sql"), std::fs::read_to_string(dir.join("t.sql")).unwrap().replace("2020-06-01", "2030-01-01").replace("from_ts", "late")).unwrap();
    let out = run(&dir, "late.sql", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("starting_timestamp is after the newest commit of the Delta table at bronze (version 3"), "{}", stderr(&out));
}

/// A schema change in the source table stops a running query with a message naming it; a
/// restart reads on, with the new column.
#[test]
fn a_schema_change_stops_the_query_and_a_restart_reads_on() {
    let (_tmp, dir) = scratch();
    append(&dir, 0..10);
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze');
         CREATE TABLE silver WITH (connector = 'delta', path = 'silver');
         INSERT INTO silver SELECT id FROM bronze;",
    )
    .unwrap();
    let mut cmd = weir(&dir);
    cmd.args(["run", "p.sql", "--trigger", "100ms"]).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Wait for the first batch, then widen the table.
    wait_for_path(&mut child, &dir.join("silver/_delta_log/00000000000000000000.json"), "the first batch");
    python_in(
        &dir,
        "import pyarrow as pa, datetime\nfrom deltalake import write_deltalake\n\
         t = pa.table({'id': pa.array([10, 11], pa.int64()), 'p': pa.array(['q', 'q']), \
         'ts': pa.array([datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)] * 2, pa.timestamp('us', tz='UTC')), 'extra': pa.array(['x', 'y'])})\n\
         write_deltalake('bronze', t, mode='append', schema_mode='merge')",
    );
    let out = output_within_child(child, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("version 1 of the Delta table at bronze changes its schema") && err.contains("extra STRING"), "{err}");
    assert_eq!(ids(&dir.join("silver")), span(0..10));
    assert_ok(&run(&dir, "p.sql", &[]));
    assert_eq!(ids(&dir.join("silver")), span(0..12));
}

/// Waits for a spawned `weir` to end (stderr piped), killing it after `limit`.
fn output_within_child(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("weir did not stop within {limit:?}:\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A stream over a table that does not exist yet starts when its columns are declared, and
/// reads the table once a writer creates it; without them it is refused, as is a query
/// reading and writing one table.
#[test]
fn declared_tables_wait_for_their_first_commit_and_loops_are_refused() {
    let (_tmp, dir) = scratch();
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE bronze (id BIGINT, p STRING) WITH (connector = 'delta', path = 'bronze');
         CREATE TABLE silver WITH (connector = 'delta', path = 'silver');
         INSERT INTO silver SELECT id, p FROM bronze;",
    )
    .unwrap();
    let out = run(&dir, "p.sql", &[]);
    assert_ok(&out);
    assert!(!dir.join("silver/_delta_log").exists(), "nothing to read, nothing written");
    append(&dir, 0..7);
    assert_ok(&run(&dir, "p.sql", &[]));
    let view = DeltaView::read(&dir.join("silver"));
    assert_eq!(view.rows().len(), 7);
    assert!(view.rows()[0].contains("a%b"), "partition values read: {:?}", view.rows());
    // A `file://` URL waits for its table as a path does.
    let url = format!("file://{}", dir.join("later").display());
    std::fs::write(
        dir.join("url.sql"),
        format!(
            "CREATE TABLE later (id BIGINT) WITH (connector = 'delta', path = '{url}');
             CREATE TABLE out_later WITH (connector = 'delta', path = 'out_later');
             INSERT INTO out_later SELECT id FROM later;"
        ),
    )
    .unwrap();
    assert_ok(&run(&dir, "url.sql", &[]));
    assert!(!dir.join("out_later/_delta_log").exists(), "nothing to read, nothing written");

    std::fs::write(
        dir.join("undeclared.sql"),
        "CREATE TABLE nothing WITH (connector = 'delta', path = 'nothing');
         CREATE TABLE out WITH (connector = 'delta', path = 'out');
         INSERT INTO out SELECT * FROM nothing;",
    )
    .unwrap();
    let out = run(&dir, "undeclared.sql", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no Delta table at nothing yet; declare its columns"), "{}", stderr(&out));

    std::fs::write(
        dir.join("loop.sql"),
        "CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze');
         INSERT INTO bronze SELECT * FROM bronze;",
    )
    .unwrap();
    let out = run(&dir, "loop.sql", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reads table 'bronze' as a stream and writes the same Delta table"), "{}", stderr(&out));
}

/// `STREAM(t)` picks the stream among Delta tables: a stream of one joined with another
/// read whole; without the mark, a join of two Delta tables is a join of two streams, and
/// refused with a message that says how to mark one.
#[test]
fn stream_marks_the_stream_of_a_join_of_delta_tables() {
    let (_tmp, dir) = scratch();
    append(&dir, 0..9);
    python_in(
        &dir,
        "import pyarrow as pa\nfrom deltalake import write_deltalake\n\
         write_deltalake('dim', pa.table({'k': pa.array([0, 1, 2], pa.int64()), 'name': pa.array(['zero', 'one', 'two'])}))",
    );
    let script = |from: &str| {
        format!(
            "CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze');
             CREATE TABLE dim WITH (connector = 'delta', path = 'dim');
             CREATE TABLE joined WITH (connector = 'delta', path = 'joined');
             INSERT INTO joined SELECT b.id, d.name FROM {from} JOIN dim d ON b.id % 3 = d.k;"
        )
    };
    std::fs::write(dir.join("both.sql"), script("bronze b")).unwrap();
    let out = run(&dir, "both.sql", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("STREAM("), "the refusal says how to mark the stream: {}", stderr(&out));

    std::fs::write(dir.join("p.sql"), script("STREAM(bronze) b")).unwrap();
    assert_ok(&run(&dir, "p.sql", &[]));
    let names = ["zero", "one", "two"];
    let want: Vec<String> = {
        let mut rows: Vec<String> = (0..9).map(|i| json!({"id": i, "name": names[i % 3]}).to_string()).collect();
        rows.sort();
        rows
    };
    assert_eq!(DeltaView::read(&dir.join("joined")).rows(), want);
}

/// Column mapping and deletion vectors are refused by name, before anything is written:
/// their files cannot be read as plain Parquet files.
#[test]
fn column_mapping_and_deletion_vectors_are_refused_by_name() {
    let (_tmp, dir) = scratch();
    python_in(
        &dir,
        "import pyarrow as pa\nfrom deltalake import write_deltalake\n\
         write_deltalake('mapped', pa.table({'id': pa.array([1, 2], pa.int64())}), configuration={'delta.columnMapping.mode': 'name'})",
    );
    std::fs::write(
        dir.join("mapped.sql"),
        "CREATE TABLE mapped WITH (connector = 'delta', path = 'mapped');
         CREATE TABLE out WITH (connector = 'delta', path = 'out');
         INSERT INTO out SELECT * FROM mapped;",
    )
    .unwrap();
    let out = run(&dir, "mapped.sql", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("uses column mapping (delta.columnMapping.mode = 'name')"), "{}", stderr(&out));
    assert!(!dir.join("out/_delta_log").exists());

    // A commit that adds a file with a deletion vector (as Spark or Databricks write them).
    append(&dir, 0..3);
    std::fs::write(dir.join("p.sql"), SCRIPT).unwrap();
    assert_ok(&run(&dir, "p.sql", &[]));
    let add = json!({"add": {
        "path": "p0%20a%25b/part-dv.parquet", "partitionValues": {"p": "p0 a%b"}, "size": 100, "modificationTime": 1,
        "dataChange": true,
        "deletionVector": {"storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@S}K{vb[*k^", "offset": 1, "sizeInBytes": 36, "cardinality": 2}
    }});
    std::fs::write(dir.join("bronze/_delta_log/00000000000000000001.json"), format!("{add}\n")).unwrap();
    let out = run(&dir, "p.sql", &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("p0 a%b/part-dv.parquet of version 1") && err.contains("has a deletion vector, which weir does not read"), "{err}");
    assert_eq!(ids(&dir.join("silver")), span(0..3), "nothing more written");
}

/// One script holds every hop, none with declared columns: a hop reading the table the hop
/// before writes takes that query's columns, so it starts before the table exists.
#[test]
fn one_script_runs_every_hop() {
    let (_tmp, dir) = scratch();
    let lines: Vec<String> = (0..20).map(|i| json!({"id": i % 15, "user": format!("u{}", i % 3)}).to_string()).collect();
    write_file(&dir.join("in"), "0.json", &lines);
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE raw (id BIGINT, user STRING) WITH (connector = 'file', path = 'in', format = 'json');
         CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze');
         CREATE TABLE silver WITH (connector = 'delta', path = 'silver');
         INSERT INTO bronze SELECT * FROM raw;
         INSERT INTO silver SELECT DISTINCT id, user FROM bronze;",
    )
    .unwrap();
    let mut cmd = weir(&dir);
    cmd.args(["run", "p.sql", "--trigger", "100ms"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    wait_for_path(&mut child, &dir.join("silver/_delta_log/00000000000000000000.json"), "silver's first commit");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(ids(&dir.join("silver")), span(0..15), "each id once");
}

/// `starting_version = 'latest'` (Spark's `startingVersion = "latest"`): only the commits
/// made after the query started, also when they come before its first batch with data.
#[test]
fn starting_version_latest_reads_only_new_commits() {
    let (_tmp, dir) = scratch();
    append(&dir, 0..5);
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze', starting_version = 'latest');
         CREATE TABLE silver WITH (connector = 'delta', path = 'silver');
         INSERT INTO silver SELECT id FROM bronze;",
    )
    .unwrap();
    let mut child = weir(&dir).args(["run", "p.sql", "--trigger", "100ms"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Let the query start and find nothing new, then commit.
    wait_for_path(&mut child, &dir.join(".weir/checkpoints/silver/metadata.json"), "the query's start");
    std::thread::sleep(Duration::from_millis(300));
    append(&dir, 5..8);
    wait_for_path(&mut child, &dir.join("silver/_delta_log/00000000000000000000.json"), "the read of the new commit");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(ids(&dir.join("silver")), span(5..8), "only the commit after the start");
}

/// The first batch of a stream that starts with a commit (`'latest'` here) is replayed after
/// a crash from where it started, not from where `'latest'` points at the restart.
#[test]
fn a_replayed_first_batch_starts_where_it_did() {
    use std::os::unix::process::ExitStatusExt;
    let (_tmp, dir) = scratch();
    append(&dir, 0..5);
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze', starting_version = 'latest');
         CREATE TABLE silver WITH (connector = 'delta', path = 'silver');
         INSERT INTO silver SELECT id FROM bronze;",
    )
    .unwrap();
    let mut cmd = weir(&dir);
    cmd.args(["run", "p.sql", "--trigger", "100ms"]).env("WEIR_FAILPOINT", "after_offsets:0").stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    wait_for_path(&mut child, &dir.join(".weir/checkpoints/silver/metadata.json"), "the query's start");
    append(&dir, 5..8);
    let out = output_within_child(child, Duration::from_secs(60));
    assert_eq!(out.status.signal(), Some(6), "the failpoint aborts batch 0 after its offsets:\n{}", stderr(&out));
    // A commit after the crash: 'latest' would now point past both.
    append(&dir, 8..10);
    assert_ok(&run(&dir, "p.sql", &[]));
    assert_eq!(ids(&dir.join("silver")), span(5..10));
}

/// Two Delta streams in one query (UNION ALL, then a deduplication), each with commits
/// holding ids the other also has: a run killed after batch 1's offsets and restarted
/// writes the same rows as a run that was not, each id once.
#[test]
fn two_delta_streams_deduplicated_survive_a_crash() {
    let script = "CREATE TABLE a WITH (connector = 'delta', path = 'a', max_files_per_trigger = 2);
         CREATE TABLE b WITH (connector = 'delta', path = 'b', max_files_per_trigger = 2);
         CREATE TABLE out WITH (connector = 'delta', path = 'out');
         INSERT INTO out SELECT DISTINCT ON (id) id, p FROM (SELECT id, p, ts FROM a UNION ALL SELECT id, p, ts FROM b) ORDER BY id, ts;";
    let tables = |dir: &Path| {
        for i in 0..3 {
            append_to(dir, "a", i * 20..i * 20 + 30);
            append_to(dir, "b", i * 20 + 10..i * 20 + 40);
        }
        std::fs::write(dir.join("p.sql"), script).unwrap();
    };
    let (_tmp, plain) = scratch();
    tables(&plain);
    assert_ok(&run(&plain, "p.sql", &[]));
    let want = DeltaView::read(&plain.join("out")).rows();
    assert_eq!(ids(&plain.join("out")), span(0..80), "each id once");
    let (_tmp2, crashed) = scratch();
    tables(&crashed);
    crash_at(&crashed, "after_offsets", 1, Duration::from_secs(60));
    assert_ok(&run(&crashed, "p.sql", &[]));
    assert_eq!(DeltaView::read(&crashed.join("out")).rows(), want, "the same rows after a crash and a replay");
}
