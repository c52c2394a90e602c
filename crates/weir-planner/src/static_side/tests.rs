//! The join rules and the build side of stream-static joins, on a stream `s` and static
//! tables `d` and `e`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::*;
use crate::compile::{CompiledQuery, SourceDef, compile};

fn stream(name: &str) -> SourceDef {
    let schema = Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("k", DataType::Int64, true)]);
    SourceDef { name: name.into(), schema: Arc::new(schema), event_time: None }
}

fn table(name: &str) -> StaticDef {
    let schema = Schema::new(vec![Field::new("k", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]);
    StaticDef { name: name.into(), rows: Arc::new(StaticRows::new(Arc::new(schema))) }
}

fn dim(rows: &StaticRows, pairs: &[(i64, &str)]) {
    let k = Int64Array::from(pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let name = StringArray::from(pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    rows.replace(vec![RecordBatch::try_new(rows.schema(), vec![Arc::new(k), Arc::new(name)]).unwrap()]);
}

/// Stream rows `(id, k)`, cut into record batches of `per_batch` rows.
fn chunk(schema: &SourceDef, rows: &[(i64, Option<i64>)], per_batch: usize) -> Vec<RecordBatch> {
    rows.chunks(per_batch)
        .map(|part| {
            let id = Int64Array::from(part.iter().map(|r| r.0).collect::<Vec<_>>());
            let k = Int64Array::from(part.iter().map(|r| r.1).collect::<Vec<_>>());
            RecordBatch::try_new(Arc::clone(&schema.schema), vec![Arc::new(id), Arc::new(k)]).unwrap()
        })
        .collect()
}

async fn plan(query: &str, partitions: usize) -> Result<CompiledQuery> {
    compile(query, &[stream("s"), stream("s2")], &[table("d"), table("e")], None, partitions).await
}

async fn refusal(query: &str) -> String {
    match plan(query, 2).await {
        Err(PlanError::Unsupported(m)) => m,
        other => panic!("{query}: expected a refusal, got {other:?}"),
    }
}

/// Rows of `batches` as `id|k|name` strings, in order.
fn show(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| if c.is_null(r) { "NULL".to_string() } else { arrow::util::display::array_value_to_string(c, r).unwrap() })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

#[tokio::test]
async fn the_supported_joins_plan_with_the_table_as_build_side_on_every_partition() {
    for query in [
        "SELECT s.id, d.name FROM s JOIN d ON s.k = d.k",
        "SELECT s.id, d.name FROM d JOIN s ON s.k = d.k",
        "SELECT s.id, d.name FROM s LEFT JOIN d ON s.k = d.k",
        "SELECT s.id, d.name FROM d RIGHT JOIN s ON s.k = d.k",
        "SELECT s.id, d.name FROM s, d WHERE s.k = d.k AND d.name <> 'x'",
        "SELECT s.id, d.name, e.name AS e FROM s LEFT JOIN d ON s.k = d.k JOIN e ON e.k = s.id",
        "SELECT s.id, d.name FROM s JOIN d ON s.k = d.k AND s.id > d.k",
        "SELECT id FROM s WHERE k IN (SELECT k FROM d)",
        "SELECT id FROM s WHERE EXISTS (SELECT 1 FROM d WHERE d.k = s.k)",
        "SELECT DISTINCT ON (s.id) s.id, d.name FROM s LEFT JOIN d ON s.k = d.k ORDER BY s.id",
        "SELECT x.id, d.name FROM (SELECT DISTINCT id, k FROM s) x JOIN d ON x.k = d.k",
        "SELECT id FROM s WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.k = s.k)",
    ] {
        let compiled = plan(query, 3).await.unwrap_or_else(|e| panic!("{query}: {e}"));
        let shown = compiled.display_plan();
        assert!(shown.contains("mode=CollectLeft"), "{query}:\n{shown}");
        assert!(shown.contains("ProbeOrderExec"), "{query}:\n{shown}");
        assert!(shown.contains("SlotExec: source=s, partitions=3"), "{query} runs on 3 partitions:\n{shown}");
        assert!(!compiled.static_tables().is_empty(), "{query}");
    }
}

#[tokio::test]
async fn joins_that_a_stream_cannot_compute_are_refused_with_what_is_supported() {
    let full = refusal("SELECT s.id FROM s FULL JOIN d ON s.k = d.k").await;
    assert!(full.starts_with("FULL OUTER JOIN with a stream is not supported"), "{full}");
    assert!(full.contains("<stream> LEFT JOIN <table>"), "{full}");
    let keeps_table = refusal("SELECT s.id FROM d LEFT JOIN s ON s.k = d.k").await;
    assert!(keeps_table.starts_with("this LEFT JOIN keeps the rows of the static table 'd'"), "{keeps_table}");
    let keeps_table = refusal("SELECT s.id FROM s RIGHT JOIN d ON s.k = d.k").await;
    assert!(keeps_table.starts_with("this RIGHT JOIN keeps the rows of the static table 'd'"), "{keeps_table}");
    let streams = refusal("SELECT s.id FROM s JOIN s2 ON s.k = s2.k").await;
    assert!(streams.starts_with("joins of two streams are not supported"), "{streams}");
    let streams = refusal("SELECT id FROM s WHERE k IN (SELECT k FROM s2)").await;
    assert!(streams.starts_with("joins of two streams are not supported"), "{streams}");
    let statics = refusal("SELECT s.id FROM s JOIN (SELECT d.k FROM d JOIN e ON d.k = e.k) x ON s.k = x.k").await;
    assert!(statics.starts_with("a join of static tables with each other (d and e)"), "{statics}");
    for query in ["SELECT s.id FROM s CROSS JOIN d", "SELECT s.id FROM s JOIN d ON s.k < d.k"] {
        let m = refusal(query).await;
        assert!(m.contains("has no equality condition between the stream and the table"), "{query}: {m}");
    }
    let not_in = refusal("SELECT id FROM s WHERE k NOT IN (SELECT k FROM d)").await;
    assert!(not_in.starts_with("NOT IN (SELECT ...) over a static table is not supported"), "{not_in}");
}

/// A left join keeps every stream row, in the stream's order, unmatched ones in place with
/// NULLs, whatever the partitions and however the chunk is cut into record batches (a
/// filter below the probe side regroups them).
#[tokio::test]
async fn a_left_join_keeps_the_stream_order_on_any_number_of_partitions() {
    let query = "SELECT s.id, s.k, d.name FROM s LEFT JOIN d ON s.k = d.k WHERE s.id <> 5";
    let rows: Vec<(i64, Option<i64>)> = (0..40).map(|i| (i, if i % 4 == 0 { None } else { Some(i % 6) })).collect();
    let mut expected = Vec::new();
    for &(id, k) in rows.iter().filter(|r| r.0 != 5) {
        let names: &[&str] = match k {
            Some(1) => &["one", "uno"],
            Some(2) => &["two"],
            _ => &[],
        };
        let key = k.map_or("NULL".to_string(), |k| k.to_string());
        if names.is_empty() {
            expected.push(format!("{id}|{key}|NULL"));
        }
        expected.extend(names.iter().map(|n| format!("{id}|{key}|{n}")));
    }
    for partitions in [1, 3] {
        let def = table("d");
        let compiled = compile(query, &[stream("s")], std::slice::from_ref(&def), None, partitions).await.unwrap();
        assert!(compiled.display_plan().contains(&format!("partitions={partitions}")), "{}", compiled.display_plan());
        // The static rows are put in place after planning, as the runtime does.
        dim(&def.rows, &[(1, "one"), (2, "two"), (1, "uno")]);
        for per_batch in [1, 7, 40] {
            let out = compiled.run_pre(BTreeMap::from([("s".to_string(), chunk(&stream("s"), &rows, per_batch))])).await.unwrap();
            assert_eq!(show(&out), expected, "{partitions} partitions, record batches of {per_batch}");
        }
    }
}

/// The hash table is built once per version of the static rows, not once per chunk; new
/// rows are joined from the next chunk on.
#[tokio::test]
async fn the_build_side_is_made_once_per_version_of_the_rows() {
    let def = table("d");
    let compiled = compile("SELECT s.id, d.name FROM s JOIN d ON s.k = d.k", &[stream("s")], std::slice::from_ref(&def), None, 2).await.unwrap();
    dim(&def.rows, &[(1, "one")]);
    let input = || BTreeMap::from([("s".to_string(), chunk(&stream("s"), &[(10, Some(1)), (11, Some(2))], 1))]);
    let before = def.rows.scans();
    for _ in 0..5 {
        assert_eq!(show(&compiled.run_pre(input()).await.unwrap()), vec!["10|one"]);
    }
    assert_eq!(def.rows.scans() - before, 1, "one build for five chunks");
    dim(&def.rows, &[(1, "eins"), (2, "zwei")]);
    for _ in 0..3 {
        assert_eq!(show(&compiled.run_pre(input()).await.unwrap()), vec!["10|eins", "11|zwei"]);
    }
    assert_eq!(def.rows.scans() - before, 2, "one more build for the new rows");
}
