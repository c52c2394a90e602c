"""Prints the tables of benches/engines/run from its runs in WORK (and writes WORK/results.json).

    report.py WORK EVENTS THREADS RUN...     # RUN: r<N>-<engine>, in the order they ran

Each RUN directory holds measure.json (benches/engines/measure.py), stdout and stderr. Rows/s
is input events / wall time of the whole process (start-up, imports and the final commit
included); "query alone" divides by the time inside: the DuckDB COPY or Polars query as the job
timed it, and for weir the time some batch ran (benches/busy.py: batches overlap). Cores busy is the process's
user + sys CPU over its wall time; CPU per million rows counts input events. For weir, "in the
batches" is the CPU over the time from the first batch with rows to the end of the last one
(their progress events' `timestamp` and `triggerExecution`), from measure.py's samples: the
batch alone at 20 files per trigger, without the start-up, the no-data batch and the exit.
"""
import datetime
import json
import statistics
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from busy import busy_seconds  # noqa: E402

work, events, threads, *runs = sys.argv[1:]
events, threads = int(events), int(threads)

def cpu_at(samples, t):
    """The process's CPU seconds at unix time `t`, between the samples around it."""
    for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c0
    return None


def batches_busy(batches, samples):
    """Cores busy from the start of the first batch with rows to the end of the last one."""
    spans = []
    for b in batches:
        if b["numInputRows"] > 0:
            start = datetime.datetime.fromisoformat(b["timestamp"].replace("Z", "+00:00")).timestamp()
            spans.append((start, start + b["durationMs"]["triggerExecution"] / 1000))
    if not spans:
        return None
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    a, b = cpu_at(samples, start), cpu_at(samples, end)
    return (b - a) / (end - start) if a is not None and b is not None and end > start else None


results = []
for run in runs:
    number, engine = run.split("-", 1)
    job_key = engine.split("-")[0]
    m = json.load(open(f"{work}/{run}/measure.json"))
    if engine.startswith("weir"):
        batches = [json.loads(l) for l in open(f"{work}/{run}/stderr") if l.startswith("{")]
        query_s = busy_seconds(batches)
        rows_in = sum(b["numInputRows"] for b in batches)
        if rows_in != events:
            sys.exit(f"report.py: {run} read {rows_in:,} rows, not {events:,}")
        version = ""
        in_batches = batches_busy(batches, m.get("cpu_samples") or [])
    else:
        job = json.loads(open(f"{work}/{run}/stdout").read())
        query_s, version = job["query_s"], job.get(job_key, "")
        in_batches = job["query_cpu_s"] / query_s if "query_cpu_s" in job and query_s > 0 else None
    cpu = m["user_s"] + m["sys_s"]
    results.append({
        "run": int(number[1:]), "engine": engine, "version": version,
        "wall_s": m["wall_s"], "cpu_s": cpu, "rows_per_s": events / m["wall_s"],
        "cores_busy": cpu / m["wall_s"], "cpu_s_per_m_rows": cpu / (events / 1e6),
        "peak_rss_mb": m["peak_rss_kib"] / 1024, "query_s": query_s,
        "rows_per_s_query": events / query_s, "others_cores": m["others_cores"], "stolen_cores": m.get("stolen_cores"),
        "load1_before": m["load1_before"], "cores_busy_in_batches": in_batches,
    })
json.dump(results, open(f"{work}/results.json", "w"), indent=1)

engines = list(dict.fromkeys(r["engine"] for r in results))
by = {e: [r for r in results if r["engine"] == e] for e in engines}


def name(engine):
    version = by[engine][0]["version"]
    return {
        "duckdb": f"DuckDB {version} `DISTINCT ON` -> Parquet",
        "duckdb-auto": f"DuckDB {version} `DISTINCT ON` -> Parquet, columns inferred",
        "polars": f"Polars {version} `unique` -> Parquet",
        "weir-20": "weir, 20 files per trigger, whole process",
        "weir-1": "weir, 1 file per trigger, whole process",
    }.get(engine, engine)


def mega(x):
    return f"{x / 1e6:.2f} M"


def med(engine, key):
    return statistics.median(r[key] for r in by[engine])


