#!/usr/bin/env python3
"""Python's overhead over the CLI, and foreach_batch throughput (figures in benches/README.md).

    python benches/python/overhead.py --weir target/release/weir            # 2,000,000 events
    python benches/python/overhead.py --weir "$CARGO_TARGET_DIR/debug/weir" --events 200000

Needs the `weir` package installed in this interpreter (pip install ./python) and the CLI
binary of the same build profile (compare a release wheel with a release binary).

1. The end-to-end dedup workload of benches/e2e (JSON files -> DISTINCT ON (event_id) with a
   10-minute watermark -> Delta, trigger available-now, one file per trigger), run by
   `weir run` and by `weir.run(...)` in a fresh Python process each: wall time from process
   start to exit, and rows/s. The difference is what Python adds (interpreter start, import,
   the GIL-free wait).
2. foreach_batch: a datagen source (10,000 rows a batch) into a Python function that only
   counts rows (rows/s, calls), against the same query into weir's `memory` sink; the
   difference over the calls is the cost of one call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GEN = HERE.parent / "e2e" / "gen.py"

SQL = """CREATE TABLE events (event_id STRING, user_id BIGINT, amount DOUBLE, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'file', path = '{input}', format = 'json', max_files_per_trigger = 1);
CREATE TABLE out WITH (connector = 'delta', path = '{output}');
INSERT INTO out SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, ts;
"""

FOREACH = """
import sys, time, weir
rows = int(sys.argv[1]); sink = sys.argv[2]
session = weir.Session(sys.argv[3])
session.sql(f"CREATE TABLE g (id BIGINT, v DOUBLE) WITH (connector = 'datagen', total_rows = {rows}, max_rows_per_trigger = 10000, seed = 1)")
seen = [0, 0]
def take(table, batch_id):
    seen[0] += table.num_rows; seen[1] += 1
if sink == "foreach_batch":
    session.register_sink("out", take)
else:
    session.sql("CREATE TABLE out WITH (connector = 'memory')")
started = time.perf_counter()
q = session.sql("INSERT INTO out SELECT id, v FROM g", trigger="available-now")
q.await_termination()
print(time.perf_counter() - started, seen[0], seen[1])
"""


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weir", required=True, help="the weir CLI binary (same profile as the package)")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the foreach_batch run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="weir-py-bench-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, str(GEN), str(work / "in"), str(args.events), str(args.files)],
                       check=True, stdout=subprocess.DEVNULL)
        results: dict[str, float] = {}
        for engine in ("cli", "python"):
            script = work / f"{engine}.sql"
            script.write_text(SQL.format(input=work / "in", output=work / f"{engine}-out"))
            if engine == "cli":
                command = [args.weir, "run", str(script), "--trigger", "available-now", "--progress", "none",
                           "--checkpoint", str(work / "cli-cp")]
            else:
                command = [sys.executable, "-c",
                           "import sys, weir; weir.run(sys.argv[1], trigger='available-now', checkpoint=sys.argv[2])",
                           str(script), str(work / "python-cp")]
            results[engine] = timed(command)
        overhead = results["python"] - results["cli"]
        print(json.dumps({
            "events": args.events,
            "cli_seconds": round(results["cli"], 3),
            "python_seconds": round(results["python"], 3),
            "cli_rows_per_s": round(args.events / results["cli"]),
            "python_rows_per_s": round(args.events / results["python"]),
            "python_overhead_seconds": round(overhead, 3),
            "python_overhead_percent": round(100 * overhead / results["cli"], 1),
        }))

        for sink in ("memory", "foreach_batch"):
            out = subprocess.run([sys.executable, "-c", FOREACH, str(args.rows), sink, str(work / f"cp-{sink}")],
                                 check=True, capture_output=True, text=True).stdout.split()
            seconds, rows, calls = float(out[0]), int(out[1]), int(out[2])
            record = {"sink": sink, "rows": args.rows, "seconds": round(seconds, 3),
                      "rows_per_s": round(args.rows / seconds)}
            if sink == "foreach_batch":
                assert rows == args.rows, (rows, args.rows)
                record["calls"] = calls
            print(json.dumps(record))


if __name__ == "__main__":
    os.environ.setdefault("RUST_LOG", "warn")
    main()
