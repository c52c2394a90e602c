"""A file source to a Delta table, started from Python, read back with deltalake; the
query handle's Spark names; batch SELECTs and the catalog statements; sql_file and run."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

import weir
from conftest import read_delta, source_sql, write_events


def start(session: weir.Session, sql: str, **kwargs: str) -> weir.StreamingQuery:
    query = session.sql(sql, **kwargs)
    assert isinstance(query, weir.StreamingQuery)
    return query


def test_file_to_delta_exactly_once(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(0, 10))
    write_events(scratch / "in", "2.json", range(10, 25))
    session = weir.Session()
    assert session.sql(source_sql(scratch / "in")) is None
    assert session.sql(f"CREATE TABLE out WITH (connector = 'delta', path = '{scratch / 'out'}')") is None
    query = start(session, "INSERT INTO out SELECT id, user, amount * 2 AS doubled FROM events WHERE id % 2 = 0",
                  trigger="available-now")
    assert query.name == "out" and len(query.id) == 36 and len(query.run_id) == 36
    assert query.await_termination() is None
    assert not query.is_active and query.exception() is None
    assert query.status["message"] == "Stopped"
    assert set(query.status) == {"message", "isDataAvailable", "isTriggerActive"}

    table = read_delta(scratch / "out")
    assert table.column("id").to_pylist() == list(range(0, 25, 2))
    assert table.column("doubled").to_pylist() == [2.0 * i for i in range(0, 25, 2)]

    progress = query.last_progress
    assert progress is not None
    assert {"id", "runId", "name", "batchId", "numInputRows", "sources", "sink", "durationMs"} <= set(progress)
    assert sum(p["numInputRows"] for p in query.recent_progress) == 25
    assert sum(p["sink"]["numOutputRows"] for p in query.recent_progress) == 13
    assert session.streams.active == []

    # A second run on the same checkpoint: the same query id, nothing read twice.
    write_events(scratch / "in", "3.json", range(25, 30))
    again = start(session, "INSERT INTO out SELECT id, user, amount * 2 AS doubled FROM events WHERE id % 2 = 0",
                  trigger="available-now")
    again.await_termination()
    assert again.id == query.id and again.run_id != query.run_id
    assert read_delta(scratch / "out").column("id").to_pylist() == list(range(0, 30, 2))

    # A batch SELECT over the Delta table the pipeline wrote gives a pyarrow.Table.
    counted = session.sql("SELECT count(*) AS n, max(id) AS top FROM out")
    assert isinstance(counted, pa.Table)
    assert counted.to_pylist() == [{"n": 15, "top": 28}]
    tables = session.sql("SHOW TABLES")
    assert isinstance(tables, pa.Table) and tables.num_rows == 2
    described = session.sql("DESCRIBE events")
    assert isinstance(described, pa.Table) and described.num_rows == 3

    # The query statements: SHOW QUERIES lists both runs, SHOW PROGRESS gives the last
    # progress as JSON, STOP QUERY gives the (already stopped) query back.
    queries = session.sql("SHOW QUERIES")
    assert isinstance(queries, pa.Table)
    assert queries.column("name").to_pylist() == ["out", "out"]
    assert set(queries.column("status").to_pylist()) == {"stopped"}
    last = again.last_progress
    assert last is not None
    shown = session.sql("SHOW PROGRESS out")
    assert isinstance(shown, pa.Table) and shown.column_names == ["progress"]
    assert [json.loads(p)["batchId"] for p in shown.column("progress").to_pylist()] == [last["batchId"]]
    stopped = session.sql("STOP QUERY out")
    assert isinstance(stopped, weir.StreamingQuery) and stopped.run_id == again.run_id and not stopped.is_active


def test_sql_file_and_run(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(0, 7))
    script = scratch / "pipeline.sql"
    script.write_text(
        source_sql(scratch / "in")
        + f"\nCREATE TABLE out WITH (connector = 'delta', path = '{scratch / 'out'}');"
        + "\nINSERT INTO out SELECT id, user FROM events;\n"
    )
    weir.run(script, trigger="available-now", checkpoint=scratch / "cp")
    assert read_delta(scratch / "out").column("id").to_pylist() == list(range(7))
    assert (scratch / "cp").is_dir()

    session = weir.Session(scratch / "root")
    query = session.sql_file(script, trigger="once")
    assert isinstance(query, weir.StreamingQuery)
    query.await_termination()
    assert query.checkpoint.startswith(str(scratch / "root"))


def test_register_table_for_lookups(scratch: Path) -> None:
    session = weir.Session()
    users = pa.table({"user": ["u0", "u1", "u2"], "country": ["FR", "DE", "JP"]})
    session.register_table("users", users)
    session.register_table("one", pa.record_batch({"x": [1]}))
    joined = session.sql("SELECT u.country, o.x FROM users u CROSS JOIN one o WHERE u.user = 'u1'")
    assert isinstance(joined, pa.Table)
    assert joined.to_pylist() == [{"country": "DE", "x": 1}]
    session.register_table("users", users.slice(0, 1))  # replaced
    again = session.sql("SELECT count(*) AS n FROM users")
    assert isinstance(again, pa.Table) and again.to_pylist() == [{"n": 1}]


def test_rows_cross_the_boundary_without_copies() -> None:
    """A registered table read back by a SELECT is the same memory: pyarrow -> Rust and
    Rust -> pyarrow go through the Arrow C data interface, which shares buffers."""
    session = weir.Session()
    table = pa.table({"x": pa.array(range(100_000), pa.int64())})
    session.register_table("t", table)
    out = session.sql("SELECT x FROM t")
    assert isinstance(out, pa.Table) and out.num_rows == 100_000
    base = table.column(0).chunk(0).buffers()[1].address
    start = 0
    for chunk in out.column(0).chunks:  # DataFusion slices the batch; slices share the buffer
        assert chunk.buffers()[1].address + 8 * chunk.offset == base + 8 * start
        start += len(chunk)


def test_metrics_served_for_the_session(scratch: Path) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    write_events(scratch / "in", "1.json", range(0, 12))
    session = weir.Session(metrics_addr="127.0.0.1:0")
    address = session.metrics_address
    assert address is not None and address.startswith("127.0.0.1:") and not address.endswith(":0")
    session.sql(source_sql(scratch / "in"))
    session.sql(f"CREATE TABLE out WITH (connector = 'delta', path = '{scratch / 'out'}')")
    query = start(session, "INSERT INTO out SELECT * FROM events WHERE id % 3 = 0", trigger="available-now")
    query.await_termination()
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {
        (s.name, s.labels.get("query")): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    assert samples[("weir_input_rows_total", "out")] == 12
    assert samples[("weir_output_rows_total", "out")] == read_delta(scratch / "out").num_rows == 4
    assert samples[("weir_query_up", "out")] == 0
