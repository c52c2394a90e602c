#!/usr/bin/env python3
"""Reads a Delta table with DuckDB's delta extension, for weir's tests: a reader that shares
no code with weir or with the `deltalake` package of tests/read_delta.py.

Prints one JSON document: {"rows": [...]}, each row an object of the table's columns.

Usage: read_delta_duckdb.py TABLE_DIR [--columns COL,COL...]
"""

import datetime
import decimal
import glob
import json
import os
import sys

import duckdb
import duckdb_extension_delta


def plain(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def main():
    table = os.path.abspath(sys.argv[1])
    columns = "*"
    if "--columns" in sys.argv:
        columns = ", ".join(f'"{c}"' for c in sys.argv[sys.argv.index("--columns") + 1].split(","))
    # The extension's wheel holds the binary for its DuckDB version; load it from there
    # rather than downloading it.
    extension = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension"))[0]
    con = duckdb.connect()
    con.execute(f"LOAD '{extension}'")
    result = con.execute(f"SELECT {columns} FROM delta_scan(?)", [table])
    names = [d[0] for d in result.description]
    rows = [{n: plain(v) for n, v in zip(names, row)} for row in result.fetchall()]
    json.dump({"rows": rows}, sys.stdout)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
