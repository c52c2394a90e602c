//! Deduplication is deterministic (issue 14, item 0): multi-megabyte batches full of in-batch
//! duplicates, whose order in the files differs from their event-time order, give the rows a
//! model gives (the first row of each key by event time, ties by file then line; an earlier
//! batch wins over a later one) whatever the number of threads, the size of the pieces the
//! files are read in, and wherever a run is killed and restarted; and the late-rows table
//! holds each row the watermark dropped, once.
//!
//! So is deduplication over two watermarked file sources at once (`UNION ALL`): the model
//! then also follows the query's watermark (the minimum of the sources') and breaks ties
//! between rows of both sources by the order the script declared them in, and each
//! source's late rows go to its own late-rows table.
//!
//! So is deduplication over a Delta table read as a stream (issue 19), the same files
//! copied into it one commit each.
//!
//! So is deduplication over a Kafka topic of four partitions, whatever the threads, the
//! chunks partitions are cut into, the batches `max_offsets_per_trigger` cuts and the
//! crashes: the model of the batches the offsets log records, ties broken by partition and
//! then offset.
//!
//! So is deduplication over a Kafka topic and a file directory at once (`UNION ALL`): the
//! two-source model of the batches the offsets log records, ties broken by the order the
//! script declared the sources in, then partition or file, then offset or line.
//!
//! So are windows (issue 18): a hopping-window aggregation with float sums and averages and
//! distinct counts over the same kind of batches writes the same bits whatever the threads,
//! pieces and crashes, and the model's groups (sums within rounding of the model's).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use crate::support::kafka;
use crate::support::*;

const DELAY_MS: i64 = 10 * 60 * 1000;
const FILES: usize = 6;
const ROWS_PER_FILE: usize = 12_000;
const START_MS: i64 = 1_704_153_600_000; // 2024-01-02T00:00:00Z

const PIPELINE: &str = "
CREATE TABLE events (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING,
  WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = 2,
  late_rows = 'dead_letter', late_rows_path = 'out/late');

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

/// The files, in name order: each batch (two files) draws keys from a window that overlaps
/// the last batch's, with event times spread over 40 minutes and shuffled, so that a key's
/// rows come in an order unrelated to their times; later batches move on in event time, so
/// the last batch also has late rows and keys evicted and seen again.
fn files() -> Vec<Vec<Event>> {
    files_n(FILES)
}

/// [`files`], `n` of them (the first ones the same whatever `n`).
fn files_n(n: usize) -> Vec<Vec<Event>> {
    let mut rng = Rng(14);
    let mut seq = 0;
    (0..n)
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

/// Ids of 37 characters: longer than a state slot holds (22 encoded bytes), so every key
/// lives in the state's long-key arena, which evictions compact.
fn key_name(key: u32) -> String {
    format!("evt-{key:08}-{:024x}", u128::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) >> 32)
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
    write_events(&dir.join("in/events"), files);
}

/// Writes `files` to `dir` as `000.json`, `001.json`, ..., an event a line.
fn write_events(dir: &Path, files: &[Vec<Event>]) {
    for (i, events) in files.iter().enumerate() {
        let lines: Vec<String> = events.iter().map(event_line).collect();
        write_file(dir, &format!("{i:03}.json"), &lines);
    }
}

