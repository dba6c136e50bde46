"""`extend` of Kafka tasks (SPEC §4.3, feature `kafka_extend`): a handler that works longer than
kafka.task_timeout, the group's session timeout and max.poll.interval.ms keeps its record (one
attempt, no cancel, no rebalance) when it extends; an extend answered `rejected`, one without
`ref` answered by nothing; the group timings (kafka.session_timeout, kafka.heartbeat_interval,
kafka.max_poll_interval) reach librdkafka."""
from __future__ import annotations

import json
import socket
import struct

from conftest import CMD_SCHEMA, cmd, wait_until

GROUP_TIMINGS = {
    "kafka__task_timeout": "2s",
    "kafka__session_timeout": "6s",  # the broker's group.min.session.timeout.ms
    "kafka__heartbeat_interval": "1s",
    "kafka__max_poll_interval": "6s",
}


def test_long_work_extended_past_every_timeout(kafka, stack, uid):
    topic = f"kt.extend.{uid}"
    group = f"kt-extend-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff = stack.skiff([topic], group, **GROUP_TIMINGS)
    # 10 s of work: five times kafka.task_timeout, past the session timeout and the
    # maximum poll interval; the handler extends by 2 s every second.
    h = stack.handler(skiff, [topic], capacity=1, extend_ms=1000)
    skiff.wait_ready()
    sent = kafka.produce(topic, [("k0", cmd("long", sleep_ms=10_000), None),
                                 ("k1", cmd("next"), None)], schema=CMD_SCHEMA)
    wait_until(lambda: len(h.events("end")) >= 2, timeout=60, what="both records answered",
               on_timeout=skiff.tail)
    starts, ends = h.events("start"), h.events("end")
    # One delivery of each: no deadline cancel, no retry, no rebalance redelivery.
    assert [(e["value"]["id"], e["attempt"]) for e in starts] == [("long", 1), ("next", 1)], starts
    long_end = ends[0]
    assert long_end["outcome"] == "ack", long_end
    extends = long_end["extends"]
    assert len(extends) >= 9 and all(isinstance(d, int) for d in extends), extends
    assert extends == sorted(extends) and extends[0] > starts[0]["deadline"], extends
    assert skiff.metric("skiff_kafka_extends_total", topic=topic, result="ok") == len(extends)
    assert skiff.metric("skiff_kafka_redeliveries_total", topic=topic) == 0
    assert skiff.metric("skiff_kafka_client_errors_total", code="_MAX_POLL_EXCEEDED") == 0
    kafka.wait_committed(group, topic, {0: sent[-1]["offset"] + 1}, skiff)
    logs = skiff.log_lines()
    assert not [e for e in logs if "revoked" in str(e.get("message", "")) or
                "lost" in str(e.get("message", ""))], skiff.tail()
    assert len([e for e in logs if "assigned" in str(e.get("message", ""))]) == 1, skiff.tail()
    stack.stop_all()


# ---- a handler on the raw protocol: the refusals ----------------------------------------------

def send(sock, frame):
    body = json.dumps(frame).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)


def recv(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            assert chunk, "skiff closed the connection"
            buf += chunk
        return buf
    (n,) = struct.unpack(">I", exact(4))
    return json.loads(exact(n))


def recv_type(sock, type_):
    while True:
        f = recv(sock)
        if f["type"] == type_:
            return f
        assert f["type"] in ("ping", "pong"), f


def test_extend_refusals(kafka, stack, uid):
    topic = f"kt.extendraw.{uid}"
    group = f"kt-extendraw-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff = stack.skiff([topic], group, **GROUP_TIMINGS)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(60)
    sock.connect(skiff.socket)
    try:
        send(sock, {"type": "hello", "version": 1, "name": "raw", "capacity": 1,
                    "topics": [topic], "features": ["cancel"]})
        welcome = recv_type(sock, "welcome")
        assert "kafka_extend" in welcome["features"], welcome
        skiff.wait_ready()
        kafka.produce(topic, [("k", cmd("raw"), None)], schema=CMD_SCHEMA)
        task = recv_type(sock, "task")
        # More than 24 h: refused, counted, the task stays open with its deadline.
        send(sock, {"type": "extend", "id": task["id"], "timeout_ms": 86_400_001, "ref": "1"})
        r = recv_type(sock, "reply")
        assert r["ref"] == "1" and not r["ok"] and r["error"]["code"] == "rejected", r
        send(sock, {"type": "extend", "id": task["id"], "timeout_ms": 30_000, "ref": "2"})
        r = recv_type(sock, "reply")
        assert r["ref"] == "2" and r["ok"] and r["result"]["deadline"] > task["deadline"], r
        # Without a ref: no answer (the next frame answers the ping after it).
        send(sock, {"type": "extend", "id": task["id"], "timeout_ms": 30_000})
        send(sock, {"type": "ping"})
        assert recv(sock)["type"] == "pong"
        send(sock, {"type": "ack", "id": task["id"]})
        kafka.wait_committed(group, topic, {0: 1}, skiff)
        assert skiff.metric("skiff_kafka_extends_total", topic=topic, result="rejected") == 1
        assert skiff.metric("skiff_kafka_extends_total", topic=topic, result="ok") == 2
        assert skiff.metric("skiff_kafka_redeliveries_total", topic=topic) == 0
        assert any("extend refused" in str(e.get("message", "")) for e in skiff.log_lines())
    finally:
        sock.close()
    stack.stop_all()
