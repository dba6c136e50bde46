"""Failures: nack and retry with per-key order, dead letters after kafka.max_attempts, at once
on DeadLetter, and for records that cannot be decoded. The dead-letter topic <topic>.dlq is
read with a plain Kafka consumer: the original bytes and key, skiff's headers, the original
headers."""
from __future__ import annotations

import json
from typing import Any, Dict, List

from conftest import CMD_SCHEMA, WAIT, cmd, wait_until

MAX_ATTEMPTS = 3  # the Stack's default kafka.max_attempts


def line_index(events: List[Dict[str, Any]], pred) -> int:
    """Index of the first event (in the handler's write order) matching pred."""
    for i, e in enumerate(events):
        if pred(e):
            return i
    raise AssertionError(f"no such event in {json.dumps(events)[:3000]}")


def is_(event: str, rid: str, **kw):
    return lambda e: (e["event"] == event and isinstance(e.get("value"), dict) and
                      e["value"].get("id") == rid and all(e.get(k) == v for k, v in kw.items()))


def dlq_records(kafka, topic: str, n: int, skiff=None):
    wait_until(lambda: sum(kafka.end_offsets(f"{topic}.dlq").values()) >= n,
               what=f"{n} records in {topic}.dlq",
               on_timeout=lambda: skiff.tail() if skiff else "")
    msgs = kafka.read_all(f"{topic}.dlq")
    assert len(msgs) == n, f"{len(msgs)} records in {topic}.dlq, want {n}"
    return msgs


def headers_of(msg) -> Dict[str, str]:
    return {k: v.decode() for k, v in (msg.headers() or [])}


