"""weir: exactly-once streaming SQL, from Python.

Declare sources and sinks with ``CREATE TABLE``, start a continuous query with
``INSERT INTO ... SELECT``, and hold it as a :class:`StreamingQuery` with Spark's names::

    import weir

    session = weir.Session()
    session.sql(\"\"\"
        CREATE TABLE events (id BIGINT, user STRING) WITH (connector = 'file', path = 'in', format = 'json');
        CREATE TABLE out WITH (connector = 'delta', path = 'out');
    \"\"\")
    query = session.sql("INSERT INTO out SELECT id, user FROM events", trigger="available-now")
    query.await_termination()
    print(session.sql("SELECT count(*) FROM out"))   # a pyarrow.Table

Python can take part in the data path: :meth:`Session.register_sink` (Spark's
``foreachBatch``), :meth:`Session.register_table` (static tables of pyarrow rows), and a live
:class:`Preview` of a ``SELECT`` over streams that yields ``pyarrow.RecordBatch``es and that
Polars, DuckDB and pandas read through the Arrow PyCapsule interface. Data crosses the
boundary through the Arrow C data interface, without copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, Union

import pyarrow as pa

from weir._internal import (
    CheckpointError,
    ConfigError,
    ConnectorError,
    Preview,
    SqlError,
    StateError,
    StreamingQuery,
    StreamingQueryException,
    WeirError,
    __version__,
)
from weir._internal import Session as _InternalSession
from weir._listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
    QueryWarningEvent,
    StreamingQueryListener,
    _Dispatcher,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConnectorError",
    "Preview",
    "QueryIdleEvent",
    "QueryProgressEvent",
    "QueryStartedEvent",
    "QueryTerminatedEvent",
    "QueryWarningEvent",
    "Result",
    "Session",
    "SqlError",
    "StateError",
    "StreamingQuery",
    "StreamingQueryException",
    "StreamingQueryListener",
    "StreamingQueryManager",
    "WeirError",
    "__version__",
    "run",
]

Result = Union[StreamingQuery, Preview, pa.Table, None]
"""What a statement gives: ``INSERT`` a :class:`StreamingQuery`; ``SELECT`` over streams a
:class:`Preview`; ``SELECT`` over static tables, ``SHOW TABLES`` and ``DESCRIBE`` a
``pyarrow.Table``; ``CREATE TABLE`` and ``DROP TABLE`` None."""

StrPath = Union[str, "os.PathLike[str]"]


class ArrowStreamExportable(Protocol):
    """Anything that exports an Arrow stream (pyarrow, Polars, DuckDB results, ...)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...


class StreamingQueryManager:
    """The queries of a session (Spark's ``spark.streams``)."""

    def __init__(self, session: _InternalSession) -> None:
        self._session = session

    @property
    def active(self) -> list[StreamingQuery]:
        """The queries still running (previews included), oldest first."""
        return [q for q in self._session.queries() if q.is_active]

    def get(self, id: str) -> StreamingQuery | None:
        """The query with id ``id`` (the latest run of it), or None."""
        found = [q for q in self._session.queries() if q.id == id]
        return found[-1] if found else None


