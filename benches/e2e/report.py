"""Reads the runs of benches/e2e/run from WORK and prints one table (and WORK/results.json).

    report.py WORK EXPECTED.json RUN_NAME...

Each run NAME (engine-N, N files per trigger) left in WORK: NAME.times (process start and
exit, epoch seconds), NAME.rss (/usr/bin/time %M, KiB), NAME.rsstree (sampled peak of the
whole process tree, KiB), NAME.progress (StreamingQueryProgress JSON lines) and NAME.count
(rows in the output table, counted by an independent reader).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from busy import busy_seconds  # noqa: E402
from datetime import datetime


def epoch(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()



work, expected_path, names = sys.argv[1], sys.argv[2], sys.argv[3:]
expected = json.load(open(expected_path))
runs = {}
for name in names:
    engine, per_trigger = name.rsplit("-", 1)
    start, end = map(float, open(f"{work}/{name}.times").read().split())
    batches = [json.loads(l) for l in open(f"{work}/{name}.progress") if l.startswith("{")]
    batches.sort(key=lambda b: b["batchId"])
    rows_in = sum(b["numInputRows"] for b in batches)
    busy = busy_seconds(batches)
    ops = [b["stateOperators"][0] for b in batches if b.get("stateOperators")]
    first = batches[0]
    first_start = epoch(first["timestamp"]) - start
    first_done = first_start + first["durationMs"]["triggerExecution"] / 1000
    runs[name] = {
        "engine": engine,
        "files_per_trigger": int(per_trigger),
        "rows_in": rows_in,
        "rows_out": int(open(f"{work}/{name}.count").read()),
        "duplicates_dropped": sum(o["customMetrics"].get("numDroppedDuplicateRows", 0) for o in ops),
        "late_dropped": sum(o["numRowsDroppedByWatermark"] for o in ops),
        "batches": len(batches),
        "batches_with_data": sum(1 for b in batches if b["numInputRows"] > 0),
        "wall_s": end - start,
        "rows_per_s": rows_in / (end - start),
        "rows_per_s_in_batches": rows_in / busy if busy else float("nan"),
        "startup_to_first_batch_start_s": first_start,
        "startup_to_first_batch_done_s": first_done,
        "peak_rss_mb": int(open(f"{work}/{name}.rss").read().split()[-1]) / 1024,
        "peak_rss_tree_mb": int(open(f"{work}/{name}.rsstree").read().split()[0]) / 1024,
    }

print(f"\nworkload: {expected['events']:,} events in {expected['files']} files, {expected['duplicates']:,} duplicates, "
      f"{expected['late']:,} late rows; expected rows out: {expected['expected_rows_one_file_per_trigger']:,} "
      f"(1 file per trigger), {expected['expected_rows_all_files_in_one_batch']:,} (all files in one batch)\n")
print("| engine | files/trigger | batches (with data) | rows in | rows out | dups dropped | late dropped | wall | rows/s (wall) | rows/s (batches alone) | first batch starts | first batch done | peak RSS (%M) | peak RSS (tree) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs.values():
    print(f"| {r['engine']} | {r['files_per_trigger']} | {r['batches']} ({r['batches_with_data']}) | {r['rows_in']:,} | {r['rows_out']:,} | "
          f"{r['duplicates_dropped']:,} | {r['late_dropped']:,} | {r['wall_s']:.2f} s | {r['rows_per_s']:,.0f} | "
          f"{r['rows_per_s_in_batches']:,.0f} | {r['startup_to_first_batch_start_s'] * 1000:,.0f} ms | "
          f"{r['startup_to_first_batch_done_s'] * 1000:,.0f} ms | {r['peak_rss_mb']:,.0f} MB | {r['peak_rss_tree_mb']:,.0f} MB |")
print()
status = 0
for n in sorted({r["files_per_trigger"] for r in runs.values()}):
    w, s = runs.get(f"weir-{n}"), runs.get(f"spark-{n}")
    if w and s:
        same = w["rows_out"] == s["rows_out"]
        print(f"{n} file(s) per trigger: weir/Spark rows/s = {w['rows_per_s'] / s['rows_per_s']:.1f}x over the run, "
              f"{w['rows_per_s_in_batches'] / s['rows_per_s_in_batches']:.1f}x in batches alone; rows out "
              f"{'the same' if same else 'DIFFER'}: weir {w['rows_out']:,}, Spark {s['rows_out']:,}")
        status |= not same
    want = expected["expected_rows_one_file_per_trigger"] if n == 1 else None
    for r in (w, s):
        if r and want is not None and r["rows_out"] != want:
            print(f"  {r['engine']}: {r['rows_out']:,} rows out, the generator expects {want:,}")
json.dump(runs, open(f"{work}/results.json", "w"), indent=1)
sys.exit(status)
