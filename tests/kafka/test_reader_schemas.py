"""Reader schemas (kafka.reader_schemas): one subject evolves under BACKWARD compatibility as
the registry enforces it (v1; v2 promotes qty int -> long, adds currency and status with
defaults; v3 removes note and adds the status symbol SHIPPED), records are written by the
official AvroSerializer under each version, and the handler of the topic, which names v2 as its
reader schema (a file, or `subject:<subject>:2` fetched from Apicurio), gets every value in v2's
shape. Two records go to <topic>.dlq as schema_incompatible, read back with the official
consumer: one written under a schema v2 cannot read at all (another subject, no qty), and a v3
one whose status v2's enum does not have.

A reader schema named by subject and version is fetched before the consumer joins its group:
with the registry unreachable at start (a TCP relay to the shared Apicurio that is not listening
yet), or with a version not registered yet, skiff is not ready, says why on /readyz, retries
(counted), has no member in the group, and serves the topic once the schema is there."""
from __future__ import annotations

import json
import socket
import threading
from typing import Any, Dict, List

import pytest

from conftest import free_port, wait_until

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


@pytest.mark.parametrize("form", ["file", "subject"])
def test_values_resolved_to_the_reader_schema(kafka, stack, uid, tmp_path, form):
    topic = f"kt.reader.{uid}"
    group = f"kt-reader-{uid}"
    subject = f"{topic}-value"
    kafka.create_topic(topic)
    ids = [kafka.register(subject, v) for v in (V1, V2, V3)]
    assert len(set(ids)) == 3, f"three versions under {subject}: {ids}"
    assert kafka.sr.get_version(subject, 2).schema_id == ids[1]
    reader = tmp_path / "order-v2.avsc"
    reader.write_text(json.dumps(V2))
    item = f"{topic}=file:{reader}" if form == "file" else f"{topic}=subject:{subject}:2"

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

    skiff, handler = stack.start([topic], group, kafka__reader_schemas=item)
    kafka.wait_committed(group, topic, {0: 5}, skiff)
    if form == "subject":
        assert skiff.metric("skiff_kafka_reader_schema_lookups_total", topic=topic,
                            result="ok") == 1
        assert any(f'reader schema version 2 of subject "{subject}" (schema id {ids[1]})'
                   in line.get("message", "") for line in skiff.log_lines()), skiff.tail()

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


# ---- a reader schema from the registry that is not there yet ----------------------------------

