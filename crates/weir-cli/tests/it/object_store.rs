//! Sources, checkpoints and Delta tables on S3: the real `weir` binary against a real S3
//! protocol server (`moto_server` on 127.0.0.1), reached through the standard `AWS_*`
//! variables, with tables read back by the independent reader pointed at the same server.
//! Faults come from a proxy in front of the server that throttles, fails and loses the
//! answers of requests.

use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::azure::Azurite;
use crate::support::kafka::assert_each_once;
use crate::support::s3::{FaultProxy, Faults, S3Server, env_for};
use crate::support::*;

const BUCKET: &str = "lake";

/// A scratch directory with an S3 server and the bucket [`BUCKET`].
struct Lake {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    s3: S3Server,
}

impl Lake {
    fn new() -> Self {
        let (tmp, dir) = scratch();
        let s3 = S3Server::start(&dir);
        s3.create_bucket(BUCKET);
        Self { _tmp: tmp, dir, s3 }
    }

    /// `weir` in the scratch directory, pointed at `endpoint` (the server or a proxy).
    fn weir_at(&self, endpoint: &str) -> Command {
        let mut cmd = weir(&self.dir);
        env_for(&mut cmd, endpoint);
        cmd
    }

    fn weir(&self) -> Command {
        self.weir_at(&self.s3.endpoint())
    }

    /// `weir run p.sql --trigger available-now --checkpoint <checkpoint>`, within 2 minutes.
    fn run(&self, checkpoint: &str) -> Output {
        let mut cmd = self.weir();
        cmd.args(["run", "p.sql", "--trigger", "available-now", "--checkpoint", checkpoint]);
        output_within(cmd, Duration::from_secs(120))
    }

    fn script(&self, sql: &str) {
        std::fs::write(self.dir.join("p.sql"), sql).unwrap();
    }

    /// JSON lines as the object `key`.
    fn put_lines(&self, key: &str, lines: &[String]) {
        self.s3.put(BUCKET, key, (lines.join("\n") + "\n").as_bytes());
    }

    fn read(&self, prefix: &str) -> DeltaView {
        DeltaView::read_s3(&format!("s3://{BUCKET}/{prefix}"), &self.s3.endpoint())
    }

