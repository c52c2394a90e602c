#!/usr/bin/env python3
"""Runs one command and writes what it cost as a JSON object: wall time, the CPU time of the
process and the children it waited for (user, sys), its peak RSS, and how busy the rest of
the machine was meanwhile (the machine's busy time from /proc/stat less the command's own;
of it, the steal: cores the hypervisor gave to other guests, which no process here had),
and the process's CPU time sampled every 10 ms against the clock ("cpu_samples": [unix time,
user + sys seconds], from /proc/<pid>/stat, in clock ticks), so that the CPU of a stretch of
the run (weir's batch) can be told from the whole.

    measure.py OUT.json STDOUT STDERR -- COMMAND...

Exits with the command's exit code. The CPU and RSS figures are the kernel's (wait4's
rusage), so the command needs no wrapper that would add its own cost.
"""
import json
import os
import subprocess
import sys
import threading
import time


def busy_seconds():
    """Seconds of CPU time the whole machine spent busy since boot (all cores, every process),
    and of those the seconds the hypervisor took (steal: time a virtual core was ready to run
    and the host ran something else)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    tick = os.sysconf("SC_CLK_TCK")
    return busy / tick, fields[7] / tick


def sample_cpu(pid, samples, done):
    """Appends [unix time, user + sys seconds] of process `pid` every 10 ms until `done` or
    the process is gone. Its threads that ended count too (the kernel keeps their time)."""
    tick = os.sysconf("SC_CLK_TCK")
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/stat") as fh:
                # The fields after the command name, which may hold spaces: utime, stime are
                # the 14th and 15th fields of the line.
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return
        samples.append([time.time(), (int(fields[11]) + int(fields[12])) / tick])
        time.sleep(0.01)


out, stdout, stderr, sep, *command = sys.argv[1:]
assert sep == "--" and command, __doc__
with open("/proc/loadavg") as fh:
    load = float(fh.read().split()[0])
with open(stdout, "wb") as so, open(stderr, "wb") as se:
    (busy0, steal0), start = busy_seconds(), time.monotonic()
    child = subprocess.Popen(command, stdout=so, stderr=se)
    samples, done = [], threading.Event()
    sampler = threading.Thread(target=sample_cpu, args=(child.pid, samples, done), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall, ended = time.monotonic() - start, time.time()
    done.set()
    busy1, steal1 = busy_seconds()
    sampler.join()
child.returncode = os.waitstatus_to_exitcode(status)  # reaped above; keep Popen from waiting again
cpu = usage.ru_utime + usage.ru_stime
# The last sample is the exit's exact total, so that a batch ending in the last 10 ms has one
# after it.
samples.append([ended, cpu])
result = {
    "wall_s": wall,
    "user_s": usage.ru_utime,
    "sys_s": usage.ru_stime,
    "peak_rss_kib": usage.ru_maxrss,
    # Cores the rest of the machine kept busy during the run (other processes, the kernel):
    # the noise beside the figure. Clock ticks are 10 ms, so this is rough for short runs.
    "others_cores": max(0.0, (busy1 - busy0 - cpu) / wall),
    # Of those, the cores the host took from this machine (steal): time no process here had.
    "stolen_cores": max(0.0, (steal1 - steal0) / wall),
    "load1_before": load,
    "exit_code": child.returncode,
    "cpu_samples": samples,
}
with open(out, "w") as fh:
    json.dump(result, fh)
sys.exit(child.returncode)
