//! Deduplication is deterministic (issue 14, item 0): multi-megabyte batches full of in-batch
//! duplicates, whose order in the files differs from their event-time order, give the rows a
//! model gives (the first row of each key by event time, ties by file then line; an earlier
//! batch wins over a later one) whatever the number of threads, the size of the pieces the
//! files are read in, and wherever a run is killed and restarted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use crate::support::*;

const DELAY_MS: i64 = 10 * 60 * 1000;
const FILES: usize = 6;
const ROWS_PER_FILE: usize = 12_000;
const START_MS: i64 = 1_704_153_600_000; // 2024-01-02T00:00:00Z

const PIPELINE: &str = "
CREATE TABLE events (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING,
  WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = 2);

CREATE TABLE dedup WITH (connector = 'delta', path = 'out/dedup');

INSERT INTO dedup
SELECT DISTINCT ON (event_id) event_id, tms, seq
FROM events
ORDER BY event_id, ts;
";

/// One input row.
#[derive(Clone, Copy)]
struct Event {
    key: u32,
    tms: i64,
    seq: u64,
}

/// A small deterministic generator (splitmix64), so the data is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The files, in name order: each batch (two files) draws keys from a window that overlaps
/// the last batch's, with event times spread over 40 minutes and shuffled, so that a key's
/// rows come in an order unrelated to their times; later batches move on in event time, so
/// the last batch also has late rows and keys evicted and seen again.
fn files() -> Vec<Vec<Event>> {
    let mut rng = Rng(14);
    let mut seq = 0;
    (0..FILES)
        .map(|f| {
            let batch = (f / 2) as i64;
            let base = START_MS + batch * 30 * 60 * 1000;
            (0..ROWS_PER_FILE)
                .map(|_| {
                    seq += 1;
                    let key = (batch as u64 * 6_000 + rng.below(14_000)) as u32;
                    // Times mostly in the batch's window; one in twenty far before it (late
                    // from the third batch on), and many exact ties.
                    let tms = if rng.below(20) == 0 {
                        START_MS - 60 * 60 * 1000 + rng.below(1000) as i64 * 1000
                    } else {
                        base + rng.below(2_400) as i64 * 1000
                    };
                    Event { key, tms, seq }
                })
                .collect()
        })
        .collect()
}

fn key_name(key: u32) -> String {
    format!("evt-{key:08}")
}

fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // 2024-01-01 is day 19723; every date here is in January 2024.
    let day = days - 19_723 + 1;
    assert!((1..=31).contains(&day), "test times stay in January 2024");
    format!("2024-01-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, ms.rem_euclid(1000))
}

fn setup(dir: &Path, files: &[Vec<Event>]) {
    std::fs::write(dir.join("p.sql"), PIPELINE).unwrap();
    let pad = "x".repeat(40);
    for (i, events) in files.iter().enumerate() {
        let lines: Vec<String> = events
            .iter()
            .map(|e| {
                format!(
                    r#"{{"event_id": "{}", "ts": "{}", "tms": {}, "seq": {}, "pad": "{pad}"}}"#,
                    key_name(e.key),
                    iso(e.tms),
                    e.tms,
                    e.seq
                )
            })
            .collect();
        write_file(&dir.join("in/events"), &format!("{i:03}.json"), &lines);
    }
}

/// The rows the query must write: Spark's watermark rules (batch N drops rows at or before
/// batch N-1's watermark, evicts keys whose first time + delay is at or before its own),
/// and within a batch the first row of each key by (event time, file, line).
fn model(files: &[Vec<Event>]) -> Vec<String> {
    let mut state: HashMap<u32, i64> = HashMap::new();
    let (mut late_wm, mut wm) = (0i64, 0i64);
    let mut out = Vec::new();
    for batch in files.chunks(2) {
        let mut best: BTreeMap<u32, (i64, usize, usize, Event)> = BTreeMap::new();
        let mut max_ts = i64::MIN;
        for (f, events) in batch.iter().enumerate() {
            for (line, e) in events.iter().enumerate() {
                max_ts = max_ts.max(e.tms);
                if e.tms <= late_wm || state.contains_key(&e.key) {
                    continue;
                }
                let candidate = (e.tms, f, line, *e);
                let entry = best.entry(e.key).or_insert(candidate);
                if (candidate.0, candidate.1, candidate.2) < (entry.0, entry.1, entry.2) {
                    *entry = candidate;
                }
            }
        }
        for (key, (tms, _, _, e)) in best {
            state.insert(key, tms + DELAY_MS);
            out.push(serde_json::json!({ "event_id": key_name(key), "tms": e.tms, "seq": e.seq }).to_string());
        }
        state.retain(|_, expires| *expires > wm);
        late_wm = wm;
        wm = wm.max(max_ts - DELAY_MS);
    }
    out.sort();
    out
}

const LIMIT: Duration = Duration::from_secs(300);

fn rows(dir: &Path) -> Vec<String> {
    DeltaView::read(&dir.join("out/dedup")).rows()
}

#[test]
fn dedup_keeps_the_same_rows_whatever_the_threads_pieces_and_crashes() {
    let files = files();
    let want = model(&files);
    assert!(want.len() > 15_000, "{} rows", want.len());

    // Threads and read pieces: every combination writes the model's rows.
    for (threads, piece) in [("1", None), ("2", Some("65536")), ("3", Some("1000000")), ("2", None)] {
        let (_tmp, dir) = scratch();
        setup(&dir, &files);
        let mut cmd = weir(&dir);
        cmd.args(["run", "p.sql", "--trigger", "available-now", "--threads", threads]);
        if let Some(bytes) = piece {
            cmd.env("WEIR_FILE_PIECE_BYTES", bytes);
        }
        let out = output_within(cmd, LIMIT);
        assert_ok(&out);
        assert_eq!(rows(&dir), want, "threads {threads}, pieces of {piece:?} bytes:\n{}", stderr(&out));
    }

    // A kill at every step of the second batch, then a restart: the same rows.
    for failpoint in ["after_offsets", "before_delta_commit", "after_execute", "after_sink_commit", "after_state_commit", "after_commit_log"] {
        let (_tmp, dir) = scratch();
        setup(&dir, &files);
        crash_at(&dir, failpoint, 1, LIMIT);
        let out = run(&dir, "p.sql", &[]);
        assert_ok(&out);
        assert_eq!(rows(&dir), want, "after a crash at {failpoint} in batch 1:\n{}", stderr(&out));
    }
}
