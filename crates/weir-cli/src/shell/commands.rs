//! The shell's own commands (`\help`, `\timing`, `\quit`, `\i file.sql`, `\explain`,
//! `\wait`) and its settings (`SET result_mode`, `SET starting_offsets`, `SET trigger`):
//! what the shell does itself rather than hand to the session.

use weir_runtime::Trigger;
use weir_sql::config::StartingOffsets;

use super::render::ResultMode;

/// The text of `\help`.
pub const HELP: &str = "\
Statements end with ';' and may span lines.
  CREATE TABLE t (...) [WATERMARK FOR col AS col - INTERVAL '5' SECOND] WITH (connector = '...', ...)
                                 declare a source, sink or static table (as in weir run scripts)
  SHOW TABLES; DESCRIBE t; DROP TABLE t
  SELECT ... FROM <source>       a live preview: rows as batches arrive; Ctrl-C returns to the prompt
  SELECT ... FROM <delta table>  runs once over static tables (Delta, Parquet) and prints the result
  INSERT INTO sink SELECT ...    starts a pipeline in the background, with its checkpoint
  SHOW QUERIES; SHOW PROGRESS q; STOP QUERY q
  SET result_mode = tail | changelog | table     how a preview shows rows (default tail)
  SET starting_offsets = earliest | latest       where previews and queries start reading Kafka
                                                 when their table does not say (default latest)
  SET trigger = '0s' | '10s' | 'available-now'   when background queries run batches (default '0s')
Commands:
  \\help                this text (also: help)
  \\timing              show how long each statement takes (on/off)
  \\i FILE.sql          run the statements and commands in a file
  \\explain SELECT ...  the streaming plan: sources, state kept between batches, per-batch plan
  \\wait [q]            wait until query q (or every running query) ends
  \\quit                leave (also: quit, exit, Ctrl-D); running queries stop after their batch
";

/// A shell command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\help`, `help`, `\?`.
    Help,
    /// `\timing [on|off]`.
    Timing(Option<bool>),
    /// `\quit`, `\q`, `quit`, `exit`.
    Quit,
    /// `\i file`.
    Include(String),
    /// `\explain SELECT ...`.
    Explain(String),
    /// `\wait [query]`.
    Wait(Option<String>),
}

/// Parses a command line (trimmed, starting with `\` or a bare `help`/`quit`/`exit`).
pub fn parse_command(line: &str) -> Result<Command, String> {
    let line = line.trim().trim_end_matches(';').trim_end();
    let (word, rest) = line.split_once(char::is_whitespace).map_or((line, ""), |(w, r)| (w, r.trim()));
    let word = word.strip_prefix('\\').unwrap_or(word).to_ascii_lowercase();
    let no_argument = |c: Command| if rest.is_empty() { Ok(c) } else { Err(format!("\\{word} takes no argument, got '{rest}'")) };
    match word.as_str() {
        "help" | "?" | "h" => no_argument(Command::Help),
        "quit" | "q" | "exit" => no_argument(Command::Quit),
        "timing" => match rest.to_ascii_lowercase().as_str() {
            "" => Ok(Command::Timing(None)),
            "on" => Ok(Command::Timing(Some(true))),
            "off" => Ok(Command::Timing(Some(false))),
            other => Err(format!("\\timing takes on or off, got '{other}'")),
        },
        "i" | "include" => {
            if rest.is_empty() {
                Err("\\i needs a file: \\i pipeline.sql".into())
            } else {
                Ok(Command::Include(rest.trim_matches('\'').to_string()))
            }
        }
        "explain" => {
            if rest.is_empty() {
                Err("\\explain needs a query: \\explain SELECT ... FROM source".into())
            } else {
                Ok(Command::Explain(rest.to_string()))
            }
        }
        "wait" => Ok(Command::Wait((!rest.is_empty()).then(|| rest.to_string()))),
        other => Err(format!("unknown command \\{other}; \\help lists the commands")),
    }
}

/// The settings `SET` changes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How previews show rows.
    pub result_mode: ResultMode,
    /// Where Kafka sources whose table does not say start.
    pub starting_offsets: Option<StartingOffsets>,
    /// When background queries run batches.
    pub trigger: Trigger,
}

impl Default for Settings {
    fn default() -> Self {
        Self { result_mode: ResultMode::Tail, starting_offsets: None, trigger: Trigger::ProcessingTime(std::time::Duration::ZERO) }
    }
}

/// The settings `SET` knows.
const SETTINGS: &[&str] = &["result_mode", "starting_offsets", "trigger"];

impl Settings {
    /// `SET key = value`; returns what to print.
    pub fn set(&mut self, key: &str, value: &str) -> Result<String, String> {
        match key {
            "result_mode" => self.result_mode = value.parse()?,
            "starting_offsets" => {
                self.starting_offsets = match value.to_ascii_lowercase().as_str() {
                    "earliest" => Some(StartingOffsets::Earliest),
                    "latest" => None,
                    other => return Err(format!("starting_offsets '{other}': use earliest or latest (a table's own starting_offsets option takes per-partition offsets)")),
                }
            }
            "trigger" => self.trigger = value.parse().map_err(|e| format!("trigger: {e}"))?,
            other => {
                let mut message = format!("unknown setting '{other}'");
                if let Some(near) = weir_sql::options::nearest(other, SETTINGS) {
                    message.push_str(&format!("; did you mean '{near}'?"));
                }
                return Err(format!("{message} (settings: {})", SETTINGS.join(", ")));
            }
        }
        Ok(format!("{key} = {value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse_command("\\help"), Ok(Command::Help));
        assert_eq!(parse_command("HELP;"), Ok(Command::Help));
        assert_eq!(parse_command("\\q"), Ok(Command::Quit));
        assert_eq!(parse_command("exit"), Ok(Command::Quit));
        assert_eq!(parse_command("\\timing on"), Ok(Command::Timing(Some(true))));
        assert_eq!(parse_command("\\i 'my file.sql'"), Ok(Command::Include("my file.sql".into())));
        assert_eq!(parse_command("\\explain SELECT * FROM e"), Ok(Command::Explain("SELECT * FROM e".into())));
        assert_eq!(parse_command("\\wait clean"), Ok(Command::Wait(Some("clean".into()))));
        assert_eq!(parse_command("\\foo"), Err("unknown command \\foo; \\help lists the commands".into()));
        assert_eq!(parse_command("\\i"), Err("\\i needs a file: \\i pipeline.sql".into()));
    }

    #[test]
    fn settings_are_checked() {
        let mut s = Settings::default();
        assert_eq!(s.set("result_mode", "changelog"), Ok("result_mode = changelog".into()));
        assert_eq!(s.result_mode, ResultMode::Changelog);
        assert!(s.set("result_mode", "grid").unwrap_err().contains("use tail, changelog or table"));
        s.set("starting_offsets", "EARLIEST").unwrap();
        assert_eq!(s.starting_offsets, Some(StartingOffsets::Earliest));
        s.set("trigger", "available-now").unwrap();
        assert_eq!(s.trigger, Trigger::AvailableNow);
        assert_eq!(
            s.set("result_mod", "table").unwrap_err(),
            "unknown setting 'result_mod'; did you mean 'result_mode'? (settings: result_mode, starting_offsets, trigger)"
        );
    }
}
