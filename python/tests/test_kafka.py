"""A Kafka source against a tansu broker, into a Delta table, read back with deltalake."""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

import weir
from conftest import read_delta


def test_kafka_to_delta(scratch: Path, broker: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic("events", num_partitions=2, replication_factor=1)]).values():
        future.result(timeout=10)
    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": False, "retries": 0})
    for i in range(50):
        producer.produce("events", key=str(i % 7), value=json.dumps({"id": i, "user": f"u{i % 3}"}))
    assert producer.flush(10) == 0

    session = weir.Session()
    session.sql(
        f"""CREATE TABLE events (id BIGINT, user STRING, p INT METADATA FROM 'partition')
            WITH (connector = 'kafka', bootstrap_servers = '{broker}', topic = 'events',
                  format = 'json', starting_offsets = 'earliest');
            CREATE TABLE out WITH (connector = 'delta', path = '{scratch / 'out'}');"""
    )
    query = session.sql("INSERT INTO out SELECT id, user, p FROM events", trigger="available-now")
    assert isinstance(query, weir.StreamingQuery)
    query.await_termination()
    table = read_delta(scratch / "out")
    assert table.column("id").to_pylist() == list(range(50))
    assert set(table.column("p").to_pylist()) <= {0, 1}
    progress = query.recent_progress
    assert sum(p["numInputRows"] for p in progress) == 50
    assert progress[-1]["sources"][0]["endOffset"] is not None
