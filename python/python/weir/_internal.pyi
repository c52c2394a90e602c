"""Stubs of the extension module ``weir._internal`` (python/src). Use the names ``weir``
re-exports; ``Session`` here is the raw session the ``weir.Session`` class wraps."""

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from typing_extensions import Self, final

__all__ = [
    "__version__",
    "Session",
    "StreamingQuery",
    "Preview",
    "WeirError",
    "SqlError",
    "ConfigError",
    "CheckpointError",
    "StateError",
    "ConnectorError",
    "StreamingQueryException",
]

__version__: str

class WeirError(Exception):
    """Base class of every error weir raises."""

class SqlError(WeirError):
    """A statement is malformed or cannot be carried out; ``line`` (and ``file``) say where."""

    line: int | None
    file: str | None

class ConfigError(WeirError):
    """A setting is invalid (a trigger, a session option, an argument)."""

class CheckpointError(WeirError):
    """The checkpoint cannot be used (another query's, unreadable, newer format)."""

class StateError(CheckpointError):
    """A stateful operator's state in the checkpoint cannot be loaded."""

class ConnectorError(WeirError):
    """A source or sink failed outside a batch; the message names the file, topic or table."""

class StreamingQueryException(WeirError):
    """A query failed; the message names the batch and where."""

@final
class StreamingQuery:
    """A running (or finished) continuous query, with Spark's names."""

    @property
    def id(self) -> str:
        """The stable query id: the same across restarts on one checkpoint."""
    @property
    def run_id(self) -> str:
        """The id of this run of the query."""
    @property
    def name(self) -> str:
        """The query's name (the sink table's, unless given)."""
    @property
    def checkpoint(self) -> str:
        """Where its checkpoint is."""
    @property
    def status(self) -> dict[str, Any]:
        """What it is doing now: ``message``, ``isDataAvailable``, ``isTriggerActive``."""
    @property
    def is_active(self) -> bool:
        """Whether the query is still running."""
    @property
    def last_progress(self) -> dict[str, Any] | None:
        """The progress of the last batch (Spark's ``StreamingQueryProgress``), or None."""
    @property
    def recent_progress(self) -> list[dict[str, Any]]:
        """The progress of the most recent batches (up to 100), oldest first."""
    def stop(self) -> None:
        """Stops the query after the batch in flight and waits until it has stopped."""
    def await_termination(self, timeout: float | None = None) -> bool | None:
        """Waits until the query ends; raises ``StreamingQueryException`` if it failed."""
    def process_all_available(self) -> None:
        """Waits until the query has processed everything its sources had when called."""
    def exception(self) -> StreamingQueryException | None:
        """The error the query failed with, or None."""

@final
class Preview:
    """A live ``SELECT`` over streams: ``pyarrow.RecordBatch``es as the query makes them."""

    @property
    def schema(self) -> pa.Schema:
        """The schema of its rows."""
    @property
    def query(self) -> StreamingQuery:
        """The query behind it."""
    def stream(self) -> Preview:
        """Itself, so ``session.sql("SELECT ...").stream()`` reads as it does."""
    def __iter__(self) -> Preview: ...
    def __next__(self) -> pa.RecordBatch: ...
    def read_all(self) -> pa.Table:
        """Every batch until the preview ends, as one table."""
    def close(self) -> None:
        """Stops the query, waits for it and deletes its checkpoint."""
    def __enter__(self) -> Preview: ...
    def __exit__(self, *_args: object) -> bool: ...
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """The Arrow PyCapsule stream interface over the batches still to come."""

@final
class Session:
    """The raw session ``weir.Session`` wraps."""

    def __new__(
        cls,
        checkpoint_root: str | None = None,
        threads: int | None = None,
        retain_batches: int | None = None,
        metrics_addr: str | None = None,
    ) -> Self: ...
    @property
    def metrics_address(self) -> str | None: ...
    def sql(
        self, text: str, trigger: str | None = None, checkpoint: str | None = None, name: str | None = None
    ) -> StreamingQuery | Preview | pa.Table | None: ...
    def sql_file(
        self, path: str, trigger: str | None = None, checkpoint: str | None = None, name: str | None = None
    ) -> StreamingQuery | Preview | pa.Table | None: ...
    def start_pipeline(self, path: str, trigger: str | None = None, checkpoint: str | None = None) -> list[StreamingQuery]: ...
    def queries(self) -> list[StreamingQuery]: ...
    def add_listener(self, dispatch: Callable[[str, str], None]) -> None: ...
    def register_sink(self, name: str, function: Callable[[pa.Table, int], object]) -> None: ...
    def register_table(self, name: str, table: object) -> None: ...
