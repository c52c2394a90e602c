//! The streaming conformance suite: every `sql/conformance/*.test` file, run through the
//! library API with real file sources, one micro-batch at a time.
//!
//! Format (blocks separated by blank lines, `#` starts a comment line):
//!
//! ```text
//! statement ok                 | statement error <substring>
//! CREATE TABLE ...             (SQL; `$DIR` is the case's scratch directory)
//!
//! query                        | query error <substring>
//! INSERT INTO sink SELECT ...  (the continuous query; the sink must be connector 'memory')
//!
//! file <source>                (stage one new file for a file source, not run yet)
//! <lines of the file>
//!
//! batch [<source>] [error <substring>]
//! <lines of a new file for <source>, if named>
//! ----
//! <expected rows written, columns joined by |, NULL for null; any order>
//!
//! state [op=<i>] total=<n> updated=<n> removed=<n> late=<n> duplicates=<n>   (any subset;
//!                              op: the operator's index in progress's stateOperators, Spark's
//!                              order from the sink down; default 0)
//!
//! watermark <yyyy-mm-ddThh:mm:ss.sssZ>   (the watermark of the last batch that ran)
//!
//! trigger once | available-now   (for the batches that follow; default available-now)
//! watermark-policy min | max      (how several sources' watermarks combine; default min)
//! also continuous                 (first line: run the case a second time, in one query)
//! ```
//!
//! Each `batch` starts the query again on the same checkpoint, so every case also exercises
//! the restart path. With `available-now` it runs every batch that is due, no-data batches
//! (state eviction) included, as Spark's `processAllAvailable`; with `once`, one batch.
//! `state` checks the stateful operator's metrics over those batches: `total` after the last,
//! the others summed. `WEIR_COMPLETE=1` rewrites the expected rows, and
//! `WEIR_CONFORMANCE=<part of a file name>` runs only the matching files.
//!
//! A case marked `also continuous` runs a second time through ONE query that never stops:
//! each `batch` stages its file and waits for `process_all_available`. Its `watermark`
//! checks must hold there too, and the rows it writes in all must be the restarted run's:
//! where the process restarted must not change the results. (Rows per batch are not checked
//! in that run: a file staged with `file` may be taken by a batch of its own there.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use weir_runtime::{QueryOptions, Session, SessionConfig, Trigger};

/// One case file, parsed into blocks.
struct Block {
    /// 0-based line of the directive.
    line: usize,
    directive: String,
    body: Vec<String>,
    /// For `batch`: the expected rows, and the line range they occupy (for --complete).
    expected: Option<(Vec<String>, std::ops::Range<usize>)>,
}

fn parse_blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_end();
        if l.trim().is_empty() || l.starts_with('#') {
            i += 1;
            continue;
        }
        let mut block = Block { line: i, directive: l.trim().to_string(), body: Vec::new(), expected: None };
        i += 1;
        while i < lines.len() && !lines[i].trim().is_empty() {
            if lines[i].trim() == "----" {
                let start = i + 1;
                let mut rows = Vec::new();
                i += 1;
                while i < lines.len() && !lines[i].trim().is_empty() {
                    rows.push(lines[i].trim_end().to_string());
                    i += 1;
                }
                block.expected = Some((rows, start..i));
                break;
            }
            if !lines[i].starts_with('#') {
                block.body.push(lines[i].to_string());
            }
            i += 1;
        }
        blocks.push(block);
    }
    blocks
}

fn render(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let formatters: Vec<_> =
            b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable")).collect();
        for r in 0..b.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(r).to_string()).collect::<Vec<_>>().join("|"));
        }
    }
    rows.sort();
    rows
}

struct Case {
    path: PathBuf,
    dir: tempfile::TempDir,
    session: Session,
    query: Option<weir_sql::Insert>,
    file_seq: usize,
    trigger: Trigger,
    watermark_policy: weir_runtime::WatermarkPolicy,
    /// Progress of the batches the last `batch` directive ran.
    last_progress: Vec<weir_runtime::QueryProgress>,
    /// In the continuous run: the one query, started at the first `batch`.
    running: Option<weir_runtime::StreamingQuery>,
}

