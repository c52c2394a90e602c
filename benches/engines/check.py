"""Checks the rows every run of benches/engines/run wrote, with DuckDB as the independent reader
(weir's Delta table through the files its log lists, read with `deltalake`).

    check.py WORK IN_DIR EXPECTED.json RUN...        # RUN: r<N>-<engine>, its output in WORK/RUN

The reference is the input with one row per event_id, the earliest by event time (what weir's
`DISTINCT ON (event_id) ... ORDER BY event_id, ts` keeps). Every run must have:
- exactly one row per event_id, and the reference's ids: all of them, except for weir with one
  file per trigger, which drops the generator's late rows (ids `late-...`, at or below the
  watermark from the third batch on) and must have exactly the rest;
- only rows that are in the input (all four columns);
- for weir, exactly the reference's rows: so weir with 1 and with 20 files per trigger wrote
  the same rows as each other, less the late rows the smaller batches drop.
DuckDB and Polars keep any row of a duplicated id; how many of theirs are the earliest is
printed, not checked. Exits non-zero and says what differs when a check fails; prints
"rows ok" otherwise.
"""
import json
import sys

import duckdb
from deltalake import DeltaTable

work, in_dir, expected_path, *runs = sys.argv[1:]
expected = json.load(open(expected_path))
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(
    f"""CREATE TABLE input AS SELECT event_id, user_id, amount, epoch_us(ts) AS ts_us
    FROM read_json('{in_dir}/*.json', format = 'newline_delimited',
      columns = {{event_id: 'VARCHAR', user_id: 'BIGINT', amount: 'DOUBLE', ts: 'TIMESTAMP'}})"""
)
con.execute("CREATE TABLE ref AS SELECT DISTINCT ON (event_id) * FROM input ORDER BY event_id, ts_us")
con.execute("CREATE TABLE ref_on_time AS SELECT * FROM ref WHERE NOT starts_with(event_id, 'late-')")
n_input, n_ref, n_on_time = (
    con.sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("input", "ref", "ref_on_time")
)
failures = []
if n_input != expected["events"]:
    failures.append(f"the input has {n_input:,} rows, the generator wrote {expected['events']:,}")
if n_ref != expected["expected_rows_all_files_in_one_batch"]:
    failures.append(f"the input has {n_ref:,} distinct ids, the generator says {expected['expected_rows_all_files_in_one_batch']:,}")
if n_on_time != expected["expected_rows_one_file_per_trigger"]:
    failures.append(f"the input has {n_on_time:,} ids that are not late-..., the generator says {expected['expected_rows_one_file_per_trigger']:,}")

for run in runs:
    engine = run.split("-", 1)[1]
    path = f"{work}/{run}/out"
    files = DeltaTable(path).file_uris() if engine.startswith("weir") else [f"{path}.parquet"]
    con.execute("DROP TABLE IF EXISTS got")
    con.execute(
        "CREATE TABLE got AS SELECT event_id, user_id, amount, epoch_us(ts) AS ts_us FROM read_parquet($files)",
        {"files": files},
    )
    want = "ref_on_time" if engine == "weir-1" else "ref"
    rows, ids = con.sql("SELECT count(*), count(DISTINCT event_id) FROM got").fetchone()
    missing = con.sql(f"SELECT count(*) FROM (SELECT event_id FROM {want} EXCEPT SELECT event_id FROM got)").fetchone()[0]
    extra = con.sql(f"SELECT count(*) FROM (SELECT event_id FROM got EXCEPT SELECT event_id FROM {want})").fetchone()[0]
    not_input = con.sql("SELECT count(*) FROM (SELECT * FROM got EXCEPT SELECT * FROM input)").fetchone()[0]
    earliest = con.sql(f"SELECT count(*) FROM got JOIN {want} USING (event_id, user_id, amount, ts_us)").fetchone()[0]
    problems = []
    if rows != ids:
        problems.append(f"{rows - ids:,} rows repeat an event_id")
    if missing or extra:
        problems.append(f"{missing:,} ids missing and {extra:,} ids that should not be there")
    if not_input:
        problems.append(f"{not_input:,} rows that are not in the input")
    if engine.startswith("weir") and earliest != rows:
        problems.append(f"{rows - earliest:,} rows are not the earliest of their id")
    status = "; ".join(problems) if problems else "ok"
    print(f"{run}: {rows:,} rows, {ids:,} ids, {earliest:,} of them the earliest row of their id: {status}", file=sys.stderr)
    if problems:
        failures.append(f"{run}: {status}")

if failures:
    print("ROWS DIFFER:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"rows ok: {len(runs)} runs; one row per event_id; {n_ref:,} ids "
      f"({n_on_time:,} for weir at 1 file per trigger, which drops the {n_ref - n_on_time:,} late rows); "
      "every row from the input; weir's rows the earliest of each id in both settings")
