use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("p", DataType::Utf8, true)]))
}

fn rows(ids: &[i64], parts: &[&str]) -> RecordBatch {
    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(parts.to_vec()))]).unwrap()
}

/// A temporary directory (kept while the handle lives) with a table path and a checkpoint in it.
fn workdir() -> (tempfile::TempDir, std::path::PathBuf, Arc<Checkpoint>) {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("table");
    let cp = Arc::new(Checkpoint::open(tmp.path().join("cp").to_str().unwrap()).unwrap());
    (tmp, table, cp)
}

fn sink(path: &std::path::Path) -> DeltaSink {
    let config = DeltaConfig { partition_by: vec!["p".into()], ..DeltaConfig::at(path.display().to_string(), Default::default()) };
    DeltaSink::new("t", config, None).unwrap()
}

/// Every `.parquet` file under `dir`, relative to it, as the file system names it.
fn parquet_files(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path.strip_prefix(root).unwrap().to_str().unwrap().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Records left behind for committed files (in partition folders whose names delta-rs
/// escapes, under a table path that URLs encode) are cleared, and the files kept; a
/// recorded file no version references is removed; an old-style record (absolute path)
/// is understood too.
#[tokio::test]
async fn the_sweep_keeps_committed_files_and_removes_orphans() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap().join("c d%20é #1");
    let table = base.join("table");
    let cp = Arc::new(Checkpoint::open(base.join("cp").to_str().unwrap()).unwrap());
    let mut first = sink(&table);
    first.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    first.commit(0, vec![rows(&[1, 2, 3], &["a b", "c%20d", "é#1/x"])]).await.unwrap();
    let committed = parquet_files(&table);
    assert_eq!(committed.len(), 3, "{committed:?}");

    // A crash between the commit and clearing the records would leave these.
    for (n, file) in committed.iter().enumerate() {
        cp.put_json_new(&format!("sinks/t/pending/0-a-{n}.json"), &PendingFile { file: Some(file.clone()), path: None }).await.unwrap();
    }
    let old_style = format!("{}/{}", table.display(), committed[0]);
    let old_style = PendingFile { file: None, path: Some(old_style.trim_start_matches('/').to_string()) };
    cp.put_json_new("sinks/t/pending/0-b-1.json", &old_style).await.unwrap();
    // A batch that crashed before its commit.
    std::fs::create_dir_all(table.join("p=zz")).unwrap();
    std::fs::write(table.join("p=zz/part-orphan.parquet"), b"x").unwrap();
    cp.put_json_new("sinks/t/pending/1-c-1.json", &PendingFile { file: Some("p=zz/part-orphan.parquet".into()), path: None }).await.unwrap();
    drop(first);

    let mut second = sink(&table);
    second.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    assert_eq!(parquet_files(&table), committed, "the committed files stay, the orphan goes");
    assert!(cp.file_names("sinks/t/pending").await.unwrap().is_empty(), "every record is cleared");
    second.commit(1, vec![rows(&[4], &["a b"])]).await.unwrap();
    // The sink's own state stays at the version it loaded while it appends: read the table
    // as it is now.
    let mut reread = second.table.take().unwrap();
    reread.update_incremental(None).await.unwrap();
    let state = reread.snapshot().unwrap();
    let files: Vec<_> = state.snapshot().file_views(reread.log_store().as_ref(), None).try_collect().await.unwrap();
    assert_eq!(files.len(), 4, "the table reopens at its path and references all its files");
    for f in &files {
        assert!(table.join(f.path().as_ref()).exists(), "{} is gone", f.path());
    }
}

/// On an object store the checkpoint has no lock, and a second runner cannot tell the
/// files the runner holding the query is writing from orphans: its sink removes nothing.
#[tokio::test]
async fn a_runner_without_the_lock_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("table");
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let location = || Location {
        store: Arc::clone(&store),
        root: Path::from("bucket/cp"),
        url: Url::parse("memory:///bucket/cp/").unwrap(),
        local_dir: None,
        options: Default::default(),
        allow_unsafe_rename: false,
    };
    let (holder, second) = (Arc::new(Checkpoint::at(location()).unwrap()), Arc::new(Checkpoint::at(location()).unwrap()));
    assert!(!holder.holds_lock() && !second.holds_lock());
    let mut first = sink(&table);
    first.open(&schema(), &AppId::sink("q"), &holder).await.unwrap();
    first.commit(0, vec![rows(&[1], &["a"])]).await.unwrap();
    // The holder is writing batch 1: its file is recorded and on disk, not committed yet.
    std::fs::create_dir_all(table.join("p=b")).unwrap();
    std::fs::write(table.join("p=b/part-in-flight.parquet"), b"x").unwrap();
    let record = PendingFile { file: Some("p=b/part-in-flight.parquet".into()), path: None };
    holder.put_json_new("sinks/t/pending/1-a-1.json", &record).await.unwrap();

    let mut late_comer = sink(&table);
    late_comer.open(&schema(), &AppId::sink("q"), &second).await.unwrap();
    assert!(table.join("p=b/part-in-flight.parquet").exists(), "the holder's file is left alone");
    assert_eq!(second.file_names("sinks/t/pending").await.unwrap(), ["1-a-1.json"], "and so is its record");
}

