//! Random SIGKILL suite: the real `weir` binary runs a deduplicating query
//! (`SELECT DISTINCT ON (event_id) … ORDER BY event_id, ts` with a 10-minute watermark) into
//! a Delta table, and is killed with SIGKILL at seeded random moments and restarted, again
//! and again, for a file source, for the same in a directory whose name holds a space, `%20`,
//! `#` and non-ASCII letters, for two file sources in one query (`UNION ALL`, each with its
//! own watermark), for a file source with its files, the checkpoint and the table in S3
//! (`moto_server`), and for a Kafka source. Then the table is read back with the independent
//! reader and checked row by row, and the Delta log commit by commit. The harness looks at
//! the checkpoint and the table through [`Place`], on local disk or in S3 alike.
//!
//! One more scenario runs a hopping-window aggregation (count and sum per window and user,
//! Spark's append mode) over the same kind of rounds from a file source instead, and checks
//! every group's count and sum against a model of the rules computed from the generated rows
//! (`chaos_sigkill_file_source_window_to_delta`; its own docs say why the rounds make that
//! model exact). The rest of these docs are about the deduplicating scenarios.
//!
//! `WEIR_KILLS` sets how many kills must land in a running process (default 30; 300 for a
//! soak), `WEIR_SEED` replays a seed. The seed picks the data and every kill's plan; when a
//! kill lands still depends on timing. Every assertion message names the seed.
//!
//! # Why the expectations cannot depend on where weir cuts batches
//!
//! The data comes in rounds. Round `r`'s on-time events have event times within 6 minutes
//! after `T_r` = 2024-01-02 + `r` hours. The test writes a round's files, or produces its
//! messages, only when no `weir` process is alive, and only after a run of the previous
//! round exited 0 by itself. Such a run took everything there was, and before exiting it ran
//! the no-data batch that moves the watermark, if the watermark moved. So every batch of
//! round `r` judges late rows by a watermark of at least `max event time of the earlier
//! rounds - 10 min`, which is at least `T_(r-1) - 10 min`. From this:
//!
//! - Late rows are written in round `r >= 1` with times at least 45 minutes below that
//!   bound: `T_r - 2 h` and earlier for new ids, and the original time of an event of round
//!   `r-2` for late copies of old ids. Their keys were evicted long ago, so only the watermark keeps
//!   them out. The watermark is positive from round 1 on, so Spark's rule that the first
//!   two batches drop nothing does not matter: round 0 has no late rows.
//! - On-time rows are never late. While round `r` runs, the watermark is at most
//!   `T_r + 6 min - 10 min`, below every on-time time of the round, and that includes
//!   duplicates.
//! - One copy of each event is dropped. The duplicate is a second row of a round-`r` event,
//!   written later in the same round, with a time up to a minute after the first, so within
//!   the delay. In Kafka it goes to another partition, so it may even arrive first, or in
//!   an earlier batch. Within a batch the copy with the earlier event time is kept; across
//!   batches the earlier batch's. The kept copy sets the key's entry, which expires at
//!   `its time + 10 min >= T_r + 10 min`. The watermark stays below that for the whole
//!   round, so the entry is still there when the other copy comes.
//!
//! So the table must hold every on-time id exactly once, and no late row. That holds however
//! runs and kills cut the batches.
//!
//! # Exact checks over the batches as they were cut
//!
//! After every run the test copies the checkpoint's `offsets/N` and `commits/N` files. They
//! are written create-if-absent and never change. Copying them after every run keeps the
//! whole history, because weir purges only entries 100 batches behind and no run here gets
//! near 100 batches. The test then replays the dedup and watermark rule over each batch's
//! recorded input, an independent model of `crates/weir-state/src/dedup.rs`:
//!
//! - Kafka: the recorded per-partition offset ranges, mapped to the messages through the
//!   positions the producer reported.
//! - Files: files are taken in name order, at most `max_files_per_trigger` per batch, and
//!   the next round's files appear only after a round is finished. So the k-th data batch
//!   takes the k-th pair of a round's files, in order. The test checks this against the
//!   checkpoint's `sources/<source>/N.json` lists that it saw before compaction removed them.
//!   With two sources, a round's files are dealt to them in turn, and the k-th data batch of
//!   a round takes the k-th group of each source that has one. Both sources get on-time
//!   files in every round, so the `min` of their watermarks obeys the bounds above too.
//!
//! The model must agree with the round-based expectation above. That is a check of the
//! test's own reasoning. It also gives the exact watermark of every batch, which must equal
//! the one weir recorded, and the exact set of batches that output rows. The Delta sink
//! commits nothing for a batch without output rows, such as a no-data batch, a batch of
//! duplicates and late rows only, or a replayed batch that is already committed, except
//! that batch 0 always commits: it creates the table. So the `txn` versions are 0 and the
//! batch ids that output rows. They are consecutive Delta commits, not consecutive batch
//! ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::support::kafka::{Broker, EPOCH_2024_MS, Message, assert_each_once};
use crate::support::s3::{Mark, Place, S3Server, env_for};
use crate::support::*;

/// The watermark delay of both queries, in ms.
const DELAY_MS: i64 = 10 * 60 * 1000;

/// On-time events per round.
const FRESH: usize = 240;

/// The last this many on-time events of a round have no duplicate and no late row after
/// them. In Kafka, each partition's tail is then made of first copies, so the last batch
/// that reads data always outputs rows.
const TAIL: usize = 16;

/// A round ends when a run exits 0 by itself. After this many kills in one round, the
/// round is finished by a run that is not killed, so the test always moves on.
const MAX_KILLS_PER_ROUND: u32 = 8;

/// A random delay kill lands at most this long after the start (debug `weir` starts in
/// about 100 ms).
const MAX_DELAY_MS: u64 = 400;

/// The same in S3, where a start takes longer (moto answers from Python, and the run first
/// takes the checkpoint's lease).
const S3_MAX_DELAY_MS: u64 = 1000;

/// The bucket of a scenario in S3.
const BUCKET: &str = "lake";

/// How long one run may take before the test calls it a hang.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// `2024-01-02T00:00:00Z`, the start of round 0. Late rows of round 1 go back to 2024-01-01.
const T0_MS: i64 = EPOCH_2024_MS + 86_400_000;

/// One input row: `{"event_id", "v", "ts"}`. `v` says what the row is: `orig` (the first
/// copy of an on-time event), `dup` (a later copy within the delay) or `late`. `source` is
/// the index of the source it goes to, in declaration order (0 with one source).
#[derive(Clone, Debug)]
struct Row {
    id: String,
    v: &'static str,
    ts_ms: i64,
    source: usize,
}

