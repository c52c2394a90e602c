#!/usr/bin/env python3
"""Where a weir run leaves cores idle, phase by phase, and what each thread did meanwhile,
from the scheduler's own record of every context switch (`perf record -e sched:sched_switch
-a`): no sampler takes CPU from the run, and a thread's time off the CPU is told apart by
its state (S: waiting for work or a lock, R: runnable but preempted, D: waiting for the
disk or the kernel's memory map lock).

    perf record -q -e sched:sched_switch -a -o sched.data -- weir run job.sql ...
    benches/engines/phases.py sched.data [more.data ...]

The phases of a deduplication's batch are told by the threads weir names: from the start
to the candidates' thread's first run (reading, decoding and the first lookups), to the
settle thread's first run (the lookups of the batch), to its last (the settle), to the
eviction thread's first run (the output: the winners read back, Parquet, the state delta),
and to the end (the eviction of the no-data batch, the exit). A phase whose thread never
ran is left out. Per phase: its length, the cores busy and the idle core-milliseconds;
then, for the lookups and the output, each thread's time on the CPU and off it, by state.

Recorded with wakeups too (`-e sched:sched_switch -e sched:sched_wakeup`), it also prints
how long weir's threads waited to run once woken or preempted, and how much of the idle time had one of
them runnable (woken or preempted) but not running: idle that more parallel work would not
fill, the scheduler's placement of the threads it wakes. The waits are split by whether the
core a thread was woken onto was idle (fast) or busy, and the idle core time with a thread
queued on another, busy core is told by the waiting thread and the one running there.

With `--slices MS` first, it also prints the run cut in slices of MS milliseconds: the
cores weir kept busy in each, and its busiest threads there (ms on the CPU).

    benches/engines/phases.py --slices 10 sched.data

Linux only; needs perf and the rights to record scheduler events (root here).
"""
import collections
import os
import re
import subprocess
import sys

SWITCH = re.compile(
    r"\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ "
    r"prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)"
)


def switches(path):
    """(pid, tid, cpu, time, prev_comm, prev_tid, prev_state, next_comm, next_tid) per switch."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "pid,tid,cpu,time,trace"], capture_output=True, text=True, check=True).stdout
    return [(p, t, c, float(ts), pc, pt, st, nc, nt) for p, t, c, ts, pc, pt, st, nc, nt in (m.groups() for m in map(SWITCH.match, out.splitlines()) if m)]


WAKEUP = re.compile(r"\s*\d+/\d+\s+\[(\d+)\]\s+([\d.]+):\s+comm=(.*?) pid=(\d+) prio=\d+ target_cpu=(\d+)")


def wakeups(path):
    """(time, woken tid, target cpu) per wakeup, when the recording has them."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "pid,tid,cpu,time,trace"], capture_output=True, text=True, check=True).stdout
    return [(float(m.group(2)), m.group(4), f"{int(m.group(5)):03d}") for m in map(WAKEUP.match, out.splitlines()) if m]


def waits(events, woken, tids, names, start, end):
    """The idle core-ms with one of `tids` runnable but not running; of those, the ones with
    it queued on another core, busy (by the waiting thread and the one running there); and
    the wait from each wakeup or preemption of one of them to its run, by whether its core
    was idle when it was woken."""
    timeline = sorted([(e[3], 0, e) for e in events] + [(t, 1, w) for t, *w in woken], key=lambda x: (x[0], x[1]))
    current, waiting, latencies, by_core = {}, {}, [], {"idle": [], "busy": []}
    idle_waiting, idle, last = 0.0, 0.0, None
    behind = collections.Counter()
    for t, kind, e in timeline:
        if last is not None and start <= last and t <= end:
            idle_cpus = sum(1 for tid in current.values() if tid == "0")
            idle += idle_cpus * (t - last)
            if waiting:
                idle_waiting += idle_cpus * (t - last)
                queued = [(tid, cpu) for tid, (_, cpu, _) in waiting.items() if current.get(cpu, "0") != "0"]
                if idle_cpus and queued:
                    tid, cpu = min(queued)
                    behind[(names.get(tid, "?"), names.get(current[cpu], "?"))] += idle_cpus * (t - last)
        last = t
        if kind == 1:
            tid, cpu = e
            if tid in tids and tid not in current.values():
                waiting.setdefault(tid, (t, cpu, "idle" if current.get(cpu, "0") == "0" else "busy"))
            continue
        _, _, cpu, _, _, prev, state, _, nxt = e
        current[cpu] = nxt
        if prev in tids and state.startswith("R"):
            waiting.setdefault(prev, (t, cpu, "busy"))
        if nxt in waiting:
            since, _, core = waiting.pop(nxt)
            if t >= start:
                latencies.append(t - since)
                by_core[core].append(t - since)
    return idle, idle_waiting, sorted(latencies), {k: sorted(v) for k, v in by_core.items()}, behind


def slices(runs, names, start, end, ms):
    """The run in slices of `ms` milliseconds: cores busy and the busiest threads of each."""
    step = ms / 1000
    at = start
    while at < end:
        on = collections.Counter()
        for a, b, tid in runs:
            overlap = min(b, at + step) - max(a, at)
            if overlap > 0:
                on[tid] += overlap
        top = ", ".join(f"{names.get(t, '?')[:15]} {t} {1000 * v:.1f}" for t, v in on.most_common(4))
        print(f"  {1000 * (at - start):6.0f} ms: {sum(on.values()) / step:.2f} cores busy  {top}")
        at += step