/// The rows of the table at `path`, as DataFusion prints `SELECT <columns> ... ORDER BY id`.
async fn table_rows(path: &std::path::Path, columns: &str) -> String {
    let location = Location::resolve(path.to_str().unwrap(), false).unwrap();
    let table = crate::delta_upkeep::builder(&location, None).unwrap().load().await.unwrap();
    let ctx = datafusion::prelude::SessionContext::new_with_state(crate::delta_upkeep::session_for(&table).as_ref().clone());
    ctx.register_table("t", table.table_provider().await.unwrap()).unwrap();
    let rows = ctx.sql(&format!("SELECT {columns} FROM t ORDER BY id")).await.unwrap().collect().await.unwrap();
    arrow::util::pretty::pretty_format_batches(&rows).unwrap().to_string()
}

/// The actions of log entry `version` of the table at `path`.
fn log_entry(path: &std::path::Path, version: i64) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path.join(format!("_delta_log/{version:020}.json"))).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn with_sink_options(path: &std::path::Path, f: impl FnOnce(&mut DeltaConfig)) -> DeltaConfig {
    let mut config = DeltaConfig { partition_by: vec!["p".into()], ..DeltaConfig::at(path.display().to_string(), Default::default()) };
    f(&mut config);
    config
}

#[tokio::test]
async fn table_properties_are_checked_at_start_and_set_at_creation() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("table");
    let refused = |properties: &[(&str, &str)]| {
        let config = with_sink_options(&table, |c| c.sink.properties = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        DeltaSink::new("t", config, None).unwrap_err().to_string()
    };
    let e = refused(&[("delta.appendOnlyy", "true")]);
    assert!(e.contains("table 't': unknown Delta table property 'delta.appendOnlyy'; did you mean 'delta.appendOnly'?"), "{e}");
    let e = refused(&[("delta.checkpointInterval", "often")]);
    assert_eq!(e, "table 't': option 'delta.checkpointInterval' = 'often' is not a positive whole number");
    let e = refused(&[("delta.logRetentionDuration", "30 days")]);
    assert!(e.contains("is not an interval such as 'interval 7 days'"), "{e}");
    let e = refused(&[("delta.appendOnly", "yes")]);
    assert!(e.contains("is not 'true' or 'false'"), "{e}");
    let e = refused(&[("delta.minWriterVersion", "9")]);
    assert!(e.contains("is not a writer version from 2 to 7"), "{e}");
    let e = refused(&[("delta.columnMapping.mode", "name")]);
    assert!(e.contains("cannot create a column-mapped table"), "{e}");
    assert!(!tmp.path().join("table/_delta_log").exists(), "nothing was written");

    let properties = [("delta.appendOnly", "true"), ("delta.checkpointInterval", "5"), ("delta.logRetentionDuration", "interval 2 days")];
    let cp = Arc::new(Checkpoint::open(tmp.path().join("cp").to_str().unwrap()).unwrap());
    let config = with_sink_options(&table, |c| c.sink.properties = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let mut first = DeltaSink::new("t", config, None).unwrap();
    first.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    first.commit(0, vec![rows(&[1], &["a"])]).await.unwrap();
    let metadata = log_entry(&table, 0).into_iter().find_map(|a| a.get("metaData").cloned()).unwrap();
    for (k, v) in properties {
        assert_eq!(metadata["configuration"][k], v, "{metadata}");
    }
    assert!(first.take_warnings().is_empty());

    // An existing table keeps its properties: a differing option only warns.
    let config = with_sink_options(&table, |c| c.sink.properties = vec![("delta.checkpointInterval".into(), "7".into())]);
    let mut second = DeltaSink::new("t", config, None).unwrap();
    second.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    let warnings = second.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("option 'delta.checkpointInterval' = '7' is not applied: the existing Delta table at") && warnings[0].contains("has '5'"), "{warnings:?}");
}

