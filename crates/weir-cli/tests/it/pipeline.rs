//! A three-hop lakehouse pipeline, each hop its own `weir run` process with its own
//! checkpoint, all running at once while SIGKILL lands at seeded random moments in each:
//!
//! ```text
//! JSON files -> bronze (as is) -> silver (dedup by id, 10 min watermark)
//!            -> gold (10-minute tumbling count per user, Spark's append mode)
//! ```
//!
//! bronze and silver are Delta tables read as streams by the next hop. The data comes in
//! rounds an hour apart; every event is written twice (the copy up to a minute later, in a
//! later file of the same round); round `r`'s files are all in the directory before round
//! `r + 1`'s first. bronze reads files in name order and silver and gold read commits in
//! order, so every hop sees round `r` before round `r + 1`: no row is ever late (the
//! watermark stays more than 4 minutes below a round while it is read), each id's first
//! copy is kept, and a round's windows close once the next round is read. The last round
//! is one event that closes every window before it. So, however the kills cut the batches:
//! bronze holds every row written, silver every id once, and gold one row per round and
//! user with the number of that round's ids of the user. The tables are read by the
//! independent reader and by DuckDB, and each table's `txn` versions must rise strictly.
//!
//! `WEIR_SEED` replays a seed; `WEIR_PIPELINE_KILLS` sets how many kills land (default 12).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

const HOPS: [(&str, &str); 3] = [
    (
        "bronze.sql",
        "CREATE TABLE events (id STRING, user STRING, ts TIMESTAMP)
         WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze');
         INSERT INTO bronze SELECT * FROM events;",
    ),
    (
        "silver.sql",
        "CREATE TABLE bronze (id STRING, user STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'delta', path = 'bronze', max_files_per_trigger = 2);
         CREATE TABLE silver WITH (connector = 'delta', path = 'silver');
         INSERT INTO silver SELECT DISTINCT ON (id) * FROM bronze ORDER BY id, ts;",
    ),
    (
        "gold.sql",
        "CREATE TABLE silver (id STRING, user STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'delta', path = 'silver');
         CREATE TABLE gold WITH (connector = 'delta', path = 'gold');
         INSERT INTO gold SELECT window_start, user, count(*) AS n FROM TUMBLE(silver, ts, INTERVAL '10' MINUTE) GROUP BY window_start, user;",
    ),
];

/// Rounds of data before the closing round.
const ROUNDS: u64 = 4;
/// Files per round, and events per file.
const FILES: u64 = 4;
const EVENTS: u64 = 25;
/// 2024-01-02T00:00:00Z in seconds.
const T0: i64 = 1_704_153_600;

