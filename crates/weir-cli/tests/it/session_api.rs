//! The library API the shell and the Python package are built on: live previews of a
//! `SELECT` over streams, batch queries over static tables (the Delta table a pipeline
//! wrote, a Parquet directory), and the catalog statements (`SHOW TABLES`, `DESCRIBE`,
//! `DROP TABLE`).

use std::time::Duration;

use arrow::array::{Array, Int64Array};
use arrow::record_batch::RecordBatch;
use weir_runtime::{Executed, QueryOptions, Session, SessionConfig, Trigger};

use crate::support::*;

fn session(dir: &std::path::Path) -> Session {
    Session::new(SessionConfig { checkpoint_root: dir.join(".weir/checkpoints"), ..Default::default() })
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

async fn run(session: &mut Session, sql: &str) -> Vec<Executed> {
    session.execute_script(sql, &QueryOptions { trigger: Trigger::AvailableNow, ..Default::default() }).await.unwrap()
}

fn source(dir: &std::path::Path) -> String {
    format!(
        "CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE) WITH (connector = 'file', path = '{}', format = 'json');",
        dir.join("in").display()
    )
}

/// A `SELECT` over a stream is a live preview: the files there, then new ones, batch by
/// batch; closing it deletes its checkpoint and writes nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_over_a_stream_previews_it_live() {
    let (_tmp, dir) = scratch();
    write_file(&dir.join("in"), "1.json", &events(0..10));
    let mut s = session(&dir);
    run(&mut s, &source(&dir)).await;
    let mut executed = s
        .execute_script("SELECT id, upper(user) AS user FROM events WHERE amount >= 0;", &QueryOptions::default())
        .await
        .unwrap();
    let Some(Executed::Preview(mut preview)) = executed.pop() else { panic!("a preview") };
    assert_eq!(preview.schema().fields().len(), 2);
    let first = tokio::time::timeout(Duration::from_secs(30), preview.next_batch()).await.unwrap().unwrap();
    assert_eq!(rows(&first.rows), 5, "the file that was there");
    write_file(&dir.join("in"), "2.json", &events(10..30));
    let second = tokio::time::timeout(Duration::from_secs(30), preview.next_batch()).await.unwrap().unwrap();
    assert_eq!((second.batch_id, rows(&second.rows)), (1, 10), "then the new file");
    let checkpoint = preview.query().checkpoint().to_string();
    assert!(std::path::Path::new(&checkpoint).exists());
    assert_eq!(s.queries().len(), 1);
    preview.close().await.unwrap();
    assert!(!std::path::Path::new(&checkpoint).exists(), "the preview's checkpoint goes with it");
    assert!(!dir.join(".weir").exists(), "a preview writes no checkpoint of its own");
    assert!(!s.queries()[0].is_active());
}