/// A query emitting one more column into a table with merge_schema: the column is added by
/// the batch's own commit (files, metadata and txn in one log entry); the table's old rows
/// read NULL in it; a table column the query lacks is written as NULL; narrower types are
/// cast. Without merge_schema the wider table is refused.
#[tokio::test]
async fn merge_schema_adds_columns_in_the_batch_commit() {
    let (_tmp, table, cp) = workdir();
    let mut first = sink(&table);
    first.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    first.commit(0, vec![rows(&[1, 2], &["a", "b"])]).await.unwrap();

    let wider = Arc::new(Schema::new(vec![
        Field::new("extra", DataType::Utf8, true),
        Field::new("id", DataType::Int32, true),
        Field::new("p", DataType::Utf8, true),
    ]));
    let merging = with_sink_options(&table, |c| c.sink.merge_schema = true);
    let mut second = DeltaSink::new("t", merging.clone(), None).unwrap();
    assert_eq!(second.target_schema().await.unwrap(), None, "matched by name at open, not by position");
    second.open(&wider, &AppId::sink("q"), &cp).await.unwrap();
    let batch = RecordBatch::try_new(
        Arc::clone(&wider),
        vec![
            Arc::new(StringArray::from(vec!["x"])),
            Arc::new(arrow::array::Int32Array::from(vec![3])),
            Arc::new(StringArray::from(vec!["a"])),
        ],
    )
    .unwrap();
    let commit = second.commit(1, vec![batch]).await.unwrap();
    assert_eq!(commit.version, Some(1));
    let entry = log_entry(&table, 1);
    let kinds: Vec<&str> = entry.iter().flat_map(|a| a.as_object().unwrap().keys()).map(String::as_str).collect();
    for kind in ["metaData", "add", "txn", "commitInfo"] {
        assert!(kinds.contains(&kind), "{kind} in the batch's commit: {kinds:?}");
    }
    assert_eq!(
        table_rows(&table, "id, p, extra").await,
        ["+----+---+-------+", "| id | p | extra |", "+----+---+-------+", "| 1  | a |       |", "| 2  | b |       |", "| 3  | a | x     |", "+----+---+-------+"].join("\n")
    );

    // The old query again: its missing column is NULL.
    let mut third = DeltaSink::new("t", merging.clone(), None).unwrap();
    third.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    third.commit(2, vec![rows(&[4], &["b"])]).await.unwrap();
    assert!(log_entry(&table, 2).iter().all(|a| a.get("metaData").is_none()), "no new column, no metadata");
    assert!(table_rows(&table, "id, p, extra").await.contains("| 4  | b |       |"));

    // Without merge_schema, a table of other columns is refused (the planner refuses a query
    // of other columns before, naming the option).
    let mut plain = sink(&table);
    assert_eq!(plain.target_schema().await.unwrap().map(|s| s.fields().len()), Some(3), "the planner is held to the table's columns");
    let e = plain.open(&schema(), &AppId::sink("q"), &cp).await.unwrap_err().to_string();
    assert!(e.contains("has the columns (id BIGINT, p STRING, extra STRING), but 't' writes (id BIGINT, p STRING)"), "{e}");
    // merge_schema adds columns, it changes no type.
    let other = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
    let mut typed = DeltaSink::new("t", merging, None).unwrap();
    let e = typed.open(&other, &AppId::sink("q"), &cp).await.unwrap_err().to_string();
    assert!(e.contains("the query writes column 'id' as STRING, and the existing Delta table at") && e.contains("holds it as BIGINT"), "{e}");
}