/// `seconds` (since the epoch, on 2024-01-02) in RFC 3339.
fn timestamp(seconds: i64) -> String {
    let s = seconds - T0;
    assert!((0..86_400).contains(&s), "the data stays on 2024-01-02");
    format!("2024-01-02T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

/// The files of round `round`: each event twice, the copy in a later file; and, per user,
/// how many ids the round holds.
fn round_files(round: u64, rng: &mut Rng) -> (Vec<Vec<String>>, BTreeMap<String, u64>) {
    let start = T0 + round as i64 * 3600;
    let mut files: Vec<Vec<String>> = vec![Vec::new(); FILES as usize];
    let mut per_user = BTreeMap::new();
    for f in 0..FILES - 1 {
        for e in 0..EVENTS {
            let id = format!("r{round}-f{f}-e{e}");
            let user = format!("u{}", rng.below(4));
            let ts = start + rng.below(300) as i64;
            *per_user.entry(user.clone()).or_insert(0) += 1;
            files[f as usize].push(json!({"id": id, "user": user, "ts": timestamp(ts)}).to_string());
            // The copy, up to a minute later, in a later file of the round.
            let later = (f + 1 + rng.below(FILES - 1 - f)) as usize;
            files[later].push(json!({"id": id, "user": user, "ts": timestamp(ts + rng.below(60) as i64)}).to_string());
        }
    }
    (files, per_user)
}

/// A running hop.
struct Hop {
    script: &'static str,
    child: Option<Child>,
}

impl Hop {
    fn start(&mut self, dir: &Path) {
        let mut cmd = weir(dir);
        cmd.args(["run", self.script, "--trigger", "100ms"]).stdout(Stdio::null()).stderr(Stdio::piped());
        self.child = Some(cmd.spawn().expect("weir starts"));
    }

    /// SIGKILLs the hop; panics if it had stopped by itself (it never should).
    fn kill(&mut self, ctx: &str) {
        let mut child = self.child.take().expect("running");
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!("{ctx}: {} stopped by itself ({status}):\n{}", self.script, stderr(&out));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn three_hop_pipeline_under_sigkill() {
    let seed: u64 = std::env::var("WEIR_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let kills: u64 = std::env::var("WEIR_PIPELINE_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let ctx = format!("pipeline (seed {seed}; replay with WEIR_SEED={seed})");
    eprintln!("{ctx}: {kills} kills");
    let mut rng = Rng(seed);
    let (_tmp, dir) = scratch();
    for (script, sql) in HOPS {
        std::fs::write(dir.join(script), sql).unwrap();
    }
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let mut hops: Vec<Hop> = HOPS.iter().map(|(script, _)| Hop { script, child: None }).collect();
    for hop in &mut hops {
        hop.start(&dir);
    }

    // Rounds of files, written while the hops run; kills land between the files.
    let mut expected_gold = Vec::new();
    let mut written = Vec::new();
    let mut landed = 0;
    let mut file_number = 0;
    for round in 0..=ROUNDS {
        let files = match round {
            ROUNDS => vec![vec![json!({"id": "closing", "user": "z", "ts": timestamp(T0 + ROUNDS as i64 * 3600)}).to_string()]],
            _ => {
                let (files, per_user) = round_files(round, &mut rng);
                for (user, n) in per_user {
                    expected_gold.push((T0 + round as i64 * 3600, user, n));
                }
                files
            }
        };
        for lines in files {
            written.extend(lines.iter().cloned());
            write_file(&dir.join("in"), &format!("{file_number:04}.json"), &lines);
            file_number += 1;
            let kills_left = kills - landed;
            if kills_left > 0 && rng.below(2) == 0 {
                std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
                let hop = rng.below(3) as usize;
                hops[hop].kill(&ctx);
                landed += 1;
                hops[hop].start(&dir);
            } else {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    // The rest of the kills, at random moments while the hops catch up.
    while landed < kills {
        std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
        let hop = rng.below(3) as usize;
        hops[hop].kill(&ctx);
        landed += 1;
        hops[hop].start(&dir);
    }
    for hop in &mut hops {
        hop.kill(&ctx);
    }
    // Each hop runs to the end of its input, in order.
    for (script, _) in HOPS {
        let out = run_within(&dir, script, &[], Duration::from_secs(180));
        assert!(out.status.success(), "{ctx}: {script} failed:\n{}", stderr(&out));
    }

    // bronze: every row written, once.
    let bronze = DeltaView::read_columns(&dir.join("bronze"), &["id"]);
    let mut bronze_ids: Vec<String> = bronze.json["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    bronze_ids.sort();
    let mut written_ids: Vec<String> = written.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    written_ids.sort();
    assert_eq!(bronze_ids, written_ids, "{ctx}: bronze holds every row written, once");

    // silver: every id once, by both readers.
    let mut ids = written_ids.clone();
    ids.dedup();
    let silver: Vec<String> = DeltaView::read_columns(&dir.join("silver"), &["id"]).rows();
    let expected_silver: Vec<String> = ids.iter().map(|id| json!({"id": id}).to_string()).collect();
    assert_eq!(silver, expected_silver, "{ctx}: silver holds each id once");
    assert_eq!(duckdb_rows(&dir.join("silver"), &["id"]), expected_silver, "{ctx}: DuckDB reads silver the same");

    // gold: one row per closed window and user.
    let mut expected: Vec<String> = expected_gold
        .iter()
        .map(|(start, user, n)| json!({"window_start": timestamp(*start).replace('Z', "+00:00"), "user": user, "n": n}).to_string())
        .collect();
    expected.sort();
    let gold = DeltaView::read(&dir.join("gold"));
    assert_eq!(gold.rows(), expected, "{ctx}: gold");
    let mut duck_expected: Vec<String> = expected_gold.iter().map(|(_, user, n)| json!({"user": user, "n": n}).to_string()).collect();
    duck_expected.sort();
    assert_eq!(duckdb_rows(&dir.join("gold"), &["user", "n"]), duck_expected, "{ctx}: DuckDB reads gold the same");

    // Each table's batches committed once, in order.
    for table in ["bronze", "silver", "gold"] {
        let txns = DeltaView::read(&dir.join(table)).txns();
        assert!(!txns.is_empty(), "{ctx}: {table} has txn actions");
        assert!(txns.windows(2).all(|w| w[0].1 < w[1].1), "{ctx}: {table}'s txn versions rise strictly: {txns:?}");
    }
}
