"""The `produce` call: a handler writes Avro records through skiff (task.produce and
app.produce); a confluent-kafka consumer with the official AvroDeserializer reads exactly the
value; invalid values and unknown subjects are refused without writing anything."""
from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

from conftest import CMD_SCHEMA, cmd, events_of, wait_until

OUT_SCHEMA = {
    "type": "record", "name": "Indexed", "namespace": "skiff.test",
    "fields": [
        {"name": "policy_id", "type": "string"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 9, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
            {"name": "zip", "type": "string"}]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    ],
}
UTC = dt.timezone.utc
PRODUCER_STARTED = "Kafka producer started"


def librdkafka_clients(skiff) -> int:
    """librdkafka clients running in skiff: each has one main thread, named rdk:main."""
    tasks = f"/proc/{skiff.proc.pid}/task"
    names = []
    for t in os.listdir(tasks):
        try:
            with open(f"{tasks}/{t}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # a thread that just ended
            pass
    return names.count("rdk:main")


def test_produce_call(kafka, stack, uid):
    trigger = f"kt.trigger.{uid}"
    out = f"kt.out.{uid}"
    nosubject = f"kt.nosubject.{uid}"
    group = f"kt-produce-{uid}"
    kafka.create_topic(trigger)
    kafka.create_topic(out, dlq=False)
    kafka.create_topic(nosubject, dlq=False)
    kafka.register(f"{trigger}-value", CMD_SCHEMA)
    out_id = kafka.register(f"{out}-value", OUT_SCHEMA)
    skiff, handler = stack.start([trigger], group)
    # Ready and nothing produced yet: only the consumer's client runs (the producer's starts with
    # the first record to produce, for an idle sidecar's memory).
    assert librdkafka_clients(skiff) == 1 and PRODUCER_STARTED not in skiff.logs()

    specs = {
        "task-ok": {"via": "task", "topic": out, "key": "P-1", "headers": {"source": "kt"},
                    "value": {"policy_id": "P-1", "amount": "1200.5",
                              "at": "2024-01-02T03:04:05.123Z", "customer": {"zip": "10115"},
                              "note": "x", "kind": "B"}},
        "app-ok": {"via": "app", "topic": out,
                   "value": {"policy_id": "P-2", "amount": 7, "at": 1704164645123,
                             "customer": {"zip": "1"}, "kind": "A"}},
        "invalid": {"via": "task", "topic": out, "key": "P-3",
                    "value": {"policy_id": "P-3", "amount": "1.00",
                              "at": "2024-01-02T03:04:05.123Z", "customer": {"zip": 123},
                              "kind": "A"}},
        "nosubject": {"via": "task", "topic": nosubject, "value": {"a": 1}},
        "badparams": {"via": "task", "topic": "", "value": {"a": 1}},
    }
    # One key: the triggers run one after the other, in this order.
    kafka.produce(trigger, [("same", cmd(name, produce=json.dumps(spec)), None)
                            for name, spec in specs.items()], schema=CMD_SCHEMA)

    def results():
        ends = {e["value"]["id"]: e.get("produce") for e in events_of([handler], "end", trigger)}
        return ends if len(ends) == len(specs) else None
    res = wait_until(results, what="every produce call answered",
                     on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")

    # Written: the replies say where, with the subject's schema id.
    assert res["task-ok"] == {"ok": True, "result": {"topic": out, "partition": 0, "offset": 0,
                                                     "schema_id": out_id}}, res
    assert res["app-ok"] == {"ok": True, "result": {"topic": out, "partition": 0, "offset": 1,
                                                    "schema_id": out_id}}, res
    # Refused: invalid value (the message names the path), unknown subject, bad params.
    assert res["invalid"]["ok"] is False and res["invalid"]["code"] == "invalid_value", res
    assert "$.customer.zip" in res["invalid"]["message"], res["invalid"]
    assert res["nosubject"]["ok"] is False and res["nosubject"]["code"] == "schema_not_found", res
    assert res["badparams"]["ok"] is False and res["badparams"]["code"] == "invalid_params", res

    # What a Kafka consumer with the official deserializer sees: exactly the two values.
    assert kafka.end_offsets(out) == {0: 2}, "a refused produce call wrote a record"
    assert kafka.end_offsets(nosubject) == {0: 0}
    msgs = kafka.read_all(out)
    assert [m.offset() for m in msgs] == [0, 1]
    for m in msgs:
        assert m.value()[0] == 0 and int.from_bytes(m.value()[1:5], "big") == out_id
    first, second = (kafka.deserialize(out, m.value()) for m in msgs)
    assert first == {"policy_id": "P-1", "amount": Decimal("1200.50"),
                     "at": dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
                     "customer": {"zip": "10115"}, "note": "x", "kind": "B"}
    assert second == {"policy_id": "P-2", "amount": Decimal("7.00"),
                      "at": dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
                      "customer": {"zip": "1"}, "note": None, "kind": "A"}
    # every produced record carries skiff's PRODUCER span as its traceparent
    h0, h1 = dict(msgs[0].headers() or []), dict(msgs[1].headers() or [])
    assert msgs[0].key() == b"P-1" and h0.pop("traceparent").startswith(b"00-")
    assert h0 == {"source": b"kt"}
    assert msgs[1].key() is None and list(h1) == ["traceparent"]
    kafka.wait_committed(group, trigger, {0: len(specs)}, skiff)
    assert skiff.metric("skiff_kafka_produced_total", topic=out, result="ok") == 2
    assert skiff.metric("skiff_kafka_produced_total", result="error") == 0
    assert skiff.metric("skiff_kafka_produced_total", topic=nosubject) == 0
    # The refused value is the operator's business too: logged with its topic, counted.
    assert skiff.metric("skiff_kafka_produced_total", topic=out, result="invalid_value") == 1
    # The first produce call started the producer, once for all of them.
    assert librdkafka_clients(skiff) == 2 and skiff.logs().count(PRODUCER_STARTED) == 1
    assert [e for e in skiff.log_lines() if e.get("level") == "warn" and e.get("topic") == out
            and "produce refused" in e.get("message", "") and "$.customer.zip" in e["message"]]
    stack.stop_all()