/// With auto_compact, once enough small files are there the sink compacts them after the
/// batch's commit, in a commit of its own: the batch's version and txn stay, the rows stay,
/// the files go down.
#[tokio::test]
async fn auto_compact_runs_after_the_commit_and_keeps_the_txn() {
    let (_tmp, table, cp) = workdir();
    let config = with_sink_options(&table, |c| {
        c.sink.auto_compact = true;
        c.sink.auto_compact_min_files = Some(6);
    });
    let mut sink = DeltaSink::new("t", config, None).unwrap();
    sink.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    let mut compactions = Vec::new();
    for b in 0..7u64 {
        let id = b as i64 * 2;
        let commit = sink.commit(b, vec![rows(&[id, id + 1], &["a", "b"])]).await.unwrap();
        assert!(commit.written);
        let batch_entry = log_entry(&table, commit.version.unwrap());
        assert!(batch_entry.iter().any(|a| a["txn"]["version"] == b), "version {:?} holds batch {b}", commit.version);
        if let Some(c) = commit.compaction {
            assert_eq!(c.version, commit.version.map(|v| v + 1), "the compaction commits right after the batch");
            let entry = log_entry(&table, c.version.unwrap());
            assert!(entry.iter().all(|a| a.get("txn").is_none()), "a compaction carries no txn");
            compactions.push((b, c.files_removed, c.files_added));
        }
    }
    // Two files per batch; three batches make six small files, then one per partition is
    // left after each compaction, plus two per batch.
    assert_eq!(compactions, [(2, 6, 2), (4, 6, 2), (6, 6, 2)]);
    assert!(sink.take_warnings().is_empty());
    let state = sink.table.as_ref().unwrap().snapshot().unwrap();
    assert_eq!(state.log_data().num_files(), 2);
    assert_eq!(state.transaction_version(sink.table.as_ref().unwrap().log_store().as_ref(), "q").await.unwrap(), Some(6));
    let listed = table_rows(&table, "id").await;
    for id in 0..14 {
        assert_eq!(listed.matches(&format!("| {id} ")).count(), 1, "{id} once:\n{listed}");
    }
    assert!(cp.file_names("sinks/t/pending").await.unwrap().is_empty(), "the compactions' records are cleared");
    // A replayed batch after compactions is still found committed.
    let replay = sink.commit(6, vec![rows(&[12, 13], &["a", "b"])]).await.unwrap();
    assert!(!replay.written);
}

