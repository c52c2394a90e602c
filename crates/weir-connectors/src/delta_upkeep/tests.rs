use std::path::Path as FsPath;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use weir_checkpoint::Checkpoint;
use weir_sql::config::DeltaConfig;

use super::*;
use crate::delta::DeltaSink;
use crate::{AppId, Sink};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("p", DataType::Utf8, true)]))
}

/// A table at `dir/t` partitioned by `p`, of `batches` commits of one small file per
/// partition each, written by the sink: ids 0..4*batches, `p` 'a' for even ids, 'b' for odd.
async fn small_files_table(dir: &FsPath, batches: u64) -> std::path::PathBuf {
    let table = dir.join("t");
    let config = DeltaConfig { partition_by: vec!["p".into()], ..DeltaConfig::at(table.display().to_string(), Default::default()) };
    let mut sink = DeltaSink::new("t", config, None).unwrap();
    let cp = Arc::new(Checkpoint::open(dir.join("cp").to_str().unwrap()).unwrap());
    sink.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    for b in 0..batches {
        let ids: Vec<i64> = (b as i64 * 4..b as i64 * 4 + 4).collect();
        let parts: Vec<&str> = ids.iter().map(|i| if i % 2 == 0 { "a" } else { "b" }).collect();
        let rows = RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(parts))]).unwrap();
        sink.commit(b, vec![rows]).await.unwrap();
    }
    table
}

/// The table's rows, `id` sorted, read with DataFusion through delta-rs.
async fn ids(table: &DeltaTable) -> Vec<i64> {
    let ctx = SessionContext::new_with_state(session_for(table).as_ref().clone());
    let rows = ctx.read_table(table.table_provider().await.unwrap()).unwrap().collect().await.unwrap();
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|b| b.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
        .collect();
    ids.sort();
    ids
}

async fn load(table: &FsPath) -> DeltaTable {
    let location = Location::resolve(table.to_str().unwrap(), false).unwrap();
    builder(&location, None).unwrap().load().await.unwrap()
}

#[test]
fn partition_filters_name_partition_columns_only() {
    let parts = vec!["day".to_string(), "region".to_string(), "user".to_string()];
    let f = parse_partition_filter("day = '2024-01-01' AND (region IN ('eu', 'us')) AND day <> 7", &parts).unwrap();
    assert_eq!(
        f,
        [
            PartitionFilter { column: "day".into(), op: FilterOp::Eq, values: vec!["2024-01-01".into()] },
            PartitionFilter { column: "region".into(), op: FilterOp::In, values: vec!["eu".into(), "us".into()] },
            PartitionFilter { column: "day".into(), op: FilterOp::Ne, values: vec!["7".into()] },
        ]
    );
    // `user` is a SQL function without parentheses too; here it is the column.
    let f = parse_partition_filter("user NOT IN ('u1') AND \"region\" >= 'b'", &parts).unwrap();
    assert_eq!(f[0], PartitionFilter { column: "user".into(), op: FilterOp::NotIn, values: vec!["u1".into()] });
    assert_eq!(f[1], PartitionFilter { column: "region".into(), op: FilterOp::Ge, values: vec!["b".into()] });
    let e = parse_partition_filter("amount > 5", &parts).unwrap_err();
    assert!(e.contains("'amount' is not a partition column (the table is partitioned by day, region, user)"), "{e}");
    let e = parse_partition_filter("amount > 5", &[]).unwrap_err();
    assert!(e.contains("the table is not partitioned"), "{e}");
    let e = parse_partition_filter("day = '1' OR day = '2'", &parts).unwrap_err();
    assert!(e.contains("joined by AND"), "{e}");
    assert!(parse_partition_filter("day = upper('x')", &parts).is_err());
    assert!(parse_partition_filter("day =", &parts).unwrap_err().contains("not a predicate"));
}

