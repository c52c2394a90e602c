"""Prints the table of benches/delta/run from its WORK dir.

    report.py WORK RUN_NAME...      # names are <copy|dedup>-<files per trigger>-<run>
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from busy import busy_seconds  # noqa: E402

work, names = sys.argv[1], sys.argv[2:]
expected = json.load(open(f"{work}/expected.json"))


def run(name):
    start, end = map(float, open(f"{work}/{name}.times").read().split())
    batches = [json.loads(l) for l in open(f"{work}/{name}.progress") if l.startswith("{")]
    rows_in = sum(b["numInputRows"] for b in batches)
    busy = busy_seconds(batches)
    return {
        "rows_in": rows_in,
        "batches": sum(1 for b in batches if b["numInputRows"] > 0),
        "wall": end - start,
        "rows_per_s": rows_in / (end - start),
        "rows_per_s_batches": rows_in / busy if busy else float("nan"),
        "rss_mb": int(open(f"{work}/{name}.rss").read().split()[-1]) / 1024,
    }


bronze = run("bronze")
print(f"\nworkload: {expected['events']:,} events in {expected['files']} files; bronze written by weir in "
      f"{bronze['wall']:.2f} s ({bronze['rows_per_s']:,.0f} rows/s, {bronze['batches']} commits, peak RSS {bronze['rss_mb']:.0f} MB)\n")
print("| run | files/trigger | batches | rows in | rows out | wall | rows/s (wall) | rows/s (batches alone) | peak RSS |")
print("|---|---|---|---|---|---|---|---|---|")
status = 0
for name in names:
    kind, n, _ = name.split("-")
    r = run(name)
    out = int(open(f"{work}/{name}.count").read())
    if kind == "copy":
        want = expected["events"]
    elif n == "1":
        want = expected["expected_rows_one_file_per_trigger"]
    else:
        want = expected["expected_rows_all_files_in_one_batch"]
    ok = out == want and r["rows_in"] == expected["events"]
    status |= not ok
    print(f"| {name} | {n} | {r['batches']} | {r['rows_in']:,} | {out:,}{'' if ok else f' (WANTED {want:,})'} | {r['wall']:.2f} s | "
          f"{r['rows_per_s']:,.0f} | {r['rows_per_s_batches']:,.0f} | {r['rss_mb']:.0f} MB |")
sys.exit(status)