impl Row {
    fn json(&self) -> String {
        format!(r#"{{"event_id":"{}","v":"{}","ts":"{}"}}"#, self.id, self.v, rfc3339(self.ts_ms))
    }
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds (Hinnant's civil-from-days).
fn rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000)
}

fn round_start_ms(round: u32) -> i64 {
    T0_MS + i64::from(round) * 3_600_000
}

fn fresh_id(round: u32, i: usize) -> String {
    format!("r{round:05}-{i:03}")
}

fn fresh_ts(round: u32, i: usize) -> i64 {
    round_start_ms(round) + i as i64 * 1000
}

/// Round `round`'s rows in the order they are written (files) or produced (Kafka):
/// [`FRESH`] on-time events 1 s apart; a quarter of them again as `dup`, 0 to 40 events later,
/// up to a minute later in event time; from round 1 on, about one late row per 8 events.
/// See the module docs for why each kind is certain to be kept or dropped.
fn round_rows(round: u32, rng: &mut Rng) -> Vec<Row> {
    let last_mixed = FRESH - TAIL - 1;
    let mut rows = Vec::new();
    let mut pending: Vec<(usize, Row)> = Vec::new();
    let mut late = 0;
    for i in 0..FRESH {
        rows.push(Row { id: fresh_id(round, i), v: "orig", ts_ms: fresh_ts(round, i), source: 0 });
        if i <= last_mixed && rng.below(4) == 0 {
            let due = (i + rng.below(41) as usize).min(last_mixed);
            let ts_ms = fresh_ts(round, i) + 1000 + rng.below(60_000) as i64;
            pending.push((due, Row { id: fresh_id(round, i), v: "dup", ts_ms, source: 0 }));
        }
        if round >= 1 && i <= last_mixed && rng.below(8) == 0 {
            late += 1;
            rows.push(if round >= 2 && rng.below(2) == 0 {
                // A late copy of an old event, at its original time: its key is long gone
                // from the state, so only the watermark stops it.
                let j = rng.below(FRESH as u64) as usize;
                Row { id: fresh_id(round - 2, j), v: "late", ts_ms: fresh_ts(round - 2, j), source: 0 }
            } else {
                Row { id: format!("late-{round:05}-{late}"), v: "late", ts_ms: round_start_ms(round) - 7_200_000 - late * 1000, source: 0 }
            });
        }
        pending.retain(|(due, row)| {
            if *due <= i {
                rows.push(row.clone());
            }
            *due > i
        });
    }
    assert!(pending.is_empty());
    rows
}

/// What the test saw of the checkpoint: entries by batch id, copied after every run.
#[derive(Default)]
struct History {
    offsets: BTreeMap<u64, Value>,
    commits: BTreeMap<u64, Value>,
    /// File sources: `sources/<source>/N.json` (file lists) seen before compaction, by source.
    lists: BTreeMap<String, BTreeMap<u64, Value>>,
}

/// How a kill is timed.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This many ms after the start.
    Delay(u64),
    /// Right after the `nth` new `offsets/N` file (the batch is planned, nothing read).
    Offsets(u64),
    /// Right after the `nth` new Delta version (committed to the sink, not to the log).
    DeltaCommit(u64),
    /// Right after the `nth` batch's state file is written (before `commits/N`).
    StateCommit(u64),
    /// Right after the `nth` new `commits/N` file (between batches).
    Commits(u64),
    /// File source: right after the `nth` new file list `sources/<first source>/N.json`
    /// (written before `offsets/N`; a restart must reuse it).
    FileList(u64),
}

impl KillAt {
    fn name(self) -> &'static str {
        match self {
            KillAt::Delay(_) => "random delay",
            KillAt::Offsets(_) => "new offsets/N",
            KillAt::DeltaCommit(_) => "new Delta version",
            KillAt::StateCommit(_) => "new state file",
            KillAt::Commits(_) => "new commits/N",
            KillAt::FileList(_) => "new file list",
        }
    }
}

/// How a run ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Killed,
    Finished,
}

/// One scenario's kill loop and what it observed.
struct Chaos {
    what: &'static str,
    /// The sources, in declaration order.
    sources: Vec<&'static str>,
    /// The sources write file lists (`sources/<source>/N.json`): kills may wait for them.
    file_lists: bool,
    /// The state directory of the first stateful operator (`state/<this>/N.delta`): kills
    /// may wait for its deltas.
    state_dir: &'static str,
    seed: u64,
    kills: u64,
    rng: Rng,
    tmp: Option<tempfile::TempDir>,
    /// Where `weir` runs: the script and its stderr.
    dir: PathBuf,
    /// Where the checkpoint, the table and the source files are: under `dir`, or in S3.
    checkpoint: Place,
    table: Place,
    inputs: Place,
    /// The S3 server of a scenario in S3.
    s3: Option<Arc<S3Server>>,
    /// Environment of every `weir run`.
    env: Vec<(&'static str, &'static str)>,
    /// A kill timed by delay lands at most this many ms after the start.
    max_delay_ms: u64,
    history: History,
    /// Kills that landed, by how they were timed and by where the checkpoint was.
    landed: u64,
    by_trigger: BTreeMap<&'static str, u64>,
    by_step: BTreeMap<&'static str, u64>,
    runs: u64,
    replays: u64,
    rounds: u32,
    started: Instant,
}

