//! weir's statements: `CREATE TABLE ... [WATERMARK FOR ...] WITH (...)` and
//! `INSERT INTO sink SELECT ...`, and the ones an interactive session adds: `SELECT`, the
//! catalog (`SHOW TABLES`, `DESCRIBE`, `DROP TABLE`), the queries (`SHOW QUERIES`,
//! `SHOW PROGRESS`, `STOP QUERY`) and `SET`.
//!
//! The lexer cuts out the two clauses standard SQL lacks (the watermark and the options);
//! the column list goes to `sqlparser` for its types, and the SELECT is kept as text for
//! DataFusion to plan.

use std::time::Duration;

use arrow_schema::Field;
use sqlparser::ast::{ColumnOption, Statement as SqlStatement};
use sqlparser::dialect::{GenericDialect, SparkSqlDialect};
use sqlparser::parser::Parser;

use crate::error::{Result, SqlError};
use crate::lexer::{StatementText, Token, TokenKind, tokenize};
use crate::options::{OptionValue, Options};
use crate::types::arrow_type;

/// A parsed statement of a weir script.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE TABLE`: a source, a sink or a static table.
    CreateTable(CreateTable),
    /// `INSERT INTO sink SELECT ...`: a continuous query.
    Insert(Insert),
    /// `SELECT ...` (or `WITH ... SELECT ...`, `VALUES ...`): a live preview of the streams
    /// it reads, or a batch query when it reads only static tables (shell, Python).
    Select(Select),
    /// `DROP TABLE name`.
    DropTable {
        /// The table.
        name: String,
        /// Line of the statement.
        line: usize,
    },
    /// `SHOW TABLES`.
    ShowTables {
        /// Line of the statement.
        line: usize,
    },
    /// `DESCRIBE name` (or `DESC name`).
    Describe {
        /// The table.
        name: String,
        /// Line of the statement.
        line: usize,
    },
    /// `SHOW QUERIES`: the queries started in the session.
    ShowQueries {
        /// Line of the statement.
        line: usize,
    },
    /// `SHOW PROGRESS name`: a query's last progress.
    ShowProgress {
        /// The query's name or id.
        name: String,
        /// Line of the statement.
        line: usize,
    },
    /// `STOP QUERY name`: stops a query after its batch in flight.
    StopQuery {
        /// The query's name or id.
        name: String,
        /// Line of the statement.
        line: usize,
    },
    /// `SET key = value`: a setting of the session.
    Set {
        /// The setting, lower-cased unless quoted.
        key: String,
        /// Its value as written (quotes removed).
        value: String,
        /// Line of the statement.
        line: usize,
    },
}

impl Statement {
    /// The line the statement starts at in its script.
    pub fn line(&self) -> usize {
        match self {
            Self::CreateTable(c) => c.line,
            Self::Insert(i) => i.line,
            Self::Select(s) => s.line,
            Self::DropTable { line, .. }
            | Self::ShowTables { line }
            | Self::Describe { line, .. }
            | Self::ShowQueries { line }
            | Self::ShowProgress { line, .. }
            | Self::StopQuery { line, .. }
            | Self::Set { line, .. } => *line,
        }
    }
}

/// A query that is not an `INSERT`: `SELECT ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    /// The query text, as written.
    pub query: String,
    /// Line of the statement.
    pub line: usize,
}

/// `CREATE TABLE name [(columns..., WATERMARK FOR ...)] WITH (connector = ..., ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    /// Table name (unquoted names are lower-cased, as DataFusion does).
    pub name: String,
    /// Declared columns; empty when the statement has none.
    pub columns: Vec<Field>,
    /// The event-time column and its allowed delay.
    pub watermark: Option<Watermark>,
    /// The `connector` option, lower-cased.
    pub connector: String,
    /// All other options.
    pub options: Options,
    /// Line of the statement in its script.
    pub line: usize,
}

/// `WATERMARK FOR column AS column - INTERVAL '...'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// The event-time column.
    pub column: String,
    /// How late an event may arrive.
    pub delay: Duration,
    /// Line of the clause.
    pub line: usize,
}

/// `INSERT INTO sink <query>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The sink table.
    pub sink: String,
    /// The query text, as written.
    pub query: String,
    /// Line of the statement.
    pub line: usize,
}

