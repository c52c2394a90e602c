//! `weir shell`: an interactive SQL shell over a [`Session`], with live previews of streams,
//! pipelines started in the background, and the statements on the session's catalog.
//!
//! The shell is a client of the library as `weir run` and the Python package are: it hands
//! each statement to [`Session::execute`] and shows what comes back (rows, a live
//! [`weir_runtime::Preview`], a query handle). Split as datafusion-cli's: `helper` for the
//! line editor (validation, completion, highlighting), `render` for output, `commands` for
//! the shell's own commands and settings; this file is the loop. With a terminal on stdin it
//! edits lines with rustyline; otherwise (`weir shell < script.sql`, `-c`) it runs the text
//! as a script: plain output, no prompt, and it stops at the first error.

mod commands;
mod helper;
mod render;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use tokio::runtime::Runtime;
use tokio::signal::unix::{Signal, SignalKind, signal};
use weir_runtime::progress::{QueryIdleEvent, QueryStartedEvent, QueryTerminatedEvent, QueryWarningEvent};
use weir_runtime::{Executed, Preview, QueryListener, QueryOptions, QueryProgress, Session, StreamingQuery, Trigger, WeirError};
use weir_sql::Statement;
use weir_sql::lexer::{StatementText, split_statements, tokenize};

use commands::{Command, HELP, Settings, parse_command};
use helper::{Catalog, ShellHelper, TableInfo, is_command};
use render::{PreviewPrinter, status_line};