/// An event as a JSON object (a line of a file, a Kafka message's value).
fn event_line(e: &Event) -> String {
    let pad = "x".repeat(40);
    format!(r#"{{"event_id": "{}", "ts": "{}", "tms": {}, "seq": {}, "pad": "{pad}"}}"#, key_name(e.key), iso(e.tms), e.tms, e.seq)
}

/// The rows the query must write: Spark's watermark rules (batch N drops rows at or before
/// batch N-1's watermark, evicts keys whose first time + delay is at or before its own),
/// and within a batch the first row of each key by (event time, file, line).
fn model(files: &[Vec<Event>]) -> Vec<String> {
    model_with_late(files).0
}

/// [`model`], and the `seq` of each late row (dropped by the watermark), as the late-rows
/// table's rows of that column.
fn model_with_late(files: &[Vec<Event>]) -> (Vec<String>, Vec<String>) {
    let batches: Vec<&[Vec<Event>]> = files.chunks(2).collect();
    model_of_batches(&batches).0
}

/// The model's rows and late rows (see [`model_with_late`]).
type ModelRows = (Vec<String>, Vec<String>);

/// A batch's watermarks, (for late rows, for eviction), in milliseconds.
type Watermarks = (i64, i64);

/// [`model_with_late`] for any batches, each a list of parts in place order (a file source's
/// files, a Kafka source's partitions), each part its rows in order; and the watermarks
/// each batch ran with, (for late rows, for eviction), as the offsets log records them.
fn model_of_batches(batches: &[&[Vec<Event>]]) -> (ModelRows, Vec<Watermarks>) {
    let mut state: HashMap<u32, i64> = HashMap::new();
    let (mut late_wm, mut wm) = (0i64, 0i64);
    let mut out = Vec::new();
    let mut late = Vec::new();
    let mut watermarks = Vec::new();
    for batch in batches {
        watermarks.push((late_wm, wm));
        let mut best: BTreeMap<u32, (i64, usize, usize, Event)> = BTreeMap::new();
        let mut max_ts = i64::MIN;
        for (f, events) in batch.iter().enumerate() {
            for (line, e) in events.iter().enumerate() {
                max_ts = max_ts.max(e.tms);
                if e.tms <= late_wm {
                    late.push(serde_json::json!({ "seq": e.seq }).to_string());
                    continue;
                }
                if state.contains_key(&e.key) {
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
        if max_ts > i64::MIN {
            wm = wm.max(max_ts - DELAY_MS);
        }
    }
    out.sort();
    late.sort();
    ((out, late), watermarks)
}

const LIMIT: Duration = Duration::from_secs(300);

fn rows(dir: &Path) -> Vec<String> {
    DeltaView::read(&dir.join("out/dedup")).rows()
}

fn late_rows(dir: &Path) -> Vec<String> {
    DeltaView::read_columns(&dir.join("out/late"), &["seq"]).rows()
}

/// How the determinism tests run a query: threads, read pieces (`WEIR_FILE_PIECE_BYTES`),
/// where candidate rows are stored (`WEIR_DEDUP_THREAD_FROM`: on their own thread from a
/// chunk of that many, 1: always, a billion: never; unset, 8,192, which a whole file of
/// the tests reaches) and how many of their bytes a batch holds in memory before it spills
/// them to a file (`WEIR_DEDUP_CANDIDATE_MEMORY`; unset, 16 MiB, more than a batch of these
/// tests has: a small figure makes each batch's spill span many of its MiB blocks, from the
/// candidates' thread or from the loop). Every combination must write the model's rows.
type FileRun = (&'static str, Option<&'static str>, Option<&'static str>, Option<&'static str>);

const RUNS: [FileRun; 6] = [
    ("1", None, None, None),
    ("2", Some("65536"), None, None),
    ("3", Some("1000000"), None, Some("65536")),
    ("2", None, None, None),
    ("2", Some("65536"), Some("1"), Some("1")),
    ("1", None, Some("1000000000"), Some("100000")),
];

/// Runs `p.sql` in `dir` to the end as `run_as` says (one of [`RUNS`]); returns the output,
/// checked to be a success, and a description of the run.
fn run_with(dir: &Path, (threads, piece, thread_from, memory): FileRun) -> (std::process::Output, String) {
    let knobs = [("WEIR_FILE_PIECE_BYTES", piece), ("WEIR_DEDUP_THREAD_FROM", thread_from), ("WEIR_DEDUP_CANDIDATE_MEMORY", memory)];
    let out = run_to_end(dir, threads, &knobs);
    let run = format!("threads {threads}, pieces of {piece:?} bytes, candidate thread from {thread_from:?} rows, {memory:?} bytes of candidates in memory");
    assert_spilled_as_set(&out, memory, &run);
    (out, run)
}

/// A batch's `spilledCandidateBytes`, from each `--progress json` line of `out`.
fn spilled_bytes(out: &std::process::Output) -> Vec<u64> {
    stderr(out)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|p| p["stateOperators"].as_array().map(|ops| ops.iter().filter_map(|op| op["customMetrics"]["spilledCandidateBytes"].as_u64()).sum()))
        .collect()
}

/// With a small `WEIR_DEDUP_CANDIDATE_MEMORY` some batch spilled more than one of the
/// spill's MiB blocks (else the run shows nothing about spilling); unset, no batch of these
/// tests spills.
fn assert_spilled_as_set(out: &std::process::Output, memory: Option<&str>, run: &str) {
    let spilled = spilled_bytes(out);
    assert!(!spilled.is_empty(), "{run}: no progress with a deduplication's metrics:\n{}", stderr(out));
    match memory {
        Some(_) => assert!(spilled.iter().any(|&b| b > 1 << 20), "{run}: bytes spilled by each batch {spilled:?}"),
        None => assert!(spilled.iter().all(|&b| b == 0), "{run}: bytes spilled by each batch {spilled:?}"),
    }
}

/// Runs `p.sql` in `dir` to the end on `threads` threads, with each tuning knob of `knobs`
/// that has a value set; returns the output, checked to be a success.
fn run_to_end(dir: &Path, threads: &str, knobs: &[(&str, Option<&str>)]) -> std::process::Output {
    let mut cmd = weir(dir);
    cmd.args(["run", "p.sql", "--trigger", "available-now", "--progress", "json", "--threads", threads]);
    for (name, value) in knobs {
        if let Some(value) = value {
            cmd.env(name, value);
        }
    }
    let out = output_within(cmd, LIMIT);
    assert_ok(&out);
    out
}

#[test]
fn dedup_keeps_the_same_rows_whatever_the_threads_pieces_and_crashes() {
    let files = files();
    let (want, late) = model_with_late(&files);
    assert!(want.len() > 15_000, "{} rows", want.len());
    assert!(late.len() > 1_000, "{} late rows", late.len());

    // Every way of running it (`RUNS`) writes the model's rows.
    for run_as in RUNS {
        let (_tmp, dir) = scratch();
        setup(&dir, &files);
        let (out, run) = run_with(&dir, run_as);
        assert_eq!(rows(&dir), want, "{run}:\n{}", stderr(&out));
        assert_eq!(late_rows(&dir), late, "late rows, {run}");
    }

    // A kill at every step of the second batch, then a restart: the same rows.
    for failpoint in ["after_offsets", "before_delta_commit", "after_execute", "after_sink_commit", "after_state_commit", "after_commit_log"] {
        let (_tmp, dir) = scratch();
        setup(&dir, &files);
        crash_at(&dir, failpoint, 1, LIMIT);
        let out = run(&dir, "p.sql", &[]);
        assert_ok(&out);
        assert_eq!(rows(&dir), want, "after a crash at {failpoint} in batch 1:\n{}", stderr(&out));
        assert_eq!(late_rows(&dir), late, "late rows after a crash at {failpoint} in batch 1");
    }
}

/// Long enough to snapshot the state: a first run of twelve batches of two files (about
/// 2.6 MB a batch) and a no-data batch, whose state as of batch 9 is snapshotted from its
/// files while batches 10 to 12 run, and whose end waits for that snapshot; then two more
/// batches arrive, and a second run restores the state from the snapshot and the deltas
/// of batches 10 to 12.
/// Whatever the threads, pieces and candidates' thread, and with a kill in the second run's
/// first batch or while the snapshot is made, the rows are the model's.
#[test]
fn dedup_across_a_state_snapshot_keeps_the_same_rows_whatever_the_threads_and_crashes() {
    const FIRST: usize = 24;
    let files = files_n(FIRST + 4);
    // The first run ends with a no-data batch (12: its watermark moved), so the second
    // run's batches are 13 and 14.
    let mut batches: Vec<&[Vec<Event>]> = files[..FIRST].chunks(2).collect();
    batches.push(&[]);
    batches.extend(files[FIRST..].chunks(2));
    let ((want, late), _) = model_of_batches(&batches);
    let snapshot = |dir: &Path| dir.join(".weir/checkpoints/dedup/state/dedup/9.snapshot");
    for run_as in [RUNS[0], RUNS[2], RUNS[4]] {
        let (_tmp, dir) = scratch();
        setup(&dir, &files[..FIRST]);
        let (out, run) = run_with(&dir, run_as);
        assert!(snapshot(&dir).exists(), "{run}: the state's snapshot of batch 9:\n{}", stderr(&out));
        write_events_from(&dir.join("in/events"), &files, FIRST);
        let (out, run) = run_with(&dir, run_as);
        assert_eq!(rows(&dir), want, "{run}:\n{}", stderr(&out));
        assert_eq!(late_rows(&dir), late, "late rows, {run}");
    }
    // A kill while the snapshot is made (the first run), or at a step of the second run's
    // first batch, then a restart: the same rows.
    for (failpoint, batch) in [("during_state_snapshot", 9), ("after_offsets", 13), ("after_sink_commit", 13), ("after_commit_log", 13)] {
        let (_tmp, dir) = scratch();
        setup(&dir, &files[..FIRST]);
        if batch < 13 {
            crash_at(&dir, failpoint, batch, LIMIT);
            assert_ok(&run(&dir, "p.sql", &[]));
            write_events_from(&dir.join("in/events"), &files, FIRST);
        } else {
            assert_ok(&run(&dir, "p.sql", &[]));
            write_events_from(&dir.join("in/events"), &files, FIRST);
            crash_at(&dir, failpoint, batch, LIMIT);
        }
        let out = run(&dir, "p.sql", &[]);
        assert_ok(&out);
        assert_eq!(rows(&dir), want, "after a crash at {failpoint} in batch {batch}:\n{}", stderr(&out));
        assert_eq!(late_rows(&dir), late, "late rows after a crash at {failpoint} in batch {batch}");
    }
}

/// Writes `files[from..]` to `dir` under the names [`write_events`] gives them.
fn write_events_from(dir: &Path, files: &[Vec<Event>], from: usize) {
    for (i, events) in files.iter().enumerate().skip(from) {
        let lines: Vec<String> = events.iter().map(event_line).collect();
        write_file(dir, &format!("{i:03}.json"), &lines);
    }
}

/// Two watermarked file sources (`a` and `b`) in one deduplication, through `UNION ALL`.
/// Each gives every batch two files (`max_files_per_trigger = 2` on both, the same number
/// of files in each), so batch `k` takes files `2k` and `2k + 1` of each source.
///
/// `b` is declared before `a`, and the query names `a` first in its `UNION ALL`: the rows
/// of the source declared first (`b`) win ties, whatever the names and the query's order
/// (the README's rule). Each source's late rows go to its own late-rows table.
const TWO_SOURCE_PIPELINE: &str = "
CREATE TABLE b (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING,
  WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'file', path = 'in/b', format = 'json', max_files_per_trigger = 2,
  late_rows = 'dead_letter', late_rows_path = 'out/late_b');

CREATE TABLE a (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING,
  WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'file', path = 'in/a', format = 'json', max_files_per_trigger = 2,
  late_rows = 'dead_letter', late_rows_path = 'out/late_a');

CREATE TABLE dedup WITH (connector = 'delta', path = 'out/dedup');

INSERT INTO dedup
SELECT DISTINCT ON (event_id) event_id, tms, seq
FROM (SELECT * FROM a UNION ALL SELECT * FROM b)
ORDER BY event_id, ts;
";

/// The two-source query's sources (`files[0]` is `a`'s); `b` is declared first.
const TWO_SOURCES: [&str; 2] = ["a", "b"];
/// Data batches of the two-source query; each takes this many files of each source.
const TWO_BATCHES: usize = 3;
const TWO_FILES_PER_BATCH: usize = 2;
/// About 1.3 MB a file: two pieces of 1 MB, one whole-file chunk at the default 2 MiB,
/// whose rows reach the candidate thread's default threshold (8,192).
const TWO_ROWS_PER_FILE: usize = 9_000;
const MINUTE_MS: i64 = 60 * 1000;
/// Where source `s`'s on-time times start in batch `k`: `k * 30` minutes plus
/// `TWO_LAG_MIN[k][s]`, spread over 40 minutes from there. `b` lags in batch 0 and `a` in
/// batch 1, so each is the slowest once, and the query's watermark (the minimum of the
/// sources') is `b`'s after batch 0, `a`'s after batch 1, `b`'s after batch 2.
const TWO_LAG_MIN: [[i64; 2]; TWO_BATCHES] = [[0, -15], [-20, 0], [0, -10]];

/// The next row of a source whose rows of batch `batch` start at `start`: one in five a twin
/// (same key and event time, its own `seq`) of a row `made` earlier in the batch, unless
/// that one is later than this source's rows (its twin would move the source's
/// watermark); else a key from the batch's window, one in twenty behind by up to 30 minutes.
fn two_source_event(rng: &mut Rng, made: &[Event], batch: usize, start: i64, seq: u64) -> Event {
    let twin = match made.len() {
        0 => None,
        n => Some(made[rng.below(n as u64) as usize]).filter(|e| e.tms < start + 40 * MINUTE_MS && rng.below(5) == 0),
    };
    match twin {
        Some(twin) => Event { seq, ..twin },
        None => {
            let key = (batch as u64 * 9_000 + rng.below(21_000)) as u32;
            let tms = if rng.below(20) == 0 {
                START_MS - 30 * MINUTE_MS + rng.below(55 * 60) as i64 * 1000
            } else {
                start + rng.below(2_400) as i64 * 1000
            };
            Event { key, tms, seq }
        }
    }
}

/// The files of both sources, `files[source][file]` in name order. Each batch's four files
/// are written line by line in turn (in an order that is not their place order), keys drawn
/// from a window shared by both sources that overlaps the last batch's. About one row in
/// six is a twin of an earlier row of the batch (same key and event time, another `seq`),
/// in any of the four files, so a key's first time is often held by rows of both sources,
/// or of two files of one, and the place decides. One row in twenty is behind, from 30
/// minutes before the start to 25 minutes after it (never after a source's on-time rows,
/// so it moves no watermark): in the last batch, those at or below the query's watermark
/// after batch 0 (`b`'s) are late, the others are not, though many are at or below `a`'s.
/// The last batch also has rows at exactly those two bounds and 1 ms above the first, in
/// both sources, with keys of their own.
fn two_source_files() -> [Vec<Vec<Event>>; 2] {
    let mut rng = Rng(1402);
    let mut seq = 0;
    let mut files: [Vec<Vec<Event>>; 2] = [Vec::new(), Vec::new()];
    for (batch, lags) in TWO_LAG_MIN.iter().enumerate() {
        let order = [(1, 1), (0, 0), (1, 0), (0, 1)];
        let mut these = vec![vec![Vec::new(); TWO_FILES_PER_BATCH]; 2];
        let mut made: Vec<Event> = Vec::new();
        for _ in 0..TWO_ROWS_PER_FILE {
            for (src, f) in order {
                seq += 1;
                let start = START_MS + (batch as i64 * 30 + lags[src]) * MINUTE_MS;
                let event = two_source_event(&mut rng, &made, batch, start, seq);
                made.push(event);
                these[src][f].push(event);
            }
        }
        for (src, batch_files) in these.into_iter().enumerate() {
            files[src].extend(batch_files);
        }
    }
    // Each source's watermark after batch 0; the query's is the lower one.
    let after_first = [0, 1].map(|src: usize| files[src][..TWO_FILES_PER_BATCH].iter().flatten().map(|e| e.tms).max().unwrap() - DELAY_MS);
    let bound = after_first[0].min(after_first[1]).max(0);
    let last = (TWO_BATCHES - 1) * TWO_FILES_PER_BATCH;
    for (i, tms) in [bound, bound + 1, after_first[0].max(after_first[1])].into_iter().enumerate() {
        for (src, source_files) in files.iter_mut().enumerate() {
            seq += 1;
            source_files[last + src % TWO_FILES_PER_BATCH].push(Event { key: 1_000_000 + (2 * i + src) as u32, tms, seq });
        }
    }
    files
}

fn setup_two_sources(dir: &Path, files: &[Vec<Vec<Event>>; 2]) {
    std::fs::write(dir.join("p.sql"), TWO_SOURCE_PIPELINE).unwrap();
    for (name, source_files) in TWO_SOURCES.iter().zip(files) {
        write_events(&dir.join("in").join(name), source_files);
    }
}

/// How the two-source model combines its sources: the rule weir follows by default; the
/// others show the data tells them apart.
#[derive(Clone, Copy, Default)]
struct TwoSourceRules {
    /// The query's watermark is the maximum of the sources' (`--watermark-policy max`).
    max_policy: bool,
    /// Ties go to `a`'s rows before `b`'s, as if sources were numbered by name.
    by_name: bool,
}

/// The watermarks of one data batch of the two-source model, as the checkpoint records them.
struct TwoSourceWatermarks {
    /// `lateEventsWatermarkMs` and `batchWatermarkMs` of `offsets/N`.
    late: i64,
    batch: i64,
    /// Each source's `max event time - delay` before and after the batch (`None` before its
    /// first row): `sourceWatermarksMs` of `offsets/N` and of `commits/N`.
    sources_before: [Option<i64>; 2],
    sources_after: [Option<i64>; 2],
    /// `nextBatchWatermarkMs` of `commits/N`.
    next: i64,
}

/// A row's rank in its batch: event time, then place (source, file, line).
type TwoSourceRank = (i64, usize, usize, usize);

struct TwoSourceModel {
    rows: Vec<String>,
    /// The `seq` of each late row of each source (`a`, `b`), as the rows of that column of
    /// the source's late-rows table.
    late: [Vec<String>; 2],
    batches: Vec<TwoSourceWatermarks>,
}

/// [`model_with_late`] over two sources, batch `k` taking files `2k` and `2k + 1` of each:
/// [`two_source_model_of_batches`] with ties going to `b` (declared first), or to `a` when
/// `rules.by_name`.
fn two_source_model(files: &[Vec<Vec<Event>>; 2], rules: TwoSourceRules) -> TwoSourceModel {
    let batches: Vec<[&[Vec<Event>]; 2]> =
        (0..TWO_BATCHES).map(|batch| [0, 1].map(|src| &files[src][batch * TWO_FILES_PER_BATCH..(batch + 1) * TWO_FILES_PER_BATCH])).collect();
    two_source_model_of_batches(&batches, if rules.by_name { [0, 1] } else { [1, 0] }, rules.max_policy)
}

/// The model of a deduplication over two watermarked sources, for any batches: each batch
/// each source's parts in place order (a file source's files in the batch's list, a Kafka
/// source's partitions), each part its rows in order (lines, offsets). Spark's
/// `WatermarkTracker` (each source's watermark is its `max event time - delay` over every
/// batch so far, 0 before it has data; the query's is their minimum, or their maximum with
/// `max_policy`, and never moves back), Spark's rules for late rows (at or below the
/// previous batch's watermark) and eviction (a key's first time + delay at or below the
/// batch's watermark), and within a batch the first row of each new key by (event time,
/// source in `tie_order`, part, line); each source's late rows apart.
fn two_source_model_of_batches(batches: &[[&[Vec<Event>]; 2]], tie_order: [usize; 2], max_policy: bool) -> TwoSourceModel {
    let mut state: HashMap<u32, i64> = HashMap::new();
    let (mut late_wm, mut wm) = (0i64, 0i64);
    let mut source_wms: [Option<i64>; 2] = [None; 2];
    let mut model = TwoSourceModel { rows: Vec::new(), late: [Vec::new(), Vec::new()], batches: Vec::new() };
    for parts in batches {
        let sources_before = source_wms;
        let mut best: BTreeMap<u32, (TwoSourceRank, Event)> = BTreeMap::new();
        for (rank, src) in tie_order.into_iter().enumerate() {
            for (f, events) in parts[src].iter().enumerate() {
                for (line, e) in events.iter().enumerate() {
                    let w = &mut source_wms[src];
                    *w = Some(w.map_or(e.tms - DELAY_MS, |w| w.max(e.tms - DELAY_MS)));
                    if e.tms <= late_wm {
                        model.late[src].push(serde_json::json!({ "seq": e.seq }).to_string());
                        continue;
                    }
                    if state.contains_key(&e.key) {
                        continue;
                    }
                    let candidate = ((e.tms, rank, f, line), *e);
                    let entry = best.entry(e.key).or_insert(candidate);
                    if candidate.0 < entry.0 {
                        *entry = candidate;
                    }
                }
            }
        }
        for (key, (_, e)) in best {
            state.insert(key, e.tms + DELAY_MS);
            model.rows.push(serde_json::json!({ "event_id": key_name(key), "tms": e.tms, "seq": e.seq }).to_string());
        }
        state.retain(|_, expires| *expires > wm);
        let per_source = source_wms.map(|w| w.unwrap_or(0));
        let combined = if max_policy { per_source[0].max(per_source[1]) } else { per_source[0].min(per_source[1]) };
        let next = wm.max(combined);
        model.batches.push(TwoSourceWatermarks { late: late_wm, batch: wm, sources_before, sources_after: source_wms, next });
        late_wm = wm;
        wm = next;
    }
    model.rows.sort();
    model.late.iter_mut().for_each(|l| l.sort());
    model
}

/// Rows in one of `a` and `b` and not the other.
fn rows_differing(a: &[String], b: &[String]) -> usize {
    let (a, b): (BTreeSet<&String>, BTreeSet<&String>) = (a.iter().collect(), b.iter().collect());
    a.symmetric_difference(&b).count()
}

/// Panics unless `got` is `want` (both sorted), naming `what`, showing a few rows that are
/// only in one of them (the whole lists are tens of thousands of rows), then `log`.
fn assert_same_rows(got: &[String], want: &[String], what: &str, log: &str) {
    if got == want {
        return;
    }
    let (g, w): (BTreeSet<&String>, BTreeSet<&String>) = (got.iter().collect(), want.iter().collect());
    let (extra, missing): (Vec<_>, Vec<_>) = (g.difference(&w).take(5).collect(), w.difference(&g).take(5).collect());
    panic!(
        "{what}: {} rows, the model {}; {} rows the model has not, such as {extra:?}; {} of the model's missing, such as {missing:?}\n{log}",
        got.len(),
        want.len(),
        g.difference(&w).count(),
        w.difference(&g).count()
    );
}

/// Checks the checkpoint of a two-source run in `dir` against the model: batches 0 to 2
/// each take the next two files of each source, in name order; batch 3 is the no-data batch
/// the moved watermark runs; every batch starts from and ends with the model's watermarks,
/// the query's and each source's.
fn check_two_source_checkpoint(dir: &Path, model: &TwoSourceModel, what: &str) {
    let cp = dir.join(".weir/checkpoints/dedup");
    let json = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()))).unwrap()
    };
    let source_wms = |wms: &[Option<i64>; 2]| -> serde_json::Value {
        TWO_SOURCES
            .iter()
            .zip(wms)
            .filter_map(|(name, w)| w.map(|w| (name.to_string(), serde_json::json!(w))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let last = model.batches.last().unwrap();
    assert!(last.next > last.batch, "the watermark moves after the last data batch, so a no-data batch runs");
    let no_data = TwoSourceWatermarks {
        late: last.batch,
        batch: last.next,
        sources_before: last.sources_after,
        sources_after: last.sources_after,
        next: last.next,
    };
    let batches = std::fs::read_dir(cp.join("offsets")).unwrap().count();
    assert_eq!(batches, TWO_BATCHES + 1, "{what}: {TWO_BATCHES} data batches and a no-data batch");
    for (n, wms) in model.batches.iter().chain([&no_data]).enumerate() {
        let (offsets, commit) = (json(cp.join(format!("offsets/{n}.json"))), json(cp.join(format!("commits/{n}.json"))));
        assert_eq!(
            (&offsets["lateEventsWatermarkMs"], &offsets["batchWatermarkMs"], &commit["nextBatchWatermarkMs"]),
            (&wms.late.into(), &wms.batch.into(), &wms.next.into()),
            "{what}: late-events, batch and next watermarks of batch {n}"
        );
        assert_eq!(offsets["sourceWatermarksMs"], source_wms(&wms.sources_before), "{what}: sources' watermarks batch {n} starts from");
        assert_eq!(commit["sourceWatermarksMs"], source_wms(&wms.sources_after), "{what}: sources' watermarks after batch {n}");
        for name in TWO_SOURCES {
            let range = &offsets["sources"][name];
            if n == TWO_BATCHES {
                assert_eq!(range["start"], range["end"], "{what}: the no-data batch {n} reads nothing of '{name}'");
                continue;
            }
            assert_eq!(range["end"]["logOffset"], n, "{what}: batch {n} reads its own file list of '{name}': {range}");
            let list = json(cp.join(format!("sources/{name}/{n}.json")));
            let paths: Vec<&str> = list["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
            let want: Vec<String> = (n * TWO_FILES_PER_BATCH..(n + 1) * TWO_FILES_PER_BATCH).map(|i| format!("{i:03}.json")).collect();
            assert_eq!(paths, want, "{what}: batch {n} takes the next files of '{name}'");
        }
    }
}

#[test]
fn dedup_of_two_sources_keeps_the_same_rows_whatever_the_threads_pieces_and_crashes() {
    let files = two_source_files();
    let want = two_source_model(&files, TwoSourceRules::default());
    assert!(want.rows.len() > 20_000, "{} rows", want.rows.len());
    assert!(want.late.iter().all(|l| l.len() > 500), "late rows {} and {}", want.late[0].len(), want.late[1].len());
    // The data tells weir's rules from their neighbours: another rule writes other rows.
    for (rules, what) in [
        (TwoSourceRules { max_policy: true, ..Default::default() }, "the maximum of the sources' watermarks"),
        (TwoSourceRules { by_name: true, ..Default::default() }, "ties going to a before b"),
    ] {
        let other = two_source_model(&files, rules);
        let (rows, late) = (rows_differing(&want.rows, &other.rows), rows_differing(&want.late.concat(), &other.late.concat()));
        assert!(rows >= 1_000, "with {what}, only {rows} rows differ");
        if rules.max_policy {
            assert!(late >= 100, "with {what}, only {late} late rows differ");
        }
    }

    // The rows, each source's late rows and the checkpoint's record of the batches.
    let check = |dir: &Path, out: &std::process::Output, run: &str| {
        assert_same_rows(&rows(dir), &want.rows, run, &stderr(out));
        for (name, late) in TWO_SOURCES.iter().zip(&want.late) {
            let got = DeltaView::read_columns(&dir.join(format!("out/late_{name}")), &["seq"]).rows();
            assert_same_rows(&got, late, &format!("late rows of '{name}', {run}"), &stderr(out));
        }
        check_two_source_checkpoint(dir, &want, run);
    };

    // Every way of running it (`RUNS`, as the one-source test) writes the model's rows.
    for run_as in RUNS {
        let (_tmp, dir) = scratch();
        setup_two_sources(&dir, &files);
        let (out, run) = run_with(&dir, run_as);
        check(&dir, &out, &format!("two sources, {run}"));
    }

    // A kill at every step of the second batch, then a restart: the same rows. And where
    // the last batch has committed its rows but not its late rows.
    let failpoints = [
        "after_offsets",
        "after_execute",
        "before_delta_commit",
        "after_delta_commit",
        "after_sink_commit",
        "after_state_commit",
        "after_commit_log",
    ];
    for (failpoint, batch) in failpoints.map(|f| (f, 1)).into_iter().chain([("after_sink_commit", 2)]) {
        let (_tmp, dir) = scratch();
        setup_two_sources(&dir, &files);
        crash_at(&dir, failpoint, batch, LIMIT);
        let out = run(&dir, "p.sql", &[]);
        assert_ok(&out);
        check(&dir, &out, &format!("two sources, after a crash at {failpoint} in batch {batch}"));
    }
}

/// The same files copied into a Delta table one file per commit (`bronze`), then
/// deduplicated from it as a stream, two commits per batch: the batches are the file
/// source's, so the model is the same.
const DELTA_PIPELINE: &str = "
CREATE TABLE bronze (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING,
  WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'delta', path = 'bronze', max_files_per_trigger = 2);

CREATE TABLE dedup WITH (connector = 'delta', path = 'out/dedup');

INSERT INTO dedup
SELECT DISTINCT ON (event_id) event_id, tms, seq
FROM bronze
ORDER BY event_id, ts;
";

/// Copies the files into the Delta table `bronze`, a commit each.
fn setup_bronze(dir: &Path, files: &[Vec<Event>]) {
    setup(dir, files);
    std::fs::write(
        dir.join("bronze.sql"),
        "CREATE TABLE events (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING)
         WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = 1);
         CREATE TABLE bronze WITH (connector = 'delta', path = 'bronze');
         INSERT INTO bronze SELECT * FROM events;",
    )
    .unwrap();
    assert_ok(&run(dir, "bronze.sql", &[]));
    std::fs::write(dir.join("p.sql"), DELTA_PIPELINE).unwrap();
}

#[test]
fn dedup_over_a_delta_stream_keeps_the_same_rows_whatever_the_threads_and_crashes() {
    let files = files();
    let want = model(&files);
    for threads in ["1", "2", "3"] {
        let (_tmp, dir) = scratch();
        setup_bronze(&dir, &files);
        let out = run_to_end(&dir, threads, &[]);
        assert_eq!(rows(&dir), want, "threads {threads}:\n{}", stderr(&out));
    }
    for failpoint in ["after_offsets", "before_delta_commit", "after_state_commit"] {
        let (_tmp, dir) = scratch();
        setup_bronze(&dir, &files);
        crash_at(&dir, failpoint, 1, LIMIT);
        let out = run(&dir, "p.sql", &[]);
        assert_ok(&out);
        assert_eq!(rows(&dir), want, "after a crash at {failpoint} in batch 1:\n{}", stderr(&out));
    }
}

/// Deduplication over a Kafka topic of four partitions: the events of [`files`] sent in file
/// order, each to a partition drawn at random, so that a key's rows are spread over the
/// partitions and its ties (same key and event time) are broken by place: partition, then
/// offset. The model takes each batch's offset ranges from the offsets log (the batches
/// `max_offsets_per_trigger` cuts), so it holds for any cut.
fn kafka_pipeline(broker: &kafka::Broker, max_offsets: Option<u64>) -> String {
    let cap = max_offsets.map(|n| format!(", max_offsets_per_trigger = '{n}'")).unwrap_or_default();
    format!(
        "CREATE TABLE events (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING,
           WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'kafka', bootstrap_servers = '{}', topic = 'events', format = 'json',
           starting_offsets = 'earliest', connect_timeout = '5s', properties.fetch.wait.max.ms = '50',
           late_rows = 'dead_letter', late_rows_path = 'out/late'{cap});
         CREATE TABLE dedup WITH (connector = 'delta', path = 'out/dedup');
         INSERT INTO dedup SELECT DISTINCT ON (event_id) event_id, tms, seq FROM events ORDER BY event_id, ts;",
        broker.bootstrap()
    )
}

const KAFKA_PARTITIONS: i32 = 4;

/// Sends the events of `files` to the topic `events`, and a twin (same key and event time,
/// its own `seq`) of one in four, up to 400 messages later, each message to a partition drawn
/// at random; returns each partition's events in offset order (the offsets the producer
/// reports, checked to be 0, 1, 2, ...).
fn send_to_kafka(broker: &kafka::Broker, files: &[Vec<Event>]) -> Vec<Vec<Event>> {
    broker.create_topic("events", KAFKA_PARTITIONS);
    let mut rng = Rng(2114);
    let mut twins: BTreeMap<usize, Vec<Event>> = BTreeMap::new();
    let mut events: Vec<(Event, i32)> = Vec::new();
    for (i, e) in files.iter().flatten().enumerate() {
        if rng.below(4) == 0 {
            let twin = Event { seq: 1_000_000 + e.seq, ..*e };
            twins.entry(i + 1 + rng.below(400) as usize).or_default().push(twin);
        }
        let due = twins.remove(&i).unwrap_or_default();
        for e in std::iter::once(*e).chain(due) {
            events.push((e, rng.below(KAFKA_PARTITIONS as u64) as i32));
        }
    }
    for e in twins.into_values().flatten() {
        events.push((e, rng.below(KAFKA_PARTITIONS as u64) as i32));
    }
    let positions = broker.send("events", events.iter().map(|(e, p)| kafka::Message::value(event_line(e)).partition(*p)));
    let mut partitions = vec![Vec::new(); KAFKA_PARTITIONS as usize];
    for ((e, sent_to), (partition, offset)) in events.iter().zip(positions) {
        assert_eq!(partition, *sent_to);
        let events = &mut partitions[partition as usize];
        assert_eq!(offset, events.len() as i64, "partition {partition}: offsets 0, 1, 2, ... in the order sent");
        events.push(*e);
    }
    partitions
}

/// The batches the checkpoint in `dir` logged, as the model takes them (each partition's
/// events in the batch's offset range, in partition order), and the watermarks each batch
/// logged (for late rows, for eviction).
fn logged_kafka_batches(dir: &Path, partitions: &[Vec<Event>]) -> (Vec<Vec<Vec<Event>>>, Vec<Watermarks>) {
    let log = dir.join(".weir/checkpoints/dedup/offsets");
    let mut start = vec![0usize; partitions.len()];
    let (mut batches, mut watermarks) = (Vec::new(), Vec::new());
    for batch in 0.. {
        let Ok(text) = std::fs::read_to_string(log.join(format!("{batch}.json"))) else { break };
        let entry: serde_json::Value = serde_json::from_str(&text).unwrap();
        let end = &entry["sources"]["events"]["end"]["events"];
        let mut parts = Vec::new();
        for (p, events) in partitions.iter().enumerate() {
            let to = end[p.to_string()].as_u64().unwrap_or_else(|| panic!("batch {batch}: no end offset for partition {p}: {entry}")) as usize;
            parts.push(events[start[p]..to].to_vec());
            start[p] = to;
        }
        batches.push(parts);
        watermarks.push((entry["lateEventsWatermarkMs"].as_i64().unwrap(), entry["batchWatermarkMs"].as_i64().unwrap()));
    }
    let ends: Vec<usize> = partitions.iter().map(Vec::len).collect();
    assert_eq!(start, ends, "the batches read every message");
    (batches, watermarks)
}

/// How the Kafka determinism test runs its query: threads, offsets per chunk of a partition
/// (`WEIR_KAFKA_CHUNK_MESSAGES`, default 50,000), `max_offsets_per_trigger`, where
/// candidate rows are stored (`WEIR_DEDUP_THREAD_FROM`) and how many of their bytes stay in
/// memory (`WEIR_DEDUP_CANDIDATE_MEMORY`; see [`RUNS`]).
type KafkaRun = (&'static str, Option<&'static str>, Option<u64>, Option<&'static str>, Option<&'static str>);

const KAFKA_RUNS: [KafkaRun; 5] = [
    ("1", None, Some(24_000), None, None),
    ("2", Some("1000"), Some(24_000), None, None),
    ("2", Some("7777"), Some(17_000), Some("1"), Some("65536")),
    ("3", None, None, None, Some("1")),
    ("2", Some("333"), None, Some("1000000000"), None),
];

/// The rows of the dedup over `partitions` that ran in `dir` must be the model's for the
/// batches it logged, with the model's watermarks; returns the number of batches.
fn check_kafka_run(dir: &Path, partitions: &[Vec<Event>], what: &str, log: &str) -> usize {
    let (batches, logged) = logged_kafka_batches(dir, partitions);
    let batches: Vec<&[Vec<Event>]> = batches.iter().map(Vec::as_slice).collect();
    let ((want, late), watermarks) = model_of_batches(&batches);
    assert_eq!(logged, watermarks, "{what}: the watermarks of each batch (for late rows, for eviction)");
    assert_same_rows(&rows(dir), &want, what, log);
    // The late-rows table is created by the first batch, late rows or not.
    assert_eq!(late_rows(dir), late, "late rows, {what}");
    batches.len()
}

#[test]
fn dedup_over_kafka_keeps_the_same_rows_whatever_the_threads_chunks_batches_and_crashes() {
    let files = files();
    let broker = kafka::Broker::start();
    let partitions = send_to_kafka(&broker, &files);

    for (threads, chunk, cap, thread_from, memory) in KAFKA_RUNS {
        let (_tmp, dir) = scratch();
        std::fs::write(dir.join("p.sql"), kafka_pipeline(&broker, cap)).unwrap();
        let knobs = [("WEIR_KAFKA_CHUNK_MESSAGES", chunk), ("WEIR_DEDUP_THREAD_FROM", thread_from), ("WEIR_DEDUP_CANDIDATE_MEMORY", memory)];
        let out = run_to_end(&dir, threads, &knobs);
        let what = format!(
            "threads {threads}, chunks of {chunk:?} offsets, max_offsets_per_trigger {cap:?}, candidate thread from {thread_from:?} rows, \
             {memory:?} bytes of candidates in memory"
        );
        assert_spilled_as_set(&out, memory, &what);
        let batches = check_kafka_run(&dir, &partitions, &what, &stderr(&out));
        // Capped: several batches of about 3 MB, late rows among them; uncapped: one of 11 MB.
        match cap {
            Some(_) => assert!(batches >= 3 && !late_rows(&dir).is_empty(), "{what}: {batches} batches"),
            None => assert!(batches <= 2, "{what}: {batches} batches"),
        }
    }

    // A kill in the second batch, then a restart: the same rows.
    for failpoint in ["after_offsets", "before_delta_commit", "after_sink_commit", "after_state_commit"] {
        let (_tmp, dir) = scratch();
        std::fs::write(dir.join("p.sql"), kafka_pipeline(&broker, Some(24_000))).unwrap();
        crash_at(&dir, failpoint, 1, LIMIT);
        let out = run_within(&dir, "p.sql", &["--threads", "2"], LIMIT);
        assert_ok(&out);
        check_kafka_run(&dir, &partitions, &format!("after a crash at {failpoint} in batch 1"), &stderr(&out));
    }
}

/// Deduplication over two sources of different kinds at once: a Kafka topic (`events`,
/// declared first, its late rows to `out/late`) and a file directory (`archive`, its late
/// rows to `out/late_archive`), named in the other order by the query's `UNION ALL` and by
/// their names, so only the declaration order makes `events` win ties. `archive` gives
/// every batch two files; `events`' batches are what `max_offsets_per_trigger` cuts.
fn mixed_pipeline(broker: &kafka::Broker, max_offsets: Option<u64>) -> String {
    let cap = max_offsets.map(|n| format!(", max_offsets_per_trigger = '{n}'")).unwrap_or_default();
    format!(
        "CREATE TABLE events (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING,
           WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'kafka', bootstrap_servers = '{}', topic = 'events', format = 'json',
           starting_offsets = 'earliest', connect_timeout = '5s', properties.fetch.wait.max.ms = '50',
           late_rows = 'dead_letter', late_rows_path = 'out/late'{cap});
         CREATE TABLE archive (event_id STRING NOT NULL, ts TIMESTAMP, tms BIGINT, seq BIGINT, pad STRING,
           WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
         WITH (connector = 'file', path = 'in/archive', format = 'json', max_files_per_trigger = 2,
           late_rows = 'dead_letter', late_rows_path = 'out/late_archive');
         CREATE TABLE dedup WITH (connector = 'delta', path = 'out/dedup');
         INSERT INTO dedup
         SELECT DISTINCT ON (event_id) event_id, tms, seq
         FROM (SELECT * FROM archive UNION ALL SELECT * FROM events)
         ORDER BY event_id, ts;",
        broker.bootstrap()
    )
}

/// The mixed query's sources by model index: `events` (Kafka) is 0 and declared first.
const MIXED_SOURCES: [&str; 2] = ["events", "archive"];
/// Batches of the mixed data as made: each has two files of `archive` and about as many
/// messages of `events`, plus twins ([`send_to_kafka`]).
const MIXED_BATCHES: usize = 3;
/// Rows per file, and messages per file's worth (before the Kafka twins): about 0.9 MB.
const MIXED_ROWS: usize = 6_000;
/// About the messages of one batch as made (two files' worth and a quarter more, the
/// twins): a cap that cuts the topic near the made batches.
const MIXED_BATCH_MESSAGES: u64 = 15_000;
/// As [`TWO_LAG_MIN`], by model index: `archive` lags in batches 0 and 2, `events` in 1.
const MIXED_LAG_MIN: [[i64; 2]; MIXED_BATCHES] = [[0, -15], [-20, 0], [0, -10]];

/// The messages of `events`, a list per batch as made, in the order to send, and the files
/// of `archive`, in name order. As [`two_source_files`]: keys from a window shared by both
/// sources, one row in five a twin (same key and event time) of an earlier row of the batch
/// of either source, one in twenty behind. The last batch's files also have rows at exactly
/// the file source's watermark after batch 0 (the query's: `archive` lags then, and its
/// file batches are fixed) and 1 ms above it, and so does the end of the topic.
fn mixed_source_data() -> (Vec<Vec<Event>>, Vec<Vec<Event>>) {
    let mut rng = Rng(1404);
    let mut seq = 0;
    let (mut messages, mut files) = (Vec::new(), Vec::new());
    for (batch, lags) in MIXED_LAG_MIN.iter().enumerate() {
        let mut sent = Vec::new();
        let mut these = vec![Vec::new(); 2];
        let mut made: Vec<Event> = Vec::new();
        for _ in 0..MIXED_ROWS {
            // (model index, file): a line of the second file, a message, a line of the
            // first file, a message.
            for (src, f) in [(1, 1), (0, 0), (1, 0), (0, 0)] {
                seq += 1;
                let start = START_MS + (batch as i64 * 30 + lags[src]) * MINUTE_MS;
                let event = two_source_event(&mut rng, &made, batch, start, seq);
                made.push(event);
                match src {
                    0 => sent.push(event),
                    _ => these[f].push(event),
                }
            }
        }
        messages.push(sent);
        files.extend(these);
    }
    let bound = mixed_file_bound(&files);
    let last = (MIXED_BATCHES - 1) * 2;
    for (i, tms) in [bound, bound + 1].into_iter().enumerate() {
        seq += 1;
        files[last + i].push(Event { key: 1_000_000 + 2 * i as u32, tms, seq });
        seq += 1;
        messages.last_mut().unwrap().push(Event { key: 1_000_001 + 2 * i as u32, tms, seq });
    }
    (messages, files)
}

/// The file source's watermark after its first batch (files 0 and 1).
fn mixed_file_bound(files: &[Vec<Event>]) -> i64 {
    files[..2].iter().flatten().map(|e| e.tms).max().unwrap() - DELAY_MS
}

/// The parts of `archive` each batch the checkpoint in `dir` logged read (the files of its
/// list, in list order; none when its offset did not move), checked to read every file once.
fn logged_file_batches(dir: &Path, table: &str, files: &[Vec<Event>]) -> Vec<Vec<Vec<Event>>> {
    let cp = dir.join(".weir/checkpoints/dedup");
    let json = |path: std::path::PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let mut taken = BTreeSet::new();
    let mut batches = Vec::new();
    for batch in 0.. {
        let path = cp.join(format!("offsets/{batch}.json"));
        if !path.exists() {
            break;
        }
        let range = json(path)["sources"][table].clone();
        let mut parts = Vec::new();
        if range["end"] != range["start"] {
            let n = range["end"]["logOffset"].as_u64().unwrap_or_else(|| panic!("batch {batch}: '{table}' has no logOffset: {range}"));
            for file in json(cp.join(format!("sources/{table}/{n}.json")))["files"].as_array().unwrap() {
                let name = file["path"].as_str().unwrap();
                let i: usize = name.strip_suffix(".json").and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("{name}"));
                assert!(taken.insert(i), "batch {batch} reads {name} again");
                parts.push(files[i].clone());
            }
        }
        batches.push(parts);
    }
    assert_eq!(taken.len(), files.len(), "the batches read every file of '{table}'");
    batches
}

