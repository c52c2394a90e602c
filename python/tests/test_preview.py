"""The live preview of a SELECT over streams: an iterator of pyarrow.RecordBatch and an
Arrow PyCapsule stream that Polars and DuckDB read directly."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

import weir
from conftest import source_sql, write_events


def preview(session: weir.Session, sql: str, **kwargs: str) -> weir.Preview:
    p = session.sql(sql, **kwargs)
    assert isinstance(p, weir.Preview)
    return p


def test_a_live_preview_yields_batches_as_they_arrive(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(10))
    session = weir.Session()
    session.sql(source_sql(scratch / "in"))
    with preview(session, "SELECT id, upper(user) AS user FROM events WHERE amount >= 5").stream() as live:
        assert live.schema.names == ["id", "user"]
        first = next(live)
        assert isinstance(first, pa.RecordBatch)
        assert first.column(0).to_pylist() == [5, 6, 7, 8, 9]
        write_events(scratch / "in", "2.json", range(10, 13))
        second = next(live)
        assert second.column(0).to_pylist() == [10, 11, 12]
        checkpoint = live.query.checkpoint
        assert os.path.isdir(checkpoint)
        assert [q.id for q in session.streams.active] == [live.query.id]
    assert not live.query.is_active
    assert not os.path.exists(checkpoint), "the preview's checkpoint goes with it"
    assert not (scratch / ".weir").exists(), "a preview writes no checkpoint of its own"


def test_polars_and_duckdb_read_a_preview(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(6))
    write_events(scratch / "in", "2.json", range(6, 9))
    session = weir.Session()
    session.sql(source_sql(scratch / "in"))
    sql = "SELECT user, id FROM events"

    frame = pl.DataFrame(preview(session, sql, trigger="available-now"))
    assert sorted(frame["id"].to_list()) == list(range(9))
    assert frame.columns == ["user", "id"]

    live = preview(session, sql, trigger="available-now")
    relation = duckdb.sql("SELECT user, count(*) AS n FROM live GROUP BY user ORDER BY user")
    assert relation is not None
    counted = relation.fetchall()
    assert counted == [("u0", 3), ("u1", 3), ("u2", 3)]

    table = preview(session, sql, trigger="available-now").read_all()
    assert table.num_rows == 9
    reader = pa.RecordBatchReader.from_stream(preview(session, sql, trigger="available-now"))
    assert reader.read_all().num_rows == 9
