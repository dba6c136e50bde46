"""Schema Registry outage: a record whose schema id skiff has not cached waits (neither
dead-lettered nor delivered) while the registry is down, and is delivered and acked once it is
back; a produce call needing an uncached subject gets `unavailable` meanwhile.

The registry stopped here is a second devstack registry (devstack/schema-registry.sh with its
own SKIFF_SCHEMA_REGISTRY_PORT and run dir), not the shared one: `schema-registry.sh start`
is a clean start that forgets every schema, which would pull the schemas from under the other
tests. It restarts keeping its schemas (their ids unchanged), as a real registry does: a
registry that came back empty would answer "not found", and skiff rightly dead-letters a
record whose schema id the registry does not know.

This test runs the registry STAND-IN (SKIFF_SCHEMA_REGISTRY_IMPL=standin), not Apicurio: the
fault it needs is an outage after which the registry comes back with the same schemas and ids,
and devstack's Apicurio keeps its schemas in memory only (a restart forgets them; a persistent
store would add 10-20 s of JVM start twice per run)."""
from __future__ import annotations

import json
import shutil
import tempfile

import pytest

from conftest import (CMD_SCHEMA, Registry, SchemaRegistryClient, cmd, free_port,
                      wait_until)

CMD_V2 = dict(CMD_SCHEMA, fields=CMD_SCHEMA["fields"] + [
    {"name": "extra", "type": "string", "default": "x"}])
OUT_SCHEMA = {"type": "record", "name": "Out", "namespace": "skiff.test",
              "fields": [{"name": "n", "type": "int"}]}


@pytest.fixture
def own_registry():
    """A registry of this test's own, stopped at the end whatever happens."""
    run_dir = tempfile.mkdtemp(prefix="kt-registry-", dir="/tmp")
    reg = Registry({"SKIFF_SCHEMA_REGISTRY_IMPL": "standin",
                    "SKIFF_SCHEMA_REGISTRY_PORT": str(free_port()),
                    "SKIFF_SCHEMA_REGISTRY_RUN_DIR": f"{run_dir}/run"})
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_registry_down_record_waits_then_delivered(kafka, stack, uid, own_registry):
    reg = own_registry
    topic = f"kt.regdown.{uid}"
    target = f"kt.regdown-out.{uid}"
    group = f"kt-regdown-{uid}"
    kafka.create_topic(topic)
    kafka.create_topic(target, dlq=False)

    def register_all(sr):
        return (kafka.register(f"{topic}-value", CMD_SCHEMA, sr),
                kafka.register(f"{topic}-value", CMD_V2, sr),
                kafka.register(f"{target}-value", OUT_SCHEMA, sr))
    sr = SchemaRegistryClient({"url": reg.url})
    ids = register_all(sr)
    id_v1, id_v2, _ = ids
    assert len(set(ids)) == 3
    # Values serialized while the registry is up (the official serializer needs it).
    ser_v1, ser_v2 = kafka.serializer(CMD_SCHEMA, sr), kafka.serializer(CMD_V2, sr)
    from confluent_kafka.serialization import MessageField, SerializationContext
    ctx = SerializationContext(topic, MessageField.VALUE)
    warm = ser_v1(cmd("warm"), ctx)
    new = ser_v2(dict(cmd("new"), extra="v2"), ctx)
    trigger = ser_v1(cmd("trigger", produce=json.dumps({"topic": target, "value": {"n": 1}})),
                     ctx)
    assert int.from_bytes(new[1:5], "big") == id_v2

    skiff, handler = stack.start([topic], group, schema_registry__url=reg.url)
    kafka.produce(topic, [("kw", warm, None)])  # skiff caches schema id_v1
    wait_until(lambda: any(e.get("outcome") == "ack" for e in handler.events("end")),
               what="the first record acked", on_timeout=skiff.tail)

    reg.stop()
    assert not reg.running()
    sent = kafka.produce(topic, [("kn", new, None)])
    assert sent[0]["offset"] == 1

    def unavailable_warnings():
        return [ln for ln in skiff.log_lines()
                if ln.get("level") == "warn" and f"schema {id_v2} unavailable" in
                ln.get("message", "")]
    # skiff tried (and retries) the lookup; the record is neither dead-lettered nor delivered.
    wait_until(lambda: len(unavailable_warnings()) >= 2,
               what=f"skiff to report schema {id_v2} unavailable (twice)",
               on_timeout=skiff.tail)

    # A produce call to a subject skiff has not cached: unavailable, nothing written.
    kafka.produce(topic, [("kt", trigger, None)])
    wait_until(lambda: [e for e in handler.events("end") if e["value"]["id"] == "trigger"],
               what="the trigger record processed",
               on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    (end,) = [e for e in handler.events("end") if e["value"]["id"] == "trigger"]
    assert end["produce"]["ok"] is False and end["produce"]["code"] == "unavailable", end
    assert kafka.end_offsets(target) == {0: 0}

    assert len(unavailable_warnings()) >= 2
    assert [e["offset"] for e in handler.events("start")] == [0, 2], \
        "the record with the unknown schema was delivered while the registry was down"
    assert kafka.end_offsets(f"{topic}.dlq") == {0: 0}, "dead-lettered while the registry was down"
    assert skiff.metric("skiff_kafka_dead_letters_total", topic=topic) == 0
    assert skiff.metric("skiff_kafka_records_held", topic=topic) == 1  # the waiting record
    assert kafka.committed(group, topic).get(0, -1) <= 1, "committed past the waiting record"

    # The registry comes back (same schemas, same ids): the record is delivered and acked.
    reg.start(keep=True)
    assert register_all(SchemaRegistryClient({"url": reg.url})) == ids  # already there
    wait_until(lambda: [e for e in handler.events("end")
                        if e["offset"] == 1 and e.get("outcome") == "ack"],
               what="the waiting record delivered and acked once the registry is back",
               on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    (got,) = [e for e in handler.events("start") if e["offset"] == 1]
    assert got["schema_id"] == id_v2 and got["value"]["extra"] == "v2" and got["attempt"] == 1
    kafka.wait_committed(group, topic, {0: 3}, skiff)
    assert kafka.read_all(f"{topic}.dlq") == []
    stack.stop_all()
