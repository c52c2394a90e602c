"""The Polars side of benches/engines/run: one row per event_id, into one Parquet file.

    POLARS_MAX_THREADS=N polars_job.py IN_DIR OUT.parquet N

`scan_ndjson(...).unique(subset="event_id")` (keep any row of an id, Polars' default) and
`sink_parquet` with snappy, as weir and DuckDB write (Polars' default is zstd). `ts` is read
as a string and parsed with its format: with `Datetime` in the scan's schema Polars 2.1 takes
about 8 s instead of 1 s here, guessing the format value by value. Prints {"query_s": ...,
"query_cpu_s": ...}: the query alone, without the interpreter's start and the import, and the
CPU time of the whole process (every thread) meanwhile.
"""
import glob
import json
import sys
import time

import polars as pl

in_dir, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
if pl.thread_pool_size() != threads:
    sys.exit(f"polars_job.py: Polars runs {pl.thread_pool_size()} threads, not {threads}: set POLARS_MAX_THREADS={threads}")
files = sorted(glob.glob(f"{in_dir}/*.json"))
schema = {"event_id": pl.String, "user_id": pl.Int64, "amount": pl.Float64, "ts": pl.String}
start, cpu = time.monotonic(), time.process_time()
(
    pl.scan_ndjson(files, schema=schema)
    .with_columns(pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC"))
    .unique(subset="event_id")
    .sink_parquet(out, compression="snappy")
)
query_s, query_cpu_s = time.monotonic() - start, time.process_time() - cpu
print(json.dumps({"query_s": query_s, "query_cpu_s": query_cpu_s, "polars": pl.__version__}))