/// A column of nearly all distinct values (ids) is written plain; a column of few values
/// keeps its dictionary; a handful of rows tells nothing, so everything keeps it. The files
/// a sink writes carry the choice, and the rows read back the same.
#[tokio::test]
async fn unique_columns_are_written_without_a_dictionary() {
    use parquet::schema::types::ColumnPath;
    let ids: Vec<i64> = (0..5000).collect();
    let parts: Vec<&str> = (0..5000).map(|i| ["x", "y"][i % 2]).collect();
    let first = rows(&ids, &parts);
    let properties = writer_properties_for(&first);
    assert!(!properties.dictionary_enabled(&ColumnPath::from("id")), "unique ids: plain");
    assert!(properties.dictionary_enabled(&ColumnPath::from("p")), "two values: a dictionary");
    let small = writer_properties_for(&rows(&[1, 2, 3], &["a", "b", "c"]));
    assert!(small.dictionary_enabled(&ColumnPath::from("id")) && small.dictionary_enabled(&ColumnPath::from("p")));

    // Through the sink: the id column's pages are plain, not dictionary-encoded.
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    let cp = Arc::new(Checkpoint::open(tmp.path().join("cp").to_str().unwrap()).unwrap());
    let config = DeltaConfig::at(table.display().to_string(), Default::default());
    let mut s = DeltaSink::new("t", config, None).unwrap();
    s.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    s.commit(0, vec![first]).await.unwrap();
    let files = parquet_files(&table);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = std::fs::File::open(table.join(&files[0])).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader as _;
    let group = reader.metadata().row_group(0);
    let encodings = |c: usize| group.column(c).encodings().collect::<Vec<_>>();
    assert!(!encodings(0).iter().any(|e| matches!(e, parquet::basic::Encoding::RLE_DICTIONARY | parquet::basic::Encoding::PLAIN_DICTIONARY)), "{:?}", encodings(0));
    assert!(encodings(1).iter().any(|e| matches!(e, parquet::basic::Encoding::RLE_DICTIONARY)), "{:?}", encodings(1));
    assert_eq!(group.num_rows(), 5000);
}

/// A distinct column that snappy cannot shrink by a fifth (random hex ids, as UUIDs are) is
/// written uncompressed; distinct ids with structure ("evt-000000001234"), and numbers that
/// repeat their high bytes, stay snappy. The file says so, and reads back the same rows.
#[tokio::test]
async fn random_ids_are_written_uncompressed() {
    use arrow::array::Array;
    use parquet::basic::Compression;
    use parquet::file::reader::FileReader as _;
    use parquet::schema::types::ColumnPath;
    // splitmix64: random bits without a dependency.
    let mix = |i: u64| {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 30)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let n = 10_000u64;
    let uuids: Vec<String> = (0..n)
        .map(|i| {
            let h = format!("{:016x}{:016x}", mix(2 * i), mix(2 * i + 1));
            format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
        })
        .collect();
    let evts: Vec<String> = (0..n).map(|i| format!("evt-{i:012}")).collect();
    let seq: Vec<i64> = (0..n as i64).map(|i| 1_700_000_000_000 + 5 * i).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("uuid", DataType::Utf8, false),
        Field::new("evt", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(uuids.clone())), Arc::new(StringArray::from(evts)), Arc::new(Int64Array::from(seq))],
    )
    .unwrap();
    let properties = writer_properties_for(&batch);
    let compression = |c: &str| properties.compression(&ColumnPath::from(c));
    assert_eq!(compression("uuid"), Compression::UNCOMPRESSED);
    assert_eq!(compression("evt"), Compression::SNAPPY);
    assert_eq!(compression("ts"), Compression::SNAPPY);

    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    let cp = Arc::new(Checkpoint::open(tmp.path().join("cp").to_str().unwrap()).unwrap());
    let mut s = DeltaSink::new("t", DeltaConfig::at(table.display().to_string(), Default::default()), None).unwrap();
    s.open(&schema, &AppId::sink("q"), &cp).await.unwrap();
    s.commit(0, vec![batch]).await.unwrap();
    let files = parquet_files(&table);
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(table.join(&files[0])).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    let codecs: Vec<Compression> = (0..3).map(|c| group.column(c).compression()).collect();
    assert_eq!(codecs, [Compression::UNCOMPRESSED, Compression::SNAPPY, Compression::SNAPPY]);
    let file = std::fs::File::open(table.join(&files[0])).unwrap();
    let read: Vec<RecordBatch> = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 4096).unwrap().map(Result::unwrap).collect();
    let got: Vec<String> = read
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            (0..c.len()).map(|i| c.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(got, uuids);
}