/// Parses one statement of a script.
pub fn parse_statement(stmt: &StatementText) -> Result<Statement> {
    let tokens = tokenize(&stmt.text, stmt.line)?;
    let first = tokens.first().ok_or_else(|| SqlError::at(stmt.line, "empty statement"))?;
    let line = first.line;
    if first.is_keyword("CREATE") {
        parse_create_table(&stmt.text, &tokens).map(Statement::CreateTable)
    } else if first.is_keyword("INSERT") {
        parse_insert(&stmt.text, &tokens).map(Statement::Insert)
    } else if first.is_keyword("SELECT") || first.is_keyword("WITH") || first.is_keyword("VALUES") {
        Ok(Statement::Select(Select { query: stmt.text[first.start..].to_string(), line }))
    } else if first.is_keyword("DROP") {
        let mut i = 1;
        expect_keyword(&tokens, &mut i, "TABLE", line)?;
        let name = table_name(&tokens, &mut i, line)?;
        end_of_statement(&tokens, i)?;
        Ok(Statement::DropTable { name, line })
    } else if first.is_keyword("SHOW") {
        let statement = match tokens.get(1) {
            Some(t) if t.is_keyword("TABLES") => Statement::ShowTables { line },
            Some(t) if t.is_keyword("QUERIES") => Statement::ShowQueries { line },
            Some(t) if t.is_keyword("PROGRESS") => {
                let mut i = 2;
                let name = query_name(&tokens, &mut i, "SHOW PROGRESS", line)?;
                end_of_statement(&tokens, i)?;
                return Ok(Statement::ShowProgress { name, line });
            }
            Some(t) => return Err(SqlError::at(t.line, format!("expected TABLES, QUERIES or PROGRESS after SHOW, found {}", describe(t)))),
            None => return Err(SqlError::at(line, "expected TABLES, QUERIES or PROGRESS after SHOW")),
        };
        end_of_statement(&tokens, 2)?;
        Ok(statement)
    } else if first.is_keyword("DESCRIBE") || first.is_keyword("DESC") {
        let mut i = 1;
        let name = table_name(&tokens, &mut i, line)?;
        end_of_statement(&tokens, i)?;
        Ok(Statement::Describe { name, line })
    } else if first.is_keyword("STOP") {
        let mut i = 1;
        expect_keyword(&tokens, &mut i, "QUERY", line)?;
        let name = query_name(&tokens, &mut i, "STOP QUERY", line)?;
        end_of_statement(&tokens, i)?;
        Ok(Statement::StopQuery { name, line })
    } else if first.is_keyword("SET") {
        parse_set(&tokens)
    } else {
        Err(SqlError::at(
            stmt.line,
            format!(
                "expected CREATE TABLE, INSERT INTO, SELECT, DROP TABLE, SHOW, DESCRIBE, STOP QUERY or SET, found '{}'",
                &stmt.text[first.start..first.end]
            ),
        ))
    }
}

/// Reads a query's name (an identifier, as its sink table's) or id (a quoted string).
fn query_name(tokens: &[Token], i: &mut usize, what: &str, line: usize) -> Result<String> {
    let name = match tokens.get(*i).map(|t| &t.kind) {
        Some(TokenKind::Word(w)) => w.to_ascii_lowercase(),
        Some(TokenKind::QuotedIdent(w) | TokenKind::Str(w)) => w.clone(),
        _ => return Err(SqlError::at(line, format!("{what} needs a query's name or its id in quotes (SHOW QUERIES lists them)"))),
    };
    *i += 1;
    Ok(name)
}

