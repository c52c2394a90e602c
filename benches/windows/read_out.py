"""Reads what one engine wrote and saves it in one form, sorted, for benches/windows/report.py.

    read_out.py delta|parquet PATH OUT.arrow

`delta`: weir's Delta table, read with Python deltalake. `parquet`: Spark's Parquet sink,
read with pyarrow (it skips `_spark_metadata`, which lists the committed files; a clean run
leaves no uncommitted file). Spark writes timestamps as INT96 (nanoseconds, no time zone)
and weir as microseconds in UTC: both become microseconds since the epoch (Int64), with
user_id as a string and n as Int64, sorted by window_start, user_id.
"""
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.feather as feather

kind, path, out = sys.argv[1:4]
if kind == "delta":
    from deltalake import DeltaTable

    table = DeltaTable(path).to_pyarrow_table()
else:
    table = ds.dataset(path, format="parquet").to_table()


def micros(column):
    t = column.type
    if pa.types.is_timestamp(t):
        return pc.cast(pc.cast(column, pa.timestamp("us", tz=t.tz)), pa.int64())
    raise SystemExit(f"read_out.py: {path}: a window bound is {t}, not a timestamp")


table = pa.table({
    "window_start": micros(table["window_start"]),
    "window_end": micros(table["window_end"]),
    "user_id": pc.cast(table["user_id"], pa.string()),
    "n": pc.cast(table["n"], pa.int64()),
}).sort_by([("window_start", "ascending"), ("user_id", "ascending")])
feather.write_feather(table.combine_chunks(), out, compression="uncompressed")
print(table.num_rows)
