#!/usr/bin/env python3
"""How many cores a command leaves idle, and when: a SCHED_IDLE spinner per core runs beside
it (the kernel gives such a process a core only when nothing else wants it), each recording
the CPU time it got per bucket of wall time; the command's busy cores in a bucket are the
cores less what the spinners got. Samplers that read /proc take CPU from the run they watch,
and `perf sched`'s idle accounting is wrong on some virtual machines; this needs neither.

    benches/engines/idle_cores.py [--bucket-ms 20] -- COMMAND...

Prints the command's wall time, the idle core-seconds, and its busy cores per bucket. The
spinners cost the command a little (shared caches), so its own time is not the figure to
quote from this run. Linux only (os.sched_setscheduler).
"""
import argparse
import multiprocessing
import os
import subprocess
import time


def spin(start, stop, bucket_s, out):
    """Spins at SCHED_IDLE until `stop` is set; puts {bucket: CPU seconds got} into `out`."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    got = {}
    last = time.thread_time()
    while not stop.is_set():
        for _ in range(2000):
            pass
        now = time.thread_time()
        bucket = int((time.monotonic() - start) / bucket_s)
        got[bucket] = got.get(bucket, 0.0) + now - last
        last = now
    out.put(got)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket-ms", type=float, default=20.0)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    bucket_s = args.bucket_ms / 1000
    stop, out = multiprocessing.Event(), multiprocessing.Queue()
    start = time.monotonic()
    spinners = [multiprocessing.Process(target=spin, args=(start, stop, bucket_s, out)) for _ in range(cores)]
    for s in spinners:
        s.start()
    time.sleep(0.5)  # the spinners settle
    began = time.monotonic()
    code = subprocess.run(args.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    ended = time.monotonic()
    stop.set()
    got = {}
    for _ in spinners:
        for bucket, seconds in out.get().items():
            got[bucket] = got.get(bucket, 0.0) + seconds
    for s in spinners:
        s.join()
    first, last = int((began - start) / bucket_s), int((ended - start) / bucket_s)
    idle = sum(got.get(b, 0.0) for b in range(first, last + 1))
    print(f"exit {code}, wall {ended - began:.3f} s, idle {idle:.3f} core-s of {cores * (ended - began):.3f} ({cores} cores)")
    print(" ".join(f"{(b - first) * args.bucket_ms:.0f}:{cores - got.get(b, 0.0) / bucket_s:.1f}" for b in range(first, last + 1)))


if __name__ == "__main__":
    main()