/// `SET key = value`; the key may be quoted (`SET 'result_mode' = 'table'`, as Flink writes it).
fn parse_set(tokens: &[Token]) -> Result<Statement> {
    let line = tokens[0].line;
    let usage = "write SET <setting> = <value>, e.g. SET result_mode = 'table'";
    // A dotted key (`checkpoint.storage.aws_region`) is words joined by dots.
    let mut key = String::new();
    let mut i = 1;
    loop {
        match tokens.get(i).map(|t| &t.kind) {
            Some(TokenKind::Word(w)) => key.push_str(&w.to_ascii_lowercase()),
            Some(TokenKind::Str(w) | TokenKind::QuotedIdent(w)) => key.push_str(w),
            _ => return Err(SqlError::at(line, usage)),
        }
        i += 1;
        match tokens.get(i) {
            Some(t) if t.is_punct('.') => {
                key.push('.');
                i += 1;
            }
            _ => break,
        }
    }
    if !tokens.get(i).is_some_and(|t| t.is_punct('=') || t.is_keyword("TO")) {
        return Err(SqlError::at(line, usage));
    }
    let value = match &tokens[(i + 1).min(tokens.len())..] {
        [Token { kind: TokenKind::Str(v) | TokenKind::Number(v) | TokenKind::Word(v) | TokenKind::QuotedIdent(v), .. }] => v.clone(),
        [minus, Token { kind: TokenKind::Number(v), .. }] if minus.is_punct('-') => format!("-{v}"),
        [] => return Err(SqlError::at(line, format!("SET {key}: no value; {usage}"))),
        [_, rest @ ..] => {
            let t = rest.first().expect("more than one token");
            return Err(SqlError::at(t.line, format!("SET {key}: unexpected {} after the value; quote a value with spaces", describe(t))));
        }
    };
    Ok(Statement::Set { key, value, line })
}

/// Refuses anything after the end of a short statement.
fn end_of_statement(tokens: &[Token], i: usize) -> Result<()> {
    match tokens.get(i) {
        Some(t) => Err(SqlError::at(t.line, format!("unexpected {} at the end of the statement", describe(t)))),
        None => Ok(()),
    }
}

/// Parses every statement of a script.
pub fn parse_script(script: &str) -> Result<Vec<Statement>> {
    crate::lexer::split_statements(script)?.iter().map(parse_statement).collect()
}

/// Reads a table name at `tokens[*i]`, advancing past it.
fn table_name(tokens: &[Token], i: &mut usize, line: usize) -> Result<String> {
    let name = match tokens.get(*i).map(|t| &t.kind) {
        Some(TokenKind::Word(w)) => w.to_ascii_lowercase(),
        Some(TokenKind::QuotedIdent(w)) => w.clone(),
        _ => return Err(SqlError::at(line, "expected a table name")),
    };
    *i += 1;
    if tokens.get(*i).is_some_and(|t| t.is_punct('.')) {
        return Err(SqlError::at(
            tokens[*i].line,
            format!("qualified table names are not supported: write just the table name ('{name}' ...)"),
        ));
    }
    Ok(name)
}

fn expect_keyword(tokens: &[Token], i: &mut usize, kw: &str, line: usize) -> Result<()> {
    match tokens.get(*i) {
        Some(t) if t.is_keyword(kw) => {
            *i += 1;
            Ok(())
        }
        Some(t) => Err(SqlError::at(t.line, format!("expected {kw}, found {}", describe(t)))),
        None => Err(SqlError::at(line, format!("expected {kw} at the end of the statement"))),
    }
}

fn describe(t: &Token) -> String {
    match &t.kind {
        TokenKind::Word(w) | TokenKind::Number(w) => format!("'{w}'"),
        TokenKind::Str(s) => format!("'{s}' (a string)"),
        TokenKind::QuotedIdent(s) => format!("\"{s}\""),
        TokenKind::Punct(c) => format!("'{c}'"),
    }
}

/// Index of the token closing the parenthesis opened at `open`.
fn matching_paren(tokens: &[Token], open: usize) -> Result<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if t.is_punct('(') {
            depth += 1;
        } else if t.is_punct(')') {
            depth -= 1;
            if depth == 0 {
                return Ok(i);
            }
        }
    }
    Err(SqlError::at(tokens[open].line, "this '(' is never closed"))
}

/// Splits `tokens[from..to]` at commas of nesting depth 0 (`(`, `<` of ARRAY<..>/STRUCT<..>).
fn split_top_level(tokens: &[Token], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = from;
    for (i, t) in tokens.iter().enumerate().take(to).skip(from) {
        if t.is_punct('(') || t.is_punct('<') {
            depth += 1;
        } else if t.is_punct(')') || t.is_punct('>') {
            depth -= 1;
        } else if t.is_punct(',') && depth == 0 {
            parts.push((start, i));
            start = i + 1;
        }
    }
    if start < to {
        parts.push((start, to));
    }
    parts
}

