//! A small SQL lexer that knows quotes, comments and line numbers.
//!
//! weir's DDL has two clauses that no SQL parser knows (`WATERMARK FOR` inside the column
//! list and the free-form `WITH (...)` options), and scripts hold several statements. This
//! lexer finds statement boundaries and those clauses exactly; everything standard is then
//! handed to `sqlparser` (column types) or DataFusion (queries).

use crate::error::{Result, SqlError};

/// The kind of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A bare word: keyword or unquoted identifier, may contain `.` inside option keys.
    Word(String),
    /// `'...'` with `''` unescaped.
    Str(String),
    /// `"..."` or `` `...` ``.
    QuotedIdent(String),
    /// A numeric literal as written.
    Number(String),
    /// Any other single character.
    Punct(char),
}

/// A token with its place in the script.
#[derive(Debug, Clone)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Byte offset of its first character in the script.
    pub start: usize,
    /// Byte offset just past its last character.
    pub end: usize,
    /// 1-based line of its first character.
    pub line: usize,
}

impl Token {
    /// True when this token is the keyword `kw` (case-insensitive).
    pub fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// True when this token is the punctuation `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == TokenKind::Punct(c)
    }
}

/// Splits `sql` into tokens, skipping whitespace and comments. `first_line` is the line
/// number of the first character (statements keep their place in the file).
pub fn tokenize(sql: &str, first_line: usize) -> Result<Vec<Token>> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut line = first_line;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let start_line = line;
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                loop {
                    if i + 1 >= bytes.len() {
                        return Err(SqlError::at(start_line, "unterminated /* comment"));
                    }
                    if bytes[i] == b'*' && bytes[i + 1] == b'/' {
                        i += 2;
                        break;
                    }
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'\'' | b'"' | b'`' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(&b) = bytes.get(i) else {
                        return Err(SqlError::at(
                            start_line,
                            format!("unterminated quoted text starting with {}", quote as char),
                        ));
                    };
                    if b == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            text.push(quote as char);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    if b == b'\n' {
                        line += 1;
                    }
                    // Copy one whole UTF-8 character.
                    let ch_len = utf8_len(b);
                    text.push_str(&sql[i..i + ch_len]);
                    i += ch_len;
                }
                let kind = if quote == b'\'' {
                    TokenKind::Str(text)
                } else {
                    TokenKind::QuotedIdent(text)
                };
                tokens.push(Token { kind, start, end: i, line: start_line });
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                let kind = TokenKind::Number(sql[start..i].to_string());
                tokens.push(Token { kind, start, end: i, line: start_line });
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                let kind = TokenKind::Word(sql[start..i].to_string());
                tokens.push(Token { kind, start, end: i, line: start_line });
            }
            _ => {
                let ch_len = utf8_len(c);
                let ch = sql[i..i + ch_len].chars().next().expect("non-empty slice");
                i += ch_len;
                tokens.push(Token { kind: TokenKind::Punct(ch), start, end: i, line: start_line });
            }
        }
    }
    Ok(tokens)
}

fn utf8_len(first: u8) -> usize {
    match first {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    }
}

/// One statement of a script: its text (without the `;`) and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementText {
    /// The statement, trimmed.
    pub text: String,
    /// 1-based line of its first token in the script.
    pub line: usize,
}

/// Splits a script into statements at `;` outside quotes and comments.
pub fn split_statements(script: &str) -> Result<Vec<StatementText>> {
    let tokens = tokenize(script, 1)?;
    let mut out = Vec::new();
    let mut first: Option<&Token> = None;
    let mut last_end = 0;
    for token in &tokens {
        if token.is_punct(';') {
            if let Some(f) = first.take() {
                out.push(StatementText { text: script[f.start..last_end].to_string(), line: f.line });
            }
            continue;
        }
        if first.is_none() {
            first = Some(token);
        }
        last_end = token.end;
    }
    if let Some(f) = first {
        out.push(StatementText { text: script[f.start..last_end].to_string(), line: f.line });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_outside_quotes_and_comments() {
        let script = "-- a comment; not a split\nCREATE TABLE a WITH (path = 'x;y');\n\n/* ; */ INSERT INTO a\nSELECT 1";
        let stmts = split_statements(script).unwrap();
        assert_eq!(stmts.len(), 2);
        assert_eq!(stmts[0].text, "CREATE TABLE a WITH (path = 'x;y')");
        assert_eq!(stmts[0].line, 2);
        assert_eq!(stmts[1].text, "INSERT INTO a\nSELECT 1");
        assert_eq!(stmts[1].line, 4);
    }

    #[test]
    fn unterminated_quote_names_its_line() {
        let err = split_statements("SELECT 1;\nSELECT 'abc").unwrap_err();
        assert_eq!(err.to_string(), "line 2: unterminated quoted text starting with '");
    }
}
