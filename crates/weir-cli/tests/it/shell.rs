//! `weir shell`: through a real pseudo-terminal (typing, live rows, Ctrl-C, background
//! queries, leaving), against a real Kafka broker, and with statements piped in (every
//! statement and command, errors as `weir run` prints them).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rexpect::session::PtySession;

use crate::support::kafka::{Broker, event_messages};
use crate::support::*;

/// How long any one expected output may take on a loaded machine.
const PATIENCE_MS: u64 = 120_000;

/// `weir shell` with `input` on stdin (and `args`), which must end within two minutes.
fn piped(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = weir(dir)
        .arg("shell")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(PATIENCE_MS);
            while Instant::now() < deadline {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            true
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(!watchdog.join().unwrap(), "weir shell did not finish within {PATIENCE_MS} ms; stderr:\n{}", stderr(&out));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SOURCE: &str = "CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE)
  WITH (connector = 'file', path = 'in', format = 'json');";

/// Every statement and command, piped in: results on stdout as plain text, messages on
/// stderr, exit code 0; the pipeline's Delta table holds each row once.
#[test]
fn a_piped_script_runs_every_statement_and_command() {
    let (_tmp, dir) = scratch();
    write_file(&dir.join("in"), "1.json", &events(0..10));
    std::fs::write(dir.join("more.sql"), "-- an included script\nSHOW TABLES;\n").unwrap();
    let script = format!(
        "{SOURCE}
CREATE TABLE clean WITH (connector = 'delta', path = 'out/clean');
CREATE TABLE secret (k STRING) WITH (connector = 'kafka', bootstrap_servers = 'localhost:1', topic = 't',
  format = 'json', properties.sasl.password = 'hunter2');
SHOW TABLES;
DESCRIBE secret;
\\timing on
-- a preview in a script shows what the source holds now, then ends
SELECT id, amount
FROM events WHERE amount >= 0;
\\timing off
SET result_mode = changelog;
SELECT id FROM events WHERE id < 3;
SET result_mode = table;
SELECT id FROM events WHERE id < 3;
\\explain SELECT id FROM events WHERE amount >= 0
SET trigger = 'available-now';
INSERT INTO clean SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;
\\wait clean
SHOW QUERIES;
SHOW PROGRESS clean;
STOP QUERY clean;
SELECT count(*) AS n, sum(id) AS ids FROM clean;
DROP TABLE secret;
\\i more.sql
\\help
help
"
    );
    // One thread: the preview's rows come in the file's order.
    let out = piped(&dir, &["--threads", "1"], &script);
    assert_ok(&out);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(!o.contains('\x1b') && !e.contains('\x1b'), "no colour, no status line off a terminal:\n{o}\n{e}");
    assert!(!o.contains("weir> ") && !e.contains("weir> "), "no prompt");
    // SHOW TABLES, DESCRIBE with the secret redacted.
    assert!(o.contains("| clean  | delta     | sink, stream, static |"), "{o}");
    assert!(o.contains("| events | file      | source               |"), "{o}");
    assert!(o.contains("secret (source, connector 'kafka')"), "{o}");
    assert!(o.contains("properties.sasl.password = '****'") && !o.contains("hunter2"), "{o}");
    assert!(e.contains("timing is on") && e.contains("Time: "), "{e}");
    // The preview: the rows there, in the tail layout, then the changelog and table modes.
    assert!(o.contains("id       | amount\n---------+---------\n0        | 0.0\n"), "{o}");
    assert!(o.contains("8        | 12.0\n"), "{o}");
    assert!(e.contains("(5 rows; preview stopped)"), "{e}");
    assert!(o.contains("op | id\n---+---------\n+I | 0\n+I | 1\n+I | 2\n"), "{o}");
    assert!(o.contains("+----+\n| id |\n+----+\n| 0  |\n| 1  |\n| 2  |\n+----+\n"), "{o}");
    // \explain: sources, state and the per-batch plan.
    assert!(o.contains("sources: events (file)\nstate: none: the query is stateless"), "{o}");
    assert!(o.contains("per batch:\n") && o.contains("FilterExec"), "{o}");
    // The pipeline, its listing, progress and stop.
    assert!(e.contains("query 'clean' (id ") && e.contains("started in the background; checkpoint "), "{e}");
    assert!(o.contains("| name  | id "), "{o}");
    assert!(o.contains("| stopped | 0     |"), "{o}");
    assert!(o.contains("\"numInputRows\": 10"), "{o}");
    assert!(e.contains("query 'clean' stopped after batch 0"), "{e}");
    // A static SELECT over the Delta table the pipeline wrote.
    assert!(o.contains("| n | ids |\n+---+-----+\n| 5 | 20  |"), "{o}");
    assert!(e.contains("table 'secret' dropped"), "{e}");
    assert!(o.matches("| events | file      | source               |").count() == 2, "\\i ran SHOW TABLES again:\n{o}");
    assert!(!o.rsplit("| name ").next().unwrap().contains("| secret"), "dropped: {o}");
    assert_eq!(o.matches("Statements end with ';'").count(), 2, "\\help and help: {o}");
    assert!(!dir.join("out/clean_preview").exists() && !dir.join(".weir/checkpoints/preview").exists(), "previews leave nothing");
    assert_eq!(DeltaView::read(&dir.join("out/clean")).rows(), expected_rows(0..10));
}

/// Errors stop a script with exit code 1, printed as `weir run` prints them, at the line
/// inside the input; statements after the error do not run.
#[test]
fn a_piped_script_stops_at_its_first_error_as_weir_run_reports_it() {
    let (_tmp, dir) = scratch();
    let bad = "CREATE TABLE e (id BIGINT)\n  WITH (connector = 'file',\n        formt = 'json', path = 'in');\n";
    std::fs::write(dir.join("bad.sql"), format!("{bad}CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT id FROM e;\n")).unwrap();
    let run = run(&dir, "bad.sql", &[]);
    let run_error = stderr(&run).lines().find(|l| l.starts_with("error: ")).expect("weir run fails").replace("bad.sql:", "");
    assert!(run_error.contains("3: unknown option 'formt'"), "{run_error}");

    let out = piped(&dir, &[], &format!("SHOW TABLES;\n{bad}SHOW TABLES;\n"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = stderr(&out).lines().find(|l| l.starts_with("error: ")).unwrap().replace("<stdin>:", "");
    // The same message, at line 4 of the input (line 3 of the statement that starts on 2).
    assert_eq!(error, run_error.replace(" 3: ", " 4: "), "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("| name ").count(), 1, "the statement after the error did not run");

    // A statement that does not parse, in -c, with the parser's message.
    let out = piped(&dir, &["-c", "SHOW TABLES;\nSHOW JOBS;"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error: -c:2: expected TABLES, QUERIES or PROGRESS after SHOW, found 'JOBS'"), "{}", stderr(&out));

    // An error inside a file run with \i names the file and its line.
    std::fs::write(dir.join("inc.sql"), "SHOW TABLES;\n\nDESCRIBE nothing;\n").unwrap();
    let out = piped(&dir, &[], "\\i inc.sql\nSHOW TABLES;\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error: inc.sql:3: no table 'nothing' (no tables are declared)"), "{}", stderr(&out));

    // Unknown commands and settings, and the statements weir run has no use for.
    for (input, message) in [
        ("\\frob", "error: <stdin>:1: unknown command \\frob; \\help lists the commands"),
        ("SET result_mod = table;", "error: <stdin>:1: unknown setting 'result_mod'; did you mean 'result_mode'?"),
        ("STOP QUERY clean;", "error: <stdin>:1: no query 'clean' (no query was started in this session"),
        ("SELECT * FROM nowhere;", "error: <stdin>:1: table 'nowhere' not found"),
    ] {
        let out = piped(&dir, &[], input);
        assert_eq!(out.status.code(), Some(1), "{input}");
        assert!(stderr(&out).contains(message), "{input}: {}", stderr(&out));
    }
}

/// DROP TABLE is refused while a running query reads the table; the error ends the script,
/// and the running query is stopped after its batch: its table holds whole batches.
#[test]
fn drop_table_is_refused_while_a_query_uses_it() {
    let (_tmp, dir) = scratch();
    write_file(&dir.join("in"), "1.json", &events(0..10));
    let script = format!(
        "{SOURCE}
CREATE TABLE clean WITH (connector = 'delta', path = 'out/clean');
INSERT INTO clean SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;
DROP TABLE events;
"
    );
    let out = piped(&dir, &[], &script);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: <stdin>:5: table 'events' is used by the running query 'clean' (id "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("weir: query 'clean' stopped"), "{}", stderr(&out));
    if dir.join("out/clean/_delta_log").exists() {
        assert_eq!(DeltaView::read(&dir.join("out/clean")).rows(), expected_rows(0..10), "whole batches only");
    }
    // --yes at the end of a script stops what still runs instead of waiting for it.
    let script = format!(
        "{SOURCE}
CREATE TABLE clean WITH (connector = 'delta', path = 'out/clean');
INSERT INTO clean SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;
"
    );
    let out = piped(&dir, &["--yes"], &script);
    assert_ok(&out);
    assert!(stderr(&out).contains("weir: query 'clean' stopped"), "{}", stderr(&out));
}

/// `weir shell` on a terminal: `dir` as its working directory, the history in `dir`.
fn terminal(dir: &Path, colour: bool) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("shell").current_dir(dir).env("TERM", "xterm").env("WEIR_HISTORY", dir.join("history")).env_remove("WEIR_FAILPOINT");
    if colour {
        cmd.env_remove("NO_COLOR");
    } else {
        cmd.env("NO_COLOR", "1");
    }
    rexpect::session::spawn_command(cmd, Some(PATIENCE_MS)).expect("weir shell starts on a pseudo-terminal")
}

/// Sends `line`, waits for `marker` in what follows, then for the next prompt.
fn type_line(p: &mut PtySession, line: &str, marker: &str) -> String {
    p.send_line(line).unwrap();
    let before = p.exp_string(marker).unwrap_or_else(|e| panic!("after {line:?}, expected {marker:?}: {e}"));
    p.exp_string("weir> ").unwrap_or_else(|e| panic!("after {line:?}, no prompt: {e}"));
    before
}

/// The whole interactive path on a real terminal and a real file source: a statement over
/// two lines, one refused before it runs, a live preview that shows a file written while it
/// runs, Ctrl-C back to the prompt, a pipeline in the background, SHOW QUERIES, STOP QUERY,
/// leaving with a query running (asked, refused, asked again), and the Delta table read by
/// the independent reader: each row exactly once.
#[test]
fn a_terminal_session_previews_live_rows_and_runs_a_pipeline() {
    let (_tmp, dir) = scratch();
    write_file(&dir.join("in"), "1.json", &events(0..10));
    let mut p = terminal(&dir, true);
    p.exp_string("\\help for help").unwrap();
    p.exp_string("weir> ").unwrap();

    // Two lines, one statement: the first line alone is not complete.
    p.send_line("CREATE TABLE events (id BIGINT, user STRING, amount DOUBLE)").unwrap();
    type_line(&mut p, "  WITH (connector = 'file', path = 'in', format = 'json');", "table 'events' declared");
    // Highlighting on a terminal: the keyword as typed, in colour.
    let echoed = type_line(&mut p, "SHOW TABLES;", "(1 row)");
    assert!(echoed.contains("\x1b[1;34mSHOW\x1b[0m"), "keywords in colour: {echoed:?}");
    // Tab completes a table name in the editor.
    p.send("DESCRIBE ev\t").unwrap();
    type_line(&mut p, ";", "events (source, connector 'file')");
    // A statement that does not parse is refused with the parser's message and stays in
    // the line; Ctrl-C drops it.
    p.send_line("SHOW JOBS;").unwrap();
    p.exp_string("error: line 1: expected TABLES, QUERIES or PROGRESS after SHOW, found 'JOBS'").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("weir> ").unwrap();

    // A live preview: the file there, then one written while it runs; Ctrl-C stops it.
    p.send_line("SELECT id, amount").unwrap();
    p.send_line("FROM events WHERE amount >= 0;").unwrap();
    p.exp_string("8        | 12.0").unwrap();
    p.exp_string("batch 0").unwrap();
    write_file(&dir.join("in"), "2.json", &events(10..20));
    p.exp_string("18       | 27.0").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("(10 rows; preview stopped)").unwrap();
    p.exp_string("weir> ").unwrap();

    // A pipeline in the background, then its rows in the sink, read by the shell.
    type_line(&mut p, "CREATE TABLE clean WITH (connector = 'delta', path = 'out/clean');", "table 'clean' declared");
    type_line(
        &mut p,
        "INSERT INTO clean SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;",
        "started in the background; checkpoint ",
    );
    let deadline = Instant::now() + Duration::from_millis(PATIENCE_MS);
    loop {
        p.send_line("SELECT count(*) AS n FROM clean;").unwrap();
        let (_, found) = p.exp_regex(r"\| \d+ +\||error: [^\r\n]+").unwrap();
        p.exp_string("weir> ").unwrap();
        if found == "| 10 |" {
            break;
        }
        assert!(Instant::now() < deadline, "the pipeline wrote no 10 rows in time; last: {found}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let listing = type_line(&mut p, "SHOW QUERIES;", "(1 row)");
    assert!(listing.contains("| clean |") && listing.contains("| running |"), "{listing}");
    type_line(&mut p, "STOP QUERY clean;", "query 'clean' stopped after batch");
    let listing = type_line(&mut p, "SHOW QUERIES;", "(1 row)");
    assert!(listing.contains("| stopped |"), "{listing}");

    // Leaving with a query running asks first.
    type_line(&mut p, "INSERT INTO clean SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;", "started");
    p.send_line("\\quit").unwrap();
    p.exp_string("1 query is running (clean): stop after their batch in flight and leave? [y/N]").unwrap();
    p.send_line("n").unwrap();
    p.exp_string("weir> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_string("leave? [y/N]").unwrap();
    p.send_line("y").unwrap();
    p.exp_string("weir: query 'clean' stopped").unwrap();
    p.exp_eof().unwrap();

    assert_eq!(DeltaView::read(&dir.join("out/clean")).rows(), expected_rows(0..20), "each row exactly once");
    let history = std::fs::read_to_string(dir.join("history")).unwrap();
    assert!(history.contains("SHOW QUERIES;") && history.contains("STOP QUERY clean;"), "{history}");
    assert!(!dir.join(".weir/checkpoints/preview").exists(), "the preview kept no checkpoint");
}

/// A live preview of a Kafka topic on a real broker: `SET starting_offsets = earliest`
/// shows what the topic holds, then records produced while it runs; Ctrl-C returns to the
/// prompt. With NO_COLOR nothing is coloured.
#[test]
fn a_terminal_session_previews_a_kafka_topic() {
    let (_tmp, dir) = scratch();
    let broker = Broker::start();
    broker.create_topic("events", 4);
    broker.send("events", event_messages(0..20));
    let mut p = terminal(&dir, false);
    p.exp_string("weir> ").unwrap();
    type_line(
        &mut p,
        &format!(
            "CREATE TABLE events (event_id STRING, user_id BIGINT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'kafka', bootstrap_servers = '{}', topic = 'events', format = 'json', properties.fetch.wait.max.ms = '50');",
            broker.bootstrap()
        ),
        "table 'events' declared",
    );
    // By default a preview starts at the latest offsets: records produced while it runs
    // show, the 20 there before do not. A record a second is produced until one shows (the
    // preview may take its start offsets after the first few).
    p.send_line("SELECT event_id, user_id FROM events;").unwrap();
    let seen = std::sync::atomic::AtomicBool::new(false);
    let before = std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 100..400 {
                if seen.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                broker.send("events", event_messages(n..n + 1));
                std::thread::sleep(Duration::from_millis(1000));
            }
        });
        let (before, _) = p.exp_regex(r"e[1-3]\d\d +\|").unwrap();
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
        before
    });
    assert!(!regex_like_old_row(&before), "a preview at latest showed a record produced before it: {before}");
    p.send_control('c').unwrap();
    p.exp_string("preview stopped)").unwrap();
    p.exp_string("weir> ").unwrap();

    type_line(&mut p, "SET starting_offsets = earliest;", "starting_offsets = earliest");
    p.send_line("SELECT event_id, user_id FROM events WHERE user_id >= 5;").unwrap();
    p.exp_string("e5 ").unwrap();
    p.exp_string("e19 ").unwrap();
    broker.send("events", event_messages(20..40));
    p.exp_string("e39 ").unwrap();
    p.send_control('c').unwrap();
    let (before, _) = p.exp_regex(r"\(\d+ rows; preview stopped\)").unwrap();
    p.exp_string("weir> ").unwrap();
    assert!(!before.contains("\x1b[1;34m"), "NO_COLOR: no highlighting");

    // Table mode: the rows in a table, redrawn as batches come.
    type_line(&mut p, "SET result_mode = table;", "result_mode = table");
    p.send_line("SELECT event_id FROM events WHERE user_id >= 35;").unwrap();
    p.exp_string("| e39      |").unwrap();
    p.send_control('c').unwrap();
    p.exp_regex(r"\(\d+ rows; preview stopped\)").unwrap();
    p.exp_string("weir> ").unwrap();
    p.send_line("\\quit").unwrap();
    p.exp_eof().unwrap();
}

/// A background query that fails is reported once, by name, with the batch's error (as
/// `weir run` reports it), and the script's exit code says so.
#[test]
fn a_failed_background_query_is_reported_by_name() {
    let (_tmp, dir) = scratch();
    let mut lines = events(0..4);
    lines.push("{not json".to_string());
    write_file(&dir.join("in"), "1.json", &lines);
    let script = format!(
        "{SOURCE}
CREATE TABLE clean WITH (connector = 'delta', path = 'out/clean');
SET trigger = 'available-now';
INSERT INTO clean SELECT id, upper(user) AS user, amount FROM events WHERE amount >= 0;
"
    );
    let out = piped(&dir, &[], &script);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert_eq!(e.matches("error: query 'clean' (id ").count(), 1, "{e}");
    assert!(e.contains(") failed: batch 0: ") && e.contains("1.json:5"), "{e}");
    assert!(!dir.join("out/clean/_delta_log").exists(), "nothing of the failed batch was written");
}

/// Whether `text` holds a preview row of events 0 to 99 (`e7       | 7`).
fn regex_like_old_row(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start_matches(|c: char| c == '\r' || c.is_whitespace());
        l.strip_prefix('e').and_then(|rest| rest.split_whitespace().next()).is_some_and(|n| n.len() <= 2 && n.chars().all(|c| c.is_ascii_digit()))
    })
}