fn parse_create_table(text: &str, tokens: &[Token]) -> Result<CreateTable> {
    let line = tokens[0].line;
    let mut i = 1;
    if tokens.get(i).is_some_and(|t| t.is_keyword("OR")) {
        return Err(SqlError::at(line, "CREATE OR REPLACE TABLE is not supported; use CREATE TABLE"));
    }
    expect_keyword(tokens, &mut i, "TABLE", line)?;
    if tokens.get(i).is_some_and(|t| t.is_keyword("IF")) {
        return Err(SqlError::at(line, "CREATE TABLE IF NOT EXISTS is not supported; use CREATE TABLE"));
    }
    let name = table_name(tokens, &mut i, line)?;

    let mut columns = Vec::new();
    let mut watermark = None;
    if tokens.get(i).is_some_and(|t| t.is_punct('(')) {
        let close = matching_paren(tokens, i)?;
        let mut column_texts = Vec::new();
        for (from, to) in split_top_level(tokens, i + 1, close) {
            if from == to {
                // `(a INT,, b INT)` or `(, a INT)`: tokens[from] is the second ','.
                return Err(SqlError::at(tokens[from].line, "expected a column definition before ','"));
            }
            if tokens[from].is_keyword("WATERMARK") {
                if watermark.is_some() {
                    return Err(SqlError::at(tokens[from].line, "a table has at most one WATERMARK clause"));
                }
                watermark = Some(parse_watermark(text, &tokens[from..to])?);
            } else {
                column_texts.push(column_text(text, &tokens[from..to])?);
            }
        }
        columns = parse_columns(&column_texts)?;
        i = close + 1;
    }

    let options = match tokens.get(i) {
        Some(t) if t.is_keyword("WITH") => {
            i += 1;
            if !tokens.get(i).is_some_and(|t| t.is_punct('(')) {
                return Err(SqlError::at(tokens[i - 1].line, "expected '(' after WITH"));
            }
            let close = matching_paren(tokens, i)?;
            let options = parse_options(&tokens[i + 1..close])?;
            i = close + 1;
            options
        }
        Some(t) => return Err(SqlError::at(t.line, format!("expected WITH (...), found {}", describe(t)))),
        None => {
            return Err(SqlError::at(
                line,
                format!("table '{name}' needs WITH (connector = '...', ...): one of 'file', 'datagen', 'delta', 'memory', 'console'"),
            ));
        }
    };
    if let Some(t) = tokens.get(i) {
        return Err(SqlError::at(t.line, format!("unexpected {} after the WITH options", describe(t))));
    }

    let mut options = options;
    let connector = options
        .take_connector()
        .ok_or_else(|| SqlError::at(line, format!("table '{name}' needs option connector = '...'")))?;

    if let Some(w) = &watermark
        && !columns.is_empty()
    {
        let field = columns.iter().find(|f| f.name() == &w.column).ok_or_else(|| {
            SqlError::at(w.line, format!("WATERMARK FOR '{}': no such column in table '{name}'", w.column))
        })?;
        if !matches!(field.data_type(), arrow_schema::DataType::Timestamp(_, _)) {
            return Err(SqlError::at(
                w.line,
                format!("WATERMARK FOR '{}': the column must be a TIMESTAMP, it is {}", w.column, crate::types::sql_name(field.data_type())),
            ));
        }
    }

    Ok(CreateTable { name, columns, watermark, connector, options, line })
}

impl Options {
    fn take_connector(&mut self) -> Option<String> {
        let v = self.get("connector")?.value.to_ascii_lowercase();
        self.remove("connector");
        Some(v)
    }
}

/// Field metadata key that marks a column filled from the source's record metadata
/// (`part INT METADATA FROM 'partition'`); its value is the metadata key.
pub const METADATA_KEY: &str = "weir.metadata";

/// One column definition: its standard SQL text, line, and `METADATA [FROM 'key']` if any.
struct ColumnText<'a> {
    sql: &'a str,
    line: usize,
    metadata: Option<String>,
}

