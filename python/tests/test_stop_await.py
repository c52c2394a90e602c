"""stop() after the batch in flight; await_termination with and without a timeout;
several queries at once from one session; session.streams.active."""

from __future__ import annotations

import time
from pathlib import Path

import weir
from conftest import read_delta, source_sql, write_events


def test_stop_and_await(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(5))
    session = weir.Session()
    session.sql(
        source_sql(scratch / "in")
        + f"CREATE TABLE a WITH (connector = 'delta', path = '{scratch / 'a'}');"
        + f"CREATE TABLE b WITH (connector = 'delta', path = '{scratch / 'b'}');"
    )
    first = session.sql("INSERT INTO a SELECT id FROM events", trigger="1 second")
    second = session.sql("INSERT INTO b SELECT id, user FROM events")
    assert isinstance(first, weir.StreamingQuery) and isinstance(second, weir.StreamingQuery)
    assert {q.name for q in session.streams.active} == {"a", "b"}
    assert session.streams.get(first.id) is not None

    started = time.monotonic()
    assert first.await_termination(timeout=0.3) is False
    assert time.monotonic() - started < 5
    first.process_all_available()
    second.process_all_available()
    write_events(scratch / "in", "2.json", range(5, 8))
    first.process_all_available()
    second.process_all_available()

    first.stop()
    assert not first.is_active and first.status["message"] == "Stopped"
    assert first.await_termination() is None
    assert first.await_termination(timeout=1) is True
    assert [q.name for q in session.streams.active] == ["b"]
    second.stop()
    assert session.streams.active == []
    assert read_delta(scratch / "a").column("id").to_pylist() == list(range(8))
    assert read_delta(scratch / "b").column("id").to_pylist() == list(range(8))


def test_a_listener_can_stop_its_query(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(5))
    session = weir.Session()
    refused: list[str] = []

    class StopAfterFirstBatch(weir.StreamingQueryListener):
        def on_query_progress(self, event: weir.QueryProgressEvent) -> None:
            (query,) = [q for q in session.streams.active if q.run_id == event.progress["runId"]]
            try:
                query.await_termination()
            except weir.WeirError as e:
                refused.append(str(e))
            query.stop()  # asks, does not wait: the query waits for this method

    session.add_listener(StopAfterFirstBatch())
    session.sql(source_sql(scratch / "in") + f"CREATE TABLE a WITH (connector = 'delta', path = '{scratch / 'a'}');")
    query = session.sql("INSERT INTO a SELECT id FROM events")
    assert isinstance(query, weir.StreamingQuery)
    assert query.await_termination(timeout=60) is True
    assert refused and refused[0].startswith("await_termination() cannot be called from a listener")
    assert read_delta(scratch / "a").num_rows == 5
