"""Ctrl-C during await_termination raises KeyboardInterrupt; the query is left consistent
(weir.run stops it after the batch in flight; a restart resumes without duplicates)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import read_delta, source_sql, write_events

SCRIPT = """
import sys, weir
session = weir.Session()
session.sql("SOURCE" + "CREATE TABLE out WITH (connector = 'delta', path = 'out');")
query = session.sql("INSERT INTO out SELECT id FROM events", trigger="1 second")
query.process_all_available()
print("ready", flush=True)
try:
    query.await_termination()
except KeyboardInterrupt:
    print("interrupted; active:", query.is_active, flush=True)
    query.stop()
    print("stopped:", query.status["message"], flush=True)
    sys.exit(3)
"""


def test_ctrl_c_in_await_termination(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(20))
    script = SCRIPT.replace("SOURCE", source_sql(scratch / "in").replace('"', '\\"'))
    child = subprocess.Popen([sys.executable, "-c", script], cwd=scratch, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, err
    assert out.splitlines() == ["interrupted; active: True", "stopped: Stopped"], (out, err)
    assert read_delta(scratch / "out").column("id").to_pylist() == list(range(20))