/// Cuts the `METADATA [FROM 'key'] [VIRTUAL]` suffix (Flink's spelling) off a column definition.
fn column_text<'a>(text: &'a str, tokens: &[Token]) -> Result<ColumnText<'a>> {
    let line = tokens[0].line;
    let Some(at) = tokens.iter().position(|t| t.is_keyword("METADATA")).filter(|&at| at >= 2) else {
        return Ok(ColumnText { sql: &text[tokens[0].start..tokens[tokens.len() - 1].end], line, metadata: None });
    };
    let name = match &tokens[0].kind {
        TokenKind::Word(w) => w.to_ascii_lowercase(),
        TokenKind::QuotedIdent(w) => w.clone(),
        _ => return Err(SqlError::at(line, format!("bad column definition '{}'", clause_text(text, tokens)))),
    };
    let mut rest = &tokens[at + 1..];
    let mut key = name;
    if rest.first().is_some_and(|t| t.is_keyword("FROM")) {
        match rest.get(1).map(|t| &t.kind) {
            Some(TokenKind::Str(k)) => key = k.to_ascii_lowercase(),
            _ => {
                return Err(SqlError::at(
                    line,
                    format!("bad column definition '{}': write METADATA FROM 'partition' (a quoted key)", clause_text(text, tokens)),
                ));
            }
        }
        rest = &rest[2..];
    }
    if rest.first().is_some_and(|t| t.is_keyword("VIRTUAL")) {
        rest = &rest[1..];
    }
    if let Some(t) = rest.first() {
        return Err(SqlError::at(t.line, format!("unexpected {} after METADATA in column '{}'", describe(t), clause_text(text, tokens))));
    }
    Ok(ColumnText { sql: &text[tokens[0].start..tokens[at - 1].end], line, metadata: Some(key) })
}

fn parse_columns(columns: &[ColumnText<'_>]) -> Result<Vec<Field>> {
    let mut fields: Vec<Field> = Vec::with_capacity(columns.len());
    for ColumnText { sql: text, line, metadata } in columns {
        let sql = format!("CREATE TABLE t ({text})");
        // Spark's dialect knows MAP<k, v>; the generic one gives the clearer messages.
        let parsed = Parser::parse_sql(&GenericDialect {}, &sql)
            .or_else(|e| Parser::parse_sql(&SparkSqlDialect {}, &sql).map_err(|_| e))
            .map_err(|e| SqlError::at(*line, format!("bad column definition '{text}': {}", clean_parser_error(&e))))?;
        let Some(SqlStatement::CreateTable(ct)) = parsed.first() else {
            return Err(SqlError::at(*line, format!("bad column definition '{text}'")));
        };
        let [col] = ct.columns.as_slice() else {
            return Err(SqlError::at(*line, format!("bad column definition '{text}'")));
        };
        let data_type =
            arrow_type(&col.data_type).map_err(|m| SqlError::at(*line, format!("column '{}': {m}", col.name.value)))?;
        let nullable = !col.options.iter().any(|o| matches!(o.option, ColumnOption::NotNull));
        let name = col.name.value.clone();
        if fields.iter().any(|f| f.name() == &name) {
            return Err(SqlError::at(*line, format!("column '{name}' is declared twice")));
        }
        let mut field = Field::new(name, data_type, nullable);
        if let Some(key) = metadata {
            field = field.with_metadata([(METADATA_KEY.to_string(), key.clone())].into());
        }
        fields.push(field);
    }
    Ok(fields)
}

fn clean_parser_error(e: &sqlparser::parser::ParserError) -> String {
    let s = e.to_string();
    s.strip_prefix("sql parser error: ").unwrap_or(&s).to_string()
}

fn parse_watermark(text: &str, tokens: &[Token]) -> Result<Watermark> {
    let line = tokens[0].line;
    let usage = "write WATERMARK FOR <column> AS <column> - INTERVAL '<delay>' (e.g. INTERVAL '10' MINUTE)";
    let ident = |t: Option<&Token>| match t.map(|t| &t.kind) {
        Some(TokenKind::Word(w)) | Some(TokenKind::QuotedIdent(w)) => Some(w.clone()),
        _ => None,
    };
    let bad = || SqlError::at(line, format!("bad WATERMARK clause '{}': {usage}", clause_text(text, tokens)));
    if !tokens.get(1).is_some_and(|t| t.is_keyword("FOR")) {
        return Err(bad());
    }
    let column = ident(tokens.get(2)).ok_or_else(bad)?;
    if !tokens.get(3).is_some_and(|t| t.is_keyword("AS")) {
        return Err(bad());
    }
    let expr_column = ident(tokens.get(4)).ok_or_else(bad)?;
    if expr_column != column {
        return Err(SqlError::at(
            line,
            format!("WATERMARK FOR {column} AS {expr_column} ...: the expression must use the same column ({column})"),
        ));
    }
    let delay = match &tokens[5.min(tokens.len())..] {
        [] => Duration::ZERO,
        [minus, interval, rest @ ..] if minus.is_punct('-') && interval.is_keyword("INTERVAL") => {
            let mut spec = String::new();
            for t in rest {
                match &t.kind {
                    TokenKind::Str(s) | TokenKind::Number(s) | TokenKind::Word(s) => {
                        spec.push_str(s);
                        spec.push(' ');
                    }
                    _ => return Err(bad()),
                }
            }
            crate::interval::parse_duration(&spec).map_err(|_| bad())?
        }
        _ => return Err(bad()),
    };
    Ok(Watermark { column, delay, line })
}

fn clause_text<'a>(text: &'a str, tokens: &[Token]) -> &'a str {
    &text[tokens[0].start..tokens[tokens.len() - 1].end]
}

