#!/usr/bin/env python3
"""Latency from source to Delta commit, from the runs of benches/latency/run in WORK.

    report.py WORK NAME...        # NAME = <query>-<rows per second>, e.g. plain-1000

Each run NAME left in WORK: NAME.log (weir's stderr: StreamingQueryProgress JSON lines),
NAME.times (process start, SIGINT, exit; epoch seconds), NAME.rss (/usr/bin/time '%M %U %S') and
NAME-out (the Delta table). Prints a block per run, then one markdown table of all runs, and
writes WORK/results.json. Exits non-zero if a table does not hold the rows the batches wrote.

How latency is measured, per row, weighting every row the same:

- When a row exists. The datagen source makes rows available at `rows_per_second` from the
  moment the query starts its batch loop, t0: `available = floor((now - t0) * rate)`, so row
  i (0-based, offset i) exists from t0 + (i + 1) / rate. The first batch reads what
  accumulated since t0.
- t0 is not in the progress, but each batch bounds it. A batch plans its end offset
  (`endOffset.rows`, the rows available then) just before its `timestamp` T, so
  end <= (T - t0) * rate, that is t0 <= T - end / rate, for every batch. The estimate is the
  minimum over batches: some batch plans just as a row appears, which makes its bound tight
  to well under a millisecond. (T is whole milliseconds, rounded down, so the estimate can be
  up to 1 ms early.) The other side comes from `latestOffset.rows`, which datagen reads once
  the batch is done, at or after T - durationMs.latestOffset + durationMs.triggerExecution:
  latest + 1 > (that time - t0) * rate gives a lower bound. The script prints both; on a
  normal run they are a millisecond or two apart.
- When a row is committed. Its batch is done at T + durationMs.triggerExecution: the Delta
  commit and weir's own commits/N are both written (for datagen, durationMs.latestOffset,
  the time before T, is 0 ms). The Delta commit itself lands within addBatch, at the latest
  T + walCommit + getBatch + addBatch: the script prints the percentiles to that point too.
- Within a batch, latencies form an arithmetic series (one row every 1 / rate), so the
  percentiles are computed exactly by counting, without listing the rows.
"""
import json
import math
import os
import sys
from datetime import datetime

# Issue 7's targets: rows per second -> (p50 ms, p99 ms).
TARGETS = {1000: (50, 200)}


