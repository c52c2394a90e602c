//! Stream-static joins: a file source joined with a Delta table (written by Python
//! `deltalake`) or a Parquet directory (written by pyarrow), read back by the independent
//! reader. The Delta table moves to new versions between batches; `offsets/N` records the
//! version each batch joined with, and a batch replayed after a crash joins with that one.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// How long a crashed run may take.
const LIMIT: Duration = Duration::from_secs(120);

/// Runs Python `code` with the independent reader's packages in `dir`. The interpreter
/// leaves with `os._exit` once done: deltalake's native threads sometimes abort a normal
/// shutdown after the work completed.
fn python(dir: &Path, code: &str) {
    let python = std::env::var("WEIR_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let code = format!("{code}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)");
    let out = std::process::Command::new(python).arg("-c").arg(&code).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "python failed:\n{code}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A pyarrow table of dimension rows `(k, name)`.
fn arrow_rows(rows: &[(i64, &str)]) -> String {
    let ks: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.1).collect();
    format!("pa.table({{'k': pa.array({ks:?}, pa.int64()), 'name': pa.array({names:?}, pa.string())}})")
}

/// Writes the Delta table `dim` as a new version holding exactly `rows`.
fn write_dim(dir: &Path, rows: &[(i64, &str)]) {
    python(dir, &format!("import pyarrow as pa\nfrom deltalake import write_deltalake\nwrite_deltalake('dim', {}, mode='overwrite')", arrow_rows(rows)));
}

