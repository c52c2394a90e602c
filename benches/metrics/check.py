#!/usr/bin/env python3
"""Checks a run's Delta table: one row per event_id, as many rows as the workload says the
setting writes (benches/e2e/gen.py's expected.json: late rows are dropped at one file per
trigger, kept when every file is in one batch; FILES_PER_TRIGGER is 1 or 20).

    check.py TABLE EXPECTED.json FILES_PER_TRIGGER
"""
import json
import sys

import pyarrow.compute as pc
from deltalake import DeltaTable

table, expected, setting = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
ids = DeltaTable(table).to_pyarrow_table(columns=["event_id"]).column("event_id")
rows, unique = len(ids), len(pc.unique(ids))
want = expected["expected_rows_one_file_per_trigger" if setting == "1" else "expected_rows_all_files_in_one_batch"]
if rows != unique or rows != want:
    sys.exit(f"{table}: {rows} rows, {unique} ids, expected {want}")