def epoch_ms(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def rows(offset):
    return (offset or {}).get("rows", 0)


class Spans:
    """Rows [s, e) of each batch, committed at C: row i's latency is C - t0 - (i + 1) * step."""

    def __init__(self, batches, t0, step, commit):
        self.spans = [(commit(b) - t0, b["start"], b["end"]) for b in batches]
        self.step = step
        self.total = sum(e - s for _, s, e in self.spans)

    def at_most(self, x):
        n = 0
        for a, s, e in self.spans:
            first = max(s, math.ceil((a - x) / self.step - 1 - 1e-9))
            n += max(0, e - first)
        return n

    def percentile(self, q):
        lo = min(a - e * self.step for a, s, e in self.spans)
        hi = self.max()
        want = math.ceil(q * self.total)
        while hi - lo > 0.01:
            mid = (lo + hi) / 2
            if self.at_most(mid) >= want:
                hi = mid
            else:
                lo = mid
        return hi

    def max(self):
        return max(a - (s + 1) * self.step for a, s, e in self.spans)


def durations(bs, key):
    return sorted(b["durationMs"][key] for b in bs)


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def analyse(work, name):
    query, rate = name.rsplit("-", 1)
    rate = int(rate)
    step = 1000 / rate  # ms between rows
    progress = [json.loads(l) for l in open(f"{work}/{name}.log") if l.startswith("{")]
    progress.sort(key=lambda p: p["batchId"])
    started, sigint, ended = map(float, open(f"{work}/{name}.times").read().split())
    batches = []
    for p in progress:
        src = p["sources"][0]
        d = p["durationMs"]
        batches.append({
            "id": p["batchId"],
            "T": epoch_ms(p["timestamp"]),
            "start": rows(src["startOffset"]),
            "end": rows(src["endOffset"]),
            "latest": rows(src["latestOffset"]),
            "durationMs": d,
            "out": p["sink"]["numOutputRows"],
            "version": p["sink"].get("version"),
        })
    data = [b for b in batches if b["end"] > b["start"]]
    t0 = min(b["T"] - b["end"] * step for b in data)
    t0_low = max(b["T"] - b["durationMs"]["latestOffset"] - 1 + b["durationMs"]["triggerExecution"] - (b["latest"] + 1) * step
                 for b in data)
    done = Spans(data, t0, step, lambda b: b["T"] + b["durationMs"]["triggerExecution"])
    delta = Spans(data, t0, step, lambda b: b["T"] + sum(b["durationMs"][k] for k in ("walCommit", "getBatch", "addBatch")))
    n_rows = done.total
    last_done = max(b["T"] + b["durationMs"]["triggerExecution"] for b in data)
    n = min(100, len(data) // 2)
    first, last = data[:n], data[-n:]

    from deltalake import DeltaTable
    out_dir = f"{work}/{name}-out"
    table_rows = DeltaTable(out_dir).to_pyarrow_dataset().count_rows()
    log_files = os.listdir(f"{out_dir}/_delta_log")
    r = {
        "name": name,
        "query": query,
        "rate": rate,
        "run_s": sigint - started,
        "stop_ms": (ended - sigint) * 1000,
        "startup_ms": data[0]["T"] - started * 1000,
        "t0_ms_after_start": t0 - started * 1000,
        "t0_bracket_ms": t0 - t0_low,
        "batches": len(data),
        "rows": n_rows,
        "rows_out": sum(b["out"] for b in batches),
        "table_rows": table_rows,
        "rows_per_s": n_rows / ((last_done - t0) / 1000),
        "p50_ms": done.percentile(0.50),
        "p90_ms": done.percentile(0.90),
        "p99_ms": done.percentile(0.99),
        "max_ms": done.max(),
        "delta_p50_ms": delta.percentile(0.50),
        "delta_p99_ms": delta.percentile(0.99),
        "first_n": n,
        "te_first_mean": mean(durations(first, "triggerExecution")),
        "te_last_mean": mean(durations(last, "triggerExecution")),
        "te_first_p50": median(durations(first, "triggerExecution")),
        "te_last_p50": median(durations(last, "triggerExecution")),
        "te_first_max": max(durations(first, "triggerExecution")),
        "te_last_max": max(durations(last, "triggerExecution")),
        "rows_per_batch_first": mean([b["end"] - b["start"] for b in first]),
        "rows_per_batch_last": mean([b["end"] - b["start"] for b in last]),
        "p50_first_ms": Spans(first, t0, step, lambda b: b["T"] + b["durationMs"]["triggerExecution"]).percentile(0.5),
        "p50_last_ms": Spans(last, t0, step, lambda b: b["T"] + b["durationMs"]["triggerExecution"]).percentile(0.5),
        "mean_ms": {k: mean([b["durationMs"][k] for b in data]) for k in data[0]["durationMs"]},
        "delta_log_json": sum(1 for f in log_files if f.endswith(".json")),
        "delta_checkpoints": sum(1 for f in log_files if ".checkpoint." in f and f[0].isdigit()),
    }
    # /usr/bin/time -f '%M %U %S': peak RSS (KiB), user and system CPU seconds.
    rss, user, system = open(f"{work}/{name}.rss").read().splitlines()[-1].split()
    r["peak_rss_mb"] = int(rss) / 1024
    r["cpu_s"] = float(user) + float(system)
    r["wall_s"] = ended - started

    # Where the slow batches are: after every 10th batch weir purges its checkpoint (in
    # triggerExecution, outside the named steps); delta-rs writes a Delta checkpoint every
    # 100 table versions (inside addBatch), named after the version it follows.
    def other(b):
        d = b["durationMs"]
        return d["triggerExecution"] - sum(d[k] for k in ("latestOffset", "walCommit", "getBatch", "addBatch", "commitOffsets"))
    purge = [b for b in data if b["id"] % 10 == 0 and b["id"] > 0]
    rest = [b for b in data if not (b["id"] % 10 == 0 and b["id"] > 0)]
    ckpt_versions = {int(f.split(".")[0]) for f in log_files if ".checkpoint." in f}
    ckpt = [b for b in data if b["version"] in ckpt_versions]
    no_ckpt = [b for b in data if b["version"] not in ckpt_versions]
    r["purge_other_ms"], r["rest_other_ms"] = mean([other(b) for b in purge]), mean([other(b) for b in rest])
    r["ckpt_add_ms"], r["rest_add_ms"] = mean([b["durationMs"]["addBatch"] for b in ckpt]), mean([b["durationMs"]["addBatch"] for b in no_ckpt])
    r["ckpt_batches"] = len(ckpt)
    # delta-rs reads the JSON commits since the last Delta checkpoint when it commits: the
    # batch time by how many there are.
    since = {}
    for b in no_ckpt:
        if b["version"] is None:
            continue
        last = max((c for c in ckpt_versions if c < b["version"]), default=-1)
        since.setdefault((b["version"] - last - 1) // 20 * 20, []).append(b["durationMs"]["addBatch"])
    r["add_by_commits_since_checkpoint"] = {k: mean(v) for k, v in sorted(since.items())}
    # ... and by how many versions the table has (each batch adds a version and a data file).
    hundreds = {}
    for b in no_ckpt:
        if b["version"] is not None:
            hundreds.setdefault(b["version"] // 100 * 100, []).append(b["durationMs"]["addBatch"])
    r["add_by_table_version"] = {k: mean(v) for k, v in sorted(hundreds.items())}
    slowest = sorted(data, key=lambda b: -b["durationMs"]["triggerExecution"])[:5]
    r["slowest"] = [(b["id"], b["version"], b["durationMs"]) for b in slowest]
    return r


def show(r):
    print(f"\n== {r['name']}: {r['query']} query, datagen at {r['rate']:,} rows/s, --trigger 0s, {r['run_s']:.0f} s ==")
    print(f"  {r['batches']:,} batches, {r['rows']:,} rows ({r['rows_per_s']:,.0f} rows/s from t0 to the last commit), "
          f"Delta table {r['table_rows']:,} rows, peak RSS {r['peak_rss_mb']:,.0f} MB")
    print(f"  CPU {r['cpu_s']:.1f} s in {r['wall_s']:.1f} s of wall time: {r['cpu_s'] / r['wall_s']:.2f} cores busy, "
          f"{r['cpu_s'] * 1000 / r['batches']:.1f} ms of CPU per batch")
    print(f"  t0 {r['t0_ms_after_start']:.0f} ms after process start (known to {r['t0_bracket_ms']:.1f} ms); first batch at "
          f"{r['startup_ms']:.0f} ms; exit {r['stop_ms']:.0f} ms after SIGINT")
    target = TARGETS.get(r["rate"])
    verdict = ""
    if target:
        ok = r["p50_ms"] < target[0] and r["p99_ms"] < target[1]
        verdict = f"   target p50 < {target[0]} ms, p99 < {target[1]} ms: {'met' if ok else 'NOT met'}"
    print(f"  latency to batch done:  p50 {r['p50_ms']:.1f}  p90 {r['p90_ms']:.1f}  p99 {r['p99_ms']:.1f}  max {r['max_ms']:.1f} ms{verdict}")
    print(f"  latency to Delta commit: p50 {r['delta_p50_ms']:.1f}  p99 {r['delta_p99_ms']:.1f} ms")
    m = r["mean_ms"]
    print("  mean per batch (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()))
    n = r["first_n"]
    print(f"  triggerExecution, first {n} batches -> last {n}: mean {r['te_first_mean']:.1f} -> {r['te_last_mean']:.1f} ms, "
          f"median {r['te_first_p50']} -> {r['te_last_p50']} ms, max {r['te_first_max']} -> {r['te_last_max']} ms; "
          f"rows/batch {r['rows_per_batch_first']:,.0f} -> {r['rows_per_batch_last']:,.0f}; "
          f"row p50 latency {r['p50_first_ms']:.1f} -> {r['p50_last_ms']:.1f} ms")
    print(f"  Delta log: {r['delta_log_json']:,} commits, {r['delta_checkpoints']} checkpoints; addBatch of the "
          f"{r['ckpt_batches']} batches that wrote a Delta checkpoint {r['ckpt_add_ms']:.1f} ms, others {r['rest_add_ms']:.1f} ms; "
          f"time outside the named steps: {r['purge_other_ms']:.1f} ms in every 10th batch (checkpoint purge), "
          f"{r['rest_other_ms']:.1f} ms in the others")
    print("  addBatch by JSON commits since the last Delta checkpoint: "
          + ", ".join(f"{k}-{k + 19}: {v:.1f} ms" for k, v in r["add_by_commits_since_checkpoint"].items()))
    print("  addBatch by table version (per 100, Delta-checkpoint batches left out): "
          + ", ".join(f"{k}: {v:.0f}" for k, v in r["add_by_table_version"].items()) + " ms")
    print("  slowest batches (id, table version, durationMs): ")
    for bid, version, d in r["slowest"]:
        print(f"    {bid} v{version}: " + ", ".join(f"{k} {v}" for k, v in d.items()))


def main():
    work, names = sys.argv[1], sys.argv[2:]
    runs = [analyse(work, n) for n in names]
    for r in runs:
        show(r)
    print("\n| query | rows/s asked | batches | rows | rows/s | p50 | p90 | p99 | max | to Delta commit p50 / p99 | "
          "triggerExecution mean, first 100 → last 100 batches | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['query']} | {r['rate']:,} | {r['batches']:,} | {r['rows']:,} | {r['rows_per_s']:,.0f} | {r['p50_ms']:.0f} ms | "
              f"{r['p90_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms | {r['delta_p50_ms']:.0f} / {r['delta_p99_ms']:.0f} ms | "
              f"{r['te_first_mean']:.1f} → {r['te_last_mean']:.1f} ms | {r['peak_rss_mb']:,.0f} MB |")
    for rate, (p50, p99) in TARGETS.items():
        print(f"\ntarget at {rate:,} rows/s (issue 7): p50 < {p50} ms, p99 < {p99} ms")
    json.dump(runs, open(f"{work}/results.json", "w"), indent=1)
    bad = [r["name"] for r in runs if r["table_rows"] != r["rows_out"]]
    if bad:
        print(f"the Delta table does not hold the rows the batches wrote: {', '.join(bad)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
