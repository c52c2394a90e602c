"""Errors are exceptions of the weir.WeirError hierarchy, with the CLI's messages."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import weir
from conftest import source_sql, weir_cli, write_events


def test_sql_error_names_the_line() -> None:
    session = weir.Session()
    with pytest.raises(weir.SqlError) as caught:
        session.sql("CREATE TABLE a WITH (connector = 'memory');\nCREATE TABLE b WITH (connector = 'kafak');")
    assert caught.value.line == 2 and caught.value.file is None
    assert str(caught.value).startswith("line 2: table 'b': unknown connector 'kafak'")
    assert "did you mean 'kafka'?" in str(caught.value)
    assert isinstance(caught.value, weir.WeirError)


def test_messages_are_the_clis(scratch: Path) -> None:
    script = scratch / "bad.sql"
    script.write_text(
        "CREATE TABLE out WITH (connector = 'memory');\n\nINSERT INTO out SELECT id FROM nowhere;\n"
    )
    with pytest.raises(weir.SqlError) as caught:
        weir.run(script)
    assert caught.value.file == str(script) and caught.value.line == 3
    cli = subprocess.run([str(weir_cli()), "run", str(script)], capture_output=True, text=True, check=False)
    assert cli.returncode != 0
    assert cli.stderr.strip() == f"error: {caught.value}"


def test_pipeline_checks_of_weir_run(scratch: Path) -> None:
    script = scratch / "select.sql"
    script.write_text("CREATE TABLE out WITH (connector = 'memory');\nSHOW TABLES;\n")
    with pytest.raises(weir.SqlError, match=r"select.sql:2: a pipeline script holds CREATE TABLE and INSERT INTO"):
        weir.run(script)
    (scratch / "none.sql").write_text("CREATE TABLE out WITH (connector = 'memory');\n")
    with pytest.raises(weir.ConfigError, match="starts no query"):
        weir.run(scratch / "none.sql")
    with pytest.raises(weir.ConfigError, match="cannot read"):
        weir.run(scratch / "missing.sql")


def test_bad_trigger_is_a_config_error() -> None:
    with pytest.raises(weir.ConfigError, match="'sometimes' is not a trigger: use available-now, once, or an interval"):
        weir.Session().sql("SHOW TABLES", trigger="sometimes")


def test_a_failed_query_raises_from_await_termination(scratch: Path) -> None:
    (scratch / "in").mkdir()
    (scratch / "in" / "1.json").write_text('{"id": 1}\n{"id": "not a number"\n')
    session = weir.Session()
    session.sql(source_sql(scratch / "in") + "CREATE TABLE out WITH (connector = 'memory');")
    query = session.sql("INSERT INTO out SELECT id FROM events", trigger="available-now")
    assert isinstance(query, weir.StreamingQuery)
    with pytest.raises(weir.StreamingQueryException) as caught:
        query.await_termination()
    message = str(caught.value)
    assert message.startswith("batch 0: ") and "in/1.json:2: malformed JSON" in message, message
    failed = query.exception()
    assert isinstance(failed, weir.StreamingQueryException) and str(failed) == message
    # Later calls give the same outcome.
    with pytest.raises(weir.StreamingQueryException):
        query.await_termination()


def test_checkpoint_of_another_query_is_refused(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(3))
    session = weir.Session()
    session.sql(source_sql(scratch / "in") + "CREATE TABLE a WITH (connector = 'memory'); CREATE TABLE b WITH (connector = 'memory');")
    first = session.sql("INSERT INTO a SELECT id FROM events", trigger="once", checkpoint=str(scratch / "cp"))
    assert isinstance(first, weir.StreamingQuery)
    first.await_termination()
    with pytest.raises(weir.WeirError, match="belongs to a different query"):
        session.sql("INSERT INTO b SELECT id FROM events", trigger="once", checkpoint=str(scratch / "cp"))


def test_an_unusable_checkpoint_is_a_checkpoint_error(scratch: Path) -> None:
    write_events(scratch / "in", "1.json", range(3))
    (scratch / "taken").write_text("a file, not a directory")
    session = weir.Session()
    session.sql(source_sql(scratch / "in") + "CREATE TABLE a WITH (connector = 'memory');")
    with pytest.raises(weir.CheckpointError, match=f"checkpoint {scratch / 'taken'}: not a directory"):
        session.sql("INSERT INTO a SELECT id FROM events", checkpoint=str(scratch / "taken"))
    assert session.streams.active == []
