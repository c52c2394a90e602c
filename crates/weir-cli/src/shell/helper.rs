//! The line editor's helper: the validator that ends a statement at `;` and refuses one
//! that does not parse (with the parser's message, the text left in the line to correct),
//! tab completion from the session's catalog, and syntax highlighting.
//!
//! It sees the session only through [`Catalog`], a snapshot the shell refreshes after each
//! statement: the editor runs on the main thread while the session is busy elsewhere.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper, Hinter};
use weir_sql::lexer::{Token, TokenKind, tokenize};

/// A declared table, as completion knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// Its declared columns (none when the connector infers them).
    pub columns: Vec<String>,
}

/// The tables completion offers; shared with the shell, which refreshes it.
pub type Catalog = Arc<Mutex<Vec<TableInfo>>>;

/// The keywords completion offers and highlighting marks.
pub const KEYWORDS: &[&str] = &[
    "ALL", "AND", "AS", "ASC", "BETWEEN", "BIGINT", "BOOLEAN", "BY", "CASE", "CAST", "COUNT", "CREATE", "DATE", "DECIMAL",
    "DELAY", "DESC", "DESCRIBE", "DISTINCT", "DOUBLE", "DROP", "ELSE", "END", "FALSE", "FLOAT", "FOR", "FROM", "GROUP",
    "HAVING", "HOP", "IN", "INSERT", "INT", "INTEGER", "INTERVAL", "INTO", "IS", "JOIN", "LIKE", "LIMIT", "METADATA", "NOT",
    "NULL", "ON", "OR", "ORDER", "OVER", "PARTITION", "PROGRESS", "QUERIES", "QUERY", "ROW_NUMBER", "SELECT", "SET",
    "SHOW", "SMALLINT", "STOP", "STRING", "TABLE", "TABLES", "THEN", "TIMESTAMP", "TRUE", "TUMBLE", "UNION", "VARCHAR",
    "WATERMARK", "WHEN", "WHERE", "WITH",
];

/// The `WITH (...)` keys of each connector (`properties.`, `fields.` and `storage.` take any
/// suffix).
pub const CONNECTOR_OPTIONS: &[(&str, &[&str])] = &[
    (
        "kafka",
        &[
            "bootstrap_servers", "topic", "format", "starting_offsets", "max_offsets_per_trigger", "fail_on_data_loss",
            "group_id", "connect_timeout", "delimiter", "on_bad_row", "dead_letter_path", "max_row_bytes", "late_rows",
            "late_rows_path", "properties.", "storage.",
        ],
    ),
    (
        "file",
        &["path", "format", "max_files_per_trigger", "header", "delimiter", "on_bad_row", "dead_letter_path", "max_row_bytes", "late_rows", "late_rows_path", "storage."],
    ),
    ("datagen", &["seed", "rows_per_second", "total_rows", "max_rows_per_trigger", "start_time", "late_rows", "late_rows_path", "fields.", "storage."]),
    (
        "delta",
        &[
            "path", "partition_by", "target_file_size", "merge_schema", "auto_compact", "auto_compact_min_files", "starting_version",
            "starting_timestamp", "skip_change_commits", "max_files_per_trigger", "max_bytes_per_trigger", "delta.", "storage.",
        ],
    ),
    ("parquet", &["path", "storage."]),
    ("memory", &[]),
    ("console", &["max_rows"]),
];

/// The shell's commands, offered after `\`.
pub const COMMANDS: &[&str] = &["\\help", "\\timing", "\\quit", "\\i", "\\explain", "\\wait"];

/// The editor's helper; see the module docs.
#[derive(Helper, Hinter)]
pub struct ShellHelper {
    catalog: Catalog,
    colour: bool,
}

impl ShellHelper {
    /// A helper completing from `catalog`; `colour` turns highlighting on.
    pub fn new(catalog: Catalog, colour: bool) -> Self {
        Self { catalog, colour }
    }
}