/// How the mixed test runs its query: threads, `WEIR_KAFKA_CHUNK_MESSAGES`,
/// `WEIR_FILE_PIECE_BYTES`, `max_offsets_per_trigger`, `WEIR_DEDUP_THREAD_FROM` and
/// `WEIR_DEDUP_CANDIDATE_MEMORY` (see [`RUNS`]).
type MixedRun = (&'static str, Option<&'static str>, Option<&'static str>, Option<u64>, Option<&'static str>, Option<&'static str>);

const MIXED_RUNS: [MixedRun; 4] = [
    ("1", None, None, Some(MIXED_BATCH_MESSAGES), None, None),
    ("2", Some("1000"), Some("65536"), Some(MIXED_BATCH_MESSAGES), Some("1"), Some("65536")),
    // Kafka batches of two thirds of a batch as made: the topic outlasts the files.
    ("3", Some("7777"), Some("1000000"), Some(MIXED_BATCH_MESSAGES * 2 / 3), None, None),
    // All the topic in batch 0.
    ("2", Some("333"), None, None, Some("1000000000"), Some("1")),
];

/// Checks the run of the mixed query in `dir` against the model of the batches it logged:
/// the rows, each source's late rows, and each batch's watermarks (the query's and each
/// source's, before and after it). Returns the model and the batches.
fn check_mixed_run(dir: &Path, partitions: &[Vec<Event>], files: &[Vec<Event>], what: &str, log: &str) -> (TwoSourceModel, Vec<[Vec<Vec<Event>>; 2]>) {
    let (kafka_batches, logged) = logged_kafka_batches(dir, partitions);
    let file_batches = logged_file_batches(dir, MIXED_SOURCES[1], files);
    assert_eq!(kafka_batches.len(), file_batches.len());
    let batches: Vec<[Vec<Vec<Event>>; 2]> = kafka_batches.into_iter().zip(file_batches).map(|(k, f)| [k, f]).collect();
    let model = two_source_model_of_batches(&mixed_slices(&batches), [0, 1], false);
    let watermarks: Vec<Watermarks> = model.batches.iter().map(|b| (b.late, b.batch)).collect();
    assert_eq!(logged, watermarks, "{what}: the watermarks of each batch (for late rows, for eviction)");
    let cp = dir.join(".weir/checkpoints/dedup");
    let source_wms = |wms: &[Option<i64>; 2]| -> serde_json::Value {
        MIXED_SOURCES.iter().zip(wms).filter_map(|(name, w)| w.map(|w| (name.to_string(), serde_json::json!(w)))).collect::<serde_json::Map<_, _>>().into()
    };
    for (n, wms) in model.batches.iter().enumerate() {
        let json = |path: String| -> serde_json::Value { serde_json::from_slice(&std::fs::read(cp.join(path)).unwrap()).unwrap() };
        let (offsets, commit) = (json(format!("offsets/{n}.json")), json(format!("commits/{n}.json")));
        assert_eq!(offsets["sourceWatermarksMs"], source_wms(&wms.sources_before), "{what}: sources' watermarks batch {n} starts from");
        assert_eq!(commit["sourceWatermarksMs"], source_wms(&wms.sources_after), "{what}: sources' watermarks after batch {n}");
        assert_eq!(commit["nextBatchWatermarkMs"], wms.next, "{what}: the watermark after batch {n}");
    }
    // The file source's rows at its watermark after batch 0 are in batch 2, whose
    // late-events watermark that is.
    assert_eq!(model.batches[2].late, mixed_file_bound(files), "{what}: batch 2's late-events watermark");
    assert_same_rows(&rows(dir), &model.rows, what, log);
    for (name, late) in MIXED_SOURCES.iter().zip(&model.late) {
        let table = dir.join(if *name == "events" { "out/late".to_string() } else { format!("out/late_{name}") });
        // A late-rows table is created by the first batch, late rows or not.
        let got = DeltaView::read_columns(&table, &["seq"]).rows();
        assert_same_rows(&got, late, &format!("late rows of '{name}', {what}"), log);
    }
    (model, batches)
}

fn mixed_slices(batches: &[[Vec<Vec<Event>>; 2]]) -> Vec<[&[Vec<Event>]; 2]> {
    batches.iter().map(|[k, f]| [k.as_slice(), f.as_slice()]).collect()
}

#[test]
fn dedup_of_kafka_and_files_keeps_the_same_rows_whatever_the_threads_chunks_pieces_and_crashes() {
    let (messages, files) = mixed_source_data();
    let broker = kafka::Broker::start();
    let partitions = send_to_kafka(&broker, &messages);
    let setup = |dir: &Path, cap: Option<u64>| {
        std::fs::write(dir.join("p.sql"), mixed_pipeline(&broker, cap)).unwrap();
        write_events(&dir.join("in/archive"), &files);
    };

    for (i, (threads, chunk, piece, cap, thread_from, memory)) in MIXED_RUNS.into_iter().enumerate() {
        let (_tmp, dir) = scratch();
        setup(&dir, cap);
        let knobs = [
            ("WEIR_KAFKA_CHUNK_MESSAGES", chunk),
            ("WEIR_FILE_PIECE_BYTES", piece),
            ("WEIR_DEDUP_THREAD_FROM", thread_from),
            ("WEIR_DEDUP_CANDIDATE_MEMORY", memory),
        ];
        let out = run_to_end(&dir, threads, &knobs);
        let what = format!(
            "Kafka and files, threads {threads}, chunks of {chunk:?} offsets, pieces of {piece:?} bytes, \
             max_offsets_per_trigger {cap:?}, candidate thread from {thread_from:?} rows, {memory:?} bytes of candidates in memory"
        );
        assert_spilled_as_set(&out, memory, &what);
        let (model, batches) = check_mixed_run(&dir, &partitions, &files, &what, &stderr(&out));
        let late = model.late.each_ref().map(Vec::len);
        assert!(model.rows.len() > 20_000, "{what}: {} rows", model.rows.len());
        if i > 0 {
            continue;
        }
        // The batches as made: both sources have late rows, and the data tells weir's
        // rules from their neighbours.
        assert!(batches.len() >= MIXED_BATCHES && late.iter().all(|&n| n > 500), "{what}: {} batches, late rows {late:?}", batches.len());
        for (order, max_policy, rule) in [([1, 0], false, "ties going to archive first"), ([0, 1], true, "the maximum of the sources' watermarks")] {
            let other = two_source_model_of_batches(&mixed_slices(&batches), order, max_policy);
            let (rows, late) = (rows_differing(&model.rows, &other.rows), rows_differing(&model.late.concat(), &other.late.concat()));
            assert!(rows >= 500, "with {rule}, only {rows} rows differ");
            if max_policy {
                assert!(late >= 100, "with {rule}, only {late} late rows differ");
            }
        }
    }

    // A kill at every step of the second batch, then a restart: the same rows. And where
    // the third batch (late rows of both sources) has committed its rows but not its late
    // rows.
    let failpoints = [
        "after_offsets",
        "after_execute",
        "before_delta_commit",
        "after_delta_commit",
        "after_sink_commit",
        "after_state_commit",
        "after_commit_log",
    ];
    for (failpoint, batch) in failpoints.map(|f| (f, 1)).into_iter().chain([("after_sink_commit", 2)]) {
        let (_tmp, dir) = scratch();
        setup(&dir, Some(MIXED_BATCH_MESSAGES));
        crash_at(&dir, failpoint, batch, LIMIT);
        let out = run_within(&dir, "p.sql", &["--threads", "2"], LIMIT);
        assert_ok(&out);
        let what = format!("Kafka and files, after a crash at {failpoint} in batch {batch}");
        check_mixed_run(&dir, &partitions, &files, &what, &stderr(&out));
    }
}

/// The windowed query: hopping windows of 15 minutes every 5, per user, with a float sum and
/// average and a distinct count. Three windows hold each row, and a row late for its oldest
/// window may be on time for the others.
const WINDOW_PIPELINE: &str = "
CREATE TABLE events (user STRING, item BIGINT, price DOUBLE, ts TIMESTAMP, pad STRING,
  WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE)
WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = 2);

