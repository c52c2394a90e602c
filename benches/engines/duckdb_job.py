"""The DuckDB side of benches/engines/run: one row per event_id, into one Parquet file.

    duckdb_job.py IN_DIR OUT.parquet THREADS [auto]

`SELECT DISTINCT ON (event_id) *` without ORDER BY (the cheapest form: DuckDB keeps any row of
an id), the JSON read with the declared columns as weir's CREATE TABLE declares them, snappy
Parquet (DuckDB's default, as weir's). With `auto`, read_json infers the columns from a
sample instead (engine duckdb-auto in benches/engines/run): slower, and what issue 21's
DuckDB figure matches. Prints {"query_s": ..., "query_cpu_s": ...}: the COPY alone, without the
interpreter's start and the import, and the CPU time of the whole process (every thread)
meanwhile.
"""
import json
import sys
import time

import duckdb

in_dir, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
infer = sys.argv[4:] == ["auto"]
columns = "" if infer else (
    ", columns = {event_id: 'VARCHAR', user_id: 'BIGINT', amount: 'DOUBLE', ts: 'TIMESTAMP'}"
)
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute("SET TimeZone = 'UTC'")
start, cpu = time.monotonic(), time.process_time()
con.execute(
    f"""COPY (
      SELECT DISTINCT ON (event_id) *
      FROM read_json('{in_dir}/*.json', format = 'newline_delimited'{columns})
    ) TO '{out}' (FORMAT parquet, COMPRESSION snappy)"""
)
query_s, query_cpu_s = time.monotonic() - start, time.process_time() - cpu
print(json.dumps({"query_s": query_s, "query_cpu_s": query_cpu_s, "duckdb": duckdb.__version__}))