impl Chaos {
    /// A scenario reading `sources`, run in `subdir` of a scratch directory (the table and
    /// checkpoint paths hold its name).
    fn new(what: &'static str, sources: &[&'static str], file_lists: bool, subdir: &str) -> Self {
        let kills: u64 = std::env::var("WEIR_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(30);
        let seed: u64 = std::env::var("WEIR_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("chaos {what}: seed {seed}, {kills} kills (replay with WEIR_SEED={seed}, raise with WEIR_KILLS)");
        let (tmp, scratch_dir) = scratch();
        let dir = scratch_dir.join(subdir);
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            what,
            sources: sources.to_vec(),
            file_lists,
            state_dir: "dedup",
            seed,
            kills,
            rng: Rng(seed),
            tmp: Some(tmp),
            checkpoint: Place::Local(dir.join(".weir/checkpoints/out")),
            table: Place::Local(dir.join("out")),
            inputs: Place::Local(dir.join("in")),
            s3: None,
            env: Vec::new(),
            max_delay_ms: MAX_DELAY_MS,
            dir,
            history: History::default(),
            landed: 0,
            by_trigger: BTreeMap::new(),
            by_step: BTreeMap::new(),
            runs: 0,
            replays: 0,
            rounds: 0,
            started: Instant::now(),
        }
    }

    /// Moves the source files, the checkpoint and the table into a bucket of an S3 server
    /// started for this scenario.
    fn in_s3(mut self) -> Self {
        let server = Arc::new(S3Server::start(&self.dir));
        server.create_bucket(BUCKET);
        let lake = Place::S3 { server: Arc::clone(&server), bucket: BUCKET.to_string(), prefix: "chaos".to_string() };
        self.checkpoint = lake.join("cp/out");
        self.table = lake.join("out");
        self.inputs = lake.join("in");
        self.s3 = Some(server);
        self.max_delay_ms = S3_MAX_DELAY_MS;
        self
    }

    /// The context every assertion message starts with.
    fn ctx(&self) -> String {
        format!("chaos {} (seed {}; replay with WEIR_SEED={} WEIR_KILLS={})", self.what, self.seed, self.seed, self.kills)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("weir.stderr")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Writes round 0 with `write_round`, then kills and restarts `weir` until at least
    /// `kills` kills have landed, starting a new round each time a run finishes a round.
    fn run(&mut self, mut write_round: impl FnMut(u32, &mut Rng)) {
        write_round(0, &mut self.rng);
        let mut kills_this_round = 0;
        loop {
            let ended = if kills_this_round < MAX_KILLS_PER_ROUND {
                // 4 in 8 (10 with file lists) after a random delay, the others right after a
                // step of the batch loop shows on disk.
                let nth = 1 + self.rng.below(3);
                let plan = match self.rng.below(if self.file_lists { 10 } else { 8 }) {
                    0..=3 => KillAt::Delay(self.rng.below(self.max_delay_ms + 1)),
                    4 => KillAt::Offsets(nth),
                    5 => KillAt::DeltaCommit(nth),
                    6 => KillAt::StateCommit(nth),
                    7 => KillAt::Commits(nth),
                    _ => KillAt::FileList(nth),
                };
                self.attempt(Some(plan))
            } else {
                self.attempt(None)
            };
            self.capture();
            match ended {
                Ended::Killed => kills_this_round += 1,
                Ended::Finished => {
                    self.rounds += 1;
                    if self.landed >= self.kills {
                        return;
                    }
                    kills_this_round = 0;
                    write_round(self.rounds, &mut self.rng);
                }
            }
        }
    }

    /// Starts `weir run` and kills it as `plan` says (`None`: lets it finish).
    fn attempt(&mut self, plan: Option<KillAt>) -> Ended {
        let ctx = self.ctx();
        let offsets = self.checkpoint.ids("offsets").last().map_or(0, |n| n + 1);
        let commits = self.checkpoint.ids("commits").last().map_or(0, |n| n + 1);
        let delta = self.table.ids("_delta_log").last().map_or(0, |n| n + 1);
        let spawned = self.checkpoint.mark();
        self.runs += 1;
        let mut cmd = weir(&self.dir);
        cmd.args(["run", "p.sql", "--trigger", "available-now", "--progress", "human"]);
        cmd.envs(self.env.iter().copied());
        if let Some(server) = &self.s3 {
            env_for(&mut cmd, &server.endpoint()).args(["--checkpoint", &self.checkpoint.in_script(&self.dir)]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log()).unwrap())
            .spawn()
            .unwrap();
        let start = Instant::now();
        // The steps after a file list, a Delta commit or a state commit take a few ms at
        // most: kill at once after those, and up to 2 ms after the others.
        let jitter = Duration::from_micros(self.rng.below(2000));
        let cp = &self.checkpoint;
        let due = |at: KillAt| match at {
            KillAt::Delay(ms) => start.elapsed() >= Duration::from_millis(ms),
            KillAt::Offsets(n) => cp.exists(&format!("offsets/{}.json", offsets + n - 1)),
            KillAt::Commits(n) => cp.exists(&format!("commits/{}.json", commits + n - 1)),
            KillAt::DeltaCommit(n) => self.table.exists(&format!("_delta_log/{:020}.json", delta + n - 1)),
            KillAt::StateCommit(n) => cp.written_since(&spawned, &format!("state/{}/{}.delta", self.state_dir, commits + n - 1)),
            KillAt::FileList(n) => cp.written_since(&spawned, &format!("sources/{}/{}.json", self.sources[0], offsets + n - 1)),
        };
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < RUN_LIMIT, "{ctx}: a run did not finish within {RUN_LIMIT:?}:\n{}", self.log_text());
            if let Some(at) = plan
                && due(at)
            {
                if matches!(at, KillAt::Offsets(_) | KillAt::Commits(_)) {
                    std::thread::sleep(jitter);
                }
                child.kill().unwrap(); // SIGKILL
                break child.wait().unwrap();
            }
            std::thread::sleep(cp.poll_interval());
        };
        let log = self.log_text();
        self.replays += log.matches("(replayed after a restart)").count() as u64;
        match (status.signal(), status.code()) {
            (Some(9), _) => {
                let plan = plan.expect("only planned runs are killed");
                self.landed += 1;
                *self.by_trigger.entry(plan.name()).or_default() += 1;
                let step = self.step(&spawned);
                *self.by_step.entry(step).or_default() += 1;
                Ended::Killed
            }
            (_, Some(0)) => Ended::Finished,
            _ => panic!("{ctx}: weir failed ({status}) after {} runs and {} kills:\n{log}", self.runs, self.landed),
        }
    }

    /// Where in the batch loop the checkpoint says a kill landed.
    fn step(&self, spawned: &Mark) -> &'static str {
        let cp = &self.checkpoint;
        let offsets = cp.ids("offsets").last().copied();
        let commits = cp.ids("commits").last().copied();
        let next = offsets.map_or(0, |b| b + 1);
        if self.sources.iter().any(|src| cp.written_since(spawned, &format!("sources/{src}/{next}.json"))) {
            return "after the file list, before offsets/N";
        }
        let Some(batch) = offsets else { return "before the first batch" };
        if commits == Some(batch) {
            return "between batches";
        }
        if cp.written_since(spawned, &format!("state/{}/{batch}.delta", self.state_dir)) {
            return "after the state commit";
        }
        let last_log = self.table.ids("_delta_log").last().and_then(|v| self.table.read(&format!("_delta_log/{v:020}.json")));
        let txn_of_last = last_log.is_some_and(|bytes| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|a| a["txn"]["version"].as_u64() == Some(batch))
        });
        if txn_of_last { "after the Delta commit" } else { "in a batch, before its Delta commit" }
    }

    /// Copies the checkpoint's offsets, commits and file lists into the history; an entry
    /// seen before must not have changed.
    fn capture(&mut self) {
        let ctx = self.ctx();
        let mut dirs = vec![("offsets".to_string(), &mut self.history.offsets), ("commits".to_string(), &mut self.history.commits)];
        for src in &self.sources {
            self.history.lists.entry(src.to_string()).or_default();
        }
        for (src, lists) in self.history.lists.iter_mut() {
            dirs.push((format!("sources/{src}"), lists));
        }
        for (dir, seen) in dirs {
            for id in self.checkpoint.ids(&dir) {
                let entry = format!("{dir}/{id}.json");
                let path = self.checkpoint.show(&entry);
                let bytes = self.checkpoint.read(&entry).unwrap_or_else(|| panic!("{ctx}: {path} was listed, but cannot be read"));
                let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{ctx}: {path} is not JSON: {e}"));
                if let Some(before) = seen.get(&id) {
                    assert_eq!(*before, value, "{ctx}: {path} changed after it was written");
                }
                seen.insert(id, value);
            }
        }
    }

    /// The last batch id, after checking that every batch 0..=last has offsets and a commit.
    fn last_batch(&self) -> u64 {
        let ctx = self.ctx();
        let last = *self.history.offsets.keys().last().unwrap_or_else(|| panic!("{ctx}: no batch ran"));
        let all: Vec<u64> = (0..=last).collect();
        // Copied after every run: only a run of more than 100 batches could let weir purge
        // some before the test saw them.
        assert_eq!(self.history.offsets.keys().copied().collect::<Vec<_>>(), all, "{ctx}: offsets/N of every batch");
        assert_eq!(self.history.commits.keys().copied().collect::<Vec<_>>(), all, "{ctx}: commits/N of every batch");
        for (n, o) in &self.history.offsets {
            assert_eq!(o["batchId"], *n, "{ctx}: offsets/{n}.json: {o}");
        }
        last
    }

    /// `(start, end)` of source `source` in batch `n`.
    fn range(&self, n: u64, source: &str) -> (&Value, &Value) {
        let source = &self.history.offsets[&n]["sources"][source];
        (&source["start"], &source["end"])
    }

    /// One more run must find nothing to do: no batch planned, nothing written to Delta.
    /// Returns the last batch id.
    fn nothing_left(&mut self) -> u64 {
        let ctx = self.ctx();
        let last = self.last_batch();
        let versions_before = self.table.ids("_delta_log");
        assert_eq!(self.attempt(None), Ended::Finished);
        self.capture();
        assert_eq!(self.last_batch(), last, "{ctx}: a run after the end planned another batch:\n{}", self.log_text());
        assert_eq!(self.table.ids("_delta_log"), versions_before, "{ctx}: a run after the end wrote to Delta");
        last
    }

    /// The Delta log of `table`: one commit per batch that output rows (`with_output`), and
    /// one for batch 0 when it output none (the first batch creates the table, rows or not),
    /// each with one txn of this query whose version is that batch's id; and, on local disk,
    /// no data file that no commit references. Returns the orphans counted (in S3 they are
    /// left for `VACUUM`, so only counted).
    fn check_log(&self, table: &DeltaView, with_output: &[u64]) -> usize {
        let ctx = self.ctx();
        let metadata = self.checkpoint.read("metadata.json").unwrap_or_else(|| panic!("{ctx}: no {}", self.checkpoint.show("metadata.json")));
        let id = serde_json::from_slice::<Value>(&metadata).unwrap()["id"].as_str().unwrap().to_string();
        let commits = table.commits();
        for (n, c) in commits.iter().enumerate() {
            assert_eq!(c["version"], n, "{ctx}: Delta versions 0, 1, 2, …");
            let txns = c["txns"].as_array().unwrap();
            assert_eq!(txns.len(), 1, "{ctx}: table version {n} carries one txn: {c}");
            assert_eq!(txns[0]["appId"], id, "{ctx}: table version {n}'s txn is this query's ({id}): {c}");
        }
        let txns: Vec<u64> = table.txns().iter().map(|t| t.1 as u64).collect();
        let committed: Vec<u64> = std::iter::once(0).chain(with_output.iter().copied().filter(|n| *n > 0)).collect();
        assert_eq!(txns, committed, "{ctx}: txn versions = batch 0 (which creates the table) and the batches that output rows, each once, in order");
        let files: BTreeSet<&str> = commits.iter().flat_map(|c| c["adds"].as_array().unwrap()).filter_map(Value::as_str).collect();
        let orphans = table.json["dataFilesOnDisk"].as_array().unwrap().iter().filter(|f| !files.contains(f.as_str().unwrap())).count();
        // A local table's sink removes the data files of crashed attempts when it opens
        // again (the journal in delta_journal.rs). In S3 it leaves them for VACUUM: they are
        // reported, not failed on.
        if matches!(self.table, Place::Local(_)) {
            assert_eq!(orphans, 0, "{ctx}: data files on disk that no commit references (orphans of a crashed commit)");
        }
        orphans
    }

    /// One more run must find nothing to do, then the checks shared by both scenarios:
    /// `inputs` holds each batch's input rows (by batch id, as the checkpoint recorded them),
    /// `expected` the on-time ids of every round.
    fn check(&mut self, inputs: &[Vec<Row>], expected: &BTreeSet<String>) {
        let ctx = self.ctx();
        let last = self.nothing_left();

        // The model over the batches as recorded, and the round-based expectation.
        assert_eq!(inputs.len() as u64, last + 1, "{ctx}: one input per batch");
        let model = Model::replay(inputs, self.sources.len());
        let mut model_ids: Vec<String> = model.iter().flat_map(|b| b.emitted.keys().cloned()).collect();
        model_ids.sort();
        assert_each_once(model_ids, expected.iter().cloned(), &format!("{ctx}: the model over the recorded batches (the test's reasoning)"));
        let mut zero_rows_reported = 0;
        for (n, b) in model.iter().enumerate() {
            let o = &self.history.offsets[&(n as u64)];
            assert_eq!(
                (o["batchWatermarkMs"].as_i64(), o["lateEventsWatermarkMs"].as_i64()),
                (Some(b.watermark), Some(b.late_watermark)),
                "{ctx}: batch {n}: (batchWatermarkMs, lateEventsWatermarkMs) as weir recorded them vs the model: {o}"
            );
            let rows = self.history.commits[&(n as u64)]["numOutputRows"].as_u64();
            // Also a batch replayed after its Delta commit reports its rows (the sink wrote
            // nothing the second time).
            assert_eq!(rows, Some(b.emitted.len() as u64), "{ctx}: commits/{n}.json numOutputRows vs the model");
            zero_rows_reported += u64::from(rows == Some(0) && !b.emitted.is_empty());
        }

        // The table, read by the independent reader.
        let table = self.table.read_table(&["event_id", "v"]);
        let rows = table.json["rows"].as_array().unwrap();
        let ids: Vec<String> = rows.iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
        assert_each_once(ids, expected.iter().cloned(), &format!("{ctx}: event ids in the Delta table"));
        let wanted: HashMap<&str, &'static str> = model.iter().flat_map(|b| b.emitted.iter().map(|(id, v)| (id.as_str(), *v))).collect();
        let mut kept_dups = 0;
        for row in rows {
            let (id, v) = (row["event_id"].as_str().unwrap(), row["v"].as_str().unwrap());
            assert_ne!(v, "late", "{ctx}: a late row is in the table: {row}");
            // Within a batch the first copy by event time is kept, wherever it was read.
            assert_eq!(v, wanted[id], "{ctx}: kept {row}, but the first copy by event time of the batch that first had {id} is '{}'", wanted[id]);
            kept_dups += u64::from(v == "dup");
        }

        // The Delta log: one commit per batch that output rows (and batch 0's, which creates
        // the table), each with one txn of this query, whose version is that batch's id.
        let with_output: Vec<u64> = (0..=last).filter(|n| !model[*n as usize].emitted.is_empty()).collect();
        let orphans = self.check_log(&table, &with_output);
        let txns: Vec<u64> = table.txns().iter().map(|t| t.1 as u64).collect();
        let commits = table.commits();
        // The last batch that read data output rows (by design of the data); a no-data batch
        // may follow it, as the last batch in commits/.
        let last_data = (0..=last).rev().find(|n| !inputs[*n as usize].is_empty()).unwrap();
        assert_eq!(txns.last(), Some(&last_data), "{ctx}: the last txn version is the last batch with data (last in commits/: {last})");

        let no_data = inputs.iter().filter(|i| i.is_empty()).count();
        let (late, dups): (u64, u64) = model.iter().fold((0, 0), |(l, d), b| (l + b.late, d + b.dups));
        eprintln!(
            "chaos {}: seed {}: {} kills landed in {} runs over {} rounds, {:.1} s; {} batches ({no_data} no-data), {} replayed; \
             {} rows, {dups} duplicates ({kept_dups} ids kept their 'dup' copy: it came in an earlier batch) and {late} late rows dropped; \
             {} Delta commits; {orphans} data files on disk that no commit references; \
             {zero_rows_reported} commits/N say 0 output rows for a batch that wrote rows (replayed after its Delta commit)\n  kills by timing: {:?}\n  kills by step: {:?}",
            self.what,
            self.seed,
            self.landed,
            self.runs,
            self.rounds,
            self.started.elapsed().as_secs_f64(),
            last + 1,
            self.replays,
            rows.len(),
            commits.len(),
            self.by_trigger,
            self.by_step,
        );
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(tmp) = self.tmp.take()
        {
            eprintln!("{}: kept the scratch directory {} ; last run's stderr:\n{}", self.ctx(), tmp.keep().display(), self.log_text());
            if let Some(server) = &self.s3 {
                eprintln!("(the S3 objects go with the server)\n{}", server.log_tail());
            }
        }
    }
}

