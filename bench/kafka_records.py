"""The Kafka benchmark's records and broker (bench/kafka_bench.py): the OrderPlaced events, the
broker and registry it uses (its own or given ones) and producing with the official clients.
Needs confluent-kafka and fastavro (devstack/kafka.sh python): import it after
kafka_bench.ensure_clients()."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import time
import uuid
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.serialization import MessageField, SerializationContext

with warnings.catch_warnings():
    # Authlib (pulled in by the registry client) warns about httpx when imported.
    try:
        import authlib.deprecate  # noqa: F401
    except ImportError:
        pass
    warnings.simplefilter("ignore")
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
KAFKA_SH = ROOT / "devstack" / "kafka.sh"
REGISTRY_SH = ROOT / "devstack" / "schema-registry.sh"

sys.path.insert(0, str(BENCH))
from kafka_common import PRODUCED_HEADER  # noqa: E402
from zeebe_bench import log, wait_until  # noqa: E402
sys.path.insert(0, str(ROOT / "devstack"))
from devstack_env import shell_env  # noqa: E402  (devstack/devstack_env.py)

ORDER_SCHEMA = {
    "type": "record", "name": "OrderPlaced", "namespace": "skiff.bench.orders",
    "doc": "A customer placed an order.",
    "fields": [
        {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "order_id", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "OrderStatus",
                                    "symbols": ["PLACED", "CONFIRMED", "CANCELLED"]}},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 12, "scale": 2}},
        {"name": "currency", "type": "string"},
        {"name": "item_count", "type": "int"},
        {"name": "customer", "type": {
            "type": "record", "name": "Customer",
            "fields": [
                {"name": "customer_id", "type": "string"},
                {"name": "name", "type": "string"},
                {"name": "email", "type": "string"},
                {"name": "country", "type": "string"},
            ]}},
        {"name": "sales_channel", "type": "string"},
        {"name": "coupon_code", "type": ["null", "string"], "default": None},
    ],
}
CUSTOMERS = 5000  # the record key: orders of one customer keep their order with ordering=key
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia",
         "Niklaus", "Margaret", "Dennis"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Wirth", "Hamilton", "Ritchie"]
COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "GB", "AT", "BE"]
CHANNELS = ["web", "ios", "android", "store", "partner"]


def order_event(i: int, rng: random.Random) -> Tuple[bytes, Dict[str, Any]]:
    """(key, value) of the i-th OrderPlaced event."""
    c = rng.randrange(CUSTOMERS)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    placed = (datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc) +
              datetime.timedelta(milliseconds=rng.randrange(30 * 86_400_000)))
    customer_id = "C-%05d" % c
    return customer_id.encode(), {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "order_id": "O-%09d" % i,
        "status": rng.choices(["PLACED", "CONFIRMED", "CANCELLED"], [8, 3, 1])[0],
        "placed_at": placed,
        "amount": Decimal(rng.randrange(100, 5_000_000)).scaleb(-2),
        "currency": "EUR",
        "item_count": rng.randint(1, 12),
        "customer": {"customer_id": customer_id, "name": "%s %s" % (first, last),
                     "email": "%s.%s.%d@example.com" % (first.lower(), last.lower(), c),
                     "country": rng.choice(COUNTRIES)},
        "sales_channel": rng.choice(CHANNELS),
        "coupon_code": None if rng.random() < 0.7 else "SPRING%02d" % rng.randrange(30),
    }


# ----------------------------------------------------------------------------- broker, registry

def read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Stack:
    """The broker and the registry: our own (started here, on the bench's ports, stopped by
    close()) or given (--bootstrap / --registry, left alone)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.started: List[Path] = []
        self.broker_pid: Optional[int] = None
        self.registry_pid: Optional[int] = None
        self.kafka_version = "?"
        if args.bootstrap:
            self.bootstrap, self.registry = args.bootstrap, args.registry
            self.own = False
            return
        self.own = True
        # Never someone else's broker: drop inherited devstack settings, pin the bench's ports.
        env = {k: v for k, v in os.environ.items() if not k.startswith(
            ("SKIFF_KAFKA_RUN_DIR", "SKIFF_KAFKA_CONTROLLER_PORT",
             "SKIFF_SCHEMA_REGISTRY_RUN_DIR"))}
        env["SKIFF_KAFKA_PORT"] = str(args.kafka_port)
        env["SKIFF_SCHEMA_REGISTRY_PORT"] = str(args.registry_port)
        self.env = env
        try:
            for script, port in ((KAFKA_SH, args.kafka_port), (REGISTRY_SH, args.registry_port)):
                log("starting %s (port %d)" % (script.name, port))
                self.started.append(script)
                subprocess.run([str(script), "start"], check=True, env=env,
                               stdout=subprocess.PIPE)
        except BaseException:
            self.close()
            raise
        kenv = shell_env([str(KAFKA_SH), "env"], env)
        renv = shell_env([str(REGISTRY_SH), "env"], env)
        self.bootstrap = kenv["KAFKA_BOOTSTRAP"]
        self.registry = renv["SCHEMA_REGISTRY_URL"]
        self.broker_pid = read_pid(Path(kenv["SKIFF_KAFKA_RUN_DIR"]) / "kafka.pid")
        log_dir = Path(renv["SKIFF_SCHEMA_REGISTRY_LOG"]).parent
        self.registry_pid = (read_pid(log_dir / "apicurio.pid") or
                             read_pid(log_dir / "schema-registry.pid"))
        status = subprocess.run([str(KAFKA_SH), "status"], env=env, capture_output=True,
                                text=True).stdout.split()
        if len(status) > 1 and status[0] == "kafka":
            self.kafka_version = status[1]

    def close(self) -> None:
        for script in reversed(self.started):
            subprocess.run([str(script), "stop"], env=self.env, stdout=subprocess.DEVNULL)
        self.started = []