CREATE TABLE win WITH (connector = 'delta', path = 'out/win');

INSERT INTO win
SELECT CAST(extract(epoch FROM window_start) AS BIGINT) AS start_s, user,
       count(*) AS n, sum(price) AS total, avg(price) AS mean, count(DISTINCT item) AS items
FROM HOP(events, ts, INTERVAL '5' MINUTE, INTERVAL '15' MINUTE)
GROUP BY window_start, window_end, user;
";

const WINDOW_FILES: usize = 6;
const WINDOW_ROWS_PER_FILE: usize = 20_000;
const WINDOW_USERS: u64 = 6;
const WINDOW_SLIDE_MS: i64 = 5 * 60 * 1000;
const WINDOW_SIZE_MS: i64 = 15 * 60 * 1000;
const WINDOW_DELAY_MS: i64 = 60 * 1000;

/// One input row of the windowed query; `price` is written as `milli / 1000`, a decimal
/// that no binary float holds exactly, so a sum's last bits depend on the order of its terms.
#[derive(Clone, Copy)]
struct Sale {
    user: u64,
    item: u64,
    milli: u64,
    tms: i64,
}

impl Sale {
    fn price_text(&self) -> String {
        format!("{}.{:03}", self.milli / 1000, self.milli % 1000)
    }