/// One batch as the model computes it.
struct ModelBatch {
    watermark: i64,
    late_watermark: i64,
    /// Ids the batch outputs, each with the copy (`v`) that must be the one kept.
    emitted: BTreeMap<String, &'static str>,
    late: u64,
    dups: u64,
}

/// Spark's `dropDuplicatesWithinWatermark` with the 3.4+ late-row rule, written from the
/// README, independently of weir's code: batch N's watermark is
/// `max(watermark of N-1, max event time through N-1 - delay)` (0 before any data); rows at
/// or below the previous batch's watermark are late; a key new in a batch keeps its first
/// copy by event time, ties by place (the batch's rows come here in place order: file then
/// line, or partition then offset), and its entry lives until the batch watermark reaches
/// that copy's `time + delay`; a key held from an earlier batch drops its rows.
struct Model;

impl Model {
    /// `sources` watermarked sources (10-minute delays), combined with Spark's `min` policy:
    /// each source's watermark is its `max event time - delay` so far, 0 before it has data.
    fn replay(inputs: &[Vec<Row>], sources: usize) -> Vec<ModelBatch> {
        let (mut watermark, mut late_watermark) = (0i64, 0i64);
        let mut per_source: Vec<Option<i64>> = vec![None; sources];
        let mut state: HashMap<String, i64> = HashMap::new();
        let mut out = Vec::with_capacity(inputs.len());
        for rows in inputs {
            let mut b = ModelBatch { watermark, late_watermark, emitted: BTreeMap::new(), late: 0, dups: 0 };
            let mut best: BTreeMap<&str, &Row> = BTreeMap::new();
            for row in rows {
                if row.ts_ms <= late_watermark {
                    b.late += 1;
                } else if state.contains_key(&row.id) {
                    b.dups += 1;
                } else if let Some(kept) = best.get_mut(row.id.as_str()) {
                    if row.ts_ms < kept.ts_ms {
                        *kept = row;
                    }
                    b.dups += 1;
                } else {
                    best.insert(&row.id, row);
                }
            }
            for (id, row) in best {
                state.insert(id.to_string(), row.ts_ms + DELAY_MS);
                b.emitted.insert(id.to_string(), row.v);
            }
            if watermark > 0 {
                state.retain(|_, expires| *expires > watermark);
            }
            for row in rows {
                let w = &mut per_source[row.source];
                *w = Some(w.map_or(row.ts_ms - DELAY_MS, |w| w.max(row.ts_ms - DELAY_MS)));
            }
            late_watermark = watermark;
            let slowest = per_source.iter().map(|w| w.unwrap_or(0)).min().unwrap_or(0);
            watermark = watermark.max(slowest);
            out.push(b);
        }
        out
    }
}