class Kafka:
    """Admin and producing with the official clients."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.admin = AdminClient({"bootstrap.servers": stack.bootstrap})
        self.sr = SchemaRegistryClient({"url": stack.registry, "timeout": 30})
        self.serializer = AvroSerializer(self.sr, json.dumps(ORDER_SCHEMA))
        self.topics: List[str] = []

    def create_topic(self, name: str, partitions: int) -> None:
        """The topic and its dead-letter topic (skiff writes `<topic>.dlq`; none is expected)."""
        names = [name, name + ".dlq"]
        futures = self.admin.create_topics(
            [NewTopic(n, num_partitions=partitions if n == name else 1, replication_factor=1)
             for n in names], operation_timeout=15, request_timeout=20)
        for f in futures.values():
            f.result()
        self.topics += names

        def visible() -> bool:
            md = self.admin.list_topics(timeout=10)
            return all(n in md.topics and md.topics[n].error is None for n in names) and \
                len(md.topics[name].partitions) == partitions
        wait_until(visible, 30, "topic %s in the metadata" % name, 0.1)

    def delete_topics(self) -> None:
        if not self.topics:
            return
        futures = self.admin.delete_topics(self.topics, operation_timeout=15)
        for t, f in futures.items():
            try:
                f.result()
            except Exception as e:  # noqa: BLE001 - clean-up: report, go on
                log("could not delete topic %s: %s" % (t, e))
        self.topics = []

    def serialize(self, topic: str, events: List[Tuple[bytes, Dict[str, Any]]]
                  ) -> List[Tuple[bytes, bytes]]:
        ctx = SerializationContext(topic, MessageField.VALUE)
        return [(k, self.serializer(v, ctx)) for k, v in events]

    def producer(self, linger_ms: int) -> Producer:
        return Producer({"bootstrap.servers": self.stack.bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": linger_ms,
                         "compression.type": "zstd"})

    @staticmethod
    def send(p: Producer, topic: str, records: List[Tuple[bytes, bytes]], stamp: bool,
             rate: float = 0.0) -> float:
        """Produces the records, each stamped with its produce time if `stamp`, at `rate`
        records/s (0: as fast as possible); waits for every acknowledgement; returns the
        seconds the production took."""
        errors: List[Any] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        t0 = time.monotonic()
        for i, (key, raw) in enumerate(records):
            if rate:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            headers = [(PRODUCED_HEADER, str(time.time_ns() // 1000).encode())] if stamp else None
            while True:
                try:
                    p.produce(topic, key=key, value=raw, headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full: let it drain
                    p.poll(0.05)
            p.poll(0)
        left = p.flush(60)
        if left or errors:
            raise RuntimeError("produce to %s: %d not delivered, errors %s"
                               % (topic, left, errors[:3]))
        return time.monotonic() - t0
