//! `WITH (key = value, ...)` options, consumed key by key into typed configs.
//!
//! Connectors never see this map: [`OptionReader`] takes each key a config knows, checks the
//! value's type, and [`OptionReader::finish`] rejects whatever is left, naming the nearest
//! valid key. Keys are snake_case; Spark's camelCase spellings (`maxFilesPerTrigger`) are
//! accepted and normalised.

use std::time::Duration;

use crate::error::{Result, SqlError};

/// One option as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionValue {
    /// The value as text (quotes removed).
    pub value: String,
    /// The line the key was written on.
    pub line: usize,
}

/// The options of one `CREATE TABLE`, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<(String, OptionValue)>,
}

impl Options {
    /// Adds an option; a key given twice is an error.
    pub fn insert(&mut self, key: &str, value: OptionValue) -> Result<()> {
        let key = normalize_key(key);
        if self.entries.iter().any(|(k, _)| *k == key) {
            return Err(SqlError::at(value.line, format!("option '{key}' is given twice")));
        }
        self.entries.push((key, value));
        Ok(())
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&OptionValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<OptionValue> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    /// Iterates over `(key, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OptionValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// `maxFilesPerTrigger` -> `max_files_per_trigger`; snake_case keys are unchanged. Only the
/// part before the first `.` is normalised, so pass-through keys keep their spelling.
pub fn normalize_key(key: &str) -> String {
    let (head, tail) = match key.split_once('.') {
        Some((h, t)) => (h, Some(t)),
        None => (key, None),
    };
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in head.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    if let Some(t) = tail {
        out.push('.');
        out.push_str(t);
    }
    out
}

/// Takes options one by one for one connector; see the module docs.
#[derive(Debug)]
pub struct OptionReader {
    context: String,
    remaining: Vec<(String, OptionValue)>,
    known: Vec<&'static str>,
    known_prefixes: Vec<&'static str>,
    line: usize,
}

impl OptionReader {
    /// Starts reading `options`; `context` names the table and connector in messages, and
    /// `line` is the statement's line for errors about missing options.
    pub fn new(options: &Options, context: impl Into<String>, line: usize) -> Self {
        Self {
            context: context.into(),
            remaining: options.entries.clone(),
            known: Vec::new(),
            known_prefixes: Vec::new(),
            line,
        }
    }

    fn take(&mut self, key: &'static str) -> Option<OptionValue> {
        self.known.push(key);
        let pos = self.remaining.iter().position(|(k, _)| k == key)?;
        Some(self.remaining.remove(pos).1)
    }

    fn invalid(&self, key: &str, v: &OptionValue, expected: &str) -> SqlError {
        SqlError::at(
            v.line,
            format!("option '{key}' of {} must be {expected}, got '{}'", self.context, v.value),
        )
    }

    /// A string option.
    pub fn string(&mut self, key: &'static str) -> Option<String> {
        self.take(key).map(|v| v.value)
    }

    /// A string option taken only when its value satisfies `accept` (otherwise left for
    /// another reader of the same key).
    pub fn string_if(&mut self, key: &'static str, accept: impl Fn(&str) -> bool) -> Option<String> {
        let pos = self.remaining.iter().position(|(k, v)| k == key && accept(&v.value))?;
        self.known.push(key);
        Some(self.remaining.remove(pos).1.value)
    }

    /// A string option that must be present.
    pub fn required_string(&mut self, key: &'static str) -> Result<String> {
        match self.string(key) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(SqlError::at(self.line, format!("option '{key}' of {} is empty", self.context))),
            None => Err(self.missing(key, "required")),
        }
    }

    /// The error for a required option that is absent; `hint` says what it takes.
    pub fn missing(&self, key: &'static str, hint: &str) -> SqlError {
        // A misspelling of the missing key is the likelier mistake: say that.
        if let Some((typo, v)) = self.remaining.iter().find(|(k, _)| nearest(k, &[key]).is_some()) {
            return SqlError::at(v.line, format!("unknown option '{typo}' for {}; did you mean '{key}'?", self.context));
        }
        SqlError::at(self.line, format!("{} needs option '{key}' ({hint})", self.context))
    }

    /// A non-negative integer option.
    pub fn u64(&mut self, key: &'static str) -> Result<Option<u64>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        let digits: String = v.value.chars().filter(|c| *c != '_').collect();
        digits.parse().map(Some).map_err(|_| self.invalid(key, &v, "a non-negative whole number"))
    }

    /// A positive integer option.
    pub fn positive(&mut self, key: &'static str) -> Result<Option<u64>> {
        let line = self.remaining.iter().find(|(k, _)| k == key).map(|(_, v)| v.line);
        match self.u64(key)? {
            Some(0) => Err(SqlError::at(
                line.unwrap_or(self.line),
                format!("option '{key}' of {} must be at least 1", self.context),
            )),
            other => Ok(other),
        }
    }

    /// A floating-point option.
    pub fn f64(&mut self, key: &'static str) -> Result<Option<f64>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        v.value.parse().map(Some).map_err(|_| self.invalid(key, &v, "a number"))
    }

    /// A boolean option (`true`/`false`).
    pub fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        match v.value.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(self.invalid(key, &v, "true or false")),
        }
    }

    /// A size in bytes: `134217728`, `128MB`, `1 GiB`, `64k` (powers of 1024).
    pub fn size(&mut self, key: &'static str) -> Result<Option<u64>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        match parse_size(&v.value) {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(self.invalid(key, &v, "a size such as '128MB', '1GB' or a number of bytes")),
        }
    }

    /// A moment, UTC: `2026-01-31`, `2026-01-31 12:00:00[.fff]`, or RFC 3339 with an offset.
    /// In milliseconds since the epoch.
    pub fn timestamp(&mut self, key: &'static str) -> Result<Option<i64>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        parse_timestamp(&v.value)
            .map(Some)
            .ok_or_else(|| self.invalid(key, &v, "a timestamp such as '2026-01-31', '2026-01-31 12:00:00' or '2026-01-31T12:00:00Z'"))
    }

    /// The error for two options that exclude each other, both given; `why` says what to do.
    pub fn conflict(&self, first: &str, second: &str, why: &str) -> SqlError {
        SqlError::at(self.line, format!("options '{first}' and '{second}' of {} exclude each other: {why}", self.context))
    }

    /// A single-character option (delimiters).
    pub fn char(&mut self, key: &'static str) -> Result<Option<u8>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        let value = if v.value == "\\t" { "\t" } else { v.value.as_str() };
        match value.as_bytes() {
            [b] if b.is_ascii() => Ok(Some(*b)),
            _ => Err(self.invalid(key, &v, "a single ASCII character")),
        }
    }

    /// A duration such as `10s`, `500ms`, `5 minutes`.
    pub fn duration(&mut self, key: &'static str) -> Result<Option<Duration>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        crate::interval::parse_duration(&v.value)
            .map(Some)
            .map_err(|_| self.invalid(key, &v, "a duration such as '10s' or '5 minutes'"))
    }

    /// One of `choices` (case-insensitive); returns the choice as written in `choices`.
    pub fn choice(&mut self, key: &'static str, choices: &[&'static str]) -> Result<Option<&'static str>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        match choices.iter().find(|c| c.eq_ignore_ascii_case(&v.value)) {
            Some(c) => Ok(Some(c)),
            None => {
                let list = choices.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ");
                Err(self.invalid(key, &v, &format!("one of {list}")))
            }
        }
    }

    /// All options whose key starts with `prefix` (e.g. `fields.`), with the prefix removed.
    pub fn with_prefix(&mut self, prefix: &'static str) -> Vec<(String, OptionValue)> {
        self.known_prefixes.push(prefix);
        let (taken, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.remaining).into_iter().partition(|(k, _)| k.starts_with(prefix));
        self.remaining = rest;
        taken.into_iter().map(|(k, v)| (k[prefix.len()..].to_string(), v)).collect()
    }

    /// Fails on the first option nobody took, suggesting the nearest known key.
    pub fn finish(self) -> Result<()> {
        let Some((key, v)) = self.remaining.first() else { return Ok(()) };
        let mut message = format!("unknown option '{key}' for {}", self.context);
        if let Some(near) = nearest(key, &self.known) {
            message.push_str(&format!("; did you mean '{near}'?"));
        }
        let mut valid: Vec<String> = self.known.iter().map(|k| k.to_string()).collect();
        valid.extend(self.known_prefixes.iter().map(|p| format!("{p}*")));
        valid.sort();
        valid.dedup();
        message.push_str(&format!(" (valid options: {})", valid.join(", ")));
        Err(SqlError::at(v.line, message))
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// A size in bytes: digits with an optional unit (`B`, `K`/`KB`/`KiB`, `M`..., `G`..., `T`...,
/// case-insensitive, powers of 1024), spaces and `_` allowed.
pub fn parse_size(text: &str) -> Option<u64> {
    let text: String = text.chars().filter(|c| !c.is_whitespace() && *c != '_').collect();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// A moment as milliseconds since the epoch: a date (midnight UTC), a date and time (UTC), or
/// RFC 3339 with an offset.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Options {
        let mut o = Options::default();
        for (k, v) in pairs {
            o.insert(k, OptionValue { value: v.to_string(), line: 7 }).unwrap();
        }
        o
    }

    #[test]
    fn sizes_and_timestamps_parse() {
        assert_eq!(parse_size("128MB"), Some(128 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("1_000"), Some(1000));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_timestamp("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01.5"), Some(1500));
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn camel_case_keys_are_normalised() {
        assert_eq!(normalize_key("maxFilesPerTrigger"), "max_files_per_trigger");
        assert_eq!(normalize_key("properties.sasl.mechanism"), "properties.sasl.mechanism");
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let o = opts(&[("formt", "json")]);
        let mut r = OptionReader::new(&o, "source 'events' (connector 'file')", 1);
        assert_eq!(r.string("format"), None);
        r.string("path");
        let err = r.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 7: unknown option 'formt' for source 'events' (connector 'file'); did you mean 'format'? (valid options: format, path)"
        );
    }

    #[test]
    fn wrong_type_names_option_and_value() {
        let o = opts(&[("max_files_per_trigger", "ten")]);
        let mut r = OptionReader::new(&o, "source 'e'", 1);
        let err = r.positive("max_files_per_trigger").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 7: option 'max_files_per_trigger' of source 'e' must be a non-negative whole number, got 'ten'"
        );
    }
}

