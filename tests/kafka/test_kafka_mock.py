"""skiff-kafka-mock checked with the official client (confluent-kafka): records flow through
the mock cluster, and each injected fault shows to the client as a real broker's would.

    SKIFF_KAFKA_MOCK_BIN=build/skiff-kafka-mock devstack/kafka.sh python -m pytest tests/kafka

Waits are bounded by generous timeouts; nothing asserts on how long anything took."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from kafka_mock import MockCluster, MockError, mock_binary

WAIT = 60.0  # seconds: upper bound of any wait for the client


@pytest.fixture
def mock() -> Iterator[MockCluster]:
    with MockCluster(brokers=3) as m:
        yield m


def wait_until(cond: Callable[[], bool], poll: Callable[[], object], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        poll()
    return True


class Reports:
    """Delivery reports of one producer, in arrival order."""

    def __init__(self) -> None:
        self.items: List[Tuple[Optional[KafkaError], Message]] = []

    def __call__(self, err: Optional[KafkaError], msg: Message) -> None:
        self.items.append((err, msg))


def producer(mock: MockCluster, **conf: object) -> Producer:
    return Producer({"bootstrap.servers": mock.bootstrap, "message.timeout.ms": 120000, **conf})


def produce(p: Producer, topic: str, values: List[bytes], reports: Reports) -> None:
    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=reports)
    want = len(reports.items) + len(values)
    assert wait_until(lambda: len(reports.items) >= want, lambda: p.poll(0.1)), \
        f"no delivery report within {WAIT} s"


def read_partition(mock: MockCluster, topic: str, count: int) -> List[bytes]:
    """Every record of partition 0 (expecting count), read from the beginning by assignment."""
    c = Consumer({"bootstrap.servers": mock.bootstrap, "group.id": "reader",
                  "enable.auto.commit": False})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=WAIT)
        assert high - low == count, f"partition holds {high - low} records, want {count}"
        c.assign([TopicPartition(topic, 0, low)])
        got: List[bytes] = []

        def poll() -> None:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                got.append(msg.value())
        assert wait_until(lambda: len(got) >= count, poll), f"read only {got}"
        return got
    finally:
        c.close()


def test_produce_and_consume_with_a_group(mock: MockCluster) -> None:
    mock.create_topic("orders", 1, 1)
    p, reports = producer(mock), Reports()
    values = [b"order-%d" % i for i in range(5)]
    produce(p, "orders", values, reports)
    assert [err for err, _ in reports.items] == [None] * 5
    assert [m.offset() for _, m in reports.items] == [0, 1, 2, 3, 4]

    c = Consumer({"bootstrap.servers": mock.bootstrap, "group.id": "orders-readers",
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe(["orders"])
        got: List[bytes] = []

        def poll() -> None:
            msg = c.poll(0.2)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append(msg.value())
        assert wait_until(lambda: len(got) >= 5, poll), f"consumed only {got}"
        assert got == values
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition("orders", 0)], timeout=WAIT)
        assert committed[0].offset == 5
    finally:
        c.close()


def test_retriable_produce_errors_are_retried_and_the_record_lands_once(
        mock: MockCluster) -> None:
    mock.create_topic("payments", 1, 1)
    mock.push_errors("Produce", "NOT_LEADER_FOR_PARTITION", "REQUEST_TIMED_OUT")
    produce_requests: Dict[str, int] = {}

    def stats(s: str) -> None:
        brokers = json.loads(s)["brokers"].values()
        produce_requests["n"] = sum(b["req"].get("Produce", 0) for b in brokers)

    p, reports = producer(mock, **{"enable.idempotence": True, "statistics.interval.ms": 100,
                                   "stats_cb": stats}), Reports()
    produce(p, "payments", [b"pay-1"], reports)
    assert reports.items[0][0] is None, reports.items[0][0]
    # Both injected errors were answered: the producer sent the record three times.
    assert wait_until(lambda: produce_requests.get("n", 0) >= 3, lambda: p.poll(0.1))
    assert read_partition(mock, "payments", 1) == [b"pay-1"]


@pytest.mark.parametrize("code", ["TOPIC_AUTHORIZATION_FAILED", "MSG_SIZE_TOO_LARGE"])
@pytest.mark.parametrize("idempotent", [False, True])
def test_non_retriable_produce_error_reaches_the_delivery_report(
        mock: MockCluster, code: str, idempotent: bool) -> None:
    mock.create_topic("audit", 1, 1)
    p, reports = producer(mock, **{"enable.idempotence": idempotent}), Reports()
    produce(p, "audit", [b"ok-before"], reports)
    mock.push_errors("Produce", code)
    produce(p, "audit", [b"rejected"], reports)
    err = reports.items[1][0]
    assert err is not None and err.name() == code and not err.retriable(), err
    # Not stored. (After TOPIC_AUTHORIZATION_FAILED the client fails new records of the topic
    # by itself until its next metadata refresh, so this test sends none.)
    assert read_partition(mock, "audit", 1) == [b"ok-before"]


def test_broker_down_holds_delivery_until_it_is_up(mock: MockCluster) -> None:
    mock.create_topic("events", 1, 1)
    mock.set_leader("events", 0, 1)
    p, reports = producer(mock, **{"enable.idempotence": True}), Reports()
    produce(p, "events", [b"before"], reports)

    mock.broker_down(1)
    p.produce("events", value=b"during", partition=0, on_delivery=reports)
    wait_until(lambda: False, lambda: p.poll(0.2), timeout=3)
    assert len(reports.items) == 1, "delivered while the partition leader was down"

    mock.broker_up(1)
    assert wait_until(lambda: len(reports.items) == 2, lambda: p.poll(0.2))
    assert reports.items[1][0] is None, reports.items[1][0]
    assert read_partition(mock, "events", 2) == [b"before", b"during"]


def test_rtt_on_every_broker_still_delivers(mock: MockCluster) -> None:
    mock.create_topic("slow", 1, 1)
    mock.set_rtt("all", 200)
    p, reports = producer(mock), Reports()
    produce(p, "slow", [b"late"], reports)
    assert reports.items[0][0] is None
    mock.set_rtt("all", 0)


def test_bad_commands_get_an_error_and_the_mock_keeps_serving(mock: MockCluster) -> None:
    bad = ["frobnicate", "topic onlyname", "topic t x 1", "topic t 1 4", "errors Produce",
           "errors NoSuchApi 6", "errors Produce NO_SUCH_ERROR", "down 0", "down 9", "up x",
           "rtt 1 -5", "leader t 0 7", "", "x" * 5000]
    for line in bad:
        with pytest.raises(MockError):
            mock.command(line)
    mock.create_topic("still-alive", 1, 1)
    with pytest.raises(MockError, match="TOPIC_ALREADY_EXISTS"):
        mock.create_topic("still-alive", 1, 1)
    assert mock.command("bootstrap") == mock.bootstrap


def test_port_file_and_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "bootstrap"
    proc = subprocess.Popen([str(mock_binary()), "--brokers", "1", "--port-file", str(port_file)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().rstrip("\n")
        assert first == "bootstrap " + port_file.read_text().rstrip("\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
        assert not port_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout):
            if f:
                f.close()