/// Each file's rows, in file order, and its row groups' sizes.
fn file_rows(path: &std::path::Path) -> (Vec<i64>, Vec<i64>) {
    use parquet::file::reader::FileReader as _;
    let file = std::fs::File::open(path).unwrap();
    let groups = parquet::file::reader::SerializedFileReader::new(file.try_clone().unwrap()).unwrap().metadata().row_groups().iter().map(|g| g.num_rows()).collect();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 8192).unwrap();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        ids.extend(batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
    }
    (ids, groups)
}

/// A batch of more than one row group is dealt to two encoders a row group at a time: two
/// files of whole row groups, each row in one of them, and the same files (rows, order, row
/// groups) whatever sizes of record batch the rows came in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_batch_is_encoded_into_two_files_of_whole_row_groups() {
    let total = 2 * ROW_GROUP_ROWS + ROW_GROUP_ROWS / 3;
    let ids: Vec<i64> = (0..total as i64).map(|i| i * 7919 % total as i64).collect();
    let mut layouts = Vec::new();
    for chunk in [total, 100_003, 4_096] {
        let (_tmp, table, cp) = workdir();
        let mut s = DeltaSink::new("t", DeltaConfig::at(table.display().to_string(), Default::default()), None).unwrap();
        s.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
        let batches: Vec<RecordBatch> = ids.chunks(chunk).map(|c| rows(c, &vec!["x"; c.len()])).collect();
        let commit = s.commit(0, batches).await.unwrap();
        assert_eq!(commit.rows, total as u64);
        // Files in the order the log adds them.
        let adds: Vec<String> = log_entry(&table, 0).iter().filter_map(|a| Some(a.get("add")?.get("path")?.as_str()?.to_string())).collect();
        assert_eq!(adds.len(), 2, "{adds:?}");
        let files: Vec<(Vec<i64>, Vec<i64>)> = adds.iter().map(|f| file_rows(&table.join(f))).collect();
        let g = ROW_GROUP_ROWS;
        // Row groups 0 and 2 to the first encoder, 1 to the second.
        assert_eq!(files[0].0, [&ids[..g], &ids[2 * g..]].concat());
        assert_eq!(files[1].0, ids[g..2 * g]);
        assert_eq!(files[0].1, [g as i64, (total - 2 * g) as i64]);
        assert_eq!(files[1].1, [g as i64]);
        layouts.push(files);
    }
    assert!(layouts.windows(2).all(|w| w[0] == w[1]));
}

/// A batch that fails before its commit drops its writer: the encoders stop without
/// completing a file, even though their queues close with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_batch_completes_no_file() {
    let (_tmp, table, cp) = workdir();
    let mut s = DeltaSink::new("t", DeltaConfig::at(table.display().to_string(), Default::default()), None).unwrap();
    s.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    s.begin(0).await.unwrap();
    let total = 3 * ROW_GROUP_ROWS;
    let ids: Vec<i64> = (0..total as i64).collect();
    for c in ids.chunks(50_000) {
        s.write(rows(c, &vec!["x"; c.len()])).await.unwrap();
    }
    let writer = s.pending.as_mut().unwrap().writer.as_mut().unwrap();
    let tasks: Vec<_> = writer.encoders.iter_mut().map(|e| e.task.take().unwrap()).collect();
    assert_eq!(tasks.len(), 2);
    drop(s);
    for task in tasks {
        assert!(task.await.unwrap().is_err(), "a cancelled encoder ends in an error");
    }
    assert_eq!(parquet_files(&table), Vec::<String>::new());
    assert!(!table.join("_delta_log").join("00000000000000000000.json").exists());
}