/// Events `{"id", "k"}` for ids in `ids`: `k` is `id % 5`, NULL for multiples of 7.
fn events(ids: std::ops::Range<i64>) -> Vec<String> {
    ids.map(|i| if i % 7 == 0 { format!(r#"{{"id": {i}, "k": null}}"#) } else { format!(r#"{{"id": {i}, "k": {}}}"#, i % 5) }).collect()
}

fn key(id: i64) -> Option<i64> {
    (id % 7 != 0).then_some(id % 5)
}

/// The rows `SELECT e.id, d.name FROM events e [LEFT] JOIN dim d ON e.k = d.k` gives for
/// `ids` against `dim`, in the reader's form.
fn joined(ids: std::ops::Range<i64>, dim: &[(i64, &str)], left: bool) -> Vec<String> {
    let mut rows = Vec::new();
    for id in ids {
        let names: Vec<&str> = dim.iter().filter(|d| Some(d.0) == key(id)).map(|d| d.1).collect();
        if names.is_empty() && left {
            rows.push(json!({"id": id, "name": Value::Null}).to_string());
        }
        rows.extend(names.iter().map(|n| json!({"id": id, "name": n}).to_string()));
    }
    rows.sort();
    rows
}

/// `offsets/<batch>.json` of the checkpoint of sink `sink`.
fn offsets(dir: &Path, sink: &str, batch: u64) -> Value {
    let path = dir.join(format!(".weir/checkpoints/{sink}/offsets/{batch}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

const JOINS: &str = "
CREATE TABLE events (id BIGINT, k BIGINT) WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1);
CREATE TABLE dim WITH (connector = 'delta', path = 'dim');
CREATE TABLE inner_out WITH (connector = 'delta', path = 'out/inner');
CREATE TABLE left_out WITH (connector = 'delta', path = 'out/left');
INSERT INTO inner_out SELECT e.id, d.name FROM events e JOIN dim d ON e.k = d.k;
INSERT INTO left_out SELECT e.id, d.name FROM events e LEFT JOIN dim d ON e.k = d.k;
";

/// Inner and left joins with a Delta table: every match (a key twice in the table gives
/// two rows), and in the left join every event, unmatched ones with NULLs.
#[test]
fn inner_and_left_joins_with_a_delta_table() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), JOINS).unwrap();
    let dim = [(1, "one"), (2, "two"), (4, "four"), (2, "deux")];
    write_dim(&dir, &dim);
    write_file(&dir.join("in"), "000.json", &events(0..30));
    write_file(&dir.join("in"), "001.json", &events(30..50));
    assert_ok(&run(&dir, "p.sql", &[]));
    let inner = DeltaView::read(&dir.join("out/inner")).rows();
    assert_eq!(inner, joined(0..50, &dim, false));
    assert!(inner.len() > 20, "{inner:?}");
    let left = DeltaView::read(&dir.join("out/left")).rows();
    assert_eq!(left, joined(0..50, &dim, true));
    assert!(left.iter().any(|r| r.contains(r#""name":null"#)), "unmatched events are kept: {left:?}");
    for sink in ["inner_out", "left_out"] {
        for batch in [0, 1] {
            assert_eq!(offsets(&dir, sink, batch)["staticVersions"], json!({"dim": 0}), "{sink}, batch {batch}");
        }
    }
}

const ENRICH: &str = "
CREATE TABLE events (id BIGINT, k BIGINT) WITH (connector = 'file', path = 'in', format = 'json');
CREATE TABLE dim WITH (connector = 'delta', path = 'dim');
CREATE TABLE enriched WITH (connector = 'delta', path = 'out/enriched');
INSERT INTO enriched SELECT e.id, d.name FROM events e LEFT JOIN dim d ON e.k = d.k;
";

/// The table gets new versions between batches: each batch joins with the version there
/// when it started and records it in `offsets/N`. A crash after `offsets/2` is replayed with
/// the version recorded, though the table moved on before the restart; the batch after it
/// joins with the new one.
#[test]
fn each_batch_joins_with_the_version_it_recorded_also_when_replayed() {
    let (_tmp, dir) = scratch();
    std::fs::write(dir.join("p.sql"), ENRICH).unwrap();
    let versions: [&[(i64, &str)]; 4] = [
        &[(1, "a0"), (2, "b0")],
        &[(1, "a1"), (3, "c1"), (4, "d1")],
        &[(2, "b2"), (3, "c2")],
        &[(0, "z3"), (1, "a3")],
    ];
    write_dim(&dir, versions[0]);
    write_file(&dir.join("in"), "000.json", &events(0..20));
    assert_ok(&run(&dir, "p.sql", &[]));
    write_dim(&dir, versions[1]);
    write_file(&dir.join("in"), "001.json", &events(20..40));
    assert_ok(&run(&dir, "p.sql", &[]));

    // Batch 2 records version 1, then the process dies; the table moves to version 2.
    write_file(&dir.join("in"), "002.json", &events(40..60));
    crash_at(&dir, "after_offsets", 2, LIMIT);
    write_dim(&dir, versions[2]);
    let restarted = run(&dir, "p.sql", &[]);
    assert_ok(&restarted);
    assert!(stderr(&restarted).contains("replayed after a restart"), "{}", stderr(&restarted));
    write_dim(&dir, versions[3]);
    write_file(&dir.join("in"), "003.json", &events(60..80));
    assert_ok(&run(&dir, "p.sql", &[]));

    let recorded: Vec<Value> = (0..4).map(|n| offsets(&dir, "enriched", n)["staticVersions"].clone()).collect();
    assert_eq!(recorded, vec![json!({"dim": 0}), json!({"dim": 1}), json!({"dim": 1}), json!({"dim": 3})]);
    let mut expected = Vec::new();
    for (ids, version) in [(0..20, 0), (20..40, 1), (40..60, 1), (60..80, 3)] {
        expected.extend(joined(ids, versions[version], true));
    }
    expected.sort();
    let table = DeltaView::read(&dir.join("out/enriched"));
    assert_eq!(table.rows(), expected);
    assert_eq!(table.txns().into_iter().map(|(_, v)| v).collect::<Vec<_>>(), vec![0, 1, 2, 3], "one commit per batch");
}

/// A Parquet directory as the static side: read once, no version in `offsets/N`.
#[test]
fn a_parquet_directory_as_the_static_side() {
    let (_tmp, dir) = scratch();
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE events (id BIGINT, k BIGINT) WITH (connector = 'file', path = 'in', format = 'json');
         CREATE TABLE dim WITH (connector = 'parquet', path = 'dimp');
         CREATE TABLE enriched WITH (connector = 'delta', path = 'out/enriched');
         INSERT INTO enriched SELECT e.id, d.name FROM dim d RIGHT JOIN events e ON d.k = e.k;",
    )
    .unwrap();
    let (first, second) = ([(1, "one"), (3, "three")], [(4, "four"), (1, "uno")]);
    std::fs::create_dir_all(dir.join("dimp")).unwrap();
    python(
        &dir,
        &format!(
            "import pyarrow as pa, pyarrow.parquet as pq\npq.write_table({}, 'dimp/part-0.parquet')\npq.write_table({}, 'dimp/part-1.parquet')",
            arrow_rows(&first),
            arrow_rows(&second)
        ),
    );
    write_file(&dir.join("in"), "000.json", &events(0..40));
    assert_ok(&run(&dir, "p.sql", &[]));
    let dim: Vec<(i64, &str)> = first.iter().chain(&second).copied().collect();
    assert_eq!(DeltaView::read(&dir.join("out/enriched")).rows(), joined(0..40, &dim, true));
    assert!(offsets(&dir, "enriched", 0).get("staticVersions").is_none(), "a Parquet directory has no version");
}

/// Joins a stream cannot compute are refused before anything runs, saying what is
/// supported.
#[test]
fn unsupported_joins_are_refused() {
    let (_tmp, dir) = scratch();
    write_dim(&dir, &[(1, "one")]);
    write_file(&dir.join("in"), "000.json", &events(0..5));
    let tables = "CREATE TABLE events (id BIGINT, k BIGINT) WITH (connector = 'file', path = 'in', format = 'json');
         CREATE TABLE more (id BIGINT, k BIGINT) WITH (connector = 'file', path = 'in', format = 'json');
         CREATE TABLE dim WITH (connector = 'delta', path = 'dim');
         CREATE TABLE out WITH (connector = 'delta', path = 'out/t');";
    for (query, wanted) in [
        ("SELECT e.id, d.name FROM events e FULL JOIN dim d ON e.k = d.k", "FULL OUTER JOIN with a stream is not supported"),
        ("SELECT e.id, m.id AS other FROM events e JOIN more m ON e.k = m.k", "joins of two streams are not supported"),
        ("SELECT e.id, d.name FROM dim d LEFT JOIN events e ON e.k = d.k", "this LEFT JOIN keeps the rows of the static table 'dim'"),
    ] {
        std::fs::write(dir.join("p.sql"), format!("{tables}\nINSERT INTO out {query};")).unwrap();
        let out = run(&dir, "p.sql", &[]);
        assert!(!out.status.success(), "{query} ran");
        let err = stderr(&out);
        assert!(err.contains(&format!("p.sql:5: {wanted}")), "{query}: {err}");
        assert!(err.contains("<stream> LEFT JOIN"), "says what is supported: {err}");
        assert!(!dir.join("out").exists(), "{query} wrote nothing, and made no directory");
    }
}

/// Enrich, then aggregate: events joined with the table, then counted per name in tumbling
/// windows (a chain of a stage with a join and a window operator). A GROUP BY over the table
/// alone, in a subquery joined with the stream, is the table's business and stays in its
/// stage (it is no operator of the stream's).
#[test]
fn a_joined_stream_feeds_a_window_and_a_grouped_table_joins_as_a_table() {
    let (_tmp, dir) = scratch();
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE events (id BIGINT, k BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE dim WITH (connector = 'delta', path = 'dim');
         CREATE TABLE counts WITH (connector = 'delta', path = 'out/counts');
         CREATE TABLE tagged WITH (connector = 'delta', path = 'out/tagged');
         INSERT INTO counts
         WITH e AS (SELECT e.ts, d.name FROM events e JOIN dim d ON e.k = d.k)
         SELECT CAST(extract(epoch FROM window_start) AS BIGINT) AS start, name, count(*) AS n
         FROM TUMBLE(e, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, name;
         INSERT INTO tagged
         SELECT e.id, g.names FROM events e JOIN (SELECT k, count(*) AS names FROM dim GROUP BY k) g ON e.k = g.k;",
    )
    .unwrap();
    let dim = [(1, "one"), (2, "two"), (2, "deux")];
    write_dim(&dir, &dim);
    let at = |id: i64, k: i64, secs: i64| format!(r#"{{"id": {id}, "k": {k}, "ts": "1970-01-01T00:00:{secs:02}Z"}}"#);
    // Window [0, 10): k=1 twice, k=2 once (two names); [10, 20): k=2 once; then 40 s moves
    // the watermark to 35 s, which closes both.
    write_file(&dir.join("in"), "000.json", &[at(1, 1, 1), at(2, 1, 3), at(3, 2, 5), at(4, 3, 6)]);
    write_file(&dir.join("in"), "001.json", &[at(5, 2, 12)]);
    write_file(&dir.join("in"), "002.json", &[at(6, 3, 40)]);
    assert_ok(&run(&dir, "p.sql", &[]));
    let counts = DeltaView::read(&dir.join("out/counts")).rows();
    let row = |start: i64, name: &str, n: i64| json!({"start": start, "name": name, "n": n}).to_string();
    let mut expected = vec![row(0, "one", 2), row(0, "two", 1), row(0, "deux", 1), row(10, "two", 1), row(10, "deux", 1)];
    expected.sort();
    assert_eq!(counts, expected);
    let tagged = DeltaView::read(&dir.join("out/tagged")).rows();
    let mut expected: Vec<String> = [(1, 1), (2, 1), (3, 2), (5, 2)].iter().map(|(id, n)| json!({"id": id, "names": n}).to_string()).collect();
    expected.sort();
    assert_eq!(tagged, expected);
}
