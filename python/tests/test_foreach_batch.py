"""foreach_batch: a Python function takes each batch as a pyarrow.Table, and a batch
replayed after the process was killed reaches it again with the same id and rows."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pyarrow as pa
import pytest

import weir
from conftest import run_script, source_sql, write_events


def test_each_batch_reaches_the_function(scratch: Path) -> None:
    for n in range(3):
        write_events(scratch / "in", f"{n}.json", range(n * 10, n * 10 + 10))
    calls: list[tuple[int, pa.Table]] = []
    session = weir.Session()
    session.sql(source_sql(scratch / "in").replace("format = 'json'", "format = 'json', max_files_per_trigger = 1"))
    session.register_sink("alerts", lambda table, batch_id: calls.append((batch_id, table)))
    query = session.sql("INSERT INTO alerts SELECT id, upper(user) AS user FROM events WHERE id % 3 = 0",
                        trigger="available-now")
    assert isinstance(query, weir.StreamingQuery)
    query.await_termination()
    assert [b for b, _ in calls] == [0, 1, 2]
    assert all(isinstance(t, pa.Table) for _, t in calls)
    assert calls[0][1].column_names == ["id", "user"]
    assert [i for _, t in calls for i in t.column("id").to_pylist()] == [i for i in range(30) if i % 3 == 0]


def test_declared_foreach_batch_table_needs_a_function(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(3))
    session = weir.Session()
    session.sql(source_sql(scratch / "in") + "\nCREATE TABLE alerts (id BIGINT) WITH (connector = 'foreach_batch');")
    with pytest.raises(weir.SqlError, match=r"has no function to take its batches; register one first"):
        session.sql("INSERT INTO alerts SELECT id FROM events")
    with pytest.raises(weir.ConfigError, match="declared with connector 'file'"):
        session.register_sink("events", print)


def test_an_exception_in_the_function_fails_the_query(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(3))
    session = weir.Session()
    session.sql(source_sql(scratch / "in"))

    def broken(table: pa.Table, batch_id: int) -> None:
        raise ValueError(f"cannot take batch {batch_id}")

    session.register_sink("alerts", broken)
    query = session.sql("INSERT INTO alerts SELECT id FROM events", trigger="available-now")
    assert isinstance(query, weir.StreamingQuery)
    with pytest.raises(weir.StreamingQueryException, match="the foreach_batch function of table 'alerts' failed: ValueError: cannot take batch 0"):
        query.await_termination()


REPLAY = """
import json, os, signal, sys
import weir
session = weir.Session()
session.sql("SOURCE")
def take(table, batch_id):
    with open("calls.jsonl", "a") as f:
        f.write(json.dumps({"batch_id": batch_id, "ids": table.column("id").to_pylist()}) + "\\n")
        f.flush()
        os.fsync(f.fileno())
    if batch_id == 1 and not os.path.exists("killed"):
        open("killed", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)   # after the function, before the commit
session.register_sink("alerts", take)
query = session.sql("INSERT INTO alerts SELECT id FROM events", trigger="available-now", checkpoint="cp")
query.await_termination()
print("done")
"""


def test_a_replayed_batch_reaches_the_function_again_with_the_same_rows(scratch: Path) -> None:
    for n in range(3):
        write_events(scratch / "in", f"{n}.json", range(n * 4, n * 4 + 4))
    source = source_sql(scratch / "in").replace("format = 'json'", "format = 'json', max_files_per_trigger = 1")
    script = REPLAY.replace("SOURCE", source.replace('"', '\\"'))
    killed = run_script(script, scratch)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_script(script, scratch)
    assert resumed.returncode == 0 and resumed.stdout.strip() == "done", resumed.stderr
    calls = [json.loads(line) for line in (scratch / "calls.jsonl").read_text().splitlines()]
    assert [c["batch_id"] for c in calls] == [0, 1, 1, 2]
    assert calls[1] == calls[2], "the replay has the same batch id and the same rows"
    assert sorted(i for c in calls[:2] + calls[3:] for i in c["ids"]) == list(range(12))
