"""Reader schemas (kafka.reader_schemas): one subject evolves under BACKWARD compatibility as
the registry enforces it (v1; v2 promotes qty int -> long, adds currency and status with
defaults; v3 removes note and adds the status symbol SHIPPED), records are written by the
official AvroSerializer under each version, and the handler of the topic, which names v2 as its
reader schema, gets every value in v2's shape. Two records go to <topic>.dlq as
schema_incompatible, read back with the official consumer: one written under a schema v2 cannot
read at all (another subject, no qty), and a v3 one whose status v2's enum does not have."""
from __future__ import annotations

import json
from typing import Any, Dict

import pytest

from conftest import wait_until

V1 = {"type": "record", "name": "Order", "namespace": "skiff.test", "fields": [
    {"name": "id", "type": "string"},
    {"name": "qty", "type": "int"},
    {"name": "note", "type": "string", "default": "-"},
]}
V2 = {"type": "record", "name": "Order", "namespace": "skiff.test", "fields": [
    {"name": "id", "type": "string"},
    {"name": "qty", "type": "long"},
    {"name": "note", "type": "string", "default": "-"},
    {"name": "currency", "type": "string", "default": "EUR"},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]},
     "default": "NEW"},
]}
V3 = {"type": "record", "name": "Order", "namespace": "skiff.test", "fields": [
    {"name": "id", "type": "string"},
    {"name": "qty", "type": "long"},
    {"name": "currency", "type": "string", "default": "EUR"},
    {"name": "status", "type": {"type": "enum", "name": "Status",
                                "symbols": ["NEW", "PAID", "SHIPPED"]}, "default": "NEW"},
]}
ROGUE = {"type": "record", "name": "Order", "namespace": "skiff.test", "fields": [
    {"name": "id", "type": "string"},
    {"name": "amount", "type": "double"},
]}


def headers_of(msg) -> Dict[str, str]:
    return {k: v.decode() for k, v in (msg.headers() or [])}