/// An append writes its log entry alone, and checkpoints are written beside the batches:
/// two queries take turns on one table with `delta.checkpointInterval = 4`, so each finds
/// its next version taken by the other now and then and commits past it; every batch is one
/// version, the checkpoints are there once the sinks are closed, and an independent reader
/// sees every row from the last checkpoint on. A replayed batch writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_commit_past_another_writer_and_checkpoint_in_the_background() {
    let (_tmp, table, cp) = workdir();
    let config = || with_sink_options(&table, |c| c.sink.properties = vec![("delta.checkpointInterval".into(), "4".into())]);
    let (mut a, mut b) = (DeltaSink::new("t", config(), None).unwrap(), DeltaSink::new("t", config(), None).unwrap());
    a.open(&schema(), &AppId::sink("a"), &cp).await.unwrap();
    a.commit(0, vec![rows(&[0], &["x"])]).await.unwrap();
    b.open(&schema(), &AppId::sink("b"), &cp).await.unwrap();
    let mut versions = Vec::new();
    for batch in 1..=10u64 {
        let id = batch as i64;
        let committed = a.commit(batch, vec![rows(&[id], &["x"])]).await.unwrap();
        versions.push(committed.version.unwrap());
        // b's first append finds the version it expects taken by a's.
        let committed = b.commit(batch, vec![rows(&[100 + id], &["y"])]).await.unwrap();
        versions.push(committed.version.unwrap());
    }
    assert_eq!(versions, (1..=20).collect::<Vec<i64>>(), "each batch one version, as the sinks report them");
    let replay = a.commit(10, vec![rows(&[10], &["x"])]).await.unwrap();
    assert!(!replay.written, "a replayed batch writes nothing");
    a.close().await.unwrap();
    b.close().await.unwrap();
    assert!(a.take_warnings().is_empty() && b.take_warnings().is_empty());
    let checkpoints: Vec<String> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".checkpoint."))
        .collect();
    // Each sink writes the checkpoint of a version it committed: 3, 7, 11, 15 and 19.
    for version in [3, 7, 11, 15, 19] {
        assert!(checkpoints.contains(&format!("{version:020}.checkpoint.parquet")), "checkpoint {version} in {checkpoints:?}");
    }
    let last = std::fs::read_to_string(table.join("_delta_log/_last_checkpoint")).unwrap();
    assert!(last.contains("\"version\":19") || last.contains("\"version\":15"), "{last}");
    let ids = table_rows(&table, "id").await;
    let expected: Vec<i64> = (0..=10).chain(101..=110).collect();
    for id in &expected {
        assert!(ids.contains(&format!("| {id} ")), "row {id} in\n{ids}");
    }
    assert_eq!(ids.lines().filter(|l| l.starts_with("| ")).count(), expected.len() + 1, "{ids}");
    // A sink opened afresh finds what both recorded.
    let mut c = DeltaSink::new("t", config(), None).unwrap();
    c.open(&schema(), &AppId::sink("b"), &cp).await.unwrap();
    assert!(!c.commit(10, vec![rows(&[110], &["y"])]).await.unwrap().written);
}

