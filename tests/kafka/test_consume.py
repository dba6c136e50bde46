"""Consuming: records written by the official AvroSerializer reach the SDK handler as the
SPEC's Avro -> JSON mapping says, with their Kafka metadata; after the acks the group's
committed offset (as another Kafka client reads it) reaches the end of the partition."""
from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal

from conftest import WAIT, acked_offsets, wait_until

POLICY_SCHEMA = {
    "type": "record", "name": "Policy", "namespace": "skiff.test",
    "fields": [
        {"name": "policy_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "status", "type": {"type": "enum", "name": "Status",
                                    "symbols": ["DRAFT", "ISSUED", "CANCELLED"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "blob", "type": "bytes"},
        {"name": "premium", "type": {"type": "bytes", "logicalType": "decimal",
                                     "precision": 10, "scale": 2}},
        {"name": "issued_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "holder", "type": {"type": "record", "name": "Holder", "fields": [
            {"name": "name", "type": "string"}, {"name": "age", "type": "int"}]}},
        {"name": "choice", "type": ["null", "long", "string"], "default": None},
    ],
}

UTC = dt.timezone.utc

# (key, value written with the AvroSerializer, headers, the JSON the handler must see)
CASES = [
    (b"P-1",
     {"policy_id": "3f2b8c1e-9a4d-4c7e-8b1a-2d5e6f7a8b9c", "status": "ISSUED",
      "tags": ["a", "b"], "attrs": {"x": 1, "big": 9007199254740993}, "note": None,
      "blob": b"\x00\xff\x10A", "premium": Decimal("1200.50"),
      "issued_at": dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
      "holder": {"name": "Ada", "age": 41}, "choice": None},
     {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "src": "t1"},
     {"policy_id": "3f2b8c1e-9a4d-4c7e-8b1a-2d5e6f7a8b9c", "status": "ISSUED",
      "tags": ["a", "b"], "attrs": {"x": 1, "big": 9007199254740993}, "note": None,
      "blob": "\u0000\u00ff\u0010A", "premium": "1200.50",
      "issued_at": "2024-01-02T03:04:05.123Z", "holder": {"name": "Ada", "age": 41},
      "choice": None}),
    (b"P-2",
     {"policy_id": "00000000-0000-4000-8000-000000000002", "status": "DRAFT", "tags": [],
      "attrs": {}, "note": "h\u00e9llo", "blob": b"", "premium": Decimal("-0.05"),
      "issued_at": dt.datetime(1999, 12, 31, 23, 59, 59, 0, tzinfo=UTC),
      "holder": {"name": "", "age": -1}, "choice": 5},
     {},
     {"policy_id": "00000000-0000-4000-8000-000000000002", "status": "DRAFT", "tags": [],
      "attrs": {}, "note": "h\u00e9llo", "blob": "", "premium": "-0.05",
      "issued_at": "1999-12-31T23:59:59.000Z", "holder": {"name": "", "age": -1},
      "choice": {"long": 5}}),
    (b"\xff\xfe",  # not UTF-8: key null + key_base64
     {"policy_id": "00000000-0000-4000-8000-000000000003", "status": "CANCELLED",
      "tags": ["z"], "attrs": {"n": -3}, "note": None, "blob": b"\x7f",
      "premium": Decimal("0.00"),
      "issued_at": dt.datetime(2024, 2, 29, 12, 0, 0, 1000, tzinfo=UTC),
      "holder": {"name": "Bo", "age": 7}, "choice": "s"},
     {"bin": b"\xc3\x28", "text": "ok"},
     {"policy_id": "00000000-0000-4000-8000-000000000003", "status": "CANCELLED",
      "tags": ["z"], "attrs": {"n": -3}, "note": None, "blob": "\u007f",
      "premium": "0.00", "issued_at": "2024-02-29T12:00:00.001Z",
      "holder": {"name": "Bo", "age": 7}, "choice": {"string": "s"}}),
]


def test_round_trip_consume(kafka, stack, uid):
    topic = f"kt.consume.{uid}"
    group = f"kt-consume-{uid}"
    kafka.create_topic(topic)
    schema_id = kafka.register(f"{topic}-value", POLICY_SCHEMA)
    skiff, handler = stack.start([topic], group)

    sent = kafka.produce(topic, [(k, v, h) for k, v, h, _ in CASES], schema=POLICY_SCHEMA)
    assert [r["offset"] for r in sent] == [0, 1, 2]

    wait_until(lambda: len(acked_offsets([handler], topic)) == len(CASES),
               what="the handler to ack every record",
               on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    starts = {e["offset"]: e for e in handler.events("start")}
    for (key, _, headers, want), report in zip(CASES, sent):
        got = starts[report["offset"]]
        assert got["value"] == want
        assert got["topic"] == topic
        assert got["partition"] == report["partition"] == 0
        assert got["attempt"] == 1
        assert got["schema_id"] == schema_id
        assert got["timestamp"] == report["timestamp"]
        if key == b"\xff\xfe":
            assert got["key"] is None
            assert got["key_base64"] == base64.b64encode(key).decode()
            assert got["headers"] == {"text": "ok"}
            assert got["headers_base64"] == {"bin": base64.b64encode(b"\xc3\x28").decode()}
        else:
            assert got["key"] == key.decode()
            assert got["headers"] == headers
        if "traceparent" in headers:  # the task's span: same trace, child of the record's
            assert got["traceparent"][:36] == headers["traceparent"][:36]
            assert got["traceparent"] != headers["traceparent"]

    # After the acks the group's committed offset reaches the end of the partition.
    committed = kafka.wait_committed(group, topic, {0: len(CASES)}, skiff)
    assert committed == {0: len(CASES)}
    assert kafka.end_offsets(topic) == {0: len(CASES)}
    assert skiff.metric("skiff_kafka_records_received_total", topic=topic) == len(CASES)
    wait_until(lambda: skiff.metric("skiff_kafka_records_processed_total", topic=topic,
                                    outcome="acked") == len(CASES),
               timeout=WAIT, what="records_processed_total{outcome=acked}")
    assert skiff.metric("skiff_kafka_redeliveries_total", topic=topic) == 0
    assert kafka.read_all(f"{topic}.dlq") == []
    assert skiff.metric("skiff_kafka_commits_total", result="ok") >= 1
    assert skiff.metric("skiff_kafka_commits_total", result="error") == 0
    wait_until(lambda: skiff.metric("skiff_kafka_records_held", topic=topic) == 0,
               what="records_held back to 0")
    assert skiff.metric("skiff_kafka_partitions_paused", topic=topic) == 0
    # Lag every 5 s: high watermark (from fetches) - committed.
    wait_until(lambda: [v for n, lab, v in skiff.metrics()
                        if n == "skiff_kafka_consumer_lag" and lab.get("topic") == topic and
                        lab.get("partition") == "0"] == [0.0],
               what="consumer_lag{partition=0} == 0")
    stack.stop_all()
