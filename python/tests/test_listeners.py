"""Listeners get Spark's events; an exception in one is logged and the query goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import weir
from conftest import read_delta, source_sql, write_events


class Recorder(weir.StreamingQueryListener):
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_query_started(self, event: weir.QueryStartedEvent) -> None:
        self.events.append(event)

    def on_query_progress(self, event: weir.QueryProgressEvent) -> None:
        self.events.append(event)

    def on_query_terminated(self, event: weir.QueryTerminatedEvent) -> None:
        self.events.append(event)


class Broken:
    """Not a subclass: any object with some of the methods will do."""

    def on_query_progress(self, event: weir.QueryProgressEvent) -> None:
        raise RuntimeError("listener bug")


def test_listeners_see_every_event_and_a_broken_one_is_only_logged(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_events(scratch / "in", "1.json", range(10))
    session = weir.Session()
    recorder = Recorder()
    session.add_listener(Broken())
    session.add_listener(recorder)
    session.sql(source_sql(scratch / "in") + f"CREATE TABLE out WITH (connector = 'delta', path = '{scratch / 'out'}');")
    with caplog.at_level(logging.ERROR, logger="weir"):
        query = session.sql("INSERT INTO out SELECT id FROM events", trigger="available-now")
        assert isinstance(query, weir.StreamingQuery)
        query.await_termination()
    assert query.exception() is None
    assert read_delta(scratch / "out").num_rows == 10

    started, *progress, terminated = recorder.events
    assert isinstance(started, weir.QueryStartedEvent)
    assert (started.id, started.run_id, started.name) == (query.id, query.run_id, "out")
    assert progress and all(isinstance(p, weir.QueryProgressEvent) for p in progress)
    assert [p.progress for p in progress if isinstance(p, weir.QueryProgressEvent)] == query.recent_progress
    assert isinstance(terminated, weir.QueryTerminatedEvent)
    assert terminated.exception is None and terminated.run_id == query.run_id

    failures = [r for r in caplog.records if "on_query_progress" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert "listener bug" in str(failures[0].exc_info[1])


def test_using_the_session_from_on_query_started_is_refused_not_a_hang(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The session is held while a query starts, and that start waits for on_query_started:
    the listener gets an error (logged), not a wait that never ends."""
    write_events(scratch / "in", "1.json", range(3))
    session = weir.Session()
    seen: list[int] = []

    class Curious(weir.StreamingQueryListener):
        def on_query_started(self, event: weir.QueryStartedEvent) -> None:
            seen.append(len(session.streams.active))

        def on_query_progress(self, event: weir.QueryProgressEvent) -> None:
            seen.append(len(session.streams.active))  # free now: allowed

    session.add_listener(Curious())
    session.sql(source_sql(scratch / "in") + "CREATE TABLE out WITH (connector = 'memory');")
    with caplog.at_level(logging.ERROR, logger="weir"):
        query = session.sql("INSERT INTO out SELECT id FROM events", trigger="available-now")
        assert isinstance(query, weir.StreamingQuery)
        query.await_termination()
    assert seen and all(n == 1 for n in seen), seen
    refused = [r for r in caplog.records if "on_query_started" in r.getMessage()]
    assert refused and refused[0].exc_info is not None
    assert isinstance(refused[0].exc_info[1], weir.ConfigError)
    assert str(refused[0].exc_info[1]).startswith("the session is busy starting a query")