/// A store that puts log entry `lose` and then answers as a client whose retry of that put
/// found the entry there: `AlreadyExists`, the answer to the put that landed lost.
#[derive(Debug)]
struct LosesAnswer {
    inner: Arc<dyn ObjectStore>,
    lose: Path,
    lost: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for LosesAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LosesAnswer({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LosesAnswer {
    async fn put_opts(&self, location: &Path, payload: object_store::PutPayload, opts: object_store::PutOptions) -> object_store::Result<object_store::PutResult> {
        let put = self.inner.put_opts(location, payload, opts).await?;
        if *location == self.lose && !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(object_store::Error::AlreadyExists { path: location.to_string(), source: "the retried put found it".into() });
        }
        Ok(put)
    }
    async fn put_multipart_opts(&self, location: &Path, opts: object_store::PutMultipartOptions) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: object_store::GetOptions) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(&self, locations: futures::stream::BoxStream<'static, object_store::Result<Path>>) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: object_store::CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(&self, from: &Path, to: &Path, options: object_store::RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// An append whose log entry landed but whose answer was lost (the store's client retried
/// the put and found the entry there) is not committed again: the batch is found recorded,
/// its txn is in the table once, and the next batch takes the next version.
#[tokio::test]
async fn an_append_whose_answer_was_lost_is_not_committed_again() {
    let (_tmp, table, cp) = workdir();
    let mut s = sink(&table);
    s.attach_local_dir(true).unwrap();
    let (dir, store, disk) = s.local.take().unwrap();
    let lose = Path::from("_delta_log/00000000000000000002.json");
    let lossy: Arc<dyn ObjectStore> = Arc::new(LosesAnswer { inner: store, lose, lost: Default::default() });
    s.local = Some((dir, lossy, disk));
    s.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    for batch in 0..4u64 {
        s.commit(batch, vec![rows(&[batch as i64], &["a"])]).await.unwrap();
    }
    let txns: Vec<i64> = (0..4).flat_map(|v| log_entry(&table, v)).filter_map(|a| a.get("txn").map(|t| t["version"].as_i64().unwrap())).collect();
    assert_eq!(txns, [0, 1, 2, 3], "each batch once, in its own version");
    assert!(!table.join("_delta_log/00000000000000000004.json").exists());
    let ids = table_rows(&table, "id").await;
    assert_eq!(ids.lines().filter(|l| l.starts_with("| ")).count(), 5, "{ids}");
}

/// A first batch without rows creates the table (its columns and partitioning, the batch's
/// txn, no files), as Spark's Delta sink does, so that readers find an empty table rather
/// than none; a later batch without rows commits nothing; batch 0 replayed by a restarted
/// sink finds its txn and commits nothing again.
#[tokio::test]
async fn the_first_batch_creates_the_table_even_without_rows() {
    let (_tmp, table, cp) = workdir();
    let mut s = sink(&table);
    s.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    let first = s.commit(0, vec![rows(&[], &[])]).await.unwrap();
    assert!(first.written && first.rows == 0 && first.version == Some(0), "{first:?}");
    let entry = log_entry(&table, 0);
    let has = |action: &str| entry.iter().any(|a| a.get(action).is_some());
    assert!(has("protocol") && has("metaData") && !has("add"), "{entry:?}");
    let txns: Vec<i64> = entry.iter().filter_map(|a| a.get("txn").map(|t| t["version"].as_i64().unwrap())).collect();
    assert_eq!(txns, [0]);
    let metadata = entry.iter().find_map(|a| a.get("metaData")).unwrap();
    assert_eq!(metadata["partitionColumns"], serde_json::json!(["p"]));
    let shown = table_rows(&table, "id").await;
    assert_eq!(shown.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| id")).count(), 0, "the table reads, empty: {shown}");

    let second = s.commit(1, Vec::new()).await.unwrap();
    assert!(!second.written && second.version == Some(0), "{second:?}");
    assert!(!table.join("_delta_log/00000000000000000001.json").exists());

    let mut restarted = sink(&table);
    restarted.open(&schema(), &AppId::sink("q"), &cp).await.unwrap();
    let replayed = restarted.commit(0, Vec::new()).await.unwrap();
    assert!(!replayed.written, "{replayed:?}");
    restarted.commit(2, vec![rows(&[7], &["a"])]).await.unwrap();
    let txns: Vec<i64> = log_entry(&table, 1).iter().filter_map(|a| a.get("txn").map(|t| t["version"].as_i64().unwrap())).collect();
    assert_eq!(txns, [2], "the next batch with rows is the next version");
    assert!(!table.join("_delta_log/00000000000000000002.json").exists());
}