/// The on-time ids of rounds `0..rounds`.
fn expected_ids(rounds: u32) -> BTreeSet<String> {
    (0..rounds).flat_map(|r| (0..FRESH).map(move |i| fresh_id(r, i))).collect()
}

const QUERY: &str = "INSERT INTO out SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, ts;";

/// On-time events per file: a file always has some, so every batch that reads files outputs
/// rows.
const FILE_FRESH: usize = 12;

/// Files per batch.
const MAX_FILES_PER_TRIGGER: usize = 2;

#[test]
fn chaos_sigkill_file_source_dedup_to_delta() {
    assert_eq!(rfc3339(EPOCH_2024_MS + 86_400_000 * 60 + 3_723_004), "2024-03-01T01:02:03.004Z");
    file_chaos(Chaos::new("file source", &["events"], true, "."));
}

/// The table and the checkpoint live under a directory whose name has a space, `%20`, `#`
/// and non-ASCII letters: paths are encoded in URLs and in the Delta log, and a path decoded
/// once too often or compared in two encodings loses data (issue 14, item 3).
#[test]
fn chaos_sigkill_file_source_in_a_path_with_space_percent_and_non_ascii() {
    file_chaos(Chaos::new("file source in 'c dé %20 #1'", &["events"], true, "c dé %20 #1"));
}

/// Two watermarked file sources in one query (`UNION ALL`), each with its own file lists
/// and watermark: both must survive every kill (issue 14, items 2 and 4). Every chunk's
/// candidate rows go through the deduplication's candidate thread (`WEIR_DEDUP_THREAD_FROM`
/// = 1; the other scenarios' chunks are too small for it).
#[test]
fn chaos_sigkill_two_file_sources_dedup_to_delta() {
    let mut chaos = Chaos::new("two file sources", &["a", "b"], true, ".");
    chaos.env.push(("WEIR_DEDUP_THREAD_FROM", "1"));
    file_chaos(chaos);
}

