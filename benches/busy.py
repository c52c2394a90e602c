"""The time a run's batches took, from their progress events (Spark's or weir's).

weir commits a batch in a task of its own while the next batch is read, so the spans of two
batches (each from its progress event's `timestamp`, `triggerExecution` long) overlap: the
sum of `triggerExecution` counts the overlap twice. `busy_seconds` is the time some batch
ran, the union of the spans.
"""
from datetime import datetime


def busy_seconds(batches):
    spans = sorted(
        (datetime.fromisoformat(b["timestamp"].replace("Z", "+00:00")).timestamp(), b["durationMs"]["triggerExecution"] / 1000)
        for b in batches
    )
    total, reach = 0.0, float("-inf")
    for start, length in spans:
        end = start + length
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total
