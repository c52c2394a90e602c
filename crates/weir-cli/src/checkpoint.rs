//! `weir checkpoint show` and `weir checkpoint state`: a checkpoint read for people and
//! scripts, never written (the library's `inspect` module does the reading).

use std::io::Write as _;
use std::process::ExitCode;

use weir_runtime::inspect::{KafkaLagOptions, StateQuery, StateRows};
use weir_runtime::{Result, SessionConfig};

/// `COLUMN=VALUE` of `--key`.
pub fn parse_key(text: &str) -> std::result::Result<(String, String), String> {
    split_pair(text).ok_or_else(|| format!("'{text}' is not COLUMN=VALUE (a key column and the value it shows, such as event_id=e-42)"))
}

/// `NAME=VALUE`: the name trimmed, the value as written.
fn split_pair(text: &str) -> Option<(String, String)> {
    text.split_once('=').filter(|(k, _)| !k.trim().is_empty()).map(|(k, v)| (k.trim().to_string(), v.to_string()))
}

/// `KEY=VALUE` of `--kafka-property`.
pub fn parse_property(text: &str) -> std::result::Result<(String, String), String> {
    split_pair(text).ok_or_else(|| format!("'{text}' is not KEY=VALUE (a librdkafka setting such as security.protocol=SASL_SSL)"))
}

/// `weir checkpoint show DIR [--json] [--bootstrap-servers HOST:PORT [--kafka-property KEY=VALUE]...]`.
pub fn show(dir: &str, json: bool, kafka: Option<&KafkaLagOptions>) -> ExitCode {
    let storage = SessionConfig::default().checkpoint_storage;
    print(block_on(async {
        let report = weir_runtime::inspect::show_checkpoint(dir, &storage, kafka).await?;
        Ok(match json {
            true => serde_json::to_string_pretty(&report).expect("a report serializes") + "\n",
            false => report.to_string(),
        })
    }))
}

/// `weir checkpoint state DIR [--operator ID] [--key COLUMN=VALUE]... [--batch N] [--limit N] [--json]`.
pub fn state(dir: &str, query: &StateQuery, json: bool) -> ExitCode {
    let storage = SessionConfig::default().checkpoint_storage;
    let read = block_on(weir_runtime::inspect::read_state(dir, &storage, query));
    print(read.and_then(|rows| {
        let footer = footer(&rows);
        if json {
            // JSON lines on stdout for scripts; what they are on stderr.
            let mut out = arrow::json::LineDelimitedWriter::new(Vec::new());
            out.write(&rows.rows).and_then(|()| out.finish()).map_err(|e| weir_runtime::WeirError::Config(e.to_string()))?;
            eprintln!("{footer}");
            Ok(String::from_utf8_lossy(&out.into_inner()).into_owned())
        } else {
            let table = arrow::util::pretty::pretty_format_batches(std::slice::from_ref(&rows.rows)).map_err(|e| weir_runtime::WeirError::Config(e.to_string()))?;
            Ok(format!("{table}\n{footer}\n"))
        }
    }))
}

/// What the rows are: operator, batch, how many.
fn footer(rows: &StateRows) -> String {
    let shown = rows.rows.num_rows();
    let count = match shown < rows.matched {
        true => format!("{shown} of {} rows (--limit 0 shows all)", rows.matched),
        false => format!("{shown} rows"),
    };
    format!("{count}: state of operator {} ({}) as of batch {}", rows.operator, rows.kind, rows.batch_id)
}

/// Runs `f` on a runtime of one thread: reading a checkpoint needs no more.
fn block_on<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| weir_runtime::WeirError::Config(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(f)
}

/// Writes `text` to stdout, or the error to stderr.
fn print(text: Result<String>) -> ExitCode {
    match text {
        Ok(text) => match std::io::stdout().lock().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write to stdout: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