    fn json(&self, key: &str) -> Value {
        let bytes = self.s3.get(BUCKET, key).unwrap_or_else(|| panic!("no s3://{BUCKET}/{key}; keys: {:?}", self.s3.list(BUCKET, "")));
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// Events `{"event_id", "v", "ts"}` of ids `ids` at minute `minute` of 2024-01-02, each
/// written twice in the same file: `first` at the minute, `dup` 30 s later (kept: `first`).
fn dedup_events(ids: std::ops::Range<u64>, minute: u64) -> Vec<String> {
    ids.flat_map(|i| {
        // The later copy first in the file: the earlier event time must win wherever it is.
        [
            format!(r#"{{"event_id": "e{i}", "v": "dup", "ts": "2024-01-02T00:{minute:02}:30Z"}}"#),
            format!(r#"{{"event_id": "e{i}", "v": "first", "ts": "2024-01-02T00:{minute:02}:00Z"}}"#),
        ]
    })
    .collect()
}

const DEDUP: &str = "
CREATE TABLE events (event_id STRING, v STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'file', path = 's3://lake/in/events', format = 'json', max_files_per_trigger = 1);
CREATE TABLE out WITH (connector = 'delta', path = 's3://lake/out');
INSERT INTO out SELECT DISTINCT ON (event_id) event_id, v, ts FROM events ORDER BY event_id, ts;
";

fn ids(table: &DeltaView) -> Vec<String> {
    table.json["rows"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect()
}

/// Source files, checkpoint and Delta table all in S3: a deduplicating query over two runs
/// writes each event once (the first copy by event time), one commit per batch with its
/// txn, and leaves nothing on local disk. Its checkpoint entries name the run that wrote
/// them, and a clean stop leaves its lease expired for the next runner. The state's
/// snapshot after batch 9, made from its files in the bucket, holds every key: a later
/// run restored from it drops copies of the first events.
#[test]
fn a_deduplicating_query_runs_with_source_checkpoint_and_table_in_s3() {
    let lake = Lake::new();
    lake.script(DEDUP);
    for f in 0..3u64 {
        lake.put_lines(&format!("in/events/{f:02}.json"), &dedup_events(f * 100..f * 100 + 100, f));
    }
    // Hidden and temporary objects are not read.
    lake.put_lines("in/events/_tmp.json", &dedup_events(900..901, 0));
    let checkpoint = "s3://lake/cp/out";
    assert_ok(&lake.run(checkpoint));
    for f in 3..12u64 {
        lake.put_lines(&format!("in/events/{f:02}.json"), &dedup_events(f * 100..f * 100 + 100, f));
    }
    let out = lake.run(checkpoint);
    assert_ok(&out);

    let table = lake.read("out");
    assert_each_once(ids(&table), (0..1200).map(|i| format!("e{i}")), "event ids in s3://lake/out");
    for row in table.json["rows"].as_array().unwrap() {
        assert_eq!(row["v"], "first", "the copy with the earlier event time is kept: {row}");
    }
    let commits = table.commits();
    assert_eq!(commits.len(), 12, "one commit per file (max_files_per_trigger = 1): {commits:?}");
    let versions: Vec<i64> = table.txns().iter().map(|t| t.1).collect();
    assert_eq!(versions.iter().collect::<BTreeSet<_>>().len(), versions.len(), "each batch committed once: {versions:?}");

    // The checkpoint is in the bucket, its entries carry the run id, the lease is given up.
    let keys = lake.s3.list(BUCKET, "cp/out/");
    for key in ["cp/out/metadata.json", "cp/out/offsets/0.json", "cp/out/commits/0.json", "cp/out/_lease.json", "cp/out/state/dedup/9.snapshot"] {
        assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
    }
    let offsets = lake.json("cp/out/offsets/0.json");
    let commit = lake.json("cp/out/commits/0.json");
    assert!(offsets["runId"].is_string() && offsets["runId"] == commit["runId"], "{offsets} {commit}");
    let lease = lake.json("cp/out/_lease.json");
    assert_eq!(lease["expiresAtMs"], 0, "a clean stop gives the lease up: {lease}");
    assert!(!lake.dir.join(".weir").exists() && !lake.dir.join("out").exists(), "nothing written to local disk");

    // A third run finds nothing to do and writes nothing.
    assert_ok(&lake.run(checkpoint));
    assert_eq!(lake.read("out").commits().len(), 12);
    // A fourth, restored from the snapshot and the deltas after it, drops the copies of the
    // first file's events, on time but held since batch 0.
    lake.put_lines("in/events/12.json", &dedup_events(0..100, 11));
    assert_ok(&lake.run(checkpoint));
    assert_each_once(ids(&lake.read("out")), (0..1200).map(|i| format!("e{i}")), "event ids after the copies");
}

/// A stateless copy of `s3://lake/in/events` (JSON, one file per batch) into the Delta
/// table at `sink`, whose `WITH` list ends with `sink_options` (`, key = 'value'`...).
fn copy_script(sink: &str, sink_options: &str) -> String {
    format!(
        "CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE)
         WITH (connector = 'file', path = 's3://lake/in/events', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE out WITH (connector = 'delta', path = '{sink}'{sink_options});
         INSERT INTO out SELECT id, user, amount FROM events;"
    )
}

/// Waits for `child` to exit, killing it and failing with its log after `limit`.
fn wait_exit(child: &mut Child, limit: Duration, log: &std::path::Path, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} within {limit:?}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(mut cmd: Command, log: &std::path::Path) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {sig}");
}

/// Waits until `done` or panics after `limit` with `what`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Single writer on S3: while a runner holds the checkpoint's lease a second is refused at
/// once, naming the holder. Paused (SIGSTOP) past its lease, the first loses it to the next
/// runner, which goes on from the checkpoint; woken, the first stops before committing
/// anything. Every row is in the table once.
#[test]
fn a_second_runner_is_refused_and_a_paused_runner_loses_its_lease() {
    let lake = Lake::new();
    lake.script(&copy_script("s3://lake/out", ""));
    let checkpoint = "s3://lake/cp/out";
    let lease = |cmd: &mut Command| {
        cmd.env("WEIR_CHECKPOINT_LEASE_SECONDS", "3");
    };
    lake.put_lines("in/events/00.json", &events(0..100));
    let mut first_cmd = lake.weir();
    first_cmd.args(["run", "p.sql", "--trigger", "1s", "--checkpoint", checkpoint]);
    lease(&mut first_cmd);
    let first_log = lake.dir.join("first.log");
    let mut first = spawn(first_cmd, &first_log);
    wait_for(Duration::from_secs(60), "the first runner's first commit", || {
        lake.s3.list(BUCKET, "cp/out/commits/").len() == 1
    });
    let holder = lake.json("cp/out/_lease.json");

    // Refused at once, naming the holder's run.
    let started = Instant::now();
    let second = lake.run(checkpoint);
    let err = stderr(&second);
    assert!(!second.status.success(), "a second runner must be refused:\n{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "refused promptly, not after retries: {:?}", started.elapsed());
    assert!(err.contains("is in use by another weir process") && err.contains(holder["runId"].as_str().unwrap()), "{err}");

    // Paused past its lease: the next runner takes over and goes on.
    signal(&first, "-STOP");
    std::thread::sleep(Duration::from_secs(5));
    lake.put_lines("in/events/01.json", &events(100..200));
    let mut next = lake.weir();
    next.args(["run", "p.sql", "--trigger", "available-now", "--checkpoint", checkpoint]);
    lease(&mut next);
    let taken = output_within(next, Duration::from_secs(120));
    assert_ok(&taken);

    // Woken, the first runner finds its lease gone and stops before any commit.
    let commits_before = lake.s3.list(BUCKET, "cp/out/commits/");
    let versions_before = lake.s3.list(BUCKET, "out/_delta_log/");
    lake.put_lines("in/events/02.json", &events(200..300));
    signal(&first, "-CONT");
    let status = wait_exit(&mut first, Duration::from_secs(60), &first_log, "the paused runner stops after losing its lease");
    let log = std::fs::read_to_string(&first_log).unwrap();
    assert!(!status.success(), "{log}");
    assert!(log.contains("lost its lease"), "{log}");
    assert_eq!(lake.s3.list(BUCKET, "cp/out/commits/"), commits_before, "the old runner committed nothing after losing its lease");
    assert_eq!(lake.s3.list(BUCKET, "out/_delta_log/"), versions_before, "nor wrote a Delta version");

    // The next run reads the last file; every row once.
    let mut last = lake.weir();
    last.args(["run", "p.sql", "--trigger", "available-now", "--checkpoint", checkpoint]);
    lease(&mut last);
    assert_ok(&output_within(last, Duration::from_secs(120)));
    let table = lake.read("out");
    let got: Vec<String> = table.json["rows"].as_array().unwrap().iter().map(|r| r["id"].to_string()).collect();
    assert_each_once(got, (0..300).map(|i| i.to_string()), "ids in s3://lake/out");
}

/// Two queries append to one table in S3 at the same time: Delta commits are written
/// put-if-absent, so a writer that loses a race retries at the next version. No version is
/// lost or overwritten, and each row is there once.
#[test]
fn two_queries_append_to_one_table_in_s3_at_once() {
    let lake = Lake::new();
    for (name, offset) in [("a", 0u64), ("b", 10_000)] {
        std::fs::write(
            lake.dir.join(format!("{name}.sql")),
            format!(
                "CREATE TABLE src (id BIGINT, user STRING, amount DOUBLE)
                 WITH (connector = 'file', path = 's3://lake/in/{name}', format = 'json', max_files_per_trigger = 1);
                 CREATE TABLE shared WITH (connector = 'delta', path = 's3://lake/shared');
                 INSERT INTO shared SELECT id, user, amount FROM src;"
            ),
        )
        .unwrap();
        for f in 0..8u64 {
            let start = offset + f * 50;
            lake.put_lines(&format!("in/{name}/{f:02}.json"), &events(start..start + 50));
        }
    }
    let runners: Vec<(Child, std::path::PathBuf)> = ["a", "b"]
        .iter()
        .map(|name| {
            let mut cmd = lake.weir();
            cmd.args(["run", &format!("{name}.sql"), "--trigger", "available-now", "--checkpoint", &format!("s3://lake/cp/{name}")]);
            let log = lake.dir.join(format!("{name}.log"));
            (spawn(cmd, &log), log)
        })
        .collect();
    for (mut child, log) in runners {
        let status = wait_exit(&mut child, Duration::from_secs(180), &log, "each query finishes");
        assert!(status.success(), "{}", std::fs::read_to_string(&log).unwrap());
    }
    let table = lake.read("shared");
    let got: Vec<String> = table.json["rows"].as_array().unwrap().iter().map(|r| r["id"].to_string()).collect();
    assert_each_once(got, (0..400).chain(10_000..10_400).map(|i| i.to_string()), "ids in s3://lake/shared");
    let commits = table.commits();
    for (n, c) in commits.iter().enumerate() {
        assert_eq!(c["version"], n, "versions 0, 1, 2, … with none lost: {commits:?}");
    }
    assert_eq!(commits.len(), 16, "one commit per batch of each query");
    let mut txns = table.txns();
    txns.sort();
    txns.dedup();
    assert_eq!(txns.len(), 16, "each (query, batch) committed once");
}

/// Through a proxy that throttles (503 SlowDown), fails (500), delays, and applies some PUTs
/// but loses their answers, a deduplicating query into S3 finishes, and every event is in
/// the table once: the store's client retries, and a checkpoint entry or lease found with
/// this runner's own bytes after a lost answer counts as written.
#[test]
fn store_faults_are_retried_and_each_row_lands_once() {
    let lake = Lake::new();
    lake.script(DEDUP);
    for f in 0..4u64 {
        lake.put_lines(&format!("in/events/{f:02}.json"), &dedup_events(f * 100..f * 100 + 100, f));
    }
    let proxy = FaultProxy::start(
        lake.s3.port,
        Faults { throttle_every: 9, error_every: 13, lost_answer_every: 6, slow_every: 17, slow: Duration::from_millis(300), denied_bucket: None },
    );
    let mut cmd = lake.weir_at(&proxy.endpoint());
    cmd.args(["run", "p.sql", "--trigger", "available-now", "--checkpoint", "s3://lake/cp/out"]);
    let out = output_within(cmd, Duration::from_secs(300));
    assert_ok(&out);
    let failed = proxy.failed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(failed >= 5, "the proxy failed {failed} of {} requests", proxy.seen.load(std::sync::atomic::Ordering::SeqCst));
    let table = lake.read("out");
    assert_each_once(ids(&table), (0..400).map(|i| format!("e{i}")), "event ids in s3://lake/out");
    let versions: Vec<i64> = table.txns().iter().map(|t| t.1).collect();
    assert_eq!(versions.iter().collect::<BTreeSet<_>>().len(), versions.len(), "each batch committed once: {versions:?}");
}

/// A bucket the credentials may not use fails the query at start, naming the URL and what
/// the store said; nothing is written.
#[test]
fn an_access_denied_bucket_fails_at_start_naming_the_url() {
    let lake = Lake::new();
    lake.s3.create_bucket("locked");
    lake.script(&copy_script("s3://locked/out", ""));
    lake.put_lines("in/events/00.json", &events(0..10));
    let proxy = FaultProxy::start(lake.s3.port, Faults::deny("locked"));
    let started = Instant::now();
    let mut cmd = lake.weir_at(&proxy.endpoint());
    cmd.args(["run", "p.sql", "--trigger", "available-now", "--checkpoint", "s3://locked/cp"]);
    let out = output_within(cmd, Duration::from_secs(120));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "403 is not retried: {:?}", started.elapsed());
    assert!(err.contains("s3://locked/") && (err.contains("Access Denied") || err.contains("403")), "{err}");
    assert!(lake.s3.list("locked", "").is_empty(), "nothing written");
}

/// Azure through Azurite, the emulator: the checkpoint and the Delta table in a container,
/// the checkpoint taking the sink table's `storage.*` options (same kind of store), read
/// back by the independent reader. A restart goes on from the checkpoint and writes each
/// row once.
#[test]
fn a_query_writes_its_checkpoint_and_table_to_azure() {
    let (_tmp, dir) = scratch();
    let azurite = Azurite::start(&dir);
    azurite.create_container("lake");
    std::fs::write(
        dir.join("p.sql"),
        "CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE)
         WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE out WITH (connector = 'delta', path = 'az://lake/out', storage.azure_storage_use_emulator = 'true');
         INSERT INTO out SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;",
    )
    .unwrap();
    let run = || {
        let mut cmd = weir(&dir);
        azurite.env(&mut cmd).args(["run", "p.sql", "--trigger", "available-now", "--checkpoint", "az://lake/cp"]);
        output_within(cmd, Duration::from_secs(120))
    };
    write_file(&dir.join("in/events"), "00.json", &events(0..50));
    write_file(&dir.join("in/events"), "01.json", &events(50..100));
    assert_ok(&run());
    write_file(&dir.join("in/events"), "02.json", &events(100..150));
    let out = run();
    assert_ok(&out);
    assert!(stderr(&out).contains("checkpoint az://lake/cp"), "{}", stderr(&out));
    assert!(!dir.join(".weir").exists(), "the checkpoint is in the container, not on local disk");
    let table = DeltaView::read_azure("az://lake/out", &azurite);
    assert_eq!(table.rows(), expected_rows(0..150));
    assert_eq!(table.json["version"], 2, "one commit per file");
}

/// A store without conditional writes (here S3 with object_store's conditional puts turned
/// off) is refused at start, saying why and what the user can do; with
/// `storage.allow_unsafe_rename = true` the query runs, with a warning, and writes each row
/// once.
#[test]
fn a_store_without_conditional_writes_is_refused_unless_the_user_accepts_the_risk() {
    let lake = Lake::new();
    let script = |extra: &str| copy_script("s3://lake/out", &format!(", storage.aws_conditional_put = 'disabled'{extra}"));
    lake.put_lines("in/events/00.json", &events(0..20));
    lake.put_lines("in/events/01.json", &events(20..40));
    lake.script(&script(""));
    let refused = lake.run("s3://lake/cp/out");
    let err = stderr(&refused);
    assert!(!refused.status.success(), "{err}");
    assert!(err.contains("s3://lake/cp/out/_lease.json: the store does not support conditional writes"), "{err}");
    assert!(err.contains("storage.allow_unsafe_rename = true"), "{err}");
    assert!(lake.s3.list(BUCKET, "out/").is_empty(), "nothing written to the table");

    lake.script(&script(", storage.allow_unsafe_rename = 'true'"));
    let out = lake.run("s3://lake/cp/out");
    assert_ok(&out);
    assert!(stderr(&out).contains("no lease keeps a second runner out"), "{}", stderr(&out));
    let table = lake.read("out");
    let got: Vec<String> = table.json["rows"].as_array().unwrap().iter().map(|r| r["id"].to_string()).collect();
    assert_each_once(got, (0..40).map(|i| i.to_string()), "ids in s3://lake/out");
    assert_eq!(table.commits().len(), 2);
}

/// Without AWS_ACCESS_KEY_ID, credentials come from the AWS SDK's chain: here a profile in
/// a shared credentials file (`AWS_PROFILE`, `AWS_SHARED_CREDENTIALS_FILE`), as the AWS CLI
/// reads it.
#[test]
fn credentials_come_from_a_profile_file() {
    let lake = Lake::new();
    lake.script(&copy_script("s3://lake/out", ""));
    lake.put_lines("in/events/00.json", &events(0..10));
    let credentials = lake.dir.join("aws-credentials");
    std::fs::write(&credentials, "[pipelines]\naws_access_key_id = from-profile\naws_secret_access_key = profile-secret\n").unwrap();
    let mut cmd = lake.weir();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "pipelines")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", lake.dir.join("no-aws-config"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["run", "p.sql", "--trigger", "available-now", "--checkpoint", "s3://lake/cp/out"]);
    assert_ok(&output_within(cmd, Duration::from_secs(120)));
    let table = lake.read("out");
    assert_eq!(table.json["rows"].as_array().unwrap().len(), 10);
}

/// A pipeline hop in S3: a partitioned Delta table there, read as a stream into another,
/// two runs (the second after new commits), each row once, the partition values kept.
#[test]
fn a_delta_table_in_s3_streams_into_another() {
    let lake = Lake::new();
    let bronze = "CREATE TABLE events (event_id STRING, v STRING, ts TIMESTAMP)
         WITH (connector = 'file', path = 's3://lake/in/events', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE bronze WITH (connector = 'delta', path = 's3://lake/bronze', partition_by = 'v');
         INSERT INTO bronze SELECT * FROM events;";
    let silver = "CREATE TABLE bronze WITH (connector = 'delta', path = 's3://lake/bronze');
         CREATE TABLE silver WITH (connector = 'delta', path = 's3://lake/silver');
         INSERT INTO silver SELECT event_id, v FROM bronze;";
    for round in 0..2u64 {
        for f in 0..2u64 {
            let n = round * 2 + f;
            lake.put_lines(&format!("in/events/{n:02}.json"), &dedup_events(n * 10..n * 10 + 10, n));
        }
        lake.script(bronze);
        assert_ok(&lake.run("s3://lake/cp/bronze"));
        lake.script(silver);
        assert_ok(&lake.run("s3://lake/cp/silver"));
    }
    let table = lake.read("silver");
    let mut rows = table.rows();
    rows.dedup();
    assert_eq!(rows.len(), 80, "each of the 80 rows once (40 ids, a first and a dup each): {rows:?}");
    assert_eq!(table.rows().len(), 80);
    assert_eq!(table.json["rows"].as_array().unwrap().iter().filter(|r| r["v"] == "first").count(), 40);
    assert!(!lake.dir.join(".weir").exists(), "nothing written to local disk");
}