/// Compaction keeps the rows, writes fewer files, and marks its actions as no change of data;
/// a filter on a partition compacts only that partition.
#[tokio::test]
async fn optimize_compacts_small_files_and_keeps_the_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let table = small_files_table(tmp.path(), 6).await;
    let before = load(&table).await;
    assert_eq!(before.snapshot().unwrap().log_data().num_files(), 12);
    assert_eq!(small_files(before.snapshot().unwrap(), DEFAULT_TARGET_SIZE), 12);
    assert_eq!(small_files(before.snapshot().unwrap(), 1), 0, "no file is smaller than a byte");

    let path = table.to_str().unwrap();
    let only_a = OptimizeOptions { partition_filter: Some("p = 'a'".into()), ..Default::default() };
    let report = optimize(path, &Default::default(), &only_a).await.unwrap();
    assert_eq!((report.files_removed, report.files_added, report.partitions), (6, 1, 1), "{report}");
    assert!(report.bytes_removed > 0 && report.bytes_added > 0);
    let report = optimize(path, &Default::default(), &OptimizeOptions::default()).await.unwrap();
    assert_eq!((report.files_removed, report.files_added), (6, 1), "{report}");
    assert!(report.to_string().contains("6 files"), "{report}");
    let again = optimize(path, &Default::default(), &OptimizeOptions::default()).await.unwrap();
    assert_eq!(again.files_removed, 0);
    assert!(again.to_string().contains("nothing to compact"), "{again}");

    let after = load(&table).await;
    assert_eq!(after.snapshot().unwrap().log_data().num_files(), 2);
    assert_eq!(ids(&after).await, (0..24).collect::<Vec<_>>());
    // What delta-rs writes: both the adds and the removes of a compaction carry
    // dataChange = false, and no txn.
    let entry = std::fs::read_to_string(table.join(format!("_delta_log/{:020}.json", after.version().unwrap()))).unwrap();
    let actions: Vec<serde_json::Value> = entry.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let flags: Vec<_> = actions.iter().filter_map(|a| a.get("add").or(a.get("remove"))).map(|a| a["dataChange"].clone()).collect();
    assert_eq!(flags.len(), 7);
    assert!(flags.iter().all(|f| f == false), "{entry}");
    assert!(actions.iter().all(|a| a.get("txn").is_none()));
    assert!(entry.contains(r#""operation":"OPTIMIZE""#), "{entry}");
}

#[tokio::test]
async fn optimize_refuses_what_it_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let table = small_files_table(tmp.path(), 2).await;
    let path = table.to_str().unwrap();
    let err = |o: OptimizeOptions| async move { optimize(path, &Default::default(), &o).await.unwrap_err().to_string() };
    let e = err(OptimizeOptions { partition_filter: Some("id = 3".into()), ..Default::default() }).await;
    assert!(e.contains("--where 'id = 3'") && e.contains("'id' is not a partition column (the table is partitioned by p)"), "{e}");
    let e = err(OptimizeOptions { zorder_by: vec!["nope".into()], ..Default::default() }).await;
    assert!(e.contains("--zorder-by: the Delta table at") && e.contains("has no column 'nope' (its columns: id, p)"), "{e}");
    let e = err(OptimizeOptions { zorder_by: vec!["p".into()], ..Default::default() }).await;
    assert!(e.contains("'p' is a partition column"), "{e}");
    let nowhere = tmp.path().join("nowhere");
    std::fs::create_dir_all(&nowhere).unwrap();
    let e = optimize(nowhere.to_str().unwrap(), &Default::default(), &OptimizeOptions::default()).await.unwrap_err().to_string();
    assert!(e.contains("no Delta table at") && e.contains("no _delta_log"), "{e}");
    assert_eq!(load(&table).await.version(), Some(1), "nothing was committed");
}

/// Two compactions planned on the same version: delta-rs 1.1 commits both (its conflict
/// checker ignores removals with dataChange = false), and the rows of the compacted files
/// would then be in the table twice. Through the guard the second is refused.
#[tokio::test]
async fn two_compactions_of_the_same_files_do_not_both_land() {
    let tmp = tempfile::tempdir().unwrap();
    let table = small_files_table(tmp.path(), 4).await;
    let (first, second) = (load(&table).await, load(&table).await);
    compact(&first, DEFAULT_TARGET_SIZE).await.unwrap();
    let e = compact(&second, DEFAULT_TARGET_SIZE).await.unwrap_err().to_string();
    assert!(e.contains("removed already"), "{e}");
    let after = load(&table).await;
    assert_eq!(ids(&after).await, (0..16).collect::<Vec<_>>(), "every row once");

    // The same without the guard: the behaviour it is there for. (When delta-rs refuses the
    // second compaction itself, this part fails, and the guard can go.)
    let stale = DeltaTableBuilder::from_url(Url::from_directory_path(&table).unwrap()).unwrap().with_version(3).load().await.unwrap();
    let (unguarded, _) = compact(&stale, DEFAULT_TARGET_SIZE).await.unwrap();
    let mut doubled: Vec<i64> = (0..16).chain(0..16).collect();
    doubled.sort();
    assert_eq!(ids(&unguarded).await, doubled, "delta-rs let a second compaction of the same files land");
}

#[tokio::test]
async fn vacuum_deletes_removed_files_after_the_retention_only() {
    let tmp = tempfile::tempdir().unwrap();
    let table = small_files_table(tmp.path(), 3).await;
    let path = table.to_str().unwrap();
    optimize(path, &Default::default(), &OptimizeOptions::default()).await.unwrap();
    let on_disk = || walk(&table).into_iter().filter(|f| f.ends_with(".parquet")).count();
    assert_eq!(on_disk(), 8, "6 small files and 2 compacted");

    let e = vacuum(path, &Default::default(), &VacuumOptions { retain: Some(Duration::from_secs(3600)), dry_run: false, force: false, full: false })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--retain 1 hour is below the Delta table's delta.deletedFileRetentionDuration (7 days)") && e.contains("--force"), "{e}");
    // Within the retention: nothing.
    let kept = vacuum(path, &Default::default(), &VacuumOptions { retain: None, dry_run: false, force: false, full: false }).await.unwrap();
    assert!(kept.files.is_empty());
    let dry = vacuum(path, &Default::default(), &VacuumOptions { retain: Some(Duration::ZERO), dry_run: true, force: true, full: false }).await.unwrap();
    assert_eq!(dry.files.len(), 6, "{dry}");
    assert!(dry.bytes > 0 && dry.to_string().contains("would be deleted (dry run)"), "{dry}");
    assert_eq!(on_disk(), 8, "a dry run deletes nothing");
    let done = vacuum(path, &Default::default(), &VacuumOptions { retain: Some(Duration::ZERO), dry_run: false, force: true, full: false }).await.unwrap();
    assert_eq!((done.files.len(), done.bytes), (6, dry.bytes), "{done}");
    assert_eq!(on_disk(), 2);
    assert_eq!(ids(&load(&table).await).await, (0..12).collect::<Vec<_>>(), "the newest version reads");
}

/// Every file under `dir`, relative to it.
fn walk(dir: &FsPath) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path).into_iter().map(|f| format!("{}/{f}", entry.file_name().to_string_lossy())));
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out
}