class Relay:
    """A TCP relay from a local port to the shared registry, listening only once started: before
    that, skiff's requests to it are refused like those to a registry that is down."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.server = None
        self.threads: List[threading.Thread] = []

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.server.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            for a, b in ((down, up), (up, down)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def group_members(kafka, group: str) -> int:
    desc = kafka.admin.describe_consumer_groups([group])[group].result(timeout=20)
    return len(desc.members)


def produce_v1_v2_v3(kafka, topic: str, subject: str) -> List[int]:
    ids = [kafka.register(subject, v) for v in (V1, V2, V3)]
    kafka.produce(topic, [("k1", {"id": "o1", "qty": 3, "note": "first"}, None)], schema=V1)
    kafka.produce(topic, [("k2", {"id": "o2", "qty": 7, "currency": "USD", "status": "PAID"},
                           None)], schema=V2)
    kafka.produce(topic, [("k3", {"id": "o3", "qty": 5, "status": "PAID"}, None)], schema=V3)
    return ids


def expect_v2_shape(handler) -> None:
    got = {e["value"]["id"]: e["value"] for e in handler.events("start")}
    assert got == {
        "o1": {"id": "o1", "qty": 3, "note": "first", "currency": "EUR", "status": "NEW"},
        "o2": {"id": "o2", "qty": 7, "note": "-", "currency": "USD", "status": "PAID"},
        "o3": {"id": "o3", "qty": 5, "note": "-", "currency": "EUR", "status": "PAID"},
    }, handler.events("start")


CANARY = "canary-Reader-9c1f"  # the registry password: in no log line, /readyz or /metrics


def test_registry_down_at_start_then_up(kafka, stack, uid):
    topic = f"kt.reader.down.{uid}"
    group = f"kt-reader-down-{uid}"
    subject = f"{topic}-value"
    kafka.create_topic(topic)
    produce_v1_v2_v3(kafka, topic, subject)
    base = kafka.registry_url.split("//", 1)[1]
    hostport, _, path = base.partition("/")
    relay = Relay(int(hostport.rsplit(":", 1)[1]))
    try:
        skiff = stack.skiff([topic], group, kafka__reader_schemas=f"{topic}=subject:{subject}:2",
                            schema_registry__url=f"http://127.0.0.1:{relay.port}/{path}",
                            schema_registry__username="kt-user",
                            schema_registry__password=CANARY)
        handler = stack.handler(skiff, [topic])
        wait_until(lambda: skiff.metric("skiff_kafka_reader_schema_lookups_total", topic=topic,
                                        result="unavailable") >= 2,
                   what="two failed lookups (retried)", on_timeout=skiff.tail)
        status, body = skiff.http("/readyz")
        assert status == 503, (status, body)
        assert (f"waiting for the reader schema of topic {topic}: version 2 of subject "
                f'"{subject}": schema registry unreachable') in body, body
        assert f"has not joined group {group}" in body, body
        assert group_members(kafka, group) == 0
        assert "next try in" in skiff.logs()
        assert handler.events("start") == []

        relay.start()
        skiff.wait_ready()
        wait_until(lambda: len(handler.events("start")) >= 3, what="three records handled",
                   on_timeout=skiff.tail)
        expect_v2_shape(handler)
        assert skiff.metric("skiff_kafka_reader_schema_lookups_total", topic=topic,
                            result="ok") == 1
        assert CANARY not in skiff.http("/metrics")[1]
        kafka.wait_committed(group, topic, {0: 3}, skiff)
        stack.stop_all()
        for text in (skiff.logs(), body, skiff.http("/readyz")[1]):
            assert CANARY not in text
    finally:
        relay.stop()


def test_missing_version_waits_until_registered(kafka, stack, uid):
    topic = f"kt.reader.missing-version.{uid}"
    group = f"kt-reader-mv-{uid}"
    subject = f"{topic}-value"
    kafka.create_topic(topic)
    kafka.register(subject, V1)
    kafka.produce(topic, [("k1", {"id": "o1", "qty": 3, "note": "first"}, None)], schema=V1)
    skiff = stack.skiff([topic], group, kafka__reader_schemas=f"{topic}=subject:{subject}:2")
    handler = stack.handler(skiff, [topic])
    wait_until(lambda: skiff.metric("skiff_kafka_reader_schema_lookups_total", topic=topic,
                                    result="not_found") >= 1,
               what="a lookup answered not found", on_timeout=skiff.tail)
    status, body = skiff.http("/readyz")
    assert status == 503, (status, body)
    assert (f'reader schema of topic {topic}: version 2 of subject "{subject}": not found in the '
            "schema registry") in body, body
    errors = [line["message"] for line in skiff.log_lines() if line.get("level") == "error"]
    assert any(f'version 2 of subject "{subject}": not found' in m for m in errors), errors
    assert group_members(kafka, group) == 0
    assert handler.events("start") == []

    # Registered meanwhile (a producer's deploy after the consumer's): picked up by a retry.
    kafka.register(subject, V2)
    skiff.wait_ready()
    wait_until(lambda: handler.events("start"), what="the record handled", on_timeout=skiff.tail)
    assert handler.events("start")[0]["value"] == {"id": "o1", "qty": 3, "note": "first",
                                                   "currency": "EUR", "status": "NEW"}
    stack.stop_all()


def test_missing_subject_and_unusable_schema(kafka, stack, uid):
    """A subject that does not exist: not ready, retried, and a SIGTERM meanwhile exits cleanly
    (the consumer never joined). A version whose schema is not Avro: not ready, with the reason
    and what to do."""
    topic = f"kt.reader.nosubject.{uid}"
    kafka.create_topic(topic)
    nope = f"kt-nope-{uid}"
    skiff = stack.skiff([topic], f"kt-reader-ns-{uid}",
                        kafka__reader_schemas=f"{topic}=subject:{nope}:1")
    wait_until(lambda: skiff.metric("skiff_kafka_reader_schema_lookups_total", topic=topic,
                                    result="not_found") >= 1,
               what="a lookup answered not found", on_timeout=skiff.tail)
    status, body = skiff.http("/readyz")
    assert status == 503 and f'version 1 of subject "{nope}": not found' in body, body

    jtopic = f"kt.reader.json.{uid}"
    kafka.create_topic(jtopic)
    jsubject = f"{jtopic}-value"
    from confluent_kafka.schema_registry import Schema
    kafka.sr.register_schema(jsubject, Schema(json.dumps(
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}), "JSON"))
    js = stack.skiff([jtopic], f"kt-reader-json-{uid}",
                     kafka__reader_schemas=f"{jtopic}=subject:{jsubject}:1")
    wait_until(lambda: js.metric("skiff_kafka_reader_schema_lookups_total", topic=jtopic,
                                 result="invalid") == 1,
               what="the lookup answered invalid", on_timeout=js.tail)
    status, body = js.http("/readyz")
    assert status == 503, (status, body)
    assert f"no usable reader schema of topic {jtopic}" in body, body
    assert "schema type JSON is not supported (only AVRO)" in body, body
    assert "restart skiff" in js.logs()
    stack.stop_all()  # both exit 0 on SIGTERM although their consumers never joined a group