/// What the shell was asked to do on the command line.
pub struct ShellArgs {
    /// `-c`: statements to run instead of reading stdin.
    pub command: Option<String>,
    /// `--yes`: leave without asking, stopping running queries after their batch.
    pub yes: bool,
    /// `--threads`.
    pub threads: Option<u16>,
    /// `--metrics-addr`: where to serve the metrics of the queries started in the shell.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Where the text being run came from: it decides how errors name their place.
#[derive(Debug, Clone)]
enum Origin {
    /// Typed at the prompt: `line N` inside what was typed.
    Typed,
    /// A script: `name:N` (stdin, `-c`, or a file given to `\i`).
    Script(String),
}

/// The first error stops a script.
struct Failed;

/// Whether the loop goes on.
enum Flow {
    Continue,
    Quit,
}

/// Runs `weir shell`.
pub fn main(args: ShellArgs) -> ExitCode {
    let Some((mut config, runtime)) = crate::session_and_runtime(args.threads) else {
        return ExitCode::FAILURE;
    };
    config.metrics_addr = args.metrics_addr;
    // From here on Ctrl-C stops a preview (or a wait) instead of killing the shell.
    let interrupts = match runtime.block_on(async { signal(SignalKind::interrupt()) }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
    };
    let interactive = args.command.is_none() && std::io::stdin().is_terminal();
    let terminal = interactive && std::io::stdout().is_terminal();
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let notices = Arc::new(Mutex::new(Vec::new()));
    let mut session = Session::new(config);
    session.add_listener(Arc::new(Notices(Arc::clone(&notices))));
    match runtime.block_on(session.serve_metrics()) {
        Ok(Some(addr)) => eprintln!("metrics at http://{addr}/metrics (health: /healthz, /readyz)"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut shell = Shell {
        session,
        runtime,
        interrupts,
        catalog: Catalog::default(),
        settings: Settings::default(),
        timing: false,
        interactive,
        terminal,
        yes: args.yes,
        notices,
        reported: Default::default(),
    };
    if interactive {
        return shell.interactive(colour);
    }
    let (text, origin) = match args.command {
        Some(c) => (c, Origin::Script("-c".into())),
        None => {
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                eprintln!("error: cannot read the statements on stdin: {e}");
                return ExitCode::FAILURE;
            }
            (text, Origin::Script("<stdin>".into()))
        }
    };
    let ok = shell.run_text(&text, &origin).is_ok();
    // Whatever happened, queries still running end cleanly: after their batch with --yes or
    // after an error, else when they finish (as under `weir run`; Ctrl-C stops them).
    let ended = shell.leave_script(!ok || shell.yes);
    if ok && ended { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Collects the warnings of queries for the next prompt (failures are read from the query
/// handles: see [`Shell::print_notices`]).
struct Notices(Arc<Mutex<Vec<String>>>);

impl QueryListener for Notices {
    fn on_query_started(&self, e: &QueryStartedEvent) {
        for w in &e.warnings {
            self.0.lock().expect("notices lock").push(format!("warning: query '{}': {w}", e.name));
        }
    }
    fn on_query_progress(&self, _p: &QueryProgress) {}
    fn on_query_idle(&self, _e: &QueryIdleEvent) {}
    fn on_query_warning(&self, e: &QueryWarningEvent) {
        self.0.lock().expect("notices lock").push(format!("warning: {}", e.message));
    }
    fn on_query_terminated(&self, _e: &QueryTerminatedEvent) {}
}

struct Shell {
    session: Session,
    runtime: Runtime,
    interrupts: Signal,
    catalog: Catalog,
    settings: Settings,
    timing: bool,
    interactive: bool,
    /// stdout is a terminal: previews keep a status line and redraw tables in place.
    terminal: bool,
    yes: bool,
    notices: Arc<Mutex<Vec<String>>>,
    /// Background queries whose failure was printed.
    reported: std::collections::HashSet<String>,
}

/// Prints to stdout (the shell's results; messages go to stderr).
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

impl Shell {
    /// The prompt loop.
    fn interactive(&mut self, colour: bool) -> ExitCode {
        let config = Config::builder().auto_add_history(false).max_history_size(10_000).map(|b| b.build());
        let mut editor: Editor<ShellHelper, DefaultHistory> = match config.and_then(Editor::with_config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot start the line editor: {e}");
                return ExitCode::FAILURE;
            }
        };
        editor.set_helper(Some(ShellHelper::new(Arc::clone(&self.catalog), colour)));
        let history = history_file();
        if let Some(path) = &history
            && path.exists()
            && let Err(e) = editor.load_history(path)
        {
            eprintln!("warning: cannot read the history in {}: {e}", path.display());
        }
        eprintln!("weir shell {}: statements end with ';', \\help for help, \\quit or Ctrl-D to leave", env!("CARGO_PKG_VERSION"));
        loop {
            self.print_notices();
            match editor.readline("weir> ") {
                Ok(input) => {
                    if input.trim().is_empty() {
                        continue;
                    }
                    let _ = editor.add_history_entry(input.trim_end());
                    if let Some(path) = &history
                        && let Err(e) = editor.save_history(path)
                    {
                        eprintln!("warning: cannot write the history to {}: {e}", path.display());
                    }
                    if let Ok(Flow::Quit) = self.run_text(&input, &Origin::Typed)
                        && self.leave_interactive()
                    {
                        return ExitCode::SUCCESS;
                    }
                }
                // Ctrl-C at the prompt drops the line, as in psql.
                Err(ReadlineError::Interrupted) => {}
                Err(ReadlineError::Eof) => {
                    if self.leave_interactive() {
                        return ExitCode::SUCCESS;
                    }
                }
                Err(e) => {
                    eprintln!("error: reading the input: {e}");
                    self.leave_script(true);
                    return ExitCode::FAILURE;
                }
            }
        }
    }

    /// Prints the warnings that came, and each background query that failed, once (a
    /// preview's failure is its statement's error).
    fn print_notices(&mut self) {
        for notice in std::mem::take(&mut *self.notices.lock().expect("notices lock")) {
            eprintln!("{notice}");
        }
        for q in self.session.queries() {
            if q.sink().is_some()
                && let Some(error) = q.exception()
                && self.reported.insert(q.run_id().to_string())
            {
                eprintln!("error: query '{}' (id {}) failed: {error}", q.name(), q.id());
            }
        }
    }

    /// The queries started with INSERT that are still running.
    fn running(&self) -> Vec<StreamingQuery> {
        self.session.queries().into_iter().filter(|q| q.sink().is_some() && q.is_active()).collect()
    }

    /// Leaving from the prompt: asks before stopping running queries (unless `--yes`).
    fn leave_interactive(&mut self) -> bool {
        let running = self.running();
        if running.is_empty() {
            return true;
        }
        if !self.yes {
            let names: Vec<&str> = running.iter().map(StreamingQuery::name).collect();
            let question = format!(
                "{} running ({}): stop after their batch in flight and leave? [y/N] ",
                if running.len() == 1 { "1 query is".to_string() } else { format!("{} queries are", running.len()) },
                names.join(", ")
            );
            let answer = rustyline::DefaultEditor::new().and_then(|mut e| e.readline(&question)).unwrap_or_default();
            if !answer.trim().eq_ignore_ascii_case("y") && !answer.trim().eq_ignore_ascii_case("yes") {
                return false;
            }
        }
        self.stop_all(&running);
        true
    }

    /// Leaving at the end of a script: stops running queries after their batch (`stop`), or
    /// waits for them to end, Ctrl-C stopping them. False if one failed.
    fn leave_script(&mut self, stop: bool) -> bool {
        let running = self.running();
        if running.is_empty() {
            self.print_notices();
            return self.session.queries().iter().all(|q| q.exception().is_none());
        }
        if !stop {
            let names: Vec<&str> = running.iter().map(StreamingQuery::name).collect();
            eprintln!("weir: waiting for {} to end (Ctrl-C stops after the batch in flight)", names.join(", "));
            let interrupts = &mut self.interrupts;
            self.runtime.block_on(async {
                let all = async {
                    for q in &running {
                        let _ = q.await_termination().await;
                    }
                };
                tokio::select! {
                    () = all => {}
                    _ = interrupts.recv() => {}
                }
            });
        }
        self.stop_all(&running);
        self.print_notices();
        self.session.queries().iter().all(|q| q.exception().is_none())
    }

    /// Stops `queries` after their batch in flight and waits for them.
    fn stop_all(&mut self, queries: &[StreamingQuery]) {
        for q in queries {
            q.stop();
        }
        for q in queries {
            if self.runtime.block_on(q.await_termination()).is_ok() {
                eprintln!("weir: query '{}' stopped{}", q.name(), after_batch(q));
            }
        }
    }

    /// Runs the statements and commands in `text` in order; stops at the first error.
    fn run_text(&mut self, text: &str, origin: &Origin) -> Result<Flow, Failed> {
        let mut buffer = String::new();
        let mut first_line = 1;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let n = i + 1;
            if buffer.trim().is_empty() {
                if is_command(line.trim()) {
                    buffer.clear();
                    if let Flow::Quit = self.command(line.trim(), origin, n)? {
                        return Ok(Flow::Quit);
                    }
                    continue;
                }
                if line.trim().is_empty() {
                    buffer.clear();
                    continue;
                }
                if buffer.is_empty() {
                    first_line = n;
                }
            }
            buffer.push_str(line);
            if tokenize(&buffer, 1).is_ok_and(|t| t.last().is_some_and(|t| t.is_punct(';'))) {
                self.statements(&buffer, first_line, origin)?;
                buffer.clear();
            }
        }
        if !buffer.trim().is_empty() {
            self.statements(&buffer, first_line, origin)?;
        }
        Ok(Flow::Continue)
    }

    /// Runs the statements in `text`, which starts at line `first_line` of its origin.
    fn statements(&mut self, text: &str, first_line: usize, origin: &Origin) -> Result<(), Failed> {
        let offset = first_line - 1;
        let shift = |e: weir_sql::SqlError| WeirError::Sql(weir_sql::SqlError { line: e.line.map(|l| l + offset), message: e.message });
        let pieces = match split_statements(text) {
            Ok(p) => p,
            Err(e) => return Err(self.fail(&shift(e), origin)),
        };
        for piece in pieces {
            let piece = StatementText { text: piece.text, line: piece.line + offset };
            let statement = match weir_sql::parse_statement(&piece) {
                Ok(s) => s,
                Err(e) => return Err(self.fail(&e.into(), origin)),
            };
            let started = Instant::now();
            if let Err(e) = self.execute(statement) {
                return Err(self.fail(&e, origin));
            }
            if self.timing {
                eprintln!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
            }
            self.refresh_catalog();
        }
        Ok(())
    }

    /// Prints `e` as `weir run` would, at its place in `origin`.
    fn fail(&mut self, e: &WeirError, origin: &Origin) -> Failed {
        match origin {
            Origin::Typed => eprintln!("error: {e}"),
            Origin::Script(name) => eprintln!("error: {}", crate::with_file(name, e)),
        }
        self.print_notices();
        Failed
    }

    fn refresh_catalog(&self) {
        let tables = self
            .session
            .tables()
            .iter()
            .map(|(name, def)| TableInfo { name: name.clone(), columns: def.create.columns.iter().map(|f| f.name().clone()).collect() })
            .collect();
        *self.catalog.lock().expect("catalog lock") = tables;
    }

    fn options(&self) -> QueryOptions {
        QueryOptions { trigger: self.settings.trigger, starting_offsets: self.settings.starting_offsets.clone(), ..QueryOptions::default() }
    }

    /// Executes one statement and shows its outcome.
    fn execute(&mut self, statement: Statement) -> Result<(), WeirError> {
        if let Statement::Set { key, value, line } = &statement
            && !key.starts_with("checkpoint.")
        {
            let done = self.settings.set(key, value).map_err(|m| WeirError::Sql(weir_sql::SqlError::at(*line, m)))?;
            eprintln!("{done}");
            return Ok(());
        }
        let mut options = self.options();
        if matches!(statement, Statement::Select(_)) {
            // A preview in a script shows what its sources hold now, then ends; at the
            // prompt it runs until Ctrl-C.
            options.trigger = if self.interactive { Trigger::ProcessingTime(std::time::Duration::ZERO) } else { Trigger::AvailableNow };
        }
        let executed = self.runtime.block_on(self.session.execute(statement, &options))?;
        match executed {
            Executed::Created(name) => eprintln!("table '{name}' declared"),
            Executed::Set(done) => eprintln!("{done}"),
            Executed::Dropped(name) => eprintln!("table '{name}' dropped (its data stays where it is)"),
            Executed::Started(q) => eprintln!(
                "query '{}' (id {}) started in the background; checkpoint {}\n  SHOW QUERIES lists it, STOP QUERY {} stops it after its batch",
                q.name(),
                q.id(),
                q.checkpoint(),
                q.name()
            ),
            Executed::Preview(preview) => self.watch(preview)?,
            Executed::Rows(batches) => {
                let schema = batches.first().map(|b| b.schema());
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                if let Some(schema) = schema {
                    out(&render::table(&schema, &batches));
                }
                eprintln!("({rows} row{})", if rows == 1 { "" } else { "s" });
            }
            Executed::Described(d) => {
                out(&format!("{} ({}, connector '{}')\n", d.name, d.kind, d.connector));
                if d.columns.is_empty() {
                    out("columns: read from the data\n");
                } else {
                    let batch = d.columns_batch();
                    out(&render::table(&batch.schema(), &[batch]));
                }
                if let Some((column, delay)) = &d.watermark {
                    out(&format!("watermark: {column} - INTERVAL '{delay}'\n"));
                }
                out("options:\n");
                for (key, value) in &d.options {
                    out(&format!("  {key} = '{value}'\n"));
                }
            }
            Executed::Stopped(q) => {
                self.runtime.block_on(q.await_termination())?;
                eprintln!("query '{}' stopped{}", q.name(), after_batch(&q));
            }
            Executed::Progress(q, progress) => match progress {
                Some(p) => out(&format!("{}\n", serde_json::to_string_pretty(&p).expect("progress serializes"))),
                None => eprintln!("query '{}' has not finished a batch yet", q.name()),
            },
        }
        Ok(())
    }

    /// Shows a preview's rows until it ends or Ctrl-C; closes it (its checkpoint goes).
    fn watch(&mut self, mut preview: Preview) -> Result<(), WeirError> {
        let mut printer = PreviewPrinter::new(self.settings.result_mode, preview.schema(), self.terminal);
        let terminal = self.terminal;
        let interrupts = &mut self.interrupts;
        self.runtime.block_on(async {
            // A Ctrl-C pressed before the preview started is not for it.
            while tokio::time::timeout(std::time::Duration::ZERO, interrupts.recv()).await.is_ok() {}
            if terminal {
                status(&status_line(None, None, 0));
            }
            // The status line is redrawn after each batch, and every half second for the
            // progress that comes after a batch's rows.
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            let mut last_batch = None;
            loop {
                tokio::select! {
                    batch = preview.next_batch() => {
                        let Some(batch) = batch else { break };
                        last_batch = Some(batch.batch_id);
                        let text = printer.batch(&batch.rows);
                        if terminal {
                            status("");
                        }
                        out(&text);
                    }
                    _ = tick.tick() => {}
                    _ = interrupts.recv() => break,
                }
                if terminal {
                    status(&status_line(last_batch, preview.query().last_progress().as_ref(), printer.rows));
                }
            }
            if terminal {
                status("");
            }
            out(&printer.finish());
            let rows = printer.rows;
            eprintln!("({rows} row{}; preview stopped)", if rows == 1 { "" } else { "s" });
            preview.close().await
        })
    }

    /// Runs a shell command.
    fn command(&mut self, line: &str, origin: &Origin, n: usize) -> Result<Flow, Failed> {
        let command = match parse_command(line) {
            Ok(c) => c,
            Err(m) => return Err(self.fail(&WeirError::Sql(weir_sql::SqlError::at(n, m)), origin)),
        };
        match command {
            Command::Help => out(HELP),
            Command::Quit => return Ok(Flow::Quit),
            Command::Timing(on) => {
                self.timing = on.unwrap_or(!self.timing);
                eprintln!("timing is {}", if self.timing { "on" } else { "off" });
            }
            Command::Include(file) => {
                let text = match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => return Err(self.fail(&WeirError::Config(format!("cannot read {file}: {e}")), origin)),
                };
                return self.run_text(&text, &Origin::Script(file));
            }
            Command::Explain(query) => {
                let query = query.trim_end_matches(';').to_string();
                match self.runtime.block_on(self.session.explain(&query, n)) {
                    Ok(plan) => out(&format!("{plan}\n")),
                    Err(e) => return Err(self.fail(&e, origin)),
                }
            }
            Command::Wait(name) => {
                let queries = match name {
                    Some(name) => match self.session.query(&name, n) {
                        Ok(q) => vec![q],
                        Err(e) => return Err(self.fail(&e, origin)),
                    },
                    None => self.running(),
                };
                let interrupts = &mut self.interrupts;
                let outcome = self.runtime.block_on(async {
                    let all = async {
                        for q in &queries {
                            q.await_termination().await?;
                        }
                        Ok(())
                    };
                    tokio::select! {
                        r = all => r,
                        _ = interrupts.recv() => Ok(()),
                    }
                });
                if let Err(e) = outcome {
                    return Err(self.fail(&e, origin));
                }
                for q in &queries {
                    eprintln!("query '{}': {}{}", q.name(), if q.is_active() { "running" } else { "ended" }, after_batch(q));
                }
            }
        }
        Ok(Flow::Continue)
    }
}

/// ` after batch N` from a query's last progress.
fn after_batch(q: &StreamingQuery) -> String {
    q.last_progress().map(|p| format!(" after batch {}", p.batch_id)).unwrap_or_default()
}

/// Rewrites the status line (stderr) in place; empty clears it.
fn status(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[2K{text}");
    let _ = stderr.flush();
}

/// `$WEIR_HISTORY`, else `~/.weir_history`.
fn history_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WEIR_HISTORY").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".weir_history"))
}