    fn price(&self) -> f64 {
        self.price_text().parse().expect("a decimal")
    }
}

/// The files, two per batch, about 2.4 MB each (more than one piece of the file source at
/// any piece size): batch `b`'s times are spread over the 25 minutes from `b * 20` minutes,
/// in random order; one row in twenty is 20 to 40 minutes behind (late for its older windows
/// from the second batch on, often on time for its newer ones).
fn sales() -> Vec<Vec<Sale>> {
    let mut rng = Rng(18);
    (0..WINDOW_FILES)
        .map(|f| {
            let base = START_MS + (f / 2) as i64 * 20 * 60 * 1000;
            (0..WINDOW_ROWS_PER_FILE)
                .map(|_| {
                    let behind = if rng.below(20) == 0 { 20 * 60 * 1000 + rng.below(20 * 60 * 1000) as i64 } else { 0 };
                    Sale {
                        user: rng.below(WINDOW_USERS),
                        item: rng.below(700),
                        milli: rng.below(10_000_000),
                        tms: base + rng.below(25 * 60 * 1000) as i64 - behind,
                    }
                })
                .collect()
        })
        .collect()
}

fn setup_windows(dir: &Path, files: &[Vec<Sale>]) {
    std::fs::write(dir.join("p.sql"), WINDOW_PIPELINE).unwrap();
    let pad = "y".repeat(30);
    for (i, sales) in files.iter().enumerate() {
        let lines: Vec<String> = sales
            .iter()
            .map(|s| {
                format!(r#"{{"user": "u{}", "item": {}, "price": {}, "ts": "{}", "pad": "{pad}"}}"#, s.user, s.item, s.price_text(), iso(s.tms))
            })
            .collect();
        write_file(&dir.join("in/events"), &format!("{i:03}.json"), &lines);
    }
}

/// A window group of the model: count, float sum, distinct items, and the sum's terms.
#[derive(Default)]
struct Group {
    n: u64,
    total: f64,
    items: std::collections::BTreeSet<u64>,
    terms: Vec<f64>,
}

/// Spark's append mode over the batches (two files each): a (row, window) pair is late when
/// the window ends at or below the previous batch's watermark; the table ends with every
/// group whose window ends at or below the final watermark (the greatest event time minus the
/// delay, which the no-data batch at the end reaches). Keyed by (window start s, user). Also
/// returns how many pairs were late.
fn window_model(files: &[Vec<Sale>]) -> (BTreeMap<(i64, String), Group>, u64) {
    let (mut late_wm, mut wm, mut max_ts) = (0i64, 0i64, i64::MIN);
    let mut groups: BTreeMap<(i64, String), Group> = BTreeMap::new();
    let mut late = 0;
    for batch in files.chunks(2) {
        for s in batch.iter().flatten() {
            let last = s.tms.div_euclid(WINDOW_SLIDE_MS) * WINDOW_SLIDE_MS;
            for k in 0..WINDOW_SIZE_MS / WINDOW_SLIDE_MS {
                let start = last - k * WINDOW_SLIDE_MS;
                if start + WINDOW_SIZE_MS <= late_wm {
                    late += 1;
                    continue;
                }
                let g = groups.entry((start / 1000, format!("u{}", s.user))).or_default();
                g.n += 1;
                g.total += s.price();
                g.terms.push(s.price());
                g.items.insert(s.item);
            }
            max_ts = max_ts.max(s.tms);
        }
        late_wm = wm;
        wm = wm.max(max_ts - WINDOW_DELAY_MS);
    }
    groups.retain(|(start_s, _), _| start_s * 1000 + WINDOW_SIZE_MS <= wm);
    (groups, late)
}

/// The window table's rows, read with Python `deltalake` (not weir): one JSON object per
/// row, its float columns as their IEEE 754 bit patterns (integers), so rows compare bit for
/// bit. Sorted.
fn exact_rows(table: &Path) -> Vec<String> {
    let python = std::env::var("WEIR_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let code = "
import json, os, struct, sys
from deltalake import DeltaTable
rows = DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist()
bits = lambda v: struct.unpack('<Q', struct.pack('<d', v))[0] if isinstance(v, float) else v
out = sorted(json.dumps({k: bits(v) for k, v in r.items()}, sort_keys=True) for r in rows)
sys.stdout.write('\\n'.join(out))
sys.stdout.flush()
os._exit(0)
";
    let out = std::process::Command::new(python).arg("-c").arg(code).arg(table).output().expect("the reader's Python runs");
    assert!(out.status.success(), "reading {} failed:\n{}", table.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

/// Checks `rows` (from [`exact_rows`]) against the model: each (window, user) once, the
/// model's groups exactly, counts and distinct counts exact, the sum and mean within a
/// relative 1e-9 of the model's (its terms are added in another order).
fn check_window_rows(rows: &[String], model: &BTreeMap<(i64, String), Group>, what: &str) {
    let mut seen = BTreeMap::new();
    for row in rows {
        let r: serde_json::Value = serde_json::from_str(row).unwrap();
        let key = (r["start_s"].as_i64().unwrap(), r["user"].as_str().unwrap().to_string());
        let float = |c: &str| f64::from_bits(r[c].as_u64().unwrap_or_else(|| panic!("{what}: {c} is not a float: {row}")));
        assert!(seen.insert(key.clone(), ()).is_none(), "{what}: {key:?} is written twice");
        let g = model.get(&key).unwrap_or_else(|| panic!("{what}: {row} is not a group the model writes"));
        assert_eq!((r["n"].as_u64(), r["items"].as_u64()), (Some(g.n), Some(g.items.len() as u64)), "{what}: count, distinct items of {key:?}");
        let (total, mean) = (float("total"), float("mean"));
        assert!((total - g.total).abs() <= g.total.abs() * 1e-9, "{what}: sum of {key:?}: {total} vs the model's {}", g.total);
        let want_mean = g.total / g.n as f64;
        assert!((mean - want_mean).abs() <= want_mean.abs() * 1e-9, "{what}: avg of {key:?}: {mean} vs the model's {want_mean}");
    }
    assert_eq!(seen.len(), model.len(), "{what}: the table has {} groups, the model {}", seen.len(), model.len());
}

#[test]
fn windows_give_the_same_bits_whatever_the_threads_pieces_and_crashes() {
    let files = sales();
    let (model, late) = window_model(&files);
    let rows_per_group = files.iter().map(Vec::len).sum::<usize>() as u64 * 3 / model.len() as u64;
    assert!(model.len() >= 50 && rows_per_group >= 500 && late >= 1000, "{} groups, {rows_per_group} rows each, {late} late pairs", model.len());
    // The sums' last bits depend on the order of their terms: comparing runs bit for bit
    // shows that every run adds them in the same order.
    let reordered = model.values().filter(|g| g.terms.iter().rev().sum::<f64>().to_bits() != g.total.to_bits()).count();
    assert!(reordered * 2 > model.len(), "only {reordered} of {} sums change when added backwards", model.len());

    // Threads and read pieces (64 KiB, 1 MB, the default 2 MiB): the same bits each time.
    let mut first: Option<(String, Vec<String>)> = None;
    let mut same_as_first = |rows: Vec<String>, what: String| {
        check_window_rows(&rows, &model, &what);
        match &first {
            None => first = Some((what, rows)),
            Some((first_what, first_rows)) => {
                let differ: Vec<(&String, &String)> = first_rows.iter().zip(&rows).filter(|(a, b)| a != b).take(3).collect();
                assert!(first_rows.len() == rows.len() && differ.is_empty(), "{what} vs {first_what}: rows differ (floats as bits): {differ:?}");
            }
        }
    };
    for (threads, piece) in [("1", None), ("2", Some("65536")), ("3", Some("1000000")), ("3", None), ("1", Some("65536"))] {
        let (_tmp, dir) = scratch();
        setup_windows(&dir, &files);
        run_to_end(&dir, threads, &[("WEIR_FILE_PIECE_BYTES", piece)]);
        same_as_first(exact_rows(&dir.join("out/win")), format!("threads {threads}, pieces of {piece:?} bytes"));
    }

    // A kill at every step of the second batch (which writes the first windows and merges
    // into the first batch's state), then a restart: the same bits.
    for failpoint in
        ["after_offsets", "after_execute", "before_delta_commit", "after_delta_commit", "after_sink_commit", "after_state_commit", "after_commit_log"]
    {
        let (_tmp, dir) = scratch();
        setup_windows(&dir, &files);
        crash_at(&dir, failpoint, 1, LIMIT);
        let out = run(&dir, "p.sql", &[]);
        assert_ok(&out);
        same_as_first(exact_rows(&dir.join("out/win")), format!("after a crash at {failpoint} in batch 1"));
    }
}