class Session:
    """Declared tables and the queries started from them.

    ``checkpoint_root`` is where a query's checkpoint goes when ``checkpoint=`` is not given
    (``<checkpoint_root>/<sink table>``; default ``.weir/checkpoints``); ``threads`` how many
    partitions a plan runs on (default: the cores); ``retain_batches`` how many batches a
    checkpoint keeps (default 100); ``metrics_addr`` (``"127.0.0.1:9464"``; port 0 picks a
    free one, see :attr:`metrics_address`) serves Prometheus metrics of the session's queries
    at ``/metrics``, with ``/healthz`` and ``/readyz``, as ``weir run --metrics-addr`` does.
    """

    def __init__(
        self,
        checkpoint_root: StrPath | None = None,
        *,
        threads: int | None = None,
        retain_batches: int | None = None,
        metrics_addr: str | None = None,
    ) -> None:
        root = os.fspath(checkpoint_root) if checkpoint_root is not None else None
        self._session = _InternalSession(root, threads, retain_batches, metrics_addr)
        self.streams = StreamingQueryManager(self._session)
        """The session's queries: ``session.streams.active``."""

    @property
    def metrics_address(self) -> str | None:
        """``host:port`` where the metrics are served, when ``metrics_addr`` was given."""
        return self._session.metrics_address

    def sql(
        self,
        text: str,
        *,
        trigger: str | None = None,
        checkpoint: StrPath | None = None,
        name: str | None = None,
    ) -> Result:
        """Runs one statement or a script; returns what its last statement gives (see
        :data:`Result`).

        ``trigger`` is ``"available-now"`` (everything there, then stop), ``"once"`` (one
        batch) or an interval (``"10 seconds"``); default: a batch as soon as the previous
        one is done. ``checkpoint`` is the query's checkpoint (one ``INSERT`` only);
        ``name`` its name (default: the sink table's). A statement that fails raises
        :class:`WeirError` and stops the queries the script started before it.
        """
        cp = os.fspath(checkpoint) if checkpoint is not None else None
        result: Result = self._session.sql(text, trigger, cp, name)
        return result

    def sql_file(
        self,
        path: StrPath,
        *,
        trigger: str | None = None,
        checkpoint: StrPath | None = None,
        name: str | None = None,
    ) -> Result:
        """Runs the script in file ``path`` as :meth:`sql` does; errors name ``path:line``."""
        cp = os.fspath(checkpoint) if checkpoint is not None else None
        result: Result = self._session.sql_file(os.fspath(path), trigger, cp, name)
        return result

    def add_listener(self, listener: object) -> None:
        """Calls ``listener``'s ``on_query_started``, ``on_query_progress``,
        ``on_query_idle``, ``on_query_warning`` and ``on_query_terminated`` (those it has;
        see :class:`StreamingQueryListener`) for every query started from now on, from the
        query's thread. What they raise is logged (logger ``weir``), never stops the query."""
        self._session.add_listener(_Dispatcher(listener))

    def register_sink(self, name: str, function: Callable[[pa.Table, int], object]) -> None:
        """Sends each batch written to table ``name`` to ``function(table, batch_id)``
        (Spark's ``foreachBatch``), once the batch is done, before it is committed.

        Declares ``name`` unless ``CREATE TABLE name (...) WITH (connector = 'foreach_batch')``
        declared it (then the query's output must fit its columns). An exception in
        ``function`` fails the batch, and the query, with nothing of the batch committed.

        Replay rule (Spark's): a batch that ran but was not committed when the process died
        runs again on restart and calls ``function`` again **with the same batch id and the
        same rows**. Make what ``function`` writes idempotent by keying it on ``batch_id``::

            def save(table: pa.Table, batch_id: int) -> None:
                path = f"out/batch-{batch_id:08}.parquet"
                pq.write_table(table, path + ".tmp")
                os.replace(path + ".tmp", path)   # a replay overwrites the same file

            session.register_sink("alerts", save)
        """
        self._session.register_sink(name, function)

    def register_table(self, name: str, data: pa.Table | pa.RecordBatch | ArrowStreamExportable | Any) -> None:
        """Declares static table ``name`` holding ``data``: a ``pyarrow.Table``,
        ``RecordBatch`` or ``dataset.Dataset``, or anything exporting an Arrow stream
        (``__arrow_c_stream__``: Polars, DuckDB, pandas via pyarrow). Batch queries (``SELECT``)
        read it, for lookups and tests. The rows are shared, not copied; registering again
        under the same name replaces them."""
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        elif not hasattr(data, "__arrow_c_stream__") and hasattr(data, "to_table"):
            data = data.to_table()  # pyarrow.dataset.Dataset
        self._session.register_table(name, data)


def run(
    path: StrPath,
    *,
    trigger: str | None = None,
    checkpoint: StrPath | None = None,
    checkpoint_root: StrPath | None = None,
) -> None:
    """Runs the pipeline in file ``path`` as ``weir run`` does: starts every ``INSERT``, then
    waits for all of them. Raises :class:`StreamingQueryException` when one fails (the others
    are stopped). On Ctrl-C, stops every query after its batch in flight and raises
    ``KeyboardInterrupt``; the next run resumes from the checkpoints."""
    session = Session(checkpoint_root)
    cp = os.fspath(checkpoint) if checkpoint is not None else None
    queries = session._session.start_pipeline(os.fspath(path), trigger, cp)
    try:
        for query in queries:
            query.await_termination()
    except BaseException:
        for query in queries:
            query.stop()
        raise
