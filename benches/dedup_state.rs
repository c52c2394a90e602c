//! How big deduplication state gets: bytes per key in memory, and whether state in memory
//! and on disk stays bounded over a long stream with a watermark.
//!
//!     cargo run --release -p weir-benches --bin dedup-state -- [EVENTS] [DELAY_MS]
//!
//! Defaults: 10,000,000 events one millisecond apart, a one-minute watermark, batches of
//! 100,000 events, a state snapshot every 10 batches, and purge every 10 batches of what
//! loading the previous version does not need (as the batch loop does).

use std::time::Instant;

use weir_benches::{events, operator};
use weir_checkpoint::Checkpoint;
use weir_state::{DedupOperator, Place, StateFiles, StatefulOperator};

#[allow(clippy::print_stdout)]
fn main() {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let delay: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60_000);
    let batch = 100_000usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let checkpoint = Checkpoint::open(dir.path().to_str().expect("utf-8 path")).expect("checkpoint");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");

    // The operator as the batch loop drives it (weir_state::operator).
    let mut op = DedupOperator::new(operator(0, delay), "dedupeWithinWatermark");
    let files = StateFiles::new("dedup", 10, op.state_schema());
    let (mut max_keys, mut max_disk, mut processed, mut out_rows) = (0u64, 0u64, 0u64, 0u64);
    let mut process_secs = 0.0;
    let mut watermark = 0i64;
    let started = Instant::now();
    let mut version = 0u64;
    let mut last = Default::default();
    while processed < total {
        let n = batch.min((total - processed) as usize);
        let input = events(processed, n);
        let t = Instant::now();
        op.process(std::slice::from_ref(&input), Place::default(), watermark).expect("processes");
        while let Some(out) = op.next_output(watermark).expect("settles") {
            out_rows += out.num_rows() as u64;
        }
        let mut changes = Vec::new();
        while let Some(d) = op.next_delta(65_536, true).expect("state changes") {
            changes.push(d);
        }
        process_secs += t.elapsed().as_secs_f64();
        processed += n as u64;
        watermark = processed as i64 - 1 - delay;
        runtime
            .block_on(async {
                let mut delta = files.delta_writer(&checkpoint, version)?;
                for d in &changes {
                    delta.write(d).await?;
                }
                delta.finish().await?;
                if files.snapshot_due(version) {
                    let mut snapshot = files.snapshot_writer(&checkpoint, version)?;
                    for b in op.snapshot(65_536) {
                        snapshot.write(&b?).await?;
                    }
                    snapshot.finish().await?;
                }
                Ok::<_, weir_state::StateError>(())
            })
            .expect("state commit");
        if version.is_multiple_of(10) {
            runtime.block_on(files.purge(&checkpoint, version.saturating_sub(1))).expect("purge");
        }
        let metrics = op.take_metrics();
        max_keys = max_keys.max(metrics.num_rows_total);
        max_disk = max_disk.max(dir_size(&dir.path().join("state/dedup")));
        if version.is_multiple_of(20) {
            println!(
                "batch {version:>4}: {processed:>10} events, {:>7} keys in state, {:>6.1} MB in memory, {:>6.1} MB on disk",
                metrics.num_rows_total,
                metrics.memory_used_bytes as f64 / 1e6,
                dir_size(&dir.path().join("state/dedup")) as f64 / 1e6
            );
        }
        last = metrics;
        version += 1;
    }
    let keys = last.num_rows_total.max(1);
    println!("events: {processed}, kept: {out_rows}, batches: {version}, wall: {:.1} s", started.elapsed().as_secs_f64());
    println!("operator alone: {:.2} M events/s", processed as f64 / process_secs / 1e6);
    println!("state: max {max_keys} keys in memory, max {:.1} MB on disk", max_disk as f64 / 1e6);
    println!(
        "memory: {:.1} bytes per key in all (keys are 21 encoded bytes, stored inline)",
        last.memory_used_bytes as f64 / keys as f64
    );
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