/// Whether the text typed so far is a whole input: a command (`\...`, `help`, `quit`,
/// `exit`) or statements ending at `;`. `Err` carries the parser's message for text that
/// ends at `;` but does not parse.
pub fn check_input(input: &str) -> Result<bool, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() || is_command(trimmed) {
        return Ok(true);
    }
    let tokens = match tokenize(input, 1) {
        Ok(t) => t,
        // An open quote or comment: the statement goes on, on the next line.
        Err(e) if e.message.starts_with("unterminated") => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    match tokens.last() {
        None => Ok(true),
        Some(t) if t.is_punct(';') => weir_sql::parse_script(input).map(|_| true).map_err(|e| e.to_string()),
        Some(_) => Ok(false),
    }
}

/// Whether `line` (trimmed) is one of the shell's commands rather than SQL.
pub fn is_command(line: &str) -> bool {
    line.starts_with('\\') || ["help", "quit", "exit"].iter().any(|c| line.trim_end_matches(';').eq_ignore_ascii_case(c))
}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(match check_input(ctx.input()) {
            Ok(true) => ValidationResult::Valid(None),
            Ok(false) => ValidationResult::Incomplete,
            Err(message) => ValidationResult::Invalid(Some(format!("\n  error: {message}"))),
        })
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let tables = self.catalog.lock().expect("catalog lock").clone();
        let (start, words) = complete(line, pos, &tables);
        Ok((start, words.into_iter().map(|w| Pair { display: w.clone(), replacement: w }).collect()))
    }
}

/// The completions of the word that ends at `pos`: where it starts, and the candidates.
pub fn complete(line: &str, pos: usize, tables: &[TableInfo]) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let start = before.rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '\\')).map_or(0, |i| i + 1);
    let prefix = &before[start..];
    // The statement being typed: from the last `;` outside quotes.
    let statement_start = statement_start(&line[..start]);
    let head = &line[statement_start..start];
    let statement = &line[statement_start..];
    let matching = |words: Vec<String>| -> Vec<String> {
        let mut out: Vec<String> = words.into_iter().filter(|w| w.to_lowercase().starts_with(&prefix.to_lowercase()) && w != prefix).collect();
        out.sort();
        out.dedup();
        out
    };

    if head.trim().is_empty() && prefix.starts_with('\\') {
        return (start, matching(COMMANDS.iter().map(|c| c.to_string()).collect()));
    }
    // Inside a quote: only a connector's name after `connector = '`.
    if head.matches('\'').count() % 2 == 1 {
        let open = head.rfind('\'').expect("an open quote");
        let key = head[..open].trim_end().trim_end_matches('=').trim_end();
        if key.to_ascii_lowercase().ends_with("connector") {
            return (start, matching(CONNECTOR_OPTIONS.iter().map(|(c, _)| c.to_string()).collect()));
        }
        return (start, Vec::new());
    }
    let Ok(tokens) = tokenize(head, 1) else { return (start, Vec::new()) };
    let previous = tokens.last();

    // Inside `WITH (` of a CREATE TABLE, at a key: the options of its connector.
    if let Some(with) = tokens.iter().rposition(|t| t.is_keyword("WITH"))
        && tokens.first().is_some_and(|t| t.is_keyword("CREATE"))
        && tokens.get(with + 1).is_some_and(|t| t.is_punct('('))
        && !tokens[with..].iter().any(|t| t.is_punct(')'))
        && previous.is_some_and(|t| t.is_punct('(') || t.is_punct(','))
    {
        let keys = match declared_connector(statement) {
            Some(c) => CONNECTOR_OPTIONS.iter().find(|(name, _)| *name == c).map(|(_, keys)| keys.to_vec()).unwrap_or_default(),
            None => vec!["connector"],
        };
        let mut keys: Vec<String> = keys.into_iter().map(str::to_string).collect();
        if declared_connector(statement).is_none() {
            keys.push("connector".into());
        }
        return (start, matching(keys));
    }

    let names = || tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    if previous.is_some_and(|t| ["FROM", "JOIN", "INTO", "TABLE", "DESCRIBE", "DESC"].iter().any(|k| t.is_keyword(k))) {
        return (start, matching(names()));
    }
    let upper = prefix.chars().all(|c| !c.is_lowercase());
    let mut words: Vec<String> = KEYWORDS.iter().map(|k| if upper { k.to_string() } else { k.to_lowercase() }).collect();
    words.extend(names());
    let in_scope = tables_in_scope(statement);
    for t in tables.iter().filter(|t| in_scope.contains(&t.name)) {
        words.extend(t.columns.iter().cloned());
    }
    (start, matching(words))
}