impl Case {
    fn where_(&self, block: &Block) -> String {
        format!("{}:{}", self.path.display(), block.line + 1)
    }

    fn substitute(&self, sql: &str) -> String {
        sql.replace("$DIR", &self.dir.path().display().to_string())
    }

    fn stage_file(&mut self, source: &str, lines: &[String], at: &str) {
        let table = self.session.tables().get(source).unwrap_or_else(|| panic!("{at}: no table '{source}'"));
        let path = table.create.options.get("path").unwrap_or_else(|| panic!("{at}: '{source}' has no path")).value.clone();
        let ext = table.create.options.get("format").map_or("json".to_string(), |f| f.value.clone());
        std::fs::create_dir_all(&path).unwrap();
        self.file_seq += 1;
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(Path::new(&path).join(format!("{:05}.{ext}", self.file_seq)), text).unwrap();
    }

    /// Continuous run: starts the one query if needed, then waits until it has processed
    /// everything staged so far.
    async fn run_continuously(&mut self, at: &str) -> Result<(), String> {
        let insert = self.query.clone().unwrap_or_else(|| panic!("{at}: batch before query"));
        if self.running.is_none() {
            let options = QueryOptions {
                checkpoint: Some(self.dir.path().join(format!("checkpoint-{}", insert.sink)).display().to_string()),
                trigger: Trigger::ProcessingTime(std::time::Duration::ZERO),
                name: None,
                watermark_policy: self.watermark_policy,
                ..Default::default()
            };
            self.running = Some(self.session.start(&insert, options).await.map_err(|e| e.to_string())?);
        }
        let query = self.running.as_ref().expect("started");
        query.process_all_available().await.map_err(|e| e.to_string())?;
        self.last_progress = query.recent_progress();
        Ok(())
    }

    async fn run_batch(&mut self, at: &str) -> Result<Vec<String>, String> {
        let insert = self.query.clone().unwrap_or_else(|| panic!("{at}: batch before query"));
        let before = self.session.memory_table(&insert.sink).map_or(0, |t| t.batches.len());
        let options = QueryOptions {
            checkpoint: Some(self.dir.path().join(format!("checkpoint-{}", insert.sink)).display().to_string()),
            trigger: self.trigger,
            name: None,
            watermark_policy: self.watermark_policy,
            ..Default::default()
        };
        let query = self.session.start(&insert, options).await.map_err(|e| e.to_string())?;
        let outcome = query.await_termination().await.map_err(|e| e.to_string());
        self.last_progress = query.recent_progress();
        outcome?;
        let table = self.session.memory_table(&insert.sink).unwrap_or_default();
        let new: Vec<RecordBatch> = table.batches[before..].iter().flat_map(|(_, b)| b.iter().cloned()).collect();
        Ok(render(&new))
    }
}

fn expect_error(at: &str, result: Result<(), String>, wanted: &str) {
    match result {
        Ok(()) => panic!("{at}: expected an error containing '{wanted}', but it succeeded"),
        Err(e) => assert!(e.contains(wanted), "{at}: expected an error containing '{wanted}', got: {e}"),
    }
}

/// Every row the query wrote to its memory sink, sorted.
fn all_rows(case: &Case) -> Vec<String> {
    let Some(insert) = &case.query else { return Vec::new() };
    let table = case.session.memory_table(&insert.sink).unwrap_or_default();
    render(&table.batches.iter().flat_map(|(_, b)| b.iter().cloned()).collect::<Vec<_>>())
}

async fn run_case(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let restarted = match run_case_as(path, &text, false).await {
        Ok(rows) => rows,
        Err(failure) => return Some(failure),
    };
    if parse_blocks(&text).first().is_none_or(|b| b.directive != "also continuous") {
        return None;
    }
    match run_case_as(path, &text, true).await {
        Err(failure) => Some(format!("{failure} (in the continuous run)")),
        Ok(rows) if rows != restarted => Some(format!(
            "{}: the continuous run wrote other rows than the restarted one\n  restarted:  {restarted:?}\n  continuous: {rows:?}",
            path.display()
        )),
        Ok(_) => None,
    }
}