/// The source files, the checkpoint and the table in S3 (`moto_server`): every checkpoint
/// entry, file list, state file and Delta commit goes through the object store, and each
/// restart takes over the lease of the killed runner (its process is gone).
#[test]
fn chaos_sigkill_file_source_dedup_to_delta_in_s3() {
    file_chaos(Chaos::new("file source in S3", &["events"], true, ".").in_s3());
}

/// Kills and restarts a deduplicating query over the file sources of `chaos` (round files
/// dealt to them in turn), then checks the table against the model.
fn file_chaos(mut chaos: Chaos) {
    let sources = chaos.sources.clone();
    let query = match sources.as_slice() {
        [_] => QUERY.replace("FROM events", &format!("FROM {}", sources[0])),
        _ => format!(
            "INSERT INTO out SELECT DISTINCT ON (event_id) * FROM ({}) ORDER BY event_id, ts;",
            sources.iter().map(|s| format!("SELECT * FROM {s}")).collect::<Vec<_>>().join(" UNION ALL ")
        ),
    };
    let inputs = file_rounds(&mut chaos, "", &query, round_rows, Row::json);
    chaos.check(&inputs, &expected_ids(chaos.rounds));
}

/// Writes the script of a query `query` over the file sources of `chaos` (columns `event_id`,
/// `v`, `ts` and `extra_columns`, a 10-minute watermark), then kills and restarts it round
/// after round, each round's rows made by `rows` and written as `json` says. Returns each
/// batch's input rows, by batch id, as the checkpoint recorded the batches.
fn file_rounds(
    chaos: &mut Chaos,
    extra_columns: &str,
    query: &str,
    rows: fn(u32, &mut Rng) -> Vec<Row>,
    json: fn(&Row) -> String,
) -> Vec<Vec<Row>> {
    let sources = chaos.sources.clone();
    let mut script = String::new();
    for src in &sources {
        script += &format!(
            "CREATE TABLE {src} (event_id STRING NOT NULL, v STRING, ts TIMESTAMP,{extra_columns}
               WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
             WITH (connector = 'file', path = '{}', format = 'json', max_files_per_trigger = {MAX_FILES_PER_TRIGGER});\n",
            chaos.inputs.join(src).in_script(&chaos.dir)
        );
    }
    script += &format!("CREATE TABLE out WITH (connector = 'delta', path = '{}');\n", chaos.table.in_script(&chaos.dir));
    script += query;
    std::fs::write(chaos.dir.join("p.sql"), script).unwrap();
    // Every file's rows, by source and name. A round's files go to the sources in turn; each
    // source takes its files in name order, MAX_FILES_PER_TRIGGER at a time, so the k-th
    // data batch of a round takes the k-th group of every source that has one.
    let mut files: BTreeMap<(usize, String), Vec<Row>> = BTreeMap::new();
    let mut batches: Vec<Vec<(usize, Vec<String>)>> = Vec::new();
    let inputs = chaos.inputs.clone();
    let n_sources = sources.len();
    chaos.run(|round, rng| {
        let mut round_files: Vec<(usize, String, Vec<Row>)> = Vec::new();
        let mut fresh = 0;
        for mut row in rows(round, rng) {
            if row.v == "orig" {
                if fresh % FILE_FRESH == 0 {
                    let j = fresh / FILE_FRESH;
                    round_files.push((j % n_sources, format!("r{round:05}-f{j:02}.json"), Vec::new()));
                }
                fresh += 1;
            }
            let file = round_files.last_mut().unwrap();
            row.source = file.0;
            file.2.push(row);
        }
        let groups: Vec<Vec<Vec<String>>> = (0..n_sources)
            .map(|src| {
                let names: Vec<String> = round_files.iter().filter(|f| f.0 == src).map(|f| f.1.clone()).collect();
                names.chunks(MAX_FILES_PER_TRIGGER).map(<[String]>::to_vec).collect()
            })
            .collect();
        for k in 0..groups.iter().map(Vec::len).max().unwrap_or(0) {
            batches.push((0..n_sources).filter_map(|src| Some((src, groups[src].get(k)?.clone()))).collect());
        }
        for (src, name, rows) in round_files {
            inputs.join(sources[src]).write_lines(&name, &rows.iter().map(json).collect::<Vec<_>>());
            files.insert((src, name), rows);
        }
    });

    let ctx = chaos.ctx();
    let last = chaos.last_batch();
    let mut inputs = Vec::new();
    let mut data_batches = 0;
    for n in 0..=last {
        let reading: Vec<usize> = (0..n_sources)
            .filter(|&src| {
                let (start, end) = chaos.range(n, sources[src]);
                start != end
            })
            .collect();
        if reading.is_empty() {
            inputs.push(Vec::new());
            continue;
        }
        let batch = batches.get(data_batches).unwrap_or_else(|| panic!("{ctx}: batch {n} reads files, but all were taken"));
        data_batches += 1;
        assert_eq!(reading, batch.iter().map(|b| b.0).collect::<Vec<_>>(), "{ctx}: batch {n} reads the sources that have files left");
        let mut rows = Vec::new();
        for (src, group) in batch {
            let (_, end) = chaos.range(n, sources[*src]);
            assert_eq!(end["logOffset"], n, "{ctx}: batch {n} reads its own file list of '{}': {end}", sources[*src]);
            if let Some(list) = chaos.history.lists[sources[*src]].get(&n) {
                // A list names each file by its path (with its size, time and ETag since version 2).
                let paths: Vec<&str> = list["files"].as_array().unwrap().iter().map(|f| f.get("path").unwrap_or(f).as_str().unwrap()).collect();
                assert_eq!(paths, *group, "{ctx}: batch {n} takes the next files of '{}' in name order", sources[*src]);
            }
            rows.extend(group.iter().flat_map(|f| files[&(*src, f.clone())].clone()));
        }
        inputs.push(rows);
    }
    assert_eq!(data_batches, batches.len(), "{ctx}: every file is taken");
    inputs
}

/// The windowed scenario's hopping windows: 2 minutes long, one starting every minute.
const WINDOW_SIZE_MS: i64 = 120_000;
const WINDOW_SLIDE_MS: i64 = 60_000;

const WINDOW_QUERY: &str = "INSERT INTO out
SELECT CAST(extract(epoch FROM window_start) AS BIGINT) AS start_s, CAST(extract(epoch FROM window_end) AS BIGINT) AS end_s,
       user, count(*) AS n, sum(amount) AS total
FROM HOP(events, ts, INTERVAL '1' MINUTE, INTERVAL '2' MINUTE)
GROUP BY window_start, window_end, user;";