def busy_in_batches(runs_of):
    """The median of the runs' cores busy in their batches (weir) or their query (the batch
    engines), shown; "-" when no run has it."""
    values = [r["cores_busy_in_batches"] for r in runs_of if r["cores_busy_in_batches"] is not None]
    return f"{statistics.median(values):.2f}" if values else "-"


print(f"\nEach run, in the order they ran ({events:,} events, {threads} threads):\n")
print("| run | engine | wall | CPU (user+sys) | rows/s | cores busy | cores busy in the batches or query | CPU s / M rows | peak RSS | rows/s, query alone | others' cores busy | stolen by the host (counted in others') | load (1 min) before |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in results:
    print(f"| {r['run']} | {r['engine']} | {r['wall_s']:.2f} s | {r['cpu_s']:.2f} s | {mega(r['rows_per_s'])} | "
          f"{r['cores_busy']:.2f} | {busy_in_batches([r])} | {r['cpu_s_per_m_rows']:.2f} | {r['peak_rss_mb']:.0f} MB | "
          f"{mega(r['rows_per_s_query'])} | {r['others_cores']:.2f} | "
          f"{'-' if r['stolen_cores'] is None else format(r['stolen_cores'], '.2f')} | {r['load1_before']:.2f} |")

def table(title, runs_by):
    print(f"\n| engine ({title}) | rows/s, range | median | cores busy, median | cores busy in the batches or query, median | CPU s per M rows, median | peak RSS, median | rows/s in the query alone, median |")
    print("|---|---|---|---|---|---|---|---|")
    for e in engines:
        if not runs_by.get(e):
            continue
        m = lambda key: statistics.median(r[key] for r in runs_by[e])
        rates = [r["rows_per_s"] for r in runs_by[e]]
        print(f"| {name(e)} | {min(rates) / 1e6:.2f}-{mega(max(rates))} | {mega(m('rows_per_s'))} | "
              f"{m('cores_busy'):.2f} | {busy_in_batches(runs_by[e])} | {m('cpu_s_per_m_rows'):.2f} s | {m('peak_rss_mb'):.0f} MB | "
              f"{mega(m('rows_per_s_query'))} |")


runs_each = min(len(v) for v in by.values())
table(f"{runs_each} run{'s' if runs_each > 1 else ''} each, alternating", by)
# On a shared machine another process can take a core during a run; the wall time (not so much
# the CPU time) then says more about the neighbour than about the engine. The same table over
# the runs that had the machine to themselves, when some did not:
QUIET = 0.25
quiet = {e: [r for r in v if r["others_cores"] < QUIET] for e, v in by.items()}
if any(len(quiet[e]) < len(by[e]) for e in engines) and any(quiet.values()):
    counts = ", ".join(f"{e} {len(quiet[e])}" for e in engines)
    table(f"only runs with others' cores busy < {QUIET}: {counts}", quiet)

print()
for weir in (e for e in engines if e.startswith("weir")):
    for other in (e for e in ("duckdb", "duckdb-auto", "polars") if e in by):
        pairs = {r["run"]: r["rows_per_s"] for r in by[other]}
        ratios = [r["rows_per_s"] / pairs[r["run"]] for r in by[weir] if r["run"] in pairs]
        print(f"- {weir} / {other} rows/s, run by run: {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"median {statistics.median(ratios):.2f}")

targets = []
if "duckdb" in by:
    for weir, goal in (("weir-20", 1.0), ("weir-1", 0.8)):
        if weir in by:
            ratio = med(weir, "rows_per_s") / med("duckdb", "rows_per_s")
            targets.append(f"{weir} rows/s >= {goal:.1f}x DuckDB's: {ratio:.2f}x of the medians")
if "weir-20" in by:
    duck = f"; DuckDB {busy_in_batches(by['duckdb'])} in its query" if "duckdb" in by else ""
    targets.append(f"cores busy >= 1.8 (weir-20): {med('weir-20', 'cores_busy'):.2f} over the whole process, "
                   f"{busy_in_batches(by['weir-20'])} in the batch{duck}")
    targets.append(f"CPU per M rows <= 1.0 s (weir-20): {med('weir-20', 'cpu_s_per_m_rows'):.2f} s")
if targets:
    print("\nIssue 21's targets, where these runs put them:\n\n- " + "\n- ".join(targets))
