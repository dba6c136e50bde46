"""Records skiff refuses or changes because of their content: each is logged (WARN or ERROR,
with topic, partition and offset and the reason), counted in a metric, and what the peers see
(the dead-letter topic read with a plain Kafka consumer, what the SDK handler received) is
checked. U+0000 inside a value is not such a case: it is delivered as it is."""
from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any, Dict, List

from conftest import CMD_SCHEMA, MessageField, SerializationContext, cmd, wait_until

TEXT_SCHEMA = {
    "type": "record", "name": "Text", "namespace": "skiff.test",
    "fields": [{"name": "id", "type": "string"}, {"name": "text", "type": "string"}],
}


def warnings_about(skiff, topic: str, needle: str) -> List[Dict[str, Any]]:
    return [e for e in skiff.log_lines()
            if e.get("level") in ("warn", "error") and e.get("topic") == topic and
            needle in e.get("message", "")]


def dlq_headers(kafka, topic: str, n: int, skiff) -> List[Dict[str, str]]:
    wait_until(lambda: sum(kafka.end_offsets(f"{topic}.dlq").values()) >= n,
               what=f"{n} records in {topic}.dlq", on_timeout=skiff.tail)
    return [{k: v.decode() for k, v in (m.headers() or [])}
            for m in kafka.read_all(f"{topic}.dlq")]


def acked(handler, rid: str) -> bool:
    return any(e["value"].get("id") == rid and e.get("outcome") == "ack"
               for e in handler.events("end") if isinstance(e.get("value"), dict))


def test_too_large_record_dead_lettered(kafka, stack, uid):
    """A record whose task frame exceeds handler.max_frame never reaches the handler: it goes
    to <topic>.dlq with reason too_large, logged with its coordinates, counted twice (refused,
    dead-lettered); the next record is delivered."""
    topic, group = f"kt.large.{uid}", f"kt-large-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", TEXT_SCHEMA)
    skiff, handler = stack.start([topic], group, handler__max_frame="1KiB")
    kafka.produce(topic, [(b"k1", {"id": "big", "text": "x" * 2000}, None),
                          (b"k2", {"id": "small", "text": "y"}, None)], schema=TEXT_SCHEMA)
    wait_until(lambda: acked(handler, "small"), what="the small record acked",
               on_timeout=skiff.tail)
    [h] = dlq_headers(kafka, topic, 1, skiff)
    assert h["skiff.dlq.reason"] == "too_large", h
    assert "exceeds handler.max_frame (1024 bytes)" in h["skiff.dlq.error"], h
    assert h["skiff.original.offset"] == "0"
    assert [e["value"]["id"] for e in handler.events("start")] == ["small"]
    assert warnings_about(skiff, topic, "record 0@0 goes to"), skiff.tail()
    assert skiff.metric("skiff_tasks_undeliverable_total", source="kafka", route=topic,
                        reason="too_large") == 1
    wait_until(lambda: skiff.metric("skiff_kafka_dead_letters_total", topic=topic,
                                    reason="too_large") == 1, what="dead letter counted")
    kafka.wait_committed(group, topic, {0: 2}, skiff)
    stack.stop_all()


def test_undecodable_records_logged_and_counted(kafka, stack, uid):
    """Not the Confluent wire format, and an unknown schema id: each logged with its offset
    and reason, counted as undeliverable when refused and as a dead letter once written."""
    topic, group = f"kt.undec.{uid}", f"kt-undec-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group)
    unknown_id = b"\x00" + (999998).to_bytes(4, "big") + b"\x06abc"
    kafka.produce(topic, [(b"u1", b"plain text", None), (b"u2", unknown_id, None)])
    kafka.produce(topic, [(b"u3", cmd("good"), None)], schema=CMD_SCHEMA)
    wait_until(lambda: acked(handler, "good"), what="the good record acked",
               on_timeout=skiff.tail)
    assert len(dlq_headers(kafka, topic, 2, skiff)) == 2
    lines = warnings_about(skiff, topic, "goes to")
    assert {e.get("reason") for e in lines} == {"undecodable"}, lines
    assert any("record 0@0" in e["message"] and "Confluent Avro wire format" in e["message"]
               for e in lines), lines
    assert any("record 0@1" in e["message"] for e in lines), lines
    assert skiff.metric("skiff_tasks_undeliverable_total", source="kafka", route=topic,
                        reason="undecodable") == 2
    stack.stop_all()


class _VU(ctypes.Structure):
    """rd_kafka_vu_t: a vtype and a 64-byte union (for HEADER: name, value, size)."""
    _fields_ = [("vtype", ctypes.c_int), ("name", ctypes.c_void_p), ("val", ctypes.c_size_t),
                ("size", ctypes.c_ssize_t), ("pad", ctypes.c_char * 40)]


def bundled_librdkafka() -> str:
    """The shared librdkafka inside the confluent-kafka wheel (confluent_kafka.libs/)."""
    import confluent_kafka
    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    assert found, f"no librdkafka in {libs}"
    return str(found[0])