/// A `SELECT` over static tables runs once: the Delta table a pipeline wrote, and a
/// directory of Parquet files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_over_static_tables_runs_once() {
    let (_tmp, dir) = scratch();
    write_file(&dir.join("in"), "1.json", &events(0..40));
    let mut s = session(&dir);
    let out = dir.join("out");
    let script = format!(
        "{} CREATE TABLE clean WITH (connector = 'delta', path = '{}');
         INSERT INTO clean SELECT id, user, amount FROM events WHERE amount >= 0;",
        source(&dir),
        out.display()
    );
    let started = run(&mut s, &script).await;
    let Some(Executed::Started(q)) = started.last() else { panic!("a query") };
    q.await_termination().await.unwrap();

    let mut executed = s.execute_script("SELECT count(*) AS n, sum(id) AS ids FROM clean;", &QueryOptions::default()).await.unwrap();
    let Some(Executed::Rows(batches)) = executed.pop() else { panic!("rows") };
    let n = batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
    assert_eq!(n, 20);

    // The Delta table's Parquet files, read as a directory (the log is not Parquet).
    let script = format!("CREATE TABLE files WITH (connector = 'parquet', path = '{}');", out.display());
    run(&mut s, &script).await;
    let mut executed = s.execute_script("SELECT count(*) FROM files;", &QueryOptions::default()).await.unwrap();
    let Some(Executed::Rows(batches)) = executed.pop() else { panic!("rows") };
    assert_eq!(batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0), 20);

    // Errors name what is wrong: a table not declared, a Delta table not written yet.
    let err = s.execute_script("SELECT * FROM nowhere;", &QueryOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("nowhere") && err.contains("declare it first"), "{err}");
    let script = format!("CREATE TABLE later WITH (connector = 'delta', path = '{}');", dir.join("later").display());
    run(&mut s, &script).await;
    let err = s.execute_script("SELECT * FROM later;", &QueryOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("no Delta table at") && err.contains("later"), "{err}");
    // A batch query over nothing is just SQL.
    let mut executed = s.execute_script("SELECT 6 * 7 AS answer;", &QueryOptions::default()).await.unwrap();
    let Some(Executed::Rows(batches)) = executed.pop() else { panic!("rows") };
    assert_eq!(batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0), 42);
}

/// `SHOW TABLES`, `DESCRIBE` (secrets redacted) and `DROP TABLE` (refused while a running
/// query uses the table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_shows_describes_and_drops_tables() {
    let (_tmp, dir) = scratch();
    let mut s = session(&dir);
    let script = format!(
        "{}
         CREATE TABLE k (v STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '90' SECOND)
           WITH (connector = 'kafka', bootstrap_servers = '127.0.0.1:1', topic = 't', format = 'json',
                 'properties.sasl.password' = 'hunter2');
         CREATE TABLE sink WITH (connector = 'memory');",
        source(&dir)
    );
    std::fs::create_dir_all(dir.join("in")).unwrap();
    run(&mut s, &script).await;
    let mut executed = s.execute_script("SHOW TABLES;", &QueryOptions::default()).await.unwrap();
    let Some(Executed::Rows(batches)) = executed.pop() else { panic!("rows") };
    let shown = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
    for wanted in ["events", "file", "source", "k", "kafka", "ts - INTERVAL '1 minute 30 seconds'", "sink", "memory"] {
        assert!(shown.contains(wanted), "{wanted} in\n{shown}");
    }

    let mut executed = s.execute_script("DESCRIBE k;", &QueryOptions::default()).await.unwrap();
    let Some(Executed::Described(d)) = executed.pop() else { panic!("a description") };
    assert_eq!(d.columns, vec![("v".into(), "STRING".into(), true), ("ts".into(), "TIMESTAMP".into(), true)]);
    assert_eq!(d.watermark, Some(("ts".into(), "1 minute 30 seconds".into())));
    assert!(d.options.contains(&("properties.sasl.password".into(), "****".into())), "{:?}", d.options);
    assert!(!format!("{d:?}").contains("hunter2"));

    // A running query holds its tables.
    let mut executed = s
        .execute_script("INSERT INTO sink SELECT id FROM events;", &QueryOptions { trigger: Trigger::ProcessingTime(Duration::from_secs(1)), ..Default::default() })
        .await
        .unwrap();
    let Some(Executed::Started(q)) = executed.pop() else { panic!("a query") };
    let err = s.execute_script("DROP TABLE events;", &QueryOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("used by the running query 'sink'") && err.contains("STOP QUERY"), "{err}");
    q.stop();
    q.await_termination().await.unwrap();
    s.execute_script("DROP TABLE events;", &QueryOptions::default()).await.unwrap();
    let err = s.execute_script("DESCRIBE events;", &QueryOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("no table 'events'") && err.contains("tables: k, sink"), "{err}");
    let stats = s.show_tables();
    let names = stats.column(0).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
    assert_eq!((0..names.len()).map(|i| names.value(i)).collect::<Vec<_>>(), vec!["k", "sink"]);
}
