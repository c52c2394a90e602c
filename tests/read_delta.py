#!/usr/bin/env python3
"""Reads a Delta table with an engine other than weir, for weir's tests.

Prints one JSON document: the table's rows, properties and number of files (read by the
`deltalake` Python package), and its commits as written in `_delta_log/` (txn actions,
added and removed files with their dataChange flags, partition values),
so tests can check exactly-once without trusting weir's own code.

Usage: read_delta.py TABLE_DIR_OR_S3_URL [--columns COL,COL...]

An s3:// table is read from the S3 server the AWS_* variables name (AWS_ENDPOINT_URL and
credentials: the tests' moto server), its log and files listed with boto3.

With --columns, only those columns of the rows are read and printed (big tables read faster);
the commits are printed in full either way.
"""

import base64
import datetime
import decimal
import glob
import json
import os
import shutil
import sys
import tempfile

from deltalake import DeltaTable


def plain(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (list, tuple)):  # tuple: a MAP entry
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def openable(path, scratch):
    """A path deltalake can open the table at. Its listing of a local table's log decodes a
    '%' in the table's path a second time (`.../c d%20e/` is listed as `.../c d e/`), and it
    resolves symlinks, so such a table is read from a copy."""
    if "%" not in os.path.abspath(path):
        return path
    copy = os.path.join(scratch, "table")
    shutil.copytree(path, copy)
    return copy


def main(path, columns=None):
    if path.startswith("s3://"):
        storage = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION") if k in os.environ}
        storage["AWS_ALLOW_HTTP"] = "true"
        table = DeltaTable(path, storage_options=storage)
        data = table.to_pyarrow_table(columns=columns)
        report(path, table, data, S3Files(path))
        return
    if path.startswith(("az://", "abfss://")):
        # Azurite: AZURITE_BLOB_STORAGE_URL names the emulator. Rows and version only.
        table = DeltaTable(path, storage_options={"azure_storage_use_emulator": "true"})
        data = table.to_pyarrow_table(columns=columns)
        report(path, table, data, NoFiles())
        return
    with tempfile.TemporaryDirectory() as scratch:
        table = DeltaTable(openable(path, scratch))
        data = table.to_pyarrow_table(columns=columns)
        report(path, table, data, LocalFiles(path))


class LocalFiles:
    """The table's log entries and data files on local disk."""

    def __init__(self, path):
        self.path = path

    def log(self):
        for log_file in sorted(glob.glob(os.path.join(self.path, "_delta_log", "*.json"))):
            with open(log_file) as f:
                yield os.path.basename(log_file), f.read()

    def data_files(self):
        return sorted(
            os.path.relpath(p, self.path)
            for p in glob.glob(os.path.join(self.path, "**", "*.parquet"), recursive=True)
            if "_delta_log" not in p
        )


class NoFiles:
    """A store whose raw listing the reader does not do (Azure): no commits, no files."""

    def log(self):
        return iter(())

    def data_files(self):
        return []


class S3Files:
    """The table's log entries and data files in S3, listed with boto3 (not delta-rs)."""

    def __init__(self, url):
        import boto3

        bucket, _, prefix = url[len("s3://"):].partition("/")
        self.bucket, self.prefix = bucket, prefix.rstrip("/") + "/"
        self.s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))

    def keys(self):
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix):]

    def log(self):
        for key in sorted(k for k in self.keys() if k.startswith("_delta_log/") and k.endswith(".json")):
            body = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read().decode()
            yield os.path.basename(key), body

    def data_files(self):
        return sorted(k for k in self.keys() if k.endswith(".parquet") and not k.startswith("_delta_log/"))


def report(path, table, data, files):
    commits = []
    for name, text in files.log():
        actions = [json.loads(line) for line in text.splitlines() if line.strip()]
        commits.append({
            "version": int(name[:20]),
            "txns": [a["txn"] for a in actions if "txn" in a],
            "adds": [a["add"]["path"] for a in actions if "add" in a],
            "removes": [a["remove"]["path"] for a in actions if "remove" in a],
            "dataChange": [a[k]["dataChange"] for a in actions for k in ("add", "remove") if k in a],
            "partitionValues": [a["add"].get("partitionValues", {}) for a in actions if "add" in a],
            "operation": next((a["commitInfo"].get("operation") for a in actions if "commitInfo" in a), None),
        })
    on_disk = files.data_files()
    print(json.dumps({
        "version": table.version(),
        "columns": data.column_names,
        "partitionColumns": table.metadata().partition_columns,
        "configuration": table.metadata().configuration,
        "activeFiles": len(table.file_uris()),
        "rows": [plain(r) for r in data.to_pylist()],
        "commits": commits,
        "dataFilesOnDisk": on_disk,
    }))


if __name__ == "__main__":
    args = sys.argv[1:]
    columns = None
    if len(args) == 3 and args[1] == "--columns":
        columns = [c for c in args[2].split(",") if c]
    elif len(args) != 1:
        sys.exit("usage: read_delta.py TABLE_DIR [--columns COL,COL...]")
    main(args[0], columns)
    sys.stdout.flush()
    # Skip interpreter teardown: under load, Arrow's thread pools can abort it
    # ("terminate called without an active exception") after the output is complete.
    os._exit(0)