/// A row's user (one of four) and amount in the windowed scenario: a hash of the row, so the
/// copies of an event (`dup`) may fall in other groups than the first.
fn window_fields(row: &Row) -> (String, i64) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in row.id.bytes().chain(row.v.bytes()).chain(row.ts_ms.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (format!("k{}", h % 4), (h >> 8) as i64 % 1000 - 300)
}

fn window_json(row: &Row) -> String {
    let (user, amount) = window_fields(row);
    format!(r#"{{"event_id":"{}","v":"{}","ts":"{}","user":"{user}","amount":{amount}}}"#, row.id, row.v, rfc3339(row.ts_ms))
}

/// [`round_rows`] with the on-time rows' times stretched 5 times from the round's start: a
/// round's events then span 20 minutes, and the watermark passes its first windows while the
/// round still runs, so many batches write windows, not only the first of the next round.
/// On-time rows are still never late: a row written before another is at most 61 s * 5 later
/// in event time (a `dup`), less than the 10-minute delay.
fn window_round_rows(round: u32, rng: &mut Rng) -> Vec<Row> {
    let start = round_start_ms(round);
    let mut rows = round_rows(round, rng);
    for row in rows.iter_mut().filter(|r| r.v != "late") {
        row.ts_ms = start + (row.ts_ms - start) * 5;
    }
    rows
}

/// The starts of the hopping windows that hold a row at `ts_ms`: multiples of the slide `s`
/// with `s <= ts < s + size` (Spark's TimeWindowing).
fn window_starts(ts_ms: i64) -> impl Iterator<Item = i64> {
    let last = ts_ms.div_euclid(WINDOW_SLIDE_MS) * WINDOW_SLIDE_MS;
    (0..WINDOW_SIZE_MS / WINDOW_SLIDE_MS).map(move |k| last - k * WINDOW_SLIDE_MS)
}

/// A window group: (window end ms, user).
type WindowKey = (i64, String);

/// One batch of the windowed scenario as [`replay_windows`] computes it.
struct WindowBatch {
    watermark: i64,
    late_watermark: i64,
    /// The groups the batch writes, with their count and sum.
    emitted: BTreeMap<WindowKey, (u64, i64)>,
    /// (row, window) pairs dropped as late.
    late: u64,
}

/// Spark's append-mode windowed aggregation, from its rules and independently of weir's code,
/// replayed over the batches as recorded: the watermark as in [`Model::replay`] (one source);
/// a (row, window) pair whose window ends at or below the previous batch's watermark is late
/// and dropped; the others add to their group; then every group whose window ends at or below
/// the batch's watermark is written, once, and dropped. Also checks the round-based reasoning:
/// every pair of a `late` row is late, no pair of another row is.
fn replay_windows(inputs: &[Vec<Row>], ctx: &str) -> Vec<WindowBatch> {
    let (mut watermark, mut late_watermark) = (0i64, 0i64);
    let mut max_ts: Option<i64> = None;
    let mut state: BTreeMap<WindowKey, (u64, i64)> = BTreeMap::new();
    let mut out = Vec::with_capacity(inputs.len());
    for (n, rows) in inputs.iter().enumerate() {
        let mut b = WindowBatch { watermark, late_watermark, emitted: BTreeMap::new(), late: 0 };
        for row in rows {
            let (user, amount) = window_fields(row);
            for start in window_starts(row.ts_ms) {
                let end = start + WINDOW_SIZE_MS;
                let late = end <= late_watermark;
                assert_eq!(late, row.v == "late", "{ctx}: batch {n}: {row:?} in the window ending {end}, late watermark {late_watermark}");
                if late {
                    b.late += 1;
                    continue;
                }
                let group = state.entry((end, user.clone())).or_default();
                group.0 += 1;
                group.1 += amount;
            }
        }
        let open = state.split_off(&(watermark + 1, String::new()));
        b.emitted = std::mem::replace(&mut state, open);
        for row in rows {
            max_ts = Some(max_ts.map_or(row.ts_ms, |m| m.max(row.ts_ms)));
        }
        late_watermark = watermark;
        watermark = watermark.max(max_ts.map_or(0, |m| m - DELAY_MS));
        out.push(b);
    }
    out
}

/// A hopping-window aggregation (count and sum per window and user, windows of 2 minutes
/// every minute, a 10-minute watermark delay) from a file source, killed and restarted. The
/// rounds make the result independent of how batches were cut: on-time rows are never late
/// (see [`window_round_rows`]), a late row is late for both its windows (it is 2 hours behind
/// a round that starts after a run took all of the previous one), and a group is written once,
/// when the watermark passes its window, in the round or the next. So the table must hold exactly every group of on-time rows whose
/// window ends at or below the final watermark (the last event time - 10 minutes), each once,
/// with its count and sum; and the replay over the batches as recorded must give the
/// watermarks weir recorded, each batch's number of output rows, and the batches that
/// committed to Delta.
#[test]
fn chaos_sigkill_file_source_window_to_delta() {
    let mut chaos = Chaos::new("file source, hopping windows", &["events"], true, ".");
    chaos.state_dir = "window-0";
    let inputs = file_rounds(&mut chaos, " user STRING, amount BIGINT,", WINDOW_QUERY, window_round_rows, window_json);
    let ctx = chaos.ctx();
    let last = chaos.nothing_left();
    assert_eq!(inputs.len() as u64, last + 1, "{ctx}: one input per batch");

    // What the rounds make certain, whatever the batches: every on-time row in its groups,
    // the groups that end by the final watermark written.
    let all: Vec<&Row> = inputs.iter().flatten().collect();
    let final_watermark = all.iter().map(|r| r.ts_ms).max().unwrap() - DELAY_MS;
    let mut expected: BTreeMap<WindowKey, (u64, i64)> = BTreeMap::new();
    for row in all.iter().filter(|r| r.v != "late") {
        let (user, amount) = window_fields(row);
        for start in window_starts(row.ts_ms) {
            let group = expected.entry((start + WINDOW_SIZE_MS, user.clone())).or_default();
            group.0 += 1;
            group.1 += amount;
        }
    }
    expected.retain(|(end, _), _| *end <= final_watermark);
    assert!(expected.len() >= 20, "{ctx}: only {} groups are due; the scenario should write more", expected.len());

    // The replay over the batches as recorded: the same groups, and each batch as weir ran it.
    let model = replay_windows(&inputs, &ctx);
    let mut replayed: BTreeMap<WindowKey, (u64, i64)> = BTreeMap::new();
    for b in &model {
        for (key, value) in &b.emitted {
            assert!(replayed.insert(key.clone(), *value).is_none(), "{ctx}: the replay wrote {key:?} twice");
        }
    }
    assert_eq!(replayed, expected, "{ctx}: the replay over the recorded batches vs the round-based expectation (the test's reasoning)");
    for (n, b) in model.iter().enumerate() {
        let o = &chaos.history.offsets[&(n as u64)];
        assert_eq!(
            (o["batchWatermarkMs"].as_i64(), o["lateEventsWatermarkMs"].as_i64()),
            (Some(b.watermark), Some(b.late_watermark)),
            "{ctx}: batch {n}: (batchWatermarkMs, lateEventsWatermarkMs) as weir recorded them vs the model: {o}"
        );
        let rows = chaos.history.commits[&(n as u64)]["numOutputRows"].as_u64();
        assert_eq!(rows, Some(b.emitted.len() as u64), "{ctx}: commits/{n}.json numOutputRows vs the model");
    }

    // The table, read by the independent reader: each group once, with the model's values.
    let table = chaos.table.read_table(&["start_s", "end_s", "user", "n", "total"]);
    let mut got: BTreeMap<WindowKey, (u64, i64)> = BTreeMap::new();
    for r in table.json["rows"].as_array().unwrap() {
        let (start, end) = (r["start_s"].as_i64().unwrap() * 1000, r["end_s"].as_i64().unwrap() * 1000);
        assert_eq!(end - start, WINDOW_SIZE_MS, "{ctx}: a window of 2 minutes: {r}");
        let key = (end, r["user"].as_str().unwrap().to_string());
        let value = (r["n"].as_u64().unwrap(), r["total"].as_i64().unwrap());
        assert!(got.insert(key, value).is_none(), "{ctx}: a (window, user) is in the table twice: {r}");
    }
    if got != expected {
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| format!("{k:?}: want {v:?}, got {:?}", got.get(k)))
            .chain(got.iter().filter(|(k, _)| !expected.contains_key(*k)).map(|(k, v)| format!("{k:?}: not due, got {v:?}")))
            .take(20)
            .collect();
        panic!("{ctx}: the table's groups differ from the model ({} in the table, {} expected):\n{}", got.len(), expected.len(), wrong.join("\n"));
    }
    let with_output: Vec<u64> = (0..=last).filter(|n| !model[*n as usize].emitted.is_empty()).collect();
    let orphans = chaos.check_log(&table, &with_output);
    eprintln!(
        "chaos {}: seed {}: {} kills landed in {} runs over {} rounds, {:.1} s; {} batches, {} replayed; {} rows in, {} late (row, window) pairs dropped; \
         {} groups written by {} batches; {orphans} orphans\n  kills by timing: {:?}\n  kills by step: {:?}",
        chaos.what,
        chaos.seed,
        chaos.landed,
        chaos.runs,
        chaos.rounds,
        chaos.started.elapsed().as_secs_f64(),
        last + 1,
        chaos.replays,
        all.len(),
        model.iter().map(|b| b.late).sum::<u64>(),
        got.len(),
        with_output.len(),
        chaos.by_trigger,
        chaos.by_step,
    );
}