def produce_raw_headers(bootstrap: str, topic: str, value: bytes, headers) -> None:
    """Produces one record through librdkafka's C API (the one confluent-kafka bundles; skiff's
    is linked statically): unlike the Python client, it takes header names as raw bytes."""
    lib = ctypes.CDLL(bundled_librdkafka())
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_produceva.restype = ctypes.c_void_p
    lib.rd_kafka_produceva.argtypes = [ctypes.c_void_p, ctypes.POINTER(_VU), ctypes.c_size_t]
    lib.rd_kafka_error_string.restype = ctypes.c_char_p
    lib.rd_kafka_error_string.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_outq_len.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    err = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    assert lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), err, 512) == 0
    rk = lib.rd_kafka_new(0, conf, err, 512)  # RD_KAFKA_PRODUCER
    assert rk, err.value
    keep = [ctypes.create_string_buffer(topic.encode()), ctypes.create_string_buffer(value)]
    vus = [_VU(1, ctypes.addressof(keep[0])),  # TOPIC
           _VU(4, ctypes.addressof(keep[1]), len(value))]  # VALUE {ptr, size}
    for name, val in headers:
        keep += [ctypes.create_string_buffer(name), ctypes.create_string_buffer(val)]
        vus.append(_VU(9, ctypes.addressof(keep[-2]), ctypes.addressof(keep[-1]), len(val)))
    arr = (_VU * len(vus))(*vus)
    e = lib.rd_kafka_produceva(rk, arr, len(vus))
    assert not e, lib.rd_kafka_error_string(e)
    lib.rd_kafka_flush(rk, 30000)
    assert lib.rd_kafka_outq_len(rk) == 0, "record not delivered"
    lib.rd_kafka_destroy(rk)


def test_header_name_not_utf8(kafka, stack, uid):
    """A header whose name is not UTF-8 cannot be a JSON member name: the record is delivered
    without it, and the drop is logged and counted (never silent)."""
    topic, group = f"kt.hdr.{uid}", f"kt-hdr-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group)
    value = kafka.serializer(CMD_SCHEMA)(cmd("h"), SerializationContext(topic, MessageField.VALUE))
    produce_raw_headers(kafka.bootstrap, topic, value, [(b"\xff\xfe", b"v"), (b"ok", b"1")])
    wait_until(lambda: acked(handler, "h"), what="the record acked", on_timeout=skiff.tail)
    [start] = handler.events("start")
    assert start["headers"] == {"ok": "1"}, start
    assert warnings_about(skiff, topic, "header #0 dropped"), skiff.tail()
    assert skiff.metric("skiff_kafka_headers_dropped_total", topic=topic) == 1
    assert skiff.metric("skiff_tasks_undeliverable_total") == 0
    stack.stop_all()


def test_nul_in_value_delivered(kafka, stack, uid):
    """U+0000 in an Avro string is delivered as it is (the handler decodes the same string)."""
    topic, group = f"kt.nul.{uid}", f"kt-nul-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", TEXT_SCHEMA)
    skiff, handler = stack.start([topic], group)
    kafka.produce(topic, [(b"n1", {"id": "n", "text": "a\u0000b\u0000"}, None)],
                  schema=TEXT_SCHEMA)
    wait_until(lambda: acked(handler, "n"), what="the record acked", on_timeout=skiff.tail)
    [start] = handler.events("start")
    assert start["value"]["text"] == "a\u0000b\u0000", json.dumps(start["value"])
    assert skiff.metric("skiff_tasks_undeliverable_total") == 0
    stack.stop_all()


def test_produce_keeps_nul(kafka, stack, uid):
    """A produce call whose key, header value and string value hold U+0000: the record a Kafka
    consumer reads has exactly those bytes (they are not cut at the NUL)."""
    trigger, out, group = f"kt.nulp.{uid}", f"kt.nulp.out.{uid}", f"kt-nulp-{uid}"
    kafka.create_topic(trigger)
    kafka.create_topic(out, dlq=False)
    kafka.register(f"{trigger}-value", CMD_SCHEMA)
    kafka.register(f"{out}-value", TEXT_SCHEMA)
    skiff, handler = stack.start([trigger], group)
    spec = {"via": "task", "topic": out, "key": "k\u0000y", "headers": {"h": "a\u0000b"},
            "value": {"id": "p", "text": "t\u0000u"}}
    kafka.produce(trigger, [(b"t", cmd("go", produce=json.dumps(spec)), None)],
                  schema=CMD_SCHEMA)
    wait_until(lambda: acked(handler, "go"), what="the trigger acked", on_timeout=skiff.tail)
    [end] = [e for e in handler.events("end") if e["value"]["id"] == "go"]
    assert end["produce"]["ok"] is True, end["produce"]
    [m] = kafka.read_all(out)
    assert m.key() == b"k\x00y"
    headers = dict(m.headers())
    assert headers.pop("traceparent")  # the producer span's context, added by skiff
    assert headers == {"h": b"a\x00b"}
    assert kafka.deserialize(out, m.value()) == {"id": "p", "text": "t\u0000u"}
    stack.stop_all()
