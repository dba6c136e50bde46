"""Faults between skiff and Kafka, seen from what Kafka clients and handlers observe.

- Produce errors injected by librdkafka's mock cluster (skiff-kafka-mock): retriable ones are
  retried by the idempotent producer and the record lands once; a non-retriable one fails the
  handler's produce call with `produce_failed` and writes nothing.
- Every broker down: the producer's queue fills up to kafka.producer_queue_size, further
  produce calls get `unavailable` (nothing written), the waiting ones are written once the
  brokers are back.
- Consumer faults on the mock cluster: Fetch and OffsetCommit errors, every broker down and up
  again: every record is processed at least once and the group's committed offset reaches the
  end of the partitions.
- A real Kafka broker (a private devstack broker, so that other tests sharing the devstack one
  are not disturbed) frozen with SIGSTOP and then restarted for real (its data kept): records
  produced before and after are all processed, and produce calls made during the outage
  either succeed once or fail with `produce_failed`.

The Schema Registry is always the devstack one. Every wait is a poll with a generous bound;
nothing asserts on how long anything took."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import (CMD_SCHEMA, KAFKA_SH, ROOT, WAIT, KafkaStack, Skiff, Stack, acked_offsets,
                      cmd, events_of, stop_stack, wait_until)
from confluent_kafka import Producer
from kafka_mock import MockCluster

sys.path.insert(0, str(ROOT / "handler-protocol" / "python"))
from skiff_handler import CallError, Handler  # noqa: E402


# ---- helpers ---------------------------------------------------------------------------------

class InProcHandler:
    """An SDK handler running in a thread of the test process, so that the test makes its
    produce calls (app.produce) exactly when it wants. It serves `topics` (skiff accepts a
    handler only for topics it consumes) and acks whatever arrives there."""

    def __init__(self, skiff: Skiff, topics: List[str], name: str = "faults-inproc") -> None:
        self.app = Handler(name, capacity=1, socket_path=skiff.socket, backoff_initial=0.05,
                           backoff_max=0.5)
        for t in topics:
            self.app.topic(t)(lambda task: None)
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=name)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.app.run()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def produce(self, topic: str, value: Any, key: Optional[str] = None) -> Dict[str, Any]:
        """One produce call: {"ok": True, "result": ...} or {"ok": False, "code", "message"}."""
        wait_until(lambda: self.app._conn is not None or self.error is not None,
                   what="the in-process handler connected")
        assert self.error is None, f"in-process handler failed: {self.error!r}"
        try:
            return {"ok": True, "result": self.app.produce(topic, value, key=key)}
        except CallError as e:
            return {"ok": False, "code": e.code, "message": e.message}

    def produce_async(self, topic: str, value: Any, key: Optional[str] = None) -> "Call":
        return Call(lambda: self.produce(topic, value, key))


class Call:
    """A blocking call (an SDK call waits for skiff's reply) running in its own thread."""

    def __init__(self, fn) -> None:
        self.result: Optional[Dict[str, Any]] = None
        self.error: Optional[BaseException] = None

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as e:  # noqa: BLE001
                self.error = e
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self, timeout: float) -> Dict[str, Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"call not finished within {timeout:.0f} s"
        assert self.error is None, f"call raised {self.error!r}"
        assert self.result is not None
        return self.result


def wait_topic(k: KafkaStack, topic: str, partitions: int) -> None:
    def visible() -> bool:
        md = k.admin.list_topics(timeout=10)
        t = md.topics.get(topic)
        return bool(t and t.error is None and len(t.partitions) == partitions and
                    all(p.leader >= 0 for p in t.partitions.values()))
    wait_until(visible, what=f"topic {topic} with {partitions} partitions in the metadata")


def ids_of(k: KafkaStack, topic: str) -> List[str]:
    """The value ids (Cmd records) now in topic, in (partition, offset) order."""
    return [k.deserialize(topic, m.value())["id"] for m in k.read_all(topic)]


def acked_ids(handlers, topic: str) -> set:
    return {e["value"]["id"] for e in events_of(handlers, "end", topic)
            if e.get("outcome") == "ack" and isinstance(e.get("value"), dict)}


def nonempty_ends(k: KafkaStack, topic: str) -> Dict[int, int]:
    """End offsets of the partitions holding records (an empty one has nothing to commit)."""
    return {p: o for p, o in k.end_offsets(topic).items() if o > 0}


def batch(prefix: str, n: int, keys: int = 8, **kw: Any) -> List[Tuple[str, Dict, None]]:
    return [(f"k{i % keys}", cmd(f"{prefix}{i}", **kw), None) for i in range(n)]


def assert_no_leftover_errors(mock: MockCluster, probe_topic: str) -> None:
    """A fresh producer's first Produce request goes through at once: the errors pushed for
    Produce were all answered to skiff (the only other client producing). probe_topic: a topic
    nobody reads."""
    requests: Dict[str, int] = {}

    def stats(s: str) -> None:
        requests["n"] = sum(b["req"].get("Produce", 0) for b in json.loads(s)["brokers"].values())
    p = Producer({"bootstrap.servers": mock.bootstrap, "enable.idempotence": False,
                  "statistics.interval.ms": 100, "stats_cb": stats, "linger.ms": 0})
    failed: List[Any] = []
    p.produce(probe_topic, value=b"probe", on_delivery=lambda err, m: err and failed.append(err))
    assert p.flush(WAIT) == 0 and not failed, failed
    wait_until(lambda: (p.poll(0.1) or True) and requests.get("n", 0) >= 1,
               what="producer statistics")
    time.sleep(0.3)  # one more statistics round, for a count that includes every retry
    p.poll(0.3)
    assert requests["n"] == 1, (f"the probe needed {requests['n']} Produce requests: injected "
                                "errors were left over, skiff's producer did not meet them all")


@pytest.fixture
def mock_stack(kafka: KafkaStack, tmp_path: Path, request) -> Iterator[Tuple[MockCluster,
                                                                             KafkaStack, Stack]]:
    """A 3-broker mock cluster, a KafkaStack on it (the devstack registry) and a Stack whose
    skiffs use it. Teardown as conftest's `stack` fixture, then the mock quits."""
    log = open(tmp_path / "kafka-mock.log", "w")
    mock = MockCluster(brokers=3, stderr=log)
    mk = KafkaStack(mock.bootstrap, kafka.registry_url)
    st = Stack(mk, tmp_path)
    try:
        yield mock, mk, st
    finally:
        try:
            stop_stack(st, request)
        finally:
            mock.close()
            log.close()


# ---- 1. produce errors (mock cluster) --------------------------------------------------------

def producing_skiff(mock_stack, kafka: KafkaStack, topics: List[str], registered: List[str],
                    group: str, delivery_timeout: str) -> Tuple[Skiff, InProcHandler]:
    """On the mock cluster: `topics` created (1 partition each) and visible, CMD_SCHEMA
    registered for the `registered` ones, and a skiff (kafka.delivery_timeout) consuming
    topics[0] with an InProcHandler that serves it, ready."""
    mock, mk, st = mock_stack
    for t in topics:
        mock.create_topic(t, 1, 1)
        wait_topic(mk, t, 1)
    for t in registered:
        kafka.register(f"{t}-value", CMD_SCHEMA)
    skiff = st.skiff([topics[0]], group, kafka__delivery_timeout=delivery_timeout)
    h = InProcHandler(skiff, [topics[0]])
    skiff.wait_ready()
    return skiff, h


def test_retriable_produce_errors_write_the_record_once(mock_stack, kafka, uid):
    mock, mk, st = mock_stack
    idle, out, probe = f"kf.idle.{uid}", f"kf.out.{uid}", f"kf.probe.{uid}"
    skiff, h = producing_skiff(mock_stack, kafka, [idle, out, probe], [out],
                               f"kf-retriable-{uid}", "30s")

    first = h.produce(out, cmd("before"), key="k")  # producer id, metadata: all set up
    assert first["ok"] and first["result"]["offset"] == 0, first
    # CORRUPT_MESSAGE is retriable since librdkafka 2.4.0 (KIP-467; Java's
    # CorruptRecordException is a RetriableException too).
    mock.push_errors("Produce", "NOT_LEADER_FOR_PARTITION", "REQUEST_TIMED_OUT",
                     "CORRUPT_MESSAGE")
    res = h.produce(out, cmd("retried"), key="k")
    assert res["ok"], f"{res}\n{skiff.tail(20)}"
    assert res["result"]["topic"] == out and res["result"]["offset"] == 1, res
    assert_no_leftover_errors(mock, probe)

    # Exactly one copy of each record: the idempotent producer's retries wrote nothing twice.
    assert ids_of(mk, out) == ["before", "retried"]
    assert skiff.metric("skiff_kafka_produced_total", topic=out, result="ok") == 2
    assert skiff.metric("skiff_kafka_produced_total", topic=out, result="error") == 0
    st.stop_all()


@pytest.mark.parametrize("code, words", [
    ("TOPIC_AUTHORIZATION_FAILED", "authorization"),
    ("MSG_SIZE_TOO_LARGE", "too large"),
    ("INVALID_RECORD", "failed to validate record"),
])
def test_non_retriable_produce_error_fails_the_call(mock_stack, kafka, uid, code, words):
    mock, mk, st = mock_stack
    idle, out, other = f"kf.idle.{uid}", f"kf.out.{uid}", f"kf.other.{uid}"
    probe = f"kf.probe.{uid}"
    skiff, h = producing_skiff(mock_stack, kafka, [idle, out, other, probe], [out, other],
                               f"kf-refused-{uid}", "10s")

    first = h.produce(out, cmd("before"))
    assert first["ok"] and first["result"]["offset"] == 0, first
    mock.push_errors("Produce", code)
    res = h.produce(out, cmd("refused"))
    assert res["ok"] is False and res["code"] == "produce_failed", f"{res}\n{skiff.tail(20)}"
    assert out in res["message"] and words in res["message"].lower(), res
    assert_no_leftover_errors(mock, probe)

    # Nothing written; the producer keeps working (another topic, then this one again when
    # the client no longer remembers the topic's error).
    assert ids_of(mk, out) == ["before"]
    after = h.produce(other, cmd("after"))
    assert after["ok"] and after["result"]["offset"] == 0, f"{after}\n{skiff.tail(20)}"
    assert skiff.metric("skiff_kafka_produced_total", topic=out, result="error") == 1
    again = h.produce(out, cmd("again"))
    # (After TOPIC_AUTHORIZATION_FAILED librdkafka itself fails the topic's new records until
    # its next metadata refresh: nothing to say about `again` then.)
    if code != "TOPIC_AUTHORIZATION_FAILED":
        assert again["ok"] and again["result"]["offset"] == 1, f"{again}\n{skiff.tail(20)}"
        assert ids_of(mk, out) == ["before", "again"]
    assert ids_of(mk, other) == ["after"]
    assert skiff.proc.poll() is None
    st.stop_all()


# Observed on the skiff built from the tree at 2026-11-24 04:27 UTC (build-ft-asan), librdkafka
# 2.0.2: with kafka.delivery_timeout=3s the call was answered after 307 s.


def test_produce_call_times_out_while_every_broker_is_down(mock_stack, kafka, uid):
    mock, mk, st = mock_stack
    idle, out = f"kf.idle.{uid}", f"kf.out.{uid}"
    skiff, h = producing_skiff(mock_stack, kafka, [idle, out], [out], f"kf-timeout-{uid}",
                               "3s")
    first = h.produce(out, cmd("before"))
    assert first["ok"] and first["result"]["offset"] == 0, first

    mock.broker_down("all")
    try:
        call = h.produce_async(out, cmd("lost"))
        # A generous bound: ten times kafka.delivery_timeout (librdkafka itself needs a few
        # seconds more than message.timeout.ms to report a record of a partition without a
        # reachable leader: 8-11 s for 3 s in a plain client).
        call.thread.join(30)
        assert not call.thread.is_alive(), ("produce call with kafka.delivery_timeout=3s not "
                                            f"answered within 30 s\n{skiff.tail(20)}")
        res = call.wait(0)
    finally:
        mock.broker_up("all")
    assert res["ok"] is False and res["code"] == "produce_failed", f"{res}\n{skiff.tail(20)}"
    assert out in res["message"] and "timed out" in res["message"].lower(), res

    # The producer reconnects with librdkafka's backoff (up to 10 s), longer than this
    # delivery timeout: a handler retries a failed call, so does the test, with new ids.
    deadline, n, after = time.monotonic() + 60, 0, {"ok": False}
    while not after["ok"] and time.monotonic() < deadline:
        n += 1
        after = h.produce(out, cmd(f"after-{n}"))
    assert after["ok"], f"{after}\n{skiff.tail(20)}"
    # The record whose call failed was never written, not even later; the one that succeeded
    # was written once.
    ids = ids_of(mk, out)
    assert ids[0] == "before" and "lost" not in ids and ids.count(f"after-{n}") == 1, ids
    assert skiff.metric("skiff_kafka_produced_total", topic=out, result="error") == n
    st.stop_all()


def test_full_producer_queue_refuses_then_flows_when_brokers_return(mock_stack, kafka, uid):
    """Every broker down: records wait in the producer up to kafka.producer_queue_size (1 MiB
    here), further produce calls are answered `unavailable` (nothing written), counted and
    logged; once the brokers are back the waiting records are written once each and new calls
    succeed."""
    mock, mk, st = mock_stack
    idle, out = f"kf.idle.{uid}", f"kf.out.{uid}"
    for t in (idle, out):
        mock.create_topic(t, 1, 1)
        wait_topic(mk, t, 1)
    kafka.register(f"{out}-value", CMD_SCHEMA)
    skiff = st.skiff([idle], f"kf-full-{uid}", kafka__delivery_timeout="5m",
                     kafka__producer_queue_size="1MiB")
    h = InProcHandler(skiff, [idle])
    skiff.wait_ready()
    first = h.produce(out, cmd("before"))
    assert first["ok"] and first["result"]["offset"] == 0, first

    # Values of 200 KiB: five wait in 1 MiB, the other seven calls are refused.
    big = "x" * (200 * 1024)
    mock.broker_down("all")
    try:
        calls = [h.produce_async(out, cmd(f"w{i}", after=big)) for i in range(12)]
        wait_until(lambda: sum(c.result is not None for c in calls) >= 7,
                   what="seven produce calls answered with every broker down",
                   on_timeout=lambda: skiff.tail(20))
        refused = [c.wait(0) for c in calls if c.result is not None]
        assert all(r["ok"] is False and r["code"] == "unavailable" and
                   "queue is full" in r["message"] and out in r["message"]
                   for r in refused), f"{refused}\n{skiff.tail(20)}"
        waiting = [c for c in calls if c.result is None]
        assert len(refused) == 7 and len(waiting) == 5, (len(refused), len(waiting))
        assert skiff.metric("skiff_kafka_produced_total", topic=out, result="queue_full") == 7
        logged = [e for e in skiff.log_lines() if e.get("reason") == "queue_full"]
        assert logged and "producer's queue is full" in logged[0].get("message", "") and \
            logged[0].get("topic") == out, f"{logged}\n{skiff.tail(20)}"
    finally:
        mock.broker_up("all")

    # Back: every waiting call is written once, and the producer takes new records.
    results = [c.wait(120) for c in waiting]
    assert all(r["ok"] for r in results), f"{results}\n{skiff.tail(20)}"
    after = h.produce(out, cmd("after"))
    assert after["ok"], f"{after}\n{skiff.tail(20)}"
    ids = ids_of(mk, out)
    refused_ids = {f"w{i}" for i, c in enumerate(calls) if c not in waiting}
    assert ids[0] == "before" and ids[-1] == "after" and len(ids) == 7, ids
    assert not refused_ids & set(ids), ids
    assert skiff.metric("skiff_kafka_produced_total", topic=out, result="ok") == len(ids)
    st.stop_all()


def test_dead_letter_waits_for_a_full_producer_queue(mock_stack, kafka, uid):
    """The leader of one topic down fills the producer's queue (kafka.producer_queue_size):
    a dead letter meanwhile (an undecodable record of the consumed topic, whose own leader is
    up) is refused by the full queue and retried with backoff, its record not committed; once
    the leader is back the dead letter is written and the commit passes it."""
    mock, mk, st = mock_stack
    src, out, group = f"kf.src.{uid}", f"kf.out.{uid}", f"kf-dlqfull-{uid}"
    for t in (src, f"{src}.dlq", out):
        mock.create_topic(t, 1, 1)
        wait_topic(mk, t, 1)
        mock.set_leader(t, 0, 1 if t == out else 2)
    kafka.register(f"{out}-value", CMD_SCHEMA)
    kafka.register(f"{src}-value", CMD_SCHEMA)
    skiff = st.skiff([src], group, kafka__delivery_timeout="5m",
                     kafka__producer_queue_size="1MiB")
    h = InProcHandler(skiff, [src])
    skiff.wait_ready()
    mk.produce(src, [("k", cmd("ok-1"), None)], schema=CMD_SCHEMA)
    mk.wait_committed(group, src, {0: 1}, skiff)
    first = h.produce(out, cmd("before"))
    assert first["ok"], first

    big = "x" * (200 * 1024)
    mock.broker_down(1)
    try:
        calls = [h.produce_async(out, cmd(f"w{i}", after=big)) for i in range(6)]
        wait_until(lambda: skiff.metric("skiff_kafka_produced_total", topic=out,
                                        result="queue_full") >= 1,
                   what="the producer's queue full", on_timeout=lambda: skiff.tail(20))
        # Not Avro, and larger than the room left: its dead-letter copy cannot wait.
        mk.produce(src, [("k", b"not avro" * 40000, None)])
        mk.produce(src, [("k", cmd("ok-2"), None)], schema=CMD_SCHEMA)
        wait_until(lambda: skiff.metric("skiff_kafka_produced_total", topic=f"{src}.dlq",
                                        result="queue_full") >= 2,
                   what="the dead letter refused by the full queue, then retried",
                   on_timeout=lambda: skiff.tail(20))
        assert skiff.metric("skiff_kafka_dead_letters_total", topic=src) == 0
        assert mk.committed(group, src).get(0, -1) <= 1, mk.committed(group, src)
    finally:
        mock.broker_up(1)

    mk.wait_committed(group, src, {0: 3}, skiff)
    assert skiff.metric("skiff_kafka_dead_letters_total", topic=src) == 1
    assert len(mk.read_all(f"{src}.dlq")) == 1
    assert sum(c.wait(120)["ok"] for c in calls) == 5, [c.result for c in calls]
    st.stop_all()


# ---- 2. consumer faults (mock cluster) -------------------------------------------------------

# After every broker was down, the group's commit once stayed behind for over 60 s although
# every record was processed (seen in 2 of 2 full-suite CI runs, never when this test ran
# alone; this case was a non-strict xfail). Not reproduced here since (40+ outages with and
# without 1 s of broker latency, skiff built before the change). What skiff did wrong: it sent
# a commit every kafka.commit_interval without waiting for the previous answer (15-20 were in
# flight during an outage) and counted each answered offset as the group's, although
# librdkafka 2.0.2 retries an OffsetCommit cut off by a broken connection by itself
# (rd_kafka_handle_OffsetCommit: _TRANSPORT -> retry), so an older offset can be applied after
# a newer one; skiff then sent nothing more. Now (consumer.c, commit()): one commit in flight at
# a time, and for 30 s after a broker outage or a failed commit every position is committed
# again, so the last offset the coordinator applies is a current one. Strict again.
@pytest.mark.parametrize("all_down", [False, True])
def test_fetch_commit_errors_and_brokers_down(mock_stack, kafka, uid, all_down):
    mock, mk, st = mock_stack
    topic, group = f"kf.cons.{uid}", f"kf-cons-{uid}"
    mock.create_topic(topic, 2, 1)
    mock.create_topic(f"{topic}.dlq", 1, 1)
    wait_topic(mk, topic, 2)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = st.start([topic], group, capacity=4)
    sent: List[str] = []

    def send(records) -> None:
        mk.produce(topic, records, schema=CMD_SCHEMA)
        sent.extend(v["id"] for _, v, _ in records)

    def all_processed_and_committed(what: str) -> None:
        wait_until(lambda: set(sent) <= acked_ids([handler], topic),
                   what=f"every record acked ({what})",
                   on_timeout=lambda: f"missing {set(sent) - acked_ids([handler], topic)}\n"
                   f"{skiff.tail()}")
        mk.wait_committed(group, topic, nonempty_ends(mk, topic), skiff)

    send(batch("a", 8))
    all_processed_and_committed("before any fault")

    # Fetch errors: the consumer refreshes its metadata, fetches again, skips nothing.
    mock.push_errors("Fetch", "NOT_LEADER_FOR_PARTITION", "REQUEST_TIMED_OUT",
                     "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION")
    send(batch("b", 8))
    all_processed_and_committed("after Fetch errors")

    # OffsetCommit errors hit the commits of the next records (more of them than librdkafka
    # retries by itself): a failed commit is tried again until it is accepted, although no
    # more records arrive to trigger another one.
    errors_before = skiff.metric("skiff_kafka_commits_total", result="error")
    mock.push_errors("OffsetCommit", *(["COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR",
                                        "REQUEST_TIMED_OUT"] * 4))
    send(batch("c", 8))
    all_processed_and_committed("after OffsetCommit errors")
    commit_errors = skiff.metric("skiff_kafka_commits_total", result="error") - errors_before

    # Every broker down while the handler is still working on records: their acks arrive
    # during the outage (commits cannot be sent), then the brokers come back.
    if all_down:
        send(batch("d", 6, keys=3, sleep_ms=400))
        wait_until(lambda: skiff.metric("skiff_kafka_records_received_total", topic=topic) >=
                   len(sent), what="batch d read by skiff", on_timeout=lambda: skiff.tail())
        errors = skiff.metric("skiff_kafka_client_errors_total")
        mock.broker_down("all")
        try:
            wait_until(lambda: skiff.metric("skiff_kafka_client_errors_total") > errors,
                       what="skiff's client reporting the brokers down",
                       on_timeout=lambda: skiff.tail())
            wait_until(lambda: {f"d{i}" for i in range(6)} <= acked_ids([handler], topic),
                       what="batch d acked by the handler while the brokers are down",
                       on_timeout=lambda: skiff.tail())
        finally:
            mock.broker_up("all")
        send(batch("e", 8))
        all_processed_and_committed("after every broker was down")

    # Leaders moved, then one broker down: the leader of partition 0 only. Partition 1 keeps
    # flowing meanwhile; partition 0 resumes when the broker is back. (Keys k0-k3 go to
    # partition 1 and k4-k7 to partition 0 with the producer's default partitioner.)
    mock.set_leader(topic, 0, 1)
    mock.set_leader(topic, 1, 2)
    send(batch("f", 8))
    all_processed_and_committed("after the leaders moved")
    mock.broker_down(1)
    try:
        sender = Call(lambda: send(batch("g", 8)) or {"sent": True})
        wait_until(lambda: any(e["value"]["id"].startswith("g") and e["partition"] == 1 and
                               e.get("outcome") == "ack"
                               for e in events_of([handler], "end", topic)),
                   what="partition 1 processed while broker 1 (leader of partition 0) is down",
                   on_timeout=lambda: skiff.tail())
    finally:
        mock.broker_up(1)
    sender.wait(WAIT)
    all_processed_and_committed("after broker 1 was down")

    # Nothing skipped: each record reached the handler (at least once), in every partition the
    # offsets it saw are contiguous from 0 to the end.
    ends = mk.end_offsets(topic)
    seen = {(e["partition"], e["offset"]) for e in events_of([handler], "start", topic)}
    assert seen == {(p, o) for p, end in ends.items() for o in range(end)}
    assert sum(ends.values()) == len(sent)
    assert acked_offsets([handler], topic) == seen
    assert skiff.proc.poll() is None
    # The faults did reach skiff: the brokers' outages are client errors. (Failed commits are
    # printed, not asserted: librdkafka retries OffsetCommit errors itself, and how many of the
    # injected ones surface depends on timing.)
    total_commit_errors = skiff.metric("skiff_kafka_commits_total", result="error")
    client_errors = skiff.metric("skiff_kafka_client_errors_total")
    print(f"commit errors: {commit_errors} after the OffsetCommit errors, "
          f"{total_commit_errors} in all; client errors: {client_errors}")
    assert client_errors >= 1
    st.stop_all()


# ---- 3. a real broker stopped and restarted --------------------------------------------------

def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two adjacent free ports")


class PrivateBroker:
    """A devstack Kafka broker of this test alone (kafka.sh with its own ports and run dir):
    freezing or restarting it cannot disturb other tests using the shared devstack broker.

    kafka.sh start always wipes the data dir, so a restart keeping the data is stop() (SIGTERM,
    a controlled shutdown, as kafka.sh stop) then start_again(): the same command line again,
    in the same run dir."""

    def __init__(self, run_dir: Path) -> None:
        self.port = _free_port_pair()
        self.run_dir = run_dir
        self.env = dict(os.environ, SKIFF_KAFKA_PORT=str(self.port),
                        SKIFF_KAFKA_CONTROLLER_PORT=str(self.port + 1),
                        SKIFF_KAFKA_RUN_DIR=str(run_dir))
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.child: Optional[subprocess.Popen] = None
        self.stopped_by_signal = False
        self.script("start", timeout=180)
        self.pid = int((run_dir / "kafka.pid").read_text())

    def script(self, *args: str, timeout: float = 90) -> str:
        p = subprocess.run([str(KAFKA_SH), *args], env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        assert p.returncode == 0, f"kafka.sh {' '.join(args)}: {p.stdout}\n{p.stderr}"
        return p.stdout

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped_by_signal = True

    def thaw(self) -> None:
        if self.stopped_by_signal:
            os.kill(self.pid, signal.SIGCONT)
            self.stopped_by_signal = False

    def stop(self) -> None:
        """SIGTERM (controlled shutdown), then wait for the process to be gone."""
        cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        cwd = os.readlink(f"/proc/{self.pid}/cwd")
        self._relaunch = ([a.decode() for a in cmdline], cwd)
        os.kill(self.pid, signal.SIGTERM)
        if self.child is not None:
            self.child.wait(timeout=60)
        else:
            wait_until(lambda: not Path(f"/proc/{self.pid}").exists() or
                       "zombie" in _proc_state(self.pid), timeout=60,
                       what="the broker process to exit")

    def start_again(self) -> None:
        argv, cwd = self._relaunch
        with open(self.run_dir / "kafka.log", "ab") as log:
            self.child = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.child.pid
        (self.run_dir / "kafka.pid").write_text(f"{self.pid}\n")  # for kafka.sh stop

    def close(self) -> None:
        self.thaw()
        try:
            self.script("stop")
        finally:
            if self.child is not None:
                if self.child.poll() is None:
                    self.child.kill()
                self.child.wait()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"


@pytest.fixture
def private_broker(kafka, tmp_path: Path) -> Iterator[PrivateBroker]:
    b = PrivateBroker(tmp_path / "kafka")
    try:
        yield b
    finally:
        b.close()


def test_broker_frozen_then_restarted(private_broker, kafka, tmp_path, uid, request):
    broker = private_broker
    pk = KafkaStack(broker.bootstrap, kafka.registry_url)
    topic, idle, out = f"kf.real.{uid}", f"kf.real.idle.{uid}", f"kf.real.out.{uid}"
    group = f"kf-real-{uid}"
    pk.create_topic(topic, partitions=2)
    pk.create_topic(idle, dlq=False)
    pk.create_topic(out, dlq=False)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    kafka.register(f"{out}-value", CMD_SCHEMA)
    st = Stack(pk, tmp_path)
    try:
        skiff = st.skiff([topic, idle], group, kafka__delivery_timeout="90s")
        handler = st.handler(skiff, [topic], capacity=4)
        inproc = InProcHandler(skiff, [idle])
        skiff.wait_ready()
        sent: List[str] = []

        def send(records) -> None:
            pk.produce(topic, records, schema=CMD_SCHEMA)
            sent.extend(v["id"] for _, v, _ in records)

        def all_acked(what: str) -> None:
            wait_until(lambda: set(sent) <= acked_ids([handler], topic), timeout=120,
                       what=f"every record acked ({what})",
                       on_timeout=lambda: f"missing {set(sent) - acked_ids([handler], topic)}"
                       f"\n{skiff.tail()}")

        send(batch("a", 8))
        all_acked("before the outage")
        warm = inproc.produce(out, cmd("warm"), key="w")
        assert warm["ok"], warm

        # Outage 1: the broker frozen (SIGSTOP) while records are with the handler; a produce
        # call is made during the outage.
        send(batch("b", 8, sleep_ms=300))
        broker.freeze()
        try:
            during1 = inproc.produce_async(out, cmd("during-freeze"), key="p1")
            time.sleep(12)  # the outage (nothing is measured)
        finally:
            broker.thaw()
        send(batch("c", 8))
        all_acked("after the freeze")
        r1 = during1.wait(120)

        # Outage 2: a real restart (controlled shutdown, start with the same data).
        send(batch("d", 8, sleep_ms=300))
        broker.stop()
        during2 = inproc.produce_async(out, cmd("during-restart"), key="p2")
        time.sleep(3)  # the broker stays down a little (nothing is measured)
        broker.start_again()
        wait_topic(pk, topic, 2)
        send(batch("e", 8))
        all_acked("after the restart")
        r2 = during2.wait(120)

        # Nothing skipped, everything committed.
        pk.wait_committed(group, topic, nonempty_ends(pk, topic), skiff, timeout=120)
        seen = {(e["partition"], e["offset"]) for e in events_of([handler], "start", topic)}
        ends = pk.end_offsets(topic)
        assert seen == {(p, o) for p, end in ends.items() for o in range(end)}
        assert sum(ends.values()) == len(sent)

        # The produce calls during the outages: written once when they succeeded; when they
        # failed, with produce_failed (at most one copy: a timed-out request may still land).
        ids = ids_of(pk, out)
        for name, r in (("during-freeze", r1), ("during-restart", r2)):
            if r["ok"]:
                assert ids.count(name) == 1, f"{name}: {r}, topic holds {ids}"
                assert r["result"]["topic"] == out
            else:
                assert r["code"] == "produce_failed" and r["message"], r
                assert ids.count(name) <= 1, f"{name}: {r}, topic holds {ids}"
        assert ids.count("warm") == 1 and len(ids) == len(set(ids)), ids
        print(f"produce during the freeze: {r1}; during the restart: {r2}")
        assert skiff.proc.poll() is None, skiff.tail()
        assert inproc.error is None, inproc.error
        st.stop_all()
    finally:
        stop_stack(st, request)
