"""Reads the runs of benches/windows/run from WORK, prints the tables and writes WORK/results.json.

    report.py WORK EXPECTED.json RUN_NAME...

Each run NAME (engine-N, N files per trigger) left in WORK: NAME.times (process start and
exit, epoch seconds), NAME.rss (/usr/bin/time %M, KiB), NAME.rsstree (sampled peak of the
whole process tree, KiB), NAME.progress (StreamingQueryProgress JSON lines) and NAME.arrow
(the rows it wrote, from read_out.py). Exits 1 when weir and Spark wrote different rows or
report different state metrics in some batch, or either differs from the generator's figures.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from busy import busy_seconds  # noqa: E402
from datetime import datetime

import pyarrow.compute as pc
import pyarrow.feather as feather


def epoch(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


work, expected_path, names = sys.argv[1], sys.argv[2], sys.argv[3:]
expected = json.load(open(expected_path))
per_group = expected["partial_aggregate_bytes_per_group"]
runs, tables = {}, {}
for name in names:
    engine, per_trigger = name.rsplit("-", 1)
    start, end = map(float, open(f"{work}/{name}.times").read().split())
    batches = [json.loads(line) for line in open(f"{work}/{name}.progress") if line.startswith("{")]
    batches.sort(key=lambda b: b["batchId"])
    rows_in = sum(b["numInputRows"] for b in batches)
    busy = busy_seconds(batches)
    durations = {}
    for b in batches:
        for k, v in b["durationMs"].items():
            durations[k] = durations.get(k, 0) + v
    ops = [o for b in batches for o in b.get("stateOperators", []) if o["operatorName"] == "stateStoreSave"]
    # Per batch, what both engines must agree on (Spark's sink reports no row count).
    per_batch = [(b["numInputRows"], b["eventTime"].get("watermark"))
                 + tuple(o[k] for o in b.get("stateOperators", []) if o["operatorName"] == "stateStoreSave"
                         for k in ("numRowsTotal", "numRowsUpdated", "numRowsRemoved", "numRowsDroppedByWatermark"))
                 for b in batches]
    # State memory against the partial aggregates it holds, at the end of each batch.
    at_max = max(ops, key=lambda o: o["memoryUsedBytes"]) if ops else None
    ratios = [o["memoryUsedBytes"] / (o["numRowsTotal"] * per_group) for o in ops if o["numRowsTotal"] > 0]
    first = batches[0]
    first_start = epoch(first["timestamp"]) - start
    table = feather.read_table(f"{work}/{name}.arrow")
    tables[name] = table
    runs[name] = {
        "engine": engine,
        "files_per_trigger": int(per_trigger),
        "rows_in": rows_in,
        "rows_out": table.num_rows,
        "events_in_rows_out": pc.sum(table["n"]).as_py() or 0,
        "late_groups_dropped": sum(o["numRowsDroppedByWatermark"] for o in ops),
        "batches": len(batches),
        "batches_with_data": sum(1 for b in batches if b["numInputRows"] > 0),
        "wall_s": end - start,
        "rows_per_s": rows_in / (end - start),
        "rows_per_s_in_batches": rows_in / busy if busy else float("nan"),
        "startup_to_first_batch_start_s": first_start,
        "startup_to_first_batch_done_s": first_start + first["durationMs"]["triggerExecution"] / 1000,
        "peak_rss_mb": int(open(f"{work}/{name}.rss").read().split()[-1]) / 1024,
        "peak_rss_tree_mb": int(open(f"{work}/{name}.rsstree").read().split()[0]) / 1024,
        "duration_ms_sums": durations,
        "per_batch": per_batch,
        "state_groups_max": max((o["numRowsTotal"] for o in ops), default=0),
        "state_memory_max_bytes": at_max["memoryUsedBytes"] if at_max else 0,
        "state_groups_at_memory_max": at_max["numRowsTotal"] if at_max else 0,
        "state_memory_ratio_at_max": (at_max["memoryUsedBytes"] / (at_max["numRowsTotal"] * per_group))
        if at_max and at_max["numRowsTotal"] else float("nan"),
        "state_memory_ratio_worst": max(ratios, default=float("nan")),
    }

print(f"\nworkload: {expected['events']:,} events in {expected['files']} files, {expected['users']:,} users, "
      f"{expected['out_of_order']:,} out of order within the delay, {expected['late_placed']:,} placed late")
for n, e in expected["settings"].items():
    print(f"  {n} file(s) per trigger: {e['rows_out']:,} rows out ({e['events_in_rows_out']:,} events), "
          f"{e['late_groups']:,} late groups, {e['groups_left_open']:,} groups left open (watermark {e['final_watermark']})")
print()
print("| engine | files/trigger | batches (with data) | rows in | rows out | events in rows out | late groups dropped | wall "
      "| rows/s (wall) | rows/s (batches alone) | first batch starts | first batch done | peak RSS (`%M`) | peak RSS (tree) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs.values():
    print(f"| {r['engine']} | {r['files_per_trigger']} | {r['batches']} ({r['batches_with_data']}) | {r['rows_in']:,} | {r['rows_out']:,} | "
          f"{r['events_in_rows_out']:,} | {r['late_groups_dropped']:,} | {r['wall_s']:.2f} s | {r['rows_per_s']:,.0f} | "
          f"{r['rows_per_s_in_batches']:,.0f} | {r['startup_to_first_batch_start_s'] * 1000:,.0f} ms | "
          f"{r['startup_to_first_batch_done_s'] * 1000:,.0f} ms | {r['peak_rss_mb']:,.0f} MB | {r['peak_rss_tree_mb']:,.0f} MB |")
print()
print(f"State (`stateStoreSave`, at the end of each batch; partial aggregates = groups x {per_group} bytes: "
      f"{expected['key_bytes']} of encoded key, 8 of count):\n")
print("| engine | files/trigger | groups in state, max | memoryUsedBytes, max | groups then | partial aggregates then | ratio then | ratio, worst batch |")
print("|---|---|---|---|---|---|---|---|")
for r in runs.values():
    print(f"| {r['engine']} | {r['files_per_trigger']} | {r['state_groups_max']:,} | {r['state_memory_max_bytes']:,} | "
          f"{r['state_groups_at_memory_max']:,} | {r['state_groups_at_memory_max'] * per_group:,} | "
          f"{r['state_memory_ratio_at_max']:.2f} | {r['state_memory_ratio_worst']:.2f} |")
print()
for r in runs.values():
    d = r["duration_ms_sums"]
    print(f"{r['engine']}-{r['files_per_trigger']} durationMs summed over batches: "
          + ", ".join(f"{k} {v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])))
print()
status = 0
for n in sorted({r["files_per_trigger"] for r in runs.values()}):
    w, s = runs.get(f"weir-{n}"), runs.get(f"spark-{n}")
    if w and s:
        same = tables[f"weir-{n}"].equals(tables[f"spark-{n}"])
        same_batches = w["per_batch"] == s["per_batch"]
        print(f"{n} file(s) per trigger: weir/Spark rows/s = {w['rows_per_s'] / s['rows_per_s']:.1f}x over the run, "
              f"{w['rows_per_s_in_batches'] / s['rows_per_s_in_batches']:.1f}x in batches alone; peak RSS "
              f"{w['peak_rss_mb']:,.0f} vs {s['peak_rss_mb']:,.0f} MB; rows written "
              f"{'the same, row for row' if same else 'DIFFER'}: weir {w['rows_out']:,}, Spark {s['rows_out']:,}; "
              f"per batch (rows in, watermark, groups in state, updated, removed, late groups) "
              f"{'the same' if same_batches else 'DIFFER'}")
        if not same_batches:
            status = 1
            for i, (a, b) in enumerate(zip(w["per_batch"], s["per_batch"])):
                if a != b:
                    print(f"  batch {i}: weir {a}, Spark {b}")
        if not same:
            status = 1
            a = set(zip(*(tables[f"weir-{n}"][c].to_pylist() for c in ("window_start", "user_id", "n"))))
            b = set(zip(*(tables[f"spark-{n}"][c].to_pylist() for c in ("window_start", "user_id", "n"))))
            print(f"  only weir: {len(a - b):,} (e.g. {sorted(a - b)[:3]}); only Spark: {len(b - a):,} (e.g. {sorted(b - a)[:3]})")
    want = expected["settings"].get(str(n))
    for r in (w, s):
        if r and want:
            got = (r["rows_out"], r["events_in_rows_out"], r["late_groups_dropped"])
            exp = (want["rows_out"], want["events_in_rows_out"], want["late_groups"])
            if got != exp:
                status = 1
                print(f"  {r['engine']}: rows out, events in them, late groups {got}; the generator expects {exp}")
json.dump(runs, open(f"{work}/results.json", "w"), indent=1)
sys.exit(status)