def test_retry_then_ack_keeps_key_order(kafka, stack, uid):
    topic = f"kt.retry.{uid}"
    group = f"kt-retry-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group, capacity=4)

    # A fails twice; B1 and B2 (same key) must wait for it; C (other key) must not. A's
    # first attempt waits until C is acked, so C is provably processed while A is pending.
    kafka.produce(topic, [("k1", cmd("A", fail=2, after="C"), None),
                          ("k1", cmd("B1"), None),
                          ("k1", cmd("B2"), None),
                          ("k2", cmd("C"), None)], schema=CMD_SCHEMA)
    wait_until(lambda: {e["value"]["id"] for e in handler.events("end")
                        if e.get("outcome") == "ack"} == {"A", "B1", "B2", "C"},
               what="A, B1, B2, C acked",
               on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    ev = handler.events()
    a = [(e["attempt"], e["outcome"]) for e in ev if is_("end", "A")(e)]
    assert a == [(1, "nack"), (2, "nack"), (3, "ack")], a
    a_acked = line_index(ev, is_("end", "A", outcome="ack"))
    # Key order: nothing of key k1 started before A was acked, and B1 before B2.
    assert line_index(ev, is_("start", "B1")) > a_acked
    assert line_index(ev, is_("start", "B2")) > line_index(ev, is_("end", "B1"))
    # Another key ran meanwhile.
    assert line_index(ev, is_("end", "C")) < a_acked
    assert all(e["after_seen"] for e in ev if is_("end", "A")(e) and "after_seen" in e)
    assert [e["attempt"] for e in ev if is_("start", "B1")(e) or is_("start", "C")(e)] == [1, 1]

    kafka.wait_committed(group, topic, {0: 4}, skiff)
    wait_until(lambda: skiff.metric("skiff_kafka_records_processed_total", topic=topic,
                                    outcome="acked") == 4, what="4 records acked (metric)")
    assert skiff.metric("skiff_kafka_redeliveries_total", topic=topic, reason="nack") == 2
    assert skiff.metric("skiff_kafka_redeliveries_total", topic=topic) == 2
    assert kafka.read_all(f"{topic}.dlq") == []
    stack.stop_all()


def test_dead_letter_after_max_attempts(kafka, stack, uid):
    topic = f"kt.dlq.{uid}"
    group = f"kt-dlq-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group)

    sent = kafka.produce(topic, [("kp", cmd("P", fail=1000), {"h1": "v1", "traceparent":
                                  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}),
                                 ("kp", cmd("Q"), None)], schema=CMD_SCHEMA)
    (dlq,) = dlq_records(kafka, topic, 1, skiff)
    assert dlq.value() == sent[0]["value"], "dead letter is not the original bytes"
    assert dlq.key() == b"kp"
    h = headers_of(dlq)
    assert h["skiff.dlq.reason"] == "attempts"
    assert h["skiff.dlq.attempts"] == str(MAX_ATTEMPTS)
    assert "planned failure" in h["skiff.dlq.error"], h
    assert h["skiff.original.topic"] == topic
    assert h["skiff.original.partition"] == "0"
    assert h["skiff.original.offset"] == str(sent[0]["offset"])
    assert h["skiff.original.timestamp"] == str(sent[0]["timestamp"])
    assert h["h1"] == "v1"
    assert h["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    # The partition keeps moving: Q (same key) is acked after P, and the commit passes P.
    wait_until(lambda: any(is_("end", "Q", outcome="ack")(e) for e in handler.events()),
               what="Q acked", on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    ev = handler.events()
    assert [e["attempt"] for e in ev if is_("start", "P")(e)] == list(range(1, MAX_ATTEMPTS + 1))
    assert line_index(ev, is_("start", "Q")) > max(i for i, e in enumerate(ev) if is_("end", "P")(e))
    kafka.wait_committed(group, topic, {0: 2}, skiff)
    wait_until(lambda: skiff.metric("skiff_kafka_records_processed_total", topic=topic,
                                    outcome="dead_lettered") == 1, what="dead_lettered metric")
    assert skiff.metric("skiff_kafka_dead_letters_total", topic=topic, reason="attempts") == 1
    assert skiff.metric("skiff_kafka_redeliveries_total", topic=topic,
                        reason="nack") == MAX_ATTEMPTS - 1
    wait_until(lambda: skiff.metric("skiff_kafka_records_processed_total", topic=topic,
                                    outcome="acked") == 1, what="acked metric")
    assert skiff.metric("skiff_kafka_produced_total", topic=f"{topic}.dlq", result="ok") == 1
    stack.stop_all()


def test_dead_letter_from_handler(kafka, stack, uid):
    topic = f"kt.poison.{uid}"
    group = f"kt-poison-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group)

    sent = kafka.produce(topic, [("kx", cmd("X", poison=True), {"h": "1"}),
                                 ("kx", cmd("Y"), None)], schema=CMD_SCHEMA)
    (dlq,) = dlq_records(kafka, topic, 1, skiff)
    assert dlq.value() == sent[0]["value"] and dlq.key() == b"kx"
    h = headers_of(dlq)
    assert h["skiff.dlq.reason"] == "handler"
    assert h["skiff.dlq.attempts"] == "1"
    assert "poison record X" in h["skiff.dlq.error"], h
    assert h["skiff.original.offset"] == str(sent[0]["offset"]) and h["h"] == "1"
    wait_until(lambda: any(is_("end", "Y", outcome="ack")(e) for e in handler.events()),
               what="Y acked", on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    assert [e["attempt"] for e in handler.events("start") if e["value"]["id"] == "X"] == [1]
    kafka.wait_committed(group, topic, {0: 2}, skiff)
    assert skiff.metric("skiff_kafka_dead_letters_total", topic=topic, reason="handler") == 1
    assert skiff.metric("skiff_kafka_redeliveries_total", topic=topic) == 0
    stack.stop_all()


def test_undecodable_records_go_to_dlq(kafka, stack, uid):
    topic = f"kt.undecodable.{uid}"
    group = f"kt-undecodable-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group)

    raw_json = json.dumps({"id": "raw"}).encode()
    unknown_id = b"\x00" + (999999).to_bytes(4, "big") + b"\x06abc\x00\x00\x00\x00\x00\x00"
    sent = kafka.produce(topic, [("u1", raw_json, None), ("u2", unknown_id, {"h": "2"})])
    sent += kafka.produce(topic, [("u3", cmd("good"), None)], schema=CMD_SCHEMA)
    dlq = dlq_records(kafka, topic, 2, skiff)
    by_offset = {int(headers_of(m)["skiff.original.offset"]): m for m in dlq}
    assert sorted(by_offset) == [0, 1]
    for i, key in ((0, b"u1"), (1, b"u2")):
        m = by_offset[i]
        h = headers_of(m)
        assert m.value() == sent[i]["value"] and m.key() == key
        assert h["skiff.dlq.reason"] == "undecodable", h
        assert h["skiff.dlq.error"], h
        assert h["skiff.original.topic"] == topic
    assert headers_of(by_offset[1])["h"] == "2"

    wait_until(lambda: any(is_("end", "good", outcome="ack")(e) for e in handler.events()),
               what="the good record acked",
               on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    kafka.wait_committed(group, topic, {0: 3}, skiff)
    assert [e["offset"] for e in handler.events("start")] == [2], "undecodable record delivered"
    assert skiff.metric("skiff_kafka_dead_letters_total", topic=topic, reason="undecodable") == 2
    wait_until(lambda: skiff.metric("skiff_kafka_records_processed_total", topic=topic) == 3,
               timeout=WAIT, what="3 records processed (metric)")
    stack.stop_all()
