//! Crash points, compiled in only with the `failpoints` feature (tests).
//!
//! `WEIR_FAILPOINT=<name>` aborts the process the first time it reaches `<name>`;
//! `WEIR_FAILPOINT=<name>:<batch>` only in that batch. Names: in the batch loop
//! `after_offsets`, `after_execute`, `after_sink_commit`, `after_state_commit` (stateful
//! queries), `after_commit_log`; in the Delta sink `before_delta_commit` (data files written,
//! the log not yet) and `after_delta_commit` (the commit is in the log, the records of its
//! data files in the checkpoint are not cleared yet); in the state files
//! `during_state_snapshot` (a snapshot made from the files, off the batch loop, has its
//! first rows in its staging file; the batch is that of its version).

/// Aborts the process if the failpoint `name` is armed for `batch_id`.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str, batch_id: u64) {
    let Ok(spec) = std::env::var("WEIR_FAILPOINT") else { return };
    let (wanted, batch) = match spec.split_once(':') {
        Some((n, b)) => (n, b.parse::<u64>().ok()),
        None => (spec.as_str(), None),
    };
    if wanted == name && batch.is_none_or(|b| b == batch_id) {
        eprintln!("weir: failpoint {name} hit in batch {batch_id}: aborting");
        std::process::abort();
    }
}

/// Without the `failpoints` feature this does nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str, _batch_id: u64) {}