/// Runs a case, restarting the query for every batch or (`continuous`) in one query;
/// returns every row written, or what failed.
async fn run_case_as(path: &Path, text: &str, continuous: bool) -> Result<Vec<String>, String> {
    let blocks = parse_blocks(text);
    let mut case = Case {
        path: path.to_path_buf(),
        dir: tempfile::tempdir().unwrap(),
        session: Session::new(SessionConfig::default()),
        query: None,
        file_seq: 0,
        trigger: Trigger::AvailableNow,
        watermark_policy: Default::default(),
        last_progress: Vec::new(),
        running: None,
    };
    let complete = !continuous && std::env::var("WEIR_COMPLETE").is_ok_and(|v| v == "1");
    let mut rewrites: BTreeMap<usize, (std::ops::Range<usize>, Vec<String>)> = BTreeMap::new();
    for block in &blocks {
        let at = case.where_(block);
        let words: Vec<&str> = block.directive.splitn(3, ' ').collect();
        let sql = case.substitute(&block.body.join("\n"));
        match words.as_slice() {
            ["statement", rest @ ..] => {
                let result = async {
                    for stmt in weir_sql::parse_script(&sql).map_err(|e| e.to_string())? {
                        let weir_sql::Statement::CreateTable(c) = stmt else { return Err("statement blocks take CREATE TABLE".to_string()) };
                        // A file source's directory exists before the pipeline starts.
                        if c.connector == "file"
                            && let Some(path) = c.options.get("path")
                        {
                            std::fs::create_dir_all(&path.value).map_err(|e| e.to_string())?;
                        }
                        case.session.create_table(c).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                }
                .await;
                match rest {
                    ["ok"] => result.unwrap_or_else(|e| panic!("{at}: {e}")),
                    ["error", msg @ ..] => expect_error(&at, result, &msg.join(" ")),
                    _ => panic!("{at}: write 'statement ok' or 'statement error <message>'"),
                }
            }
            ["query", rest @ ..] => {
                let stmt = weir_sql::parse_script(&sql).map(|mut s| s.remove(0));
                let insert = match stmt {
                    Ok(weir_sql::Statement::Insert(i)) => Ok(i),
                    Ok(_) => panic!("{at}: query blocks take INSERT INTO"),
                    Err(e) => Err(e.to_string()),
                };
                match rest {
                    [] => case.query = Some(insert.unwrap_or_else(|e| panic!("{at}: {e}"))),
                    ["error", msg @ ..] => {
                        let wanted = msg.join(" ");
                        let result = match insert {
                            Err(e) => Err(e),
                            Ok(i) => {
                                case.query = Some(i);
                                let started = case.run_batch(&at).await.map(|_| ());
                                case.query = None;
                                started
                            }
                        };
                        expect_error(&at, result, &wanted);
                    }
                    _ => panic!("{at}: write 'query' or 'query error <message>'"),
                }
            }
            ["also", "continuous"] => {}
            ["watermark", want] => {
                let last = case.last_progress.last().unwrap_or_else(|| panic!("{at}: no batch ran before"));
                let got = last.event_time.as_ref().map(|e| e.watermark.clone()).unwrap_or_else(|| panic!("{at}: no watermark"));
                if got != *want {
                    return Err(format!("{at}: watermark of batch {} is {got}, expected {want}", last.batch_id));
                }
            }
            ["file", source] => case.stage_file(source, &block.body, &at),
            ["trigger", "once"] => case.trigger = Trigger::Once,
            ["trigger", "available-now"] => case.trigger = Trigger::AvailableNow,
            ["watermark-policy", policy] => case.watermark_policy = policy.parse().unwrap_or_else(|e| panic!("{at}: {e}")),
            ["state", ..] if continuous => {}
            ["state", ..] => {
                let mut checks: Vec<&str> = block.directive.split_whitespace().skip(1).collect();
                let index = match checks.first().and_then(|c| c.strip_prefix("op=")) {
                    Some(i) => {
                        checks.remove(0);
                        i.parse::<usize>().unwrap_or_else(|_| panic!("{at}: op=<index in stateOperators>"))
                    }
                    None => 0,
                };
                let ops: Vec<&serde_json::Value> =
                    case.last_progress.iter().filter_map(|p| p.state_operators.get(index)).collect();
                assert!(!ops.is_empty(), "{at}: the last batch directive ran no batch with state operator {index}");
                for check in checks {
                    let (name, want) = check.split_once('=').unwrap_or_else(|| panic!("{at}: write name=value"));
                    let want: u64 = want.parse().unwrap_or_else(|_| panic!("{at}: {check}: not a number"));
                    let field = |op: &serde_json::Value| -> u64 {
                        match name {
                            "total" => op["numRowsTotal"].as_u64(),
                            "updated" => op["numRowsUpdated"].as_u64(),
                            "removed" => op["numRowsRemoved"].as_u64(),
                            "late" => op["numRowsDroppedByWatermark"].as_u64(),
                            "duplicates" => op["customMetrics"]["numDroppedDuplicateRows"].as_u64(),
                            other => panic!("{at}: unknown state metric '{other}'"),
                        }
                        .expect("metric present")
                    };
                    let got = if name == "total" { field(ops[ops.len() - 1]) } else { ops.iter().map(|o| field(o)).sum() };
                    if got != want {
                        return Err(format!("{at}: state {name} is {got}, expected {want} (batches: {})", ops.len()));
                    }
                }
            }
            ["batch", rest @ ..] => {
                let (source, error) = match rest {
                    [] => (None, None),
                    ["error", msg @ ..] => (None, Some(msg.join(" "))),
                    [source] => (Some(*source), None),
                    [source, tail] => match tail.split_once(' ') {
                        Some(("error", msg)) => (Some(*source), Some(msg.to_string())),
                        _ => panic!("{at}: write 'batch [<source>] [error <message>]'"),
                    },
                    _ => unreachable!(),
                };
                if let Some(source) = source {
                    case.stage_file(source, &block.body, &at);
                }
                if continuous {
                    let result = case.run_continuously(&at).await;
                    match error {
                        Some(wanted) => {
                            expect_error(&at, result, &wanted);
                            case.running = None;
                        }
                        None => result.unwrap_or_else(|e| panic!("{at}: batch failed: {e}")),
                    }
                    continue;
                }
                let result = case.run_batch(&at).await;
                match error {
                    Some(wanted) => expect_error(&at, result.map(|_| ()), &wanted),
                    None => {
                        let got = result.unwrap_or_else(|e| panic!("{at}: batch failed: {e}"));
                        let (want, range) = block.expected.clone().unwrap_or_else(|| panic!("{at}: batch needs ---- and the expected rows"));
                        let mut want_sorted = want.clone();
                        want_sorted.sort();
                        if complete {
                            rewrites.insert(range.start, (range, got));
                        } else if got != want_sorted {
                            return Err(format!("{at}: rows differ\n  expected: {want_sorted:?}\n  got:      {got:?}"));
                        }
                    }
                }
            }
            _ => panic!("{at}: unknown directive '{}'", block.directive),
        }
    }
    if complete && !rewrites.is_empty() {
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i <= lines.len() {
            if let Some((range, rows)) = rewrites.get(&i) {
                out.extend(rows.iter().cloned());
                // An empty block of expected rows takes no line: go on with this one.
                if range.end > i {
                    i = range.end;
                    continue;
                }
            }
            if let Some(line) = lines.get(i) {
                out.push(line.to_string());
            }
            i += 1;
        }
        std::fs::write(path, out.join("\n") + "\n").unwrap();
    }
    if let Some(query) = case.running.take() {
        query.stop();
        query.await_termination().await.map_err(|e| format!("{}: the continuous query failed: {e}", path.display()))?;
    }
    Ok(all_rows(&case))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        // WEIR_CONFORMANCE=<part of a file name> runs only the matching cases.
        .filter(|p| std::env::var("WEIR_CONFORMANCE").is_ok_and(|only| p.to_string_lossy().contains(&only)) || std::env::var("WEIR_CONFORMANCE").is_err())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no conformance cases in {}", root.display());
    let mut failures = Vec::new();
    for file in &files {
        if let Some(f) = run_case(file).await {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{} of {} conformance files failed:\n{}", failures.len(), files.len(), failures.join("\n"));
    eprintln!("conformance: {} files passed", files.len());
}