/// Byte offset where the statement containing the end of `text` starts.
fn statement_start(text: &str) -> usize {
    match tokenize(text, 1) {
        Ok(tokens) => tokens.iter().rev().find(|t| t.is_punct(';')).map_or(0, |t| t.end),
        Err(_) => 0,
    }
}

/// The tables named after FROM or JOIN in `statement`.
fn tables_in_scope(statement: &str) -> Vec<String> {
    let tokens = tokenize(statement, 1).unwrap_or_default();
    tokens
        .windows(2)
        .filter(|w| w[0].is_keyword("FROM") || w[0].is_keyword("JOIN"))
        .filter_map(|w| match &w[1].kind {
            TokenKind::Word(name) => Some(name.to_lowercase()),
            TokenKind::QuotedIdent(name) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// The connector a CREATE TABLE statement declares (`connector = 'kafka'`), if written yet.
fn declared_connector(statement: &str) -> Option<String> {
    let tokens = tokenize(statement, 1).ok().or_else(|| {
        // An unclosed quote at the end: the part before it.
        let open = statement.rfind('\'')?;
        tokenize(&statement[..open], 1).ok()
    })?;
    tokens.windows(3).find_map(|w| match (&w[0], &w[1], &w[2].kind) {
        (k, eq, TokenKind::Str(v)) if k.is_keyword("connector") && eq.is_punct('=') => Some(v.to_lowercase()),
        _ => None,
    })
}

impl Highlighter for ShellHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.colour { highlight(line) } else { Cow::Borrowed(line) }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.colour
    }
}

/// `line` with ANSI colours: keywords bold blue, strings green, numbers yellow. Text the
/// lexer cannot read (an open quote) stays plain.
pub fn highlight(line: &str) -> Cow<'_, str> {
    let Ok(tokens) = tokenize(line, 1) else { return Cow::Borrowed(line) };
    let colour = |t: &Token| match &t.kind {
        TokenKind::Word(w) if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(w)) => Some("\x1b[1;34m"),
        TokenKind::Str(_) => Some("\x1b[32m"),
        TokenKind::Number(_) => Some("\x1b[33m"),
        _ => None,
    };
    if !tokens.iter().any(|t| colour(t).is_some()) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16 * tokens.len());
    let mut at = 0;
    for t in &tokens {
        if let Some(c) = colour(t) {
            out.push_str(&line[at..t.start]);
            out.push_str(c);
            out.push_str(&line[t.start..t.end]);
            out.push_str("\x1b[0m");
            at = t.end;
        }
    }
    out.push_str(&line[at..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Vec<TableInfo> {
        vec![
            TableInfo { name: "events".into(), columns: vec!["user_id".into(), "url".into(), "ts".into()] },
            TableInfo { name: "clean".into(), columns: vec!["visits".into()] },
        ]
    }

    fn words(line: &str) -> Vec<String> {
        complete(line, line.len(), &tables()).1
    }

    #[test]
    fn completes_keywords_in_the_case_typed() {
        assert_eq!(words("SEL"), ["SELECT"]);
        assert_eq!(words("sel"), ["select"]);
        assert!(words("SHOW TAB").contains(&"TABLES".to_string()));
    }

    #[test]
    fn completes_table_names_after_from_and_into() {
        assert_eq!(words("SELECT * FROM e"), ["events"]);
        assert_eq!(words("INSERT INTO c"), ["clean"]);
        assert_eq!(words("DESCRIBE "), ["clean", "events"]);
        // The word starts after the last separator.
        let (start, _) = complete("SELECT * FROM ev", 16, &tables());
        assert_eq!(start, 14);
    }

    #[test]
    fn completes_the_columns_of_the_tables_in_scope() {
        assert_eq!(words("SELECT u FROM events").len(), 0, "the cursor is at the end, after events");
        let line = "SELECT us FROM events";
        assert_eq!(complete(line, 9, &tables()).1, ["user_id"]);
        let line = "SELECT vi FROM events";
        assert!(complete(line, 9, &tables()).1.is_empty(), "clean is not in scope");
        // Only the statement being typed counts.
        let line = "SELECT * FROM clean; SELECT vi FROM events";
        assert!(complete(line, 30, &tables()).1.is_empty());
    }

    #[test]
    fn completes_connector_names_and_their_options() {
        assert_eq!(words("CREATE TABLE t WITH (connector = 'ka"), ["kafka"]);
        assert_eq!(words("CREATE TABLE t WITH (connector = 'p"), ["parquet"]);
        assert_eq!(words("CREATE TABLE t WITH (con"), ["connector"]);
        assert_eq!(words("CREATE TABLE t WITH (connector = 'kafka', bo"), ["bootstrap_servers"]);
        assert_eq!(words("CREATE TABLE t (a INT) WITH (connector = 'file',\n  path = 'x', max_"), ["max_files_per_trigger", "max_row_bytes"]);
        // The connector may come after the key being typed.
        let line = "CREATE TABLE t WITH (pa, connector = 'delta')";
        assert_eq!(complete(line, 23, &tables()).1, ["partition_by", "path"]);
        // Not a key position: a value.
        assert!(words("CREATE TABLE t WITH (connector = 'kafka', topic = ").iter().all(|w| w != "bootstrap_servers"));
    }

    /// The option lists are the parser's: for each connector, a table with an unknown
    /// option gets an error listing the valid ones, which must be the list here.
    #[test]
    fn connector_options_are_the_parsers() {
        let required: &[(&str, &str)] = &[
            ("kafka", "bootstrap_servers = 'b', topic = 't', format = 'json', "),
            ("file", "path = 'p', format = 'json', "),
            ("datagen", "total_rows = 1, "),
            ("delta", "path = 'p', "),
            ("parquet", "path = 'p', "),
            ("memory", ""),
            ("console", ""),
        ];
        for (connector, keys) in CONNECTOR_OPTIONS {
            let given = required.iter().find(|(c, _)| c == connector).expect("every connector").1;
            let sql = format!("CREATE TABLE t (a BIGINT) WITH (connector = '{connector}', {given}zzz_unknown = 1)");
            let statement = weir_sql::parse_script(&sql).unwrap().remove(0);
            let weir_sql::Statement::CreateTable(create) = statement else { panic!("a CREATE TABLE") };
            let message = weir_sql::config::ConnectorConfig::from_table(&create).unwrap_err().to_string();
            let listed = message.split("(valid options: ").nth(1).map(|s| s.trim_end_matches(')').to_string()).unwrap_or_default();
            let mut mine: Vec<String> = keys.iter().map(|k| if k.ends_with('.') { format!("{k}*") } else { k.to_string() }).collect();
            mine.sort();
            let theirs: Vec<String> = if listed.is_empty() { Vec::new() } else { listed.split(", ").map(str::to_string).collect() };
            assert_eq!(mine, theirs, "{connector}: {message}");
        }
    }

    #[test]
    fn a_statement_ends_at_its_semicolon_and_must_parse() {
        assert_eq!(check_input("SELECT *\nFROM events"), Ok(false));
        assert_eq!(check_input("SELECT * FROM events;"), Ok(true));
        assert_eq!(check_input("CREATE TABLE t WITH (path = 'a;"), Ok(false), "a ; inside quotes");
        assert_eq!(check_input("-- a comment\n"), Ok(true));
        assert_eq!(check_input("\\timing"), Ok(true));
        assert_eq!(check_input("help"), Ok(true));
        assert_eq!(
            check_input("SHOW JOBS;"),
            Err("line 1: expected TABLES, QUERIES or PROGRESS after SHOW, found 'JOBS'".into())
        );
        // The line is the line inside what was typed.
        assert_eq!(check_input("SHOW TABLES;\nSTOP QUERY;"), Err("line 2: STOP QUERY needs a query's name or its id in quotes (SHOW QUERIES lists them)".into()));
    }

    #[test]
    fn highlights_keywords_strings_and_numbers() {
        assert_eq!(highlight("select 'a', 1 x"), "\x1b[1;34mselect\x1b[0m \x1b[32m'a'\x1b[0m, \x1b[33m1\x1b[0m x");
        assert_eq!(highlight("foo bar"), "foo bar");
        assert_eq!(highlight("select 'open"), "select 'open");
    }
}
