//! `weir optimize` and `weir vacuum`: upkeep of a Delta table a pipeline writes, run beside
//! it. The work is `weir_runtime::delta_upkeep`'s; this module reads the command's arguments
//! and prints its report on stdout (errors on stderr, exit code 1).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use weir_runtime::delta_upkeep::{self, OptimizeOptions, VacuumOptions};

/// `weir optimize TABLE ...`.
pub fn optimize(table: &str, storage: Vec<(String, String)>, options: OptimizeOptions) -> ExitCode {
    let storage = storage.into_iter().collect();
    finish(block_on(delta_upkeep::optimize(table, &storage, &options)).map(|r| r.to_string()))
}

/// `weir vacuum TABLE ...`.
pub fn vacuum(table: &str, storage: Vec<(String, String)>, options: VacuumOptions) -> ExitCode {
    let storage = storage.into_iter().collect();
    finish(block_on(delta_upkeep::vacuum(table, &storage, &options)).map(|r| r.to_string()))
}

/// Runs `work` to its end; its error as the message to print.
fn block_on<T, E: std::fmt::Display>(work: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(work).map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot start the async runtime: {e}")),
    }
}

/// Prints the report on stdout, or the error on stderr.
fn finish(report: Result<String, String>) -> ExitCode {
    match report {
        Ok(report) => match writeln!(std::io::stdout().lock(), "{report}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot print the report: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `128MB`, `1GiB`, `134217728`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    match weir_sql::options::parse_size(text) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("'{text}' is not a size: use a number of bytes or one such as 128MB or 1GB")),
    }
}

/// `7d`, `36h`, `1 day 12 hours`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    weir_sql::interval::parse_duration(text).map_err(|_| format!("'{text}' is not a duration: use one such as 7d, 36h or 90m"))
}

/// `KEY=VALUE` of `--storage`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE (a storage setting such as aws_region=eu-west-1)")),
    }
}