fn parse_options(tokens: &[Token]) -> Result<Options> {
    let mut options = Options::default();
    for (from, to) in split_top_level(tokens, 0, tokens.len()) {
        let part = &tokens[from..to];
        let Some(first) = part.first() else {
            // `(a = 1,, b = 2)` or `(, a = 1)`: tokens[from] is the second ','.
            return Err(SqlError::at(tokens[from].line, "expected key = value before ',' in WITH (...)"));
        };
        let line = first.line;
        let eq = part.iter().position(|t| t.is_punct('=')).ok_or_else(|| {
            SqlError::at(line, "expected key = value in WITH (...)".to_string())
        })?;
        let key = match &part[..eq] {
            [Token { kind: TokenKind::Str(k) | TokenKind::QuotedIdent(k), .. }] => k.clone(),
            words => {
                let mut key = String::new();
                for (n, t) in words.iter().enumerate() {
                    match (&t.kind, n % 2) {
                        (TokenKind::Word(w), 0) => key.push_str(w),
                        (TokenKind::Punct('.'), 1) => key.push('.'),
                        _ => return Err(SqlError::at(line, format!("bad option key near {}", describe(t)))),
                    }
                }
                if key.is_empty() || key.ends_with('.') {
                    return Err(SqlError::at(line, "missing option key before '='"));
                }
                key
            }
        };
        let value = match &part[eq + 1..] {
            [Token { kind: TokenKind::Str(v) | TokenKind::Number(v) | TokenKind::Word(v), .. }] => v.clone(),
            [minus, Token { kind: TokenKind::Number(v), .. }] if minus.is_punct('-') => format!("-{v}"),
            [] => return Err(SqlError::at(line, format!("option '{key}' has no value"))),
            _ => {
                return Err(SqlError::at(
                    line,
                    format!("option '{key}': the value must be a quoted string, a number, or true/false"),
                ));
            }
        };
        options.insert(&key, OptionValue { value, line })?;
    }
    Ok(options)
}

