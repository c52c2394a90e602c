#!/usr/bin/env python3
"""Scrapes http://ADDR/metrics every MS milliseconds until the file STOP exists; prints how
many scrapes answered 200. Before the server is up (the process starting), attempts that
cannot connect are not counted.

    scrape.py ADDR MS STOP
"""
import os
import sys
import time
import urllib.request

addr, ms, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ok = 0
while not os.path.exists(stop):
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
            r.read()
            ok += r.status == 200
    except OSError:
        pass
    time.sleep(ms / 1000)
print(ok)
