//! The Deduplicate operator alone: keys per second for string and integer keys, with state
//! that stays at about a minute of keys (see README.md for the figures).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use weir_benches::{events, operator};

const BATCH: usize = 65_536;

fn dedup(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, key) in [("string_key", 0), ("bigint_key", 1)] {
        group.bench_function(name, |b| {
            let mut op = operator(key, 60_000);
            let mut next = 0u64;
            // Input batches are made outside the timed part.
            b.iter_batched(
                || {
                    let batch = events(next, BATCH);
                    let watermark = next as i64 - 60_000;
                    next += BATCH as u64;
                    (batch, watermark)
                },
                |(batch, watermark)| {
                    let out = op.process_batch(std::slice::from_ref(&batch), watermark).expect("processes");
                    op.take_added();
                    op.evict(watermark).run();
                    std::hint::black_box(out)
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, dedup);
criterion_main!(benches);
