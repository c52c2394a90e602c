"""Samples the summed RSS of a process and all its descendants every 50 ms until the process
exits, then writes the peak in KiB to OUT, followed by the processes it was made of. Used by benches/e2e/run, because Spark's driver is a
JVM plus a Python process and /usr/bin/time's %M gives only the larger of the two.

    rss_tree.py PID OUT
"""
import os
import sys
import time

root, out = int(sys.argv[1]), sys.argv[2]
page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
peak, at_peak = 0, []
while os.path.exists(f"/proc/{root}"):
    children, rss, parent, comm = {}, {}, {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                head, tail = fh.read().rsplit(")", 1)
                fields = tail.split()
        except OSError:
            continue
        # After the command name: state, ppid, ... ; rss (pages) is field 24 of stat, index 21 here.
        children.setdefault(int(fields[1]), []).append(int(pid))
        rss[int(pid)] = int(fields[21]) * page_kib
        parent[int(pid)], comm[int(pid)] = int(fields[1]), head.split("(", 1)[1]
    total, todo, parts = 0, [root], []
    while todo:
        pid = todo.pop()
        # A child between vfork and exec (how the JVM starts a program; it bears the name of
        # the JVM thread that started it) shares its parent's memory and shows the same RSS:
        # count it once.
        up = parent.get(pid)
        if not (rss.get(up, 0) > 10_240 and abs(rss.get(pid, 0) - rss.get(up, 0)) <= rss.get(up, 0) // 50):
            total += rss.get(pid, 0)
            parts.append(f"{comm.get(pid)}:{rss.get(pid, 0) // 1024}MB")
        todo.extend(children.get(pid, []))
    if total > peak:
        peak, at_peak = total, parts
    time.sleep(0.05)
with open(out, "w") as fh:
    fh.write(f"{peak} {' '.join(at_peak)}\n")