fn parse_insert(text: &str, tokens: &[Token]) -> Result<Insert> {
    let line = tokens[0].line;
    let mut i = 1;
    if tokens.get(i).is_some_and(|t| t.is_keyword("OVERWRITE")) {
        return Err(SqlError::at(line, "INSERT OVERWRITE is not supported by a streaming query; use INSERT INTO"));
    }
    expect_keyword(tokens, &mut i, "INTO", line)?;
    let sink = table_name(tokens, &mut i, line)?;
    match tokens.get(i) {
        None => Err(SqlError::at(line, format!("INSERT INTO {sink} needs a query, e.g. INSERT INTO {sink} SELECT ..."))),
        Some(t) if t.is_punct('(') && !tokens.get(i + 1).is_some_and(|t| t.is_keyword("SELECT") || t.is_keyword("WITH")) => {
            Err(SqlError::at(
                t.line,
                format!("INSERT INTO {sink} (columns) is not supported: the query's columns fill the sink by position"),
            ))
        }
        Some(t) => Ok(Insert { sink, query: text[t.start..].to_string(), line }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, TimeUnit};

    fn parse(sql: &str) -> Result<Statement> {
        parse_statement(&StatementText { text: sql.to_string(), line: 1 })
    }

    #[test]
    fn queries_and_catalog_statements() {
        assert_eq!(
            parse("\n  select a FROM t").unwrap(),
            Statement::Select(Select { query: "select a FROM t".into(), line: 2 })
        );
        assert!(matches!(parse("WITH x AS (SELECT 1) SELECT * FROM x").unwrap(), Statement::Select(_)));
        assert_eq!(parse("DROP TABLE Events").unwrap(), Statement::DropTable { name: "events".into(), line: 1 });
        assert_eq!(parse("show tables").unwrap(), Statement::ShowTables { line: 1 });
        assert_eq!(parse("DESC \"Mixed\"").unwrap(), Statement::Describe { name: "Mixed".into(), line: 1 });
        assert!(parse("DROP TABLE a b").unwrap_err().to_string().contains("unexpected 'b'"));
        assert_eq!(parse("show queries").unwrap(), Statement::ShowQueries { line: 1 });
        assert_eq!(parse("SHOW PROGRESS Clean").unwrap(), Statement::ShowProgress { name: "clean".into(), line: 1 });
        assert_eq!(parse("STOP QUERY '5f0c-aa'").unwrap(), Statement::StopQuery { name: "5f0c-aa".into(), line: 1 });
        assert_eq!(
            parse("SET result_mode = 'table'").unwrap(),
            Statement::Set { key: "result_mode".into(), value: "table".into(), line: 1 }
        );
        assert_eq!(
            parse("SET 'starting_offsets' TO earliest").unwrap(),
            Statement::Set { key: "starting_offsets".into(), value: "earliest".into(), line: 1 }
        );
        assert_eq!(
            parse("SET checkpoint.storage.AWS_REGION = 'eu-west-1'").unwrap(),
            Statement::Set { key: "checkpoint.storage.aws_region".into(), value: "eu-west-1".into(), line: 1 }
        );
        let err = |sql: &str| parse(sql).unwrap_err().to_string();
        assert_eq!(err("SHOW JOBS"), "line 1: expected TABLES, QUERIES or PROGRESS after SHOW, found 'JOBS'");
        assert_eq!(err("STOP QUERY"), "line 1: STOP QUERY needs a query's name or its id in quotes (SHOW QUERIES lists them)");
        assert_eq!(err("STOP QUERY a b"), "line 1: unexpected 'b' at the end of the statement");
        assert_eq!(err("SET result_mode"), "line 1: write SET <setting> = <value>, e.g. SET result_mode = 'table'");
        assert_eq!(err("SET a = b c"), "line 1: SET a: unexpected 'c' after the value; quote a value with spaces");
        assert!(parse("UPDATE t SET a = 1").unwrap_err().to_string().contains("expected CREATE TABLE, INSERT INTO, SELECT"));
    }

    #[test]
    fn create_source_with_watermark_and_options() {
        let Statement::CreateTable(m) = parse("CREATE TABLE m (attrs MAP<STRING, BIGINT>, tags ARRAY<STRING>) WITH (connector = 'file')").unwrap() else {
            panic!("not a create table")
        };
        assert!(matches!(m.columns[0].data_type(), DataType::Map(_, _)), "{:?}", m.columns[0]);
        let Statement::CreateTable(t) = parse(
            "CREATE TABLE Events (event_id STRING NOT NULL, amount DOUBLE, ts TIMESTAMP,\n WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)\nWITH (connector = 'file', path = 'data/', maxFilesPerTrigger = 1, 'properties.x' = 'y')",
        )
        .unwrap() else {
            panic!("not a create table")
        };
        assert_eq!(t.name, "events");
        assert_eq!(t.connector, "file");
        assert_eq!(t.columns.len(), 3);
        assert!(!t.columns[0].is_nullable());
        assert_eq!(t.columns[2].data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        let w = t.watermark.unwrap();
        assert_eq!((w.column.as_str(), w.delay, w.line), ("ts", Duration::from_secs(600), 2));
        assert_eq!(t.options.get("max_files_per_trigger").unwrap().value, "1");
        assert_eq!(t.options.get("path").unwrap().line, 3);
        assert_eq!(t.options.get("properties.x").unwrap().value, "y");
    }

    #[test]
    fn metadata_columns() {
        let Statement::CreateTable(t) = parse(
            "CREATE TABLE k (id BIGINT, part INT METADATA FROM 'Partition', \"offset\" BIGINT METADATA VIRTUAL, k STRING METADATA FROM 'key') WITH (connector = 'kafka')",
        )
        .unwrap() else {
            panic!("not a create table")
        };
        let keys: Vec<Option<&str>> = t.columns.iter().map(|f| f.metadata().get(METADATA_KEY).map(String::as_str)).collect();
        assert_eq!(keys, [None, Some("partition"), Some("offset"), Some("key")]);
        assert_eq!(t.columns[1].data_type(), &DataType::Int32);
        assert_eq!(t.columns[2].name(), "offset");
        let err = |sql: &str| parse(sql).unwrap_err().to_string();
        assert_eq!(
            err("CREATE TABLE k (p INT METADATA FROM partition) WITH (connector = 'kafka')"),
            "line 1: bad column definition 'p INT METADATA FROM partition': write METADATA FROM 'partition' (a quoted key)"
        );
    }

    #[test]
    fn create_sink_without_columns() {
        let Statement::CreateTable(t) =
            parse("CREATE TABLE out WITH (connector = delta, path = 'out/t', partition_by = 'day')").unwrap()
        else {
            panic!("not a create table")
        };
        assert!(t.columns.is_empty());
        assert_eq!(t.connector, "delta");
    }

    #[test]
    fn watermark_spellings() {
        for (clause, secs) in [
            ("ts AS ts - INTERVAL '10 minutes'", 600),
            ("ts AS ts - INTERVAL '5' SECOND", 5),
            ("ts AS ts - INTERVAL '1 hour 30 minutes'", 5400),
            ("ts AS ts", 0),
        ] {
            let sql = format!("CREATE TABLE e (ts TIMESTAMP, WATERMARK FOR {clause}) WITH (connector = 'file')");
            let Statement::CreateTable(t) = parse(&sql).unwrap() else { panic!() };
            assert_eq!(t.watermark.unwrap().delay, Duration::from_secs(secs), "{clause}");
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = |sql: &str| parse(sql).unwrap_err().to_string();
        assert_eq!(
            err("CREATE TABLE e (ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE) WITH (connector = 'file')"),
            "line 1: WATERMARK FOR 'ts': the column must be a TIMESTAMP, it is BIGINT"
        );
        assert_eq!(
            err("CREATE TABLE e (a BIGINT) WITH (path = 'x')"),
            "line 1: table 'e' needs option connector = '...'"
        );
        assert!(err("CREATE TABLE e (a WIDGET) WITH (connector = 'file')").starts_with("line 1: column 'a': type WIDGET is not supported"));
        assert!(err("CREATE TABLE e (a BIGINT NOT) WITH (connector = 'file')").starts_with("line 1: bad column definition"));
        assert_eq!(
            err("CREATE TABLE e WITH (connector = 'file', path = 'a', path = 'b')"),
            "line 1: option 'path' is given twice"
        );
        assert_eq!(
            err("UPDATE t SET a = 1"),
            "line 1: expected CREATE TABLE, INSERT INTO, SELECT, DROP TABLE, SHOW, DESCRIBE, STOP QUERY or SET, found 'UPDATE'"
        );
    }

    #[test]
    fn empty_list_items_are_errors() {
        // Found by fuzzing (fuzz/README.md): these used to panic with an index out of bounds.
        let err = |sql: &str| parse(sql).unwrap_err().to_string();
        assert_eq!(err("CREATE TABLE t (a INT,, b INT) WITH (connector = 'memory')"), "line 1: expected a column definition before ','");
        assert_eq!(err("CREATE TABLE t (,) WITH (connector = 'memory')"), "line 1: expected a column definition before ','");
        assert_eq!(
            err("CREATE TABLE t WITH (connector = 'memory',\n, a = 1)"),
            "line 2: expected key = value before ',' in WITH (...)"
        );
        assert_eq!(err("CREATE TABLE t WITH (, connector = 'memory')"), "line 1: expected key = value before ',' in WITH (...)");
    }

    #[test]
    fn insert_keeps_query_text() {
        let Statement::Insert(i) = parse("INSERT INTO Clean SELECT a, b FROM events WHERE a > 1").unwrap() else {
            panic!()
        };
        assert_eq!(i.sink, "clean");
        assert_eq!(i.query, "SELECT a, b FROM events WHERE a > 1");
    }
}