/// Messages per Kafka batch: small, so a round is many batches.
const MAX_OFFSETS_PER_TRIGGER: i64 = 25;

const PARTITIONS: i32 = 4;

#[test]
fn chaos_sigkill_kafka_source_dedup_to_delta() {
    let mut chaos = Chaos::new("kafka source", &["events"], false, ".");
    let broker = Broker::start();
    broker.create_topic("events", PARTITIONS);
    std::fs::write(
        chaos.dir.join("p.sql"),
        format!(
            "CREATE TABLE events (event_id STRING NOT NULL, v STRING, ts TIMESTAMP,
               WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
             WITH (connector = 'kafka', bootstrap_servers = '{}', topic = 'events', format = 'json',
                   starting_offsets = 'earliest', max_offsets_per_trigger = {MAX_OFFSETS_PER_TRIGGER},
                   connect_timeout = '5s', properties.fetch.wait.max.ms = '50');
             CREATE TABLE out WITH (connector = 'delta', path = 'out');
             {QUERY}",
            broker.bootstrap()
        ),
    )
    .unwrap();
    // Every message by (partition, offset), as the producer reported where it landed.
    let mut landed: HashMap<(i32, i64), Row> = HashMap::new();
    chaos.run(|round, rng| {
        let rows = round_rows(round, rng);
        let mut fresh = 0;
        let mut orig_partition: HashMap<String, i32> = HashMap::new();
        let partitions: Vec<i32> = rows
            .iter()
            .map(|row| match row.v {
                // Event i to partition i % 4; its duplicate to another partition.
                "orig" => {
                    fresh += 1;
                    orig_partition.insert(row.id.clone(), (fresh - 1) % PARTITIONS);
                    (fresh - 1) % PARTITIONS
                }
                "dup" => (orig_partition[&row.id] + 1 + rng.below(3) as i32) % PARTITIONS,
                _ => rng.below(PARTITIONS as u64) as i32,
            })
            .collect();
        let messages = rows.iter().zip(&partitions).map(|(row, p)| Message::value(row.json()).partition(*p));
        let positions = broker.send("events", messages);
        for (row, (p, offset)) in rows.into_iter().zip(positions) {
            landed.insert((p, offset), row);
        }
    });

    let ctx = chaos.ctx();
    let last = chaos.last_batch();
    let offsets = |v: &Value, what: &str| -> BTreeMap<i32, i64> {
        if v.is_null() {
            return (0..PARTITIONS).map(|p| (p, 0)).collect(); // the first batch: 'earliest'
        }
        let parts = v["events"].as_object().unwrap_or_else(|| panic!("{ctx}: {what} is not {{\"events\": {{…}}}}: {v}"));
        parts.iter().map(|(p, o)| (p.parse().unwrap(), o.as_i64().unwrap())).collect()
    };
    let mut inputs = Vec::new();
    let mut previous_end = offsets(&Value::Null, "start");
    for n in 0..=last {
        let (start, end) = chaos.range(n, "events");
        let (start, end) = (offsets(start, &format!("batch {n} start")), offsets(end, &format!("batch {n} end")));
        assert_eq!(start, previous_end, "{ctx}: batch {n} starts where batch {} ended", n as i64 - 1);
        let mut rows = Vec::new();
        for (p, &to) in &end {
            let from = start.get(p).copied().unwrap_or(0);
            assert!(from <= to, "{ctx}: batch {n} partition {p}: {from}..{to}");
            for offset in from..to {
                let row = landed.get(&(*p, offset)).unwrap_or_else(|| panic!("{ctx}: batch {n} reads partition {p} offset {offset}, which was never produced"));
                rows.push(row.clone());
            }
        }
        assert!(rows.len() as i64 <= MAX_OFFSETS_PER_TRIGGER, "{ctx}: batch {n} has {} records", rows.len());
        inputs.push(rows);
        previous_end = end;
    }
    let mut produced: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    for (p, offset) in landed.keys() {
        let end = produced.get_mut(p).unwrap();
        *end = (*end).max(offset + 1);
    }
    assert_eq!(previous_end, produced, "{ctx}: the last batch ends at the end of every partition");
    chaos.check(&inputs, &expected_ids(chaos.rounds));
}
