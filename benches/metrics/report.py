#!/usr/bin/env python3
"""Prints benches/metrics/run's runs and, per setting, plain against metrics: medians and
ranges of wall time, CPU seconds and rows/s, and the ratio of the medians.

    report.py WORK EVENTS
"""
import json
import statistics
import sys
from pathlib import Path

work, events = Path(sys.argv[1]), int(sys.argv[2])
runs = []
for d in sorted(work.iterdir()):
    if (d / "what.json").exists():
        r = json.load(open(d / "what.json")) | json.load(open(d / "measure.json"))
        r["cpu_s"] = r["user_s"] + r["sys_s"]
        r["rows_s"] = events / r["wall_s"]
        runs.append(r)
print("| files per trigger | mode | run | wall s | CPU s | rows/s | scrapes | others' cores |")
print("|---|---|---|---|---|---|---|---|")
for r in sorted(runs, key=lambda r: (-r["setting"], r["run"], r["mode"])):
    print(f"| {r['setting']} | {r['mode']} | {r['run']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['rows_s']:,.0f} | {r['scrapes']} | {r['others_cores']:.2f} |")
print()
print("| files per trigger | mode | rows/s median (range) | CPU s median (range) | peak RSS MB median |")
print("|---|---|---|---|---|")
medians = {}
for setting in sorted({r["setting"] for r in runs}, reverse=True):
    for mode in ["plain", "metrics"]:
        rs = [r for r in runs if r["setting"] == setting and r["mode"] == mode]
        if not rs:
            continue
        rate = [r["rows_s"] for r in rs]
        cpu = [r["cpu_s"] for r in rs]
        medians[(setting, mode)] = (statistics.median(rate), statistics.median(cpu))
        rss = statistics.median(r["peak_rss_kib"] for r in rs) / 1024
        print(f"| {setting} | {mode} | {statistics.median(rate):,.0f} ({min(rate):,.0f}-{max(rate):,.0f}) | {statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f}) | {rss:.0f} |")
print()
for setting in sorted({s for s, _ in medians}, reverse=True):
    if (setting, "plain") in medians and (setting, "metrics") in medians:
        (pr, pc), (mr, mc) = medians[(setting, "plain")], medians[(setting, "metrics")]
        print(f"{setting} files per trigger: metrics / plain rows/s {mr / pr:.3f}, CPU {mc / pc:.3f}")
