"""Query listeners: Spark's ``StreamingQueryListener`` for weir.

A listener is any object with some of the methods ``on_query_started``,
``on_query_progress``, ``on_query_idle``, ``on_query_warning`` and
``on_query_terminated``; subclassing :class:`StreamingQueryListener` gives the others as
no-ops. Each is called with an event object from the query's thread. An exception in a
listener is logged (logger ``weir``) and never stops the query.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger("weir")


@dataclass(frozen=True)
class QueryStartedEvent:
    """A query started, before its first batch (Spark's ``QueryStartedEvent``)."""

    id: str
    """The stable query id (the same across restarts on one checkpoint)."""
    run_id: str
    """The id of this run."""
    name: str
    """The query's name."""
    timestamp: str
    """When it started (ISO-8601 UTC)."""
    checkpoint: str
    """Where its checkpoint is."""
    warnings: list[str] = field(default_factory=list)
    """Things to know, such as state that grows without bound."""


@dataclass(frozen=True)
class QueryProgressEvent:
    """A batch finished (Spark's ``QueryProgressEvent``)."""

    progress: dict[str, Any]
    """Spark's ``StreamingQueryProgress`` fields (``batchId``, ``numInputRows``, ``sources``,
    ``sink``, ``durationMs``, ...): the JSON of ``weir run --progress json``."""


@dataclass(frozen=True)
class QueryIdleEvent:
    """A trigger found no new data (Spark's ``QueryIdleEvent``)."""

    id: str
    """The stable query id."""
    run_id: str
    """The id of this run."""
    timestamp: str
    """When (ISO-8601 UTC)."""


@dataclass(frozen=True)
class QueryWarningEvent:
    """Something worth knowing that did not stop the query (a broker away, skipped data)."""

    id: str
    """The stable query id."""
    run_id: str
    """The id of this run."""
    timestamp: str
    """When (ISO-8601 UTC)."""
    message: str
    """What happened."""


@dataclass(frozen=True)
class QueryTerminatedEvent:
    """A query stopped or failed (Spark's ``QueryTerminatedEvent``)."""

    id: str
    """The stable query id."""
    run_id: str
    """The id of this run."""
    exception: str | None
    """The error it failed with; None when it stopped."""


class StreamingQueryListener:
    """Base class of query listeners: override the events you want (all are no-ops here)."""

    def on_query_started(self, event: QueryStartedEvent) -> None:
        """A query started."""

    def on_query_progress(self, event: QueryProgressEvent) -> None:
        """A batch finished."""

    def on_query_idle(self, event: QueryIdleEvent) -> None:
        """A trigger found no new data."""

    def on_query_warning(self, event: QueryWarningEvent) -> None:
        """Something worth a warning happened; the query goes on."""

    def on_query_terminated(self, event: QueryTerminatedEvent) -> None:
        """A query stopped or failed."""


def _event(kind: str, data: dict[str, Any]) -> object:
    if kind == "progress":
        return QueryProgressEvent(progress=data)
    if kind == "started":
        return QueryStartedEvent(
            id=data["id"],
            run_id=data["runId"],
            name=data["name"],
            timestamp=data["timestamp"],
            checkpoint=data["checkpoint"],
            warnings=list(data["warnings"]),
        )
    if kind == "idle":
        return QueryIdleEvent(id=data["id"], run_id=data["runId"], timestamp=data["timestamp"])
    if kind == "warning":
        return QueryWarningEvent(
            id=data["id"], run_id=data["runId"], timestamp=data["timestamp"], message=data["message"]
        )
    return QueryTerminatedEvent(id=data["id"], run_id=data["runId"], exception=data["exception"])


class _Dispatcher:
    """What the extension calls with each event: builds the event object and calls the
    listener's method, logging (never raising) what the method raises."""

    def __init__(self, listener: object) -> None:
        self.listener = listener

    def __call__(self, kind: str, payload: str) -> None:
        method = getattr(self.listener, "on_query_" + kind, None)
        if method is None:
            return
        try:
            method(_event(kind, json.loads(payload)))
        except Exception:
            _log.exception("listener %r failed in on_query_%s; the query goes on", self.listener, kind)