def report(path, slice_ms=None):
    events = switches(path)
    process = {e[1]: e[0] for e in events}
    # The weir process whose threads switch in most: the first thread seen named weir* can
    # be a thread of perf's own child before it ran weir, or a worker rather than the process.
    runs_in = collections.Counter(process.get(e[8], e[8]) for e in events if e[7].startswith("weir"))
    root = runs_in.most_common(1)[0][0] if runs_in else None
    if root is None:
        print(f"{path}: no weir process in the recording")
        return
    tids = {t for t, p in process.items() if p == root} | {root}
    names = {}
    for e in events:
        if e[5] in tids:
            names[e[5]] = e[4]
        if e[8] in tids:
            names[e[8]] = e[7]
    # Runs on the CPU (start, end, tid), and times off it (start, end, tid, state).
    runs, offs, running, left = [], [], {}, {}
    for _, _, cpu, t, _, prev, state, _, nxt in events:
        if cpu in running:
            tid, since = running.pop(cpu)
            runs.append((since, t, tid))
        if prev in tids:
            left[prev] = (t, state)
        if nxt in tids:
            running[cpu] = (nxt, t)
            if nxt in left:
                since, s = left.pop(nxt)
                offs.append((since, t, nxt, s))
    if not runs:
        print(f"{path}: weir never ran")
        return
    start, end = min(r[0] for r in runs), max(r[1] for r in runs)
    cores = os.cpu_count() or 1

    def first(name):
        return min((a for a, _, t in runs if names.get(t, "").startswith(name)), default=None)

    def last(name):
        return max((b for _, b, t in runs if names.get(t, "").startswith(name)), default=None)

    if slice_ms:
        slices(runs, names, start, end, slice_ms)
    marks = [("start", start), ("candidates", first("weir-candidates")), ("settle", first("weir-settle")),
             ("settled", last("weir-settle")), ("evict", first("weir-evict")), ("end", end)]
    marks = [(n, t) for n, t in marks if t is not None]
    busy_total = sum(b - a for a, b, _ in runs)
    print(f"{path}: wall {1000 * (end - start):.0f} ms, {busy_total / (end - start):.2f} cores busy")
    # A run of several batches names its threads in every batch: the marks then only say
    # where the first and the last batch were, and phases that run backwards are left out.
    phases = [(m0, m1) for m0, m1 in zip(marks, marks[1:]) if m1[1] > m0[1]]
    for (n0, t0), (n1, t1) in phases:
        busy = sum(max(0.0, min(b, t1) - max(a, t0)) for a, b, _ in runs)
        print(f"  {n0} -> {n1}: {1000 * (t1 - t0):.0f} ms, {busy / (t1 - t0):.2f} cores busy, "
              f"{1000 * (cores * (t1 - t0) - busy):.0f} core-ms idle")
    woken = wakeups(path)
    if woken:
        every = dict(names)
        for e in events:
            every.setdefault(e[5], e[4])
            every.setdefault(e[8], e[7])
        idle, idle_waiting, lat, by_core, behind = waits(events, woken, tids, every, start, end)
        n = len(lat)
        if n:
            slow = sum(1 for x in lat if x > 200e-6)
            print(f"  idle {1000 * idle:.0f} core-ms, {1000 * idle_waiting:.0f} of them with a weir thread runnable, not running; "
                  f"from wakeup or preemption to running: p50 {1e6 * lat[n // 2]:.0f} us, p90 {1e6 * lat[n * 9 // 10]:.0f} us, "
                  f"p99 {1e6 * lat[n * 99 // 100]:.0f} us, {slow} of {n} over 200 us")
            for core, v in by_core.items():
                if v:
                    print(f"    onto a core {core} when woken (or preempted: busy): {len(v)}, p50 {1e6 * v[len(v) // 2]:.0f} us, "
                          f"p90 {1e6 * v[len(v) * 9 // 10]:.0f} us, {sum(1 for x in v if x > 200e-6)} over 200 us")
            print(f"    idle while a weir thread waits on another, busy core: {1000 * sum(behind.values()):.0f} core-ms; most, "
                  "waiting behind running: " + ", ".join(f"{w[:16]} behind {r[:16]} {1000 * v:.1f}" for (w, r), v in behind.most_common(4)))
    for (n0, t0), (n1, t1) in phases:
        if (n0, n1) not in (("candidates", "settle"), ("settled", "evict")):
            continue
        print(f"  threads, {n0} -> {n1} (ms on the CPU; off it by state)")
        on, off = collections.Counter(), collections.Counter()
        for a, b, tid in runs:
            on[tid] += max(0.0, min(b, t1) - max(a, t0))
        for a, b, tid, s in offs:
            off[(tid, s)] += max(0.0, min(b, t1) - max(a, t0))
        for tid in sorted(tids, key=int):
            if on[tid] < 0.001:
                continue
            states = " ".join(f"{s} {1000 * off[(tid, s)]:.1f}" for s in ("S", "R", "R+", "D") if off[(tid, s)] >= 0.0005)
            print(f"    {names.get(tid, '?')[:16]:16} {tid:>7}: on {1000 * on[tid]:6.1f}  {states}")


if __name__ == "__main__":
    args = sys.argv[1:]
    slice_ms = None
    if args[:1] == ["--slices"] and len(args) > 1:
        slice_ms, args = float(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    for data in args:
        report(data, slice_ms)