def test_values_resolved_to_the_reader_schema(kafka, stack, uid, tmp_path):
    topic = f"kt.reader.{uid}"
    group = f"kt-reader-{uid}"
    subject = f"{topic}-value"
    kafka.create_topic(topic)
    ids = [kafka.register(subject, v) for v in (V1, V2, V3)]
    assert len(set(ids)) == 3, f"three versions under {subject}: {ids}"
    reader = tmp_path / "order-v2.avsc"
    reader.write_text(json.dumps(V2))

    from confluent_kafka.schema_registry.avro import AvroSerializer
    rogue = AvroSerializer(kafka.sr, json.dumps(ROGUE),
                           conf={"subject.name.strategy": lambda ctx, name: f"{topic}-rogue"})
    sent = kafka.produce(topic, [("k1", {"id": "o1", "qty": 3, "note": "first"}, None)],
                         schema=V1)
    sent += kafka.produce(topic, [("k2", {"id": "o2", "qty": 2 ** 40, "note": "big",
                                          "currency": "USD", "status": "PAID"}, None)], schema=V2)
    sent += kafka.produce(topic, [("k3", {"id": "o3", "qty": 5, "currency": "CHF",
                                          "status": "PAID"}, None),
                                  ("k4", {"id": "o4", "qty": 1, "status": "SHIPPED"}, None)],
                          schema=V3)
    sent += kafka.produce(topic, [("k5", {"id": "o5", "amount": 1.5}, None)], serializer=rogue)
    rogue_id = int.from_bytes(sent[4]["value"][1:5], "big")

    skiff, handler = stack.start([topic], group,
                                 kafka__reader_schemas=f"{topic}=file:{reader}")
    kafka.wait_committed(group, topic, {0: 5}, skiff)

    got = {e["value"]["id"]: e for e in handler.events("start")}
    assert sorted(got) == ["o1", "o2", "o3"], handler.events("start")
    assert got["o1"]["value"] == {"id": "o1", "qty": 3, "note": "first", "currency": "EUR",
                                  "status": "NEW"}
    assert got["o2"]["value"] == {"id": "o2", "qty": 2 ** 40, "note": "big", "currency": "USD",
                                  "status": "PAID"}
    assert got["o3"]["value"] == {"id": "o3", "qty": 5, "note": "-", "currency": "CHF",
                                  "status": "PAID"}
    # the task names the writer's schema id, not the reader's
    assert [got[i]["schema_id"] for i in ("o1", "o2", "o3")] == ids
    # the official deserializer given v2 as its reader schema (fastavro's resolution) agrees
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    official = AvroDeserializer(kafka.sr, json.dumps(V2))
    ctx = SerializationContext(topic, MessageField.VALUE)
    for i, rid in enumerate(("o1", "o2", "o3")):
        assert official(sent[i]["value"], ctx) == got[rid]["value"], rid
    with pytest.raises(Exception, match="SHIPPED"):
        official(sent[3]["value"], ctx)

    wait_until(lambda: sum(kafka.end_offsets(f"{topic}.dlq").values()) >= 2,
               what=f"two records in {topic}.dlq", on_timeout=skiff.tail)
    dlq = {headers_of(m)["skiff.original.offset"]: m for m in kafka.read_all(f"{topic}.dlq")}
    assert sorted(dlq) == ["3", "4"], dlq
    for offset, key in (("3", b"k4"), ("4", b"k5")):
        m = dlq[offset]
        assert m.value() == sent[int(offset)]["value"] and m.key() == key
        assert headers_of(m)["skiff.dlq.reason"] == "schema_incompatible", headers_of(m)
    shipped = headers_of(dlq["3"])["skiff.dlq.error"]
    assert f"schema {ids[2]}" in shipped, shipped
    assert ('$.status: symbol "SHIPPED" is not in the reader\'s enum skiff.test.Status, which '
            'has no default') in shipped, shipped
    no_qty = headers_of(dlq["4"])["skiff.dlq.error"]
    assert f"schema {rogue_id}" in no_qty, no_qty
    assert "$.qty: reader field has no default" in no_qty, no_qty
    # the official deserializer still reads the dead letters with their writers' schemas
    assert kafka.deserialize(f"{topic}.dlq", dlq["4"].value()) == {"id": "o5", "amount": 1.5}
    assert kafka.deserialize(f"{topic}.dlq", dlq["3"].value())["status"] == "SHIPPED"
    assert skiff.metric("skiff_kafka_dead_letters_total", topic=topic,
                        reason="schema_incompatible") == 2
    assert skiff.metric("skiff_tasks_undeliverable_total", source="kafka", route=topic,
                        reason="schema_incompatible") == 2
    assert f"goes to {topic}.dlq" in skiff.logs()
    stack.stop_all()


def test_missing_reader_schema_file_refuses_to_start(kafka, stack, uid, tmp_path):
    topic = f"kt.reader.missing.{uid}"
    kafka.create_topic(topic)
    with pytest.raises(AssertionError, match="skiff exited at start") as e:
        stack.skiff([topic], f"kt-reader-missing-{uid}",
                    kafka__reader_schemas=f"{topic}=file:{tmp_path / 'nope.avsc'}")
    assert f"cannot start: kafka.reader_schemas: topic {topic}, cannot open" in str(e.value)
    assert "Sanitizer" not in str(e.value)  # the refusal frees what it loaded


def test_invalid_reader_schema_refuses_to_start(kafka, stack, uid, tmp_path):
    topic = f"kt.reader.invalid.{uid}"
    kafka.create_topic(topic)
    bad = tmp_path / "bad.avsc"
    bad.write_text('{"type": "record", "name": "R", "fields": [{"name": "x", "type": "nope"}]}')
    with pytest.raises(AssertionError, match="skiff exited at start") as e:
        stack.skiff([topic], f"kt-reader-invalid-{uid}",
                    kafka__reader_schemas=f"{topic}=file:{bad}")
    assert f"kafka.reader_schemas: topic {topic}, " in str(e.value)
    assert "invalid Avro schema" in str(e.value)
    assert "Sanitizer" not in str(e.value)  # the refusal frees what it loaded
