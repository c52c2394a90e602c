//! Crash points, compiled in only with the `failpoints` feature (tests).
//!
//! `WEIR_FAILPOINT=<name>` aborts the process the first time it reaches `<name>`;
//! `WEIR_FAILPOINT=<name>:<batch>` only in that batch. Names: in the batch loop
//! `after_offsets`, `after_execute`, `after_sink_commit`, `after_state_commit` (stateful
//! queries), `after_commit_log`, and `commit_error`, which is an error instead of an abort
//! ([`fail`]): a batch's commit fails before its tables commit, while the batch after it
//! may be being read; in the Delta sink `before_delta_commit` (data files written, the log
//! not yet) and `after_delta_commit` (the commit is in the log, the records of its
//! data files in the checkpoint are not cleared yet); in the state files
//! `during_state_snapshot` (a snapshot made from the files, off the batch loop, has its
//! first rows in its staging file; the batch is that of its version).

/// Aborts the process if the failpoint `name` is armed for `batch_id`.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str, batch_id: u64) {
    if armed(name, batch_id) {
        eprintln!("weir: failpoint {name} hit in batch {batch_id}: aborting");
        std::process::abort();
    }
}

/// An error, not an abort, if the failpoint `name` is armed for `batch_id`: for the paths a
/// crash does not take (a batch's commit that fails while the next batch is read).
#[cfg(feature = "failpoints")]
pub fn fail(name: &str, batch_id: u64) -> Result<(), String> {
    match armed(name, batch_id) {
        true => Err(format!("failpoint {name} hit in batch {batch_id}")),
        false => Ok(()),
    }
}

/// Whether `WEIR_FAILPOINT` names `name`, for `batch_id` or for every batch.
#[cfg(feature = "failpoints")]
fn armed(name: &str, batch_id: u64) -> bool {
    let Ok(spec) = std::env::var("WEIR_FAILPOINT") else { return false };
    let (wanted, batch) = match spec.split_once(':') {
        Some((n, b)) => (n, b.parse::<u64>().ok()),
        None => (spec.as_str(), None),
    };
    wanted == name && batch.is_none_or(|b| b == batch_id)
}

/// Without the `failpoints` feature this does nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str, _batch_id: u64) {}

/// Without the `failpoints` feature this never fails.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn fail(_name: &str, _batch_id: u64) -> Result<(), String> {
    Ok(())
}
