#!/usr/bin/env python3
"""skiff's Kafka path against a plain confluent-kafka consumer, side by side, on a real broker.

    devstack/kafka.sh python bench/kafka_bench.py [--records N] [--rate R] [--rounds K] ...

(bench/run.sh runs it after the Zeebe benchmark; any python3 works too: the script re-runs
itself with devstack's Kafka clients venv, confluent-kafka + fastavro, when they are missing.)

It starts its own Kafka broker (devstack/kafka.sh, KRaft, port 29192) and Schema Registry
(devstack/schema-registry.sh: Apicurio Registry, ports 28181-28182) unless --bootstrap and
--registry name running ones, and stops what it started at the end. Then, with the official clients:

  pre-load  one topic (--partitions 6) gets --records N Avro records of a business event
            (OrderPlaced: 10 fields incl. a uuid, an enum, a decimal, a timestamp-millis, a
            nested record and an optional field), written with the official AvroSerializer
            (acks=all, idempotent, zstd); each carries its produce time in a header.

For each contender, one after the other (never two at once), with a fresh consumer group:

  live      a fresh, empty topic; the consumer starts and joins; its idle RSS is read; 100
            primer records go through; then the bench produces at --rate records/s for
            --live-seconds seconds (linger.ms 0); latency per record = the time the decoded
            record reaches the code that handles it - the time just before produce(), both
            from this machine's wall clock.
  backlog   the consumer starts on the pre-loaded topic and processes all N records:
            throughput = N / (last record handled - first record handled), both seen by the
            consumer process; CPU and peak memory over the phase.

Contenders: skiff (Release build) + a handler written with skiff's Python SDK that acks every
record (bench/kafka_py_handler.py), with kafka.ordering `key` (skiff's default) and `none`;
and the peer, bench/kafka_py_consumer.py: confluent-kafka's Consumer + AvroDeserializer,
poll() one record at a time, enable.auto.commit=false, an asynchronous commit every 1,000
records. Both decode every record into a Python dict and do the same trivial work.

Measurements: CPU = utime + stime from /proc/<pid>/stat (skiff from its start, the Python
processes from the moment they printed "ready", after their imports; live: over the timed
production only); memory = VmRSS / VmHWM from /proc/<pid>/status; skiff's own time per record
from its histogram skiff_task_overhead_seconds{source="kafka"} (read from /metrics at the start
and the end of each phase); the broker's CPU from its pid; the whole machine's and the other
processes' from every process's /proc/<pid>/stat.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
KAFKA_SH = ROOT / "devstack" / "kafka.sh"
REGISTRY_SH = ROOT / "devstack" / "schema-registry.sh"


def ensure_clients() -> None:
    """Re-runs this script with the Kafka clients venv's python if confluent-kafka is missing."""
    try:
        import confluent_kafka  # noqa: F401
        import fastavro  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("SKIFF_KAFKA_BENCH_REEXEC"):
        sys.exit("kafka_bench: confluent-kafka / fastavro missing even in the venv")
    os.environ["SKIFF_KAFKA_BENCH_REEXEC"] = "1"
    os.execv(str(KAFKA_SH), [str(KAFKA_SH), "python", str(Path(__file__).resolve())] +
             sys.argv[1:])


if __name__ == "__main__":
    ensure_clients()

import confluent_kafka  # noqa: E402
import fastavro  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

with warnings.catch_warnings():
    # Authlib (pulled in by the registry client) warns about httpx when imported.
    try:
        import authlib.deprecate  # noqa: F401
    except ImportError:
        pass
    warnings.simplefilter("ignore")
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402
    from confluent_kafka.schema_registry.avro import AvroSerializer  # noqa: E402

sys.path.insert(0, str(BENCH))
from kafka_common import PRODUCED_HEADER  # noqa: E402
# The /proc, HTTP, histogram and formatting helpers of the Zeebe benchmark (stdlib only).
from zeebe_bench import (all_cpu, cpu_model_and_ram, cpu_seconds, cpu_used,  # noqa: E402
                         fmt, free_port, histogram, histogram_delta, http_get, log, mb, median,
                         metric_sum, overhead_from_buckets, pct, publish, rounds, sh, split_cpu,
                         skiff_warnings, start_skiff, status_kb, wait_until)
sys.path.insert(0, str(ROOT / "devstack"))
from devstack_env import shell_env  # noqa: E402  (devstack/devstack_env.py)

OVERHEAD_METRIC = "skiff_task_overhead_seconds"
OVERHEAD_PHASES = ("dispatch", "result")
PRIMERS = 100
CORES = os.cpu_count() or 1

CONTENDERS: Dict[str, Dict[str, Any]] = {
    "skiff-key": dict(kind="skiff", ordering="key", short="skiff, ordering key",
                      label="skiff + a Python SDK handler (capacity {capacity}) that acks every "
                            "record; "
                            "`kafka.ordering=key` (skiff's default: one record at a time per "
                            "key, keys in parallel)"),
    "skiff-none": dict(kind="skiff", ordering="none", short="skiff, ordering none",
                       label="the same with `kafka.ordering=none` (records in parallel up to "
                             "the handler's capacity)"),
    "skiff-inline": dict(kind="skiff", ordering="none", inline=True,
                         short="skiff, ordering none, inline handler",
                         label="the same with the SDK's `Handler(inline=True)`: the topic "
                               "function runs on the thread that reads the socket, the acks "
                               "of the tasks read together leave in one write"),
    "python": dict(kind="peer", batch=0, short="confluent-kafka",
                   label="confluent-kafka `Consumer` + the official `AvroDeserializer`, `poll()` "
                         "one record at a time, `enable.auto.commit=false`, asynchronous "
                         "`commit()` every {commit_every} records"),
    "python-batch": dict(kind="peer", batch=500, short="confluent-kafka consume(500)",
                         label="the same with `consume(500, timeout=0.5)` instead of `poll()`: "
                               "up to 500 records per call, which waits for 500 records or "
                               "0.5 s (so a trickle waits for the timeout)"),
}
DEFAULT_CONTENDERS = ["skiff-key", "skiff-none", "skiff-inline", "python"]

# ----------------------------------------------------------------------------- the records

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


# ----------------------------------------------------------------------------- processes

class Child:
    """A bench consumer process speaking bench/kafka_common.py's line protocol; stderr in a
    log file."""

    def __init__(self, role: str, cmd: List[str], env: Dict[str, str], logdir: Path) -> None:
        self.role = role
        self.log_path = logdir / ("%s.log" % role)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.pid = self.proc.pid
        self.lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _line(self, timeout: float) -> bytes:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError("%s did not answer within %.0f s" % (self.role, timeout))
        if line is None:
            raise RuntimeError("%s exited:\n%s" % (self.role, self.tail()))
        return line

    def wait_ready(self, timeout: float = 60) -> Optional[float]:
        """Waits for its "ready" line; returns its CPU seconds then."""
        line = self._line(timeout)
        if line.strip() != b"ready":
            raise RuntimeError("%s: expected ready, got %r" % (self.role, line[:200]))
        return cpu_seconds(self.pid)

    def ask(self, cmd: str, timeout: float = 30) -> Dict[str, Any]:
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        return json.loads(self._line(timeout))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        try:
            if self.alive():
                self.ask("stop", 5)
        except (OSError, RuntimeError, ValueError):
            pass
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Contender:
    """One running consumer: skiff + the SDK handler, or the peer process. `counter` is the
    process that counts the records (the handler, or the peer itself)."""

    def __init__(self, name: str, args: argparse.Namespace, stack: Stack, topic: str,
                 group: str, workdir: Path) -> None:
        self.name = name
        self.spec = CONTENDERS[name]
        self.topic = topic
        self.workdir = Path(tempfile.mkdtemp(prefix=name + "-", dir=str(workdir)))
        self.procs: List[Any] = []  # (Proc | Child), in stop order
        self.cpu0: Dict[str, float] = {}
        self.admin: Optional[str] = None
        try:
            self._start(args, stack, group)
        except BaseException:
            self.stop()
            raise

    def _start(self, args: argparse.Namespace, stack: Stack, group: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SKIFF_", "KAFKA_", "SCHEMA_REGISTRY", "ZEEBE_",
                                    "CAMUNDA_"))}
        py = sys.executable
        if self.spec["kind"] == "skiff":
            sock = str(self.workdir / "h.sock")
            self.admin = "127.0.0.1:%d" % free_port()
            settings = {
                "service.name": "skiff-bench",
                "handler.socket": sock,
                "admin.address": self.admin,
                "kafka.brokers": stack.bootstrap,
                "schema_registry.url": stack.registry,
                "kafka.topics": self.topic,
                "kafka.group_id": group,
                "kafka.ordering": self.spec["ordering"],
            }
            settings.update(self.spec.get("settings") or {})
            settings.update(kv.split("=", 1) for kv in args.skiff_set)
            cmd = [args.skiff] + ["--%s=%s" % kv for kv in settings.items()]
            start_skiff(self, cmd, env)
            henv = dict(env, SKIFF_SOCKET=sock, TOPICS=self.topic, CAPACITY=str(args.capacity),
                        INLINE="1" if self.spec.get("inline") else "0")
            self.counter = Child("handler", [py, str(BENCH / "kafka_py_handler.py")], henv,
                                 self.workdir)
            self.procs.append(self.counter)
            self.cpu0["handler"] = self.counter.wait_ready()
            wait_until(lambda: http_get("http://%s/readyz" % self.admin)[0] == 200, 30,
                       "skiff /readyz (handler connected)")
        else:
            cmd = [py, str(BENCH / "kafka_py_consumer.py"), "--bootstrap", stack.bootstrap,
                   "--registry", stack.registry, "--topic", self.topic, "--group", group,
                   "--commit-every", str(args.commit_every), "--batch", str(self.spec["batch"])]
            self.counter = Child("consumer", cmd, env, self.workdir)
            self.procs.append(self.counter)
            self.cpu0["consumer"] = self.counter.wait_ready()
        self.ready_at = time.monotonic()

    def count(self) -> int:
        return int(self.counter.ask("count")["count"])

    def assigned(self) -> int:
        """Partitions of the topic the consumer owns."""
        if self.admin is None:
            return int(self.counter.ask("count")["assigned"] or 0)
        text = self.metrics_text() or ""
        mark = 'topic="%s"' % self.topic
        return sum(1 for line in text.splitlines()
                   if line.startswith("skiff_kafka_consumer_lag{") and mark in line)

    def metrics_text(self) -> Optional[str]:
        if self.admin is None:
            return None
        status, text = http_get("http://%s/metrics" % self.admin)
        return text if status == 200 else None

    def skiff_metric(self, name: str, **labels: str) -> Optional[float]:
        text = self.metrics_text()
        if text is None:
            return None
        return metric_sum(text, name, **labels)

    def pids(self) -> Dict[str, int]:
        return {p.role: p.pid for p in self.procs}

    def cpu_now(self) -> Dict[str, Optional[float]]:
        return {p.role: cpu_seconds(p.pid) for p in self.procs}

    def rss_kb(self, key: str) -> Dict[str, Optional[int]]:
        return {p.role: status_kb(p.pid, key) for p in self.procs}

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.alive():
                raise RuntimeError("%s (%s) exited:\n%s" % (p.role, self.name, p.tail()))

    def skiff_warnings(self) -> List[str]:
        return skiff_warnings(self.procs)

    def stop(self) -> None:
        # skiff first: it drains, commits, tells the handler, and the handler leaves.
        for p in self.procs:
            p.stop()


# ----------------------------------------------------------------------------- phases

def overhead_buckets(before: Optional[str], after: Optional[str]
                     ) -> Optional[Dict[str, Dict[float, float]]]:
    """Bucket counts of skiff_task_overhead_seconds{source="kafka"} observed between two
    /metrics readings, per phase; None when skiff has no such histogram."""
    out = {}
    for ph in OVERHEAD_PHASES:
        a = histogram(after, OVERHEAD_METRIC, source="kafka", phase=ph)
        if a is None:
            return None
        out[ph] = histogram_delta(a, histogram(before, OVERHEAD_METRIC, source="kafka",
                                               phase=ph))
    return out


class Window:
    """CPU of the broker, of the whole machine and of everyone else over a stretch of a phase.

    The machine's share is the CPU time of every process and kernel thread (from their
    /proc/<pid>/stat) over wall time x cores, not /proc/stat's tick counts: in a trial live
    phase those read 5 % while the broker and the consumer alone had used 20 %."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.broker0 = cpu_seconds(stack.broker_pid) if stack.broker_pid else None
        self.t0, self.procs0 = time.monotonic(), all_cpu()

    def close(self, ours: set) -> Dict[str, Any]:
        used = cpu_used(self.procs0, all_cpu())
        wall = time.monotonic() - self.t0
        broker1 = cpu_seconds(self.stack.broker_pid) if self.stack.broker_pid else None
        ours = set(ours) | {os.getpid()} | {p for p in (self.stack.broker_pid,
                                                        self.stack.registry_pid) if p}
        kernel, other, names = split_cpu(used, ours)
        return {
            "broker_cpu_s": broker1 - self.broker0 if broker1 is not None and
            self.broker0 is not None else None,
            "machine_busy_pct": 100.0 * sum(u[0] for u in used) / (wall * CORES),
            "kernel_cpu_s": kernel, "other_cpu_s": other, "other_cpu": names,
        }


def cpu_delta(c1: Dict[str, Optional[float]], c0: Dict[str, Optional[float]]
              ) -> Dict[str, Optional[float]]:
    return {r: (c1[r] - c0[r]) if c1.get(r) is not None and c0.get(r) is not None else None
            for r in c1}


def wait_count(c: Contender, want: int, timeout: float, interval: float = 0.1) -> int:
    deadline = time.monotonic() + timeout
    n = c.count()
    while n < want and time.monotonic() < deadline:
        c.check_alive()
        time.sleep(interval)
        n = c.count()
    return n


def run_backlog(args: argparse.Namespace, stack: Stack, topic: str, n: int, name: str,
                group: str, workdir: Path) -> Dict[str, Any]:
    window = Window(stack)
    c = Contender(name, args, stack, topic, group, workdir)
    try:
        got = wait_count(c, n, args.phase_timeout)
        wall = time.monotonic() - c.ready_at
        cpu1, hwm, rss = c.cpu_now(), c.rss_kb("VmHWM"), c.rss_kb("VmRSS")
        res: Dict[str, Any] = window.close(set(c.pids().values()))
        stats = c.counter.ask("stats")
        res.update(contender=name, phase="backlog", records=n, handled=got,
                   timed_out=got < n, ready_to_all_s=wall, cpu_s=cpu_delta(cpu1, c.cpu0),
                   peak_rss_kb=hwm, rss_kb=rss)
        span = ((stats["last_us"] - stats["first_us"]) / 1e6
                if stats["first_us"] is not None and stats["last_us"] is not None else None)
        res["span_s"] = span
        res["records_per_s"] = got / span if span else None
        if c.admin:
            wait_until(lambda: (c.skiff_metric("skiff_kafka_records_processed_total",
                                               topic=topic) or 0) >= got, 15,
                       "skiff to count %d records processed" % got)
            res["skiff_acked"] = c.skiff_metric("skiff_kafka_records_processed_total",
                                                topic=topic, outcome="acked")
            res["skiff_redelivered"] = c.skiff_metric("skiff_kafka_redeliveries_total")
            res["overhead_buckets"] = overhead_buckets(None, c.metrics_text())
            res["skiff_warnings"] = c.skiff_warnings()[:5]
    finally:
        c.stop()
    return res


def run_live(args: argparse.Namespace, stack: Stack, kafka: Kafka, topic: str, name: str,
             group: str, workdir: Path, seed: int, seconds: float) -> Dict[str, Any]:
    n = int(args.rate * seconds)
    rng = random.Random(seed)
    events = [order_event(i, rng) for i in range(PRIMERS + n)]
    kafka.create_topic(topic, args.partitions)
    records = kafka.serialize(topic, events)
    primers, timed = records[:PRIMERS], records[PRIMERS:]
    producer = kafka.producer(linger_ms=0)
    c = Contender(name, args, stack, topic, group, workdir)
    try:
        wait_until(lambda: c.assigned() >= args.partitions, 60,
                   "%s to own the %d partitions of %s" % (name, args.partitions, topic), 0.1)
        time.sleep(1.0)  # idle: connected, assigned, no record yet
        c.check_alive()
        idle = c.rss_kb("VmRSS")
        Kafka.send(producer, topic, primers, stamp=False)
        if wait_count(c, PRIMERS, 60) < PRIMERS:
            raise RuntimeError("%s: the primer records did not come through" % name)
        cpu0, metrics0 = c.cpu_now(), c.metrics_text()
        window = Window(stack)
        errors: List[BaseException] = []

        def produce() -> None:
            try:
                Kafka.send(producer, topic, timed, stamp=True, rate=args.rate)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        t0 = time.monotonic()
        th = threading.Thread(target=produce, daemon=True)
        th.start()
        got = wait_count(c, PRIMERS + n, seconds + args.phase_timeout, 0.2)
        wall = time.monotonic() - t0
        th.join(60)
        if errors:
            raise errors[0]
        cpu1, hwm = c.cpu_now(), c.rss_kb("VmHWM")
        res: Dict[str, Any] = window.close(set(c.pids().values()))
        stats = c.counter.ask("stats")
        lat = [v / 1000.0 for v in stats["latency_us"]]  # ms
        res.update(contender=name, phase="live", records=n, handled=got - PRIMERS,
                   timed_out=got < PRIMERS + n, wall_s=wall, cpu_s=cpu_delta(cpu1, cpu0),
                   idle_rss_kb=idle, peak_rss_kb=hwm,
                   lat_p50=pct(lat, 50), lat_p90=pct(lat, 90), lat_p99=pct(lat, 99),
                   lat_max=max(lat) if lat else None, latencies=len(lat))
        if c.admin:
            res["overhead_buckets"] = overhead_buckets(metrics0, c.metrics_text())
            res["skiff_redelivered"] = c.skiff_metric("skiff_kafka_redeliveries_total")
            res["skiff_warnings"] = c.skiff_warnings()[:5]
    finally:
        c.stop()
    return res


# ----------------------------------------------------------------------------- report

def per_k(v: Optional[float], records: Optional[float]) -> Optional[float]:
    return None if v is None or not records else v / records * 1000.0


def role_sum(d: Optional[Dict[str, Optional[float]]], role: Optional[str] = None
             ) -> Optional[float]:
    if not d:
        return None
    if role is not None:
        return d.get(role)
    vals = [v for v in d.values() if v is not None]
    return sum(vals) if vals else None


def spread(values: List[Optional[float]], digits: int) -> str:
    """The median of the rounds, with their range when there are several."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    m = median(vals)
    if len(values) == 1 or len(vals) == 1:
        return num(m, digits)
    return "%s (%s–%s)" % (num(m, digits), num(min(vals), digits), num(max(vals), digits))


def num(v: Optional[float], digits: int) -> str:
    if v is None:
        return "–"
    if digits == 0:
        return format(int(round(v)), ",")
    return fmt(float(v), digits)


def ratio(peer: Optional[float], skiff: Optional[float]) -> str:
    if peer is None or skiff is None or skiff == 0:
        return ""
    return "%.2f×" % (peer / skiff)


def overhead_of(results: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """skiff's added time per record over the rounds: quantiles of the pooled bucket counts."""
    bl = [r.get("overhead_buckets") for r in results]
    if not bl or not all(bl):
        return None
    pooled: Dict[str, Dict[float, float]] = {ph: {} for ph in OVERHEAD_PHASES}
    for b in bl:
        for ph in OVERHEAD_PHASES:
            for le, c in b[ph].items():
                pooled[ph][le] = pooled[ph].get(le, 0.0) + c
    return overhead_from_buckets(pooled)


Row = Tuple[str, Callable[[Dict[str, Any]], Optional[float]], int, bool]


def cpu_rows(n: Callable[[Dict[str, Any]], Optional[float]], others: str) -> List[Row]:
    """The CPU rows both phases show; n: records handled in a round's result."""
    return [
        ("**consumer CPU s / 1,000 records**", lambda r: per_k(role_sum(r["cpu_s"]), n(r)), 3,
         True),
        ("· of which skiff", lambda r: per_k(role_sum(r["cpu_s"], "skiff"), n(r)), 3, False),
        ("· of which handler", lambda r: per_k(role_sum(r["cpu_s"], "handler"), n(r)), 3,
         False),
        ("broker CPU s / 1,000 records", lambda r: per_k(r.get("broker_cpu_s"), n(r)), 3,
         False),
        ("machine CPU busy, % of all cores", lambda r: r.get("machine_busy_pct"), 0, False),
        (f"· other processes, CPU s ({others})", lambda r: r.get("other_cpu_s"), 1, False),
    ]


def rows_backlog() -> List[Tuple[str, Callable[[Dict[str, Any]], Optional[float]], int, bool]]:
    """(label, value of one round's result, digits, show the spread and a ratio)."""
    n = lambda r: r.get("handled")  # noqa: E731
    return [
        ("records handled (of N)", n, 0, False),
        ("**throughput, records/s** (first → last record handled)",
         lambda r: r.get("records_per_s"), 0, True),
        ("consumer ready → all N handled, s (group join included)",
         lambda r: r.get("ready_to_all_s"), 2, True),
        *cpu_rows(n, "not ours: broker, registry, consumer, bench"),
        ("**peak RSS, MB** (VmHWM, end of phase)", lambda r: mb(role_sum(r["peak_rss_kb"])), 1,
         True),
        ("· of which skiff", lambda r: mb(role_sum(r["peak_rss_kb"], "skiff")), 1, True),
        ("· of which handler", lambda r: mb(role_sum(r["peak_rss_kb"], "handler")), 1, False),
    ]


def rows_live() -> List[Tuple[str, Callable[[Dict[str, Any]], Optional[float]], int, bool]]:
    n = lambda r: r.get("handled")  # noqa: E731
    return [
        ("records handled (of N)", n, 0, False),
        ("**latency p50, ms** (produce() → decoded record in the handling code)",
         lambda r: r.get("lat_p50"), 1, True),
        ("latency p90, ms", lambda r: r.get("lat_p90"), 1, True),
        ("**latency p99, ms**", lambda r: r.get("lat_p99"), 1, True),
        ("latency max, ms", lambda r: r.get("lat_max"), 1, True),
        *cpu_rows(n, "not ours"),
        ("**RSS idle, MB** (VmRSS: joined, partitions assigned, no record yet)",
         lambda r: mb(role_sum(r["idle_rss_kb"])), 1, True),
        ("· of which skiff", lambda r: mb(role_sum(r["idle_rss_kb"], "skiff")), 1, True),
        ("· of which handler", lambda r: mb(role_sum(r["idle_rss_kb"], "handler")), 1, False),
        ("peak RSS, MB (VmHWM, end of phase)", lambda r: mb(role_sum(r["peak_rss_kb"])), 1,
         False),
        ("· of which skiff", lambda r: mb(role_sum(r["peak_rss_kb"], "skiff")), 1, False),
    ]


def table(runs: Dict[Tuple[str, str], List[Dict[str, Any]]], names: List[str],
          args: argparse.Namespace) -> List[str]:
    skiffs = [n for n in names if CONTENDERS[n]["kind"] == "skiff"]
    peers = [n for n in names if CONTENDERS[n]["kind"] == "peer"]
    pairs = [(p, s) for p in peers for s in skiffs]
    head = [""] + [CONTENDERS[n]["short"] for n in names] + [
        "%s ÷ %s" % (CONTENDERS[p]["short"], CONTENDERS[s]["short"]) for p, s in pairs]
    out = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
    sections = (
        ("live", "**live: %s records/s for %s s (N = %s) into an empty topic**" % (
            num(args.rate, 0), num(args.live_seconds, 0),
            num(args.rate * args.live_seconds, 0)), rows_live()),
        ("backlog", "**backlog: N = %s records waiting, fresh consumer group**"
         % num(args.records, 0), rows_backlog()),
    )
    for phase, title, rows in sections:
        if not any((n, phase) in runs for n in names):
            continue
        out.append("| %s |%s" % (title, " |" * (len(head) - 1)))
        for label, get, digits, show in rows:
            cells, medians = [], {}
            for n in names:
                rs = runs.get((n, phase), [])
                vals = [get(r) for r in rs]
                medians[n] = median(vals)
                cells.append(spread(vals, digits) if show else num(medians[n], digits))
            if all(c == "–" for c in cells):
                continue
            ratios = [ratio(medians[p], medians[s]) if show else "" for p, s in pairs]
            out.append("| %s | %s |" % (label, " | ".join(cells + ratios)))
    return out


def overhead_section(runs: Dict[Tuple[str, str], List[Dict[str, Any]]], names: List[str]
                     ) -> List[str]:
    rows = [(n, ph, overhead_of(runs[(n, ph)])) for n in names
            if CONTENDERS[n]["kind"] == "skiff" for ph in ("live", "backlog") if (n, ph) in runs]
    if not rows:
        return []
    out = ["", "#### skiff's own time per record", ""]
    if all(o is None for _, _, o in rows):
        return out + ["Not available: this skiff does not expose `%s{source=\"kafka\"}`."
                      % OVERHEAD_METRIC]
    out.append("From skiff's histogram `%s{source=\"kafka\"}` (its `/metrics` at the start and "
               "the end of each phase; with several rounds the bucket counts are added up): "
               "**dispatch** = from the record read off librdkafka, its Avro decoding to JSON "
               "included, to its task frame written to the handler socket (waits for a free "
               "handler credit or for an earlier record of the same key excluded); **result** "
               "= from the ack frame read to the record marked processed. p50 / p99 in µs, "
               "interpolated inside the buckets like Prometheus' `histogram_quantile`; sum = "
               "the two quantiles added (an estimate on the high side)." % OVERHEAD_METRIC)
    out.append("")
    out.append("| skiff, phase | records | dispatch p50 | dispatch p99 | result p50 | result p99 "
               "| **sum p50** | **sum p99** |")
    out.append("|---|--:|--:|--:|--:|--:|--:|--:|")

    def q(o: Dict[str, Any], key: str) -> str:
        v = o.get(key)
        if v is None:
            return "–"
        s = "%.0f" % v if v >= 100 else "%.1f" % v
        return "> " + s if o.get(key + "_over") else s

    for n, ph, o in rows:
        if o is None:
            out.append("| %s, %s | not available | | | | | | |" % (CONTENDERS[n]["short"], ph))
            continue
        out.append("| %s, %s | %s | %s | %s | %s | %s | %s | %s |" % (
            CONTENDERS[n]["short"], ph, num(o.get("dispatch_n"), 0), q(o, "dispatch_p50"),
            q(o, "dispatch_p99"), q(o, "result_p50"), q(o, "result_p99"), q(o, "sum_p50"),
            q(o, "sum_p99")))
    out.append("| target (DESIGN §10) | | | | | | < 100 | < 500 |")
    return out


def skiff_commit() -> str:
    """The commit the working tree is on, read from .git (no git command)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:7]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:7]
    except OSError:
        pass
    return "?"


def linked_rdkafka(skiff: str) -> str:
    """The librdkafka the skiff binary was linked with: the static one of SKIFF_RDKAFKA_DIR in
    its build directory's CMakeCache.txt (docs/adr/0016-rdkafka-current.md), its header's
    version; Debian's package version for an older build linked to the shared library."""
    cache = Path(skiff).resolve().parent / "CMakeCache.txt"
    try:
        for line in cache.read_text().splitlines():
            if line.startswith("SKIFF_RDKAFKA_DIR:"):
                header = Path(line.split("=", 1)[1]) / "include" / "librdkafka" / "rdkafka.h"
                for h in header.read_text().splitlines():
                    if h.startswith("#define RD_KAFKA_VERSION "):
                        v = int(h.split()[2], 16)
                        return "%d.%d.%d (static, from the rdkafka-sys crate)" % (
                            v >> 24, (v >> 16) & 255, (v >> 8) & 255)
    except (OSError, ValueError, IndexError):
        pass
    deb = sh("dpkg-query", "-W", "-f=${Version}", "librdkafka1")
    return "%s (Debian)" % deb if deb else "?"


def machine(stack: Stack, args: argparse.Namespace) -> List[Tuple[str, str]]:
    cpu, mem_kb = cpu_model_and_ram()
    java = ""
    if stack.broker_pid:
        try:
            exe = os.readlink("/proc/%d/exe" % stack.broker_pid)
            java = subprocess.run([exe, "-version"], capture_output=True,
                                  text=True).stderr.splitlines()[0]
        except (OSError, IndexError):
            pass
    rdkafka = linked_rdkafka(args.skiff)
    cc = sh("cc", "--version").splitlines()
    return [
        ("CPUs (`nproc`)", "%s, shared by the broker, the registry, skiff, the handler, the "
         "peer and the bench's producer (and by whatever else runs: see \"other processes\")"
         % sh("nproc")),
        ("CPU model", cpu),
        ("RAM", "%.1f GiB" % (mem_kb / 1048576.0)),
        ("kernel", "%s %s" % (platform.system(), platform.release())),
        ("OS", sh("sh", "-c", ". /etc/os-release; echo $PRETTY_NAME")),
        ("Kafka", "%s (devstack broker: KRaft, one node, %s; JIT `%s`; %s)" % (
            stack.kafka_version, stack.bootstrap, os.environ.get("SKIFF_KAFKA_JIT", "fast"),
            java or "java ?") if stack.own else "%s (given with --bootstrap)" % stack.bootstrap),
        ("schema registry", "Apicurio Registry (`devstack/apicurio.sh`), %s" % stack.registry
         if "/apis/ccompat/" in stack.registry else "%s" % stack.registry),
        ("skiff", "commit %s, Release build (`%s`, %s), librdkafka %s" % (
            skiff_commit(), os.path.relpath(args.skiff, ROOT), cc[0] if cc else "cc",
            rdkafka or "?")),
        ("Python", "%s; skiff's handler SDK (`handler-protocol/python`); peer: confluent-kafka "
         "%s (librdkafka %s), fastavro %s" % (
             platform.python_version(), importlib.metadata.version("confluent-kafka"),
             confluent_kafka.libversion()[0], fastavro.__version__)),
    ]


def report(args: argparse.Namespace, runs: Dict[Tuple[str, str], List[Dict[str, Any]]],
           names: List[str], mach: List[Tuple[str, str]], started: datetime.datetime,
           preload_s: float) -> str:
    out = ["Run %s UTC, the measurements took %.0f s; command: `%s`." % (
        started.strftime("%Y-%m-%d %H:%M"), time.time() - started.timestamp(), args.command)]
    out.append("")
    out.append("N = %s records pre-loaded into %d partitions (written in %.1f s); live: %s "
               "records/s for %s s; handler capacity %d; peer commits every %s records; "
               "warm-up (not reported) %s per contender family; %s." % (
                   num(args.records, 0), args.partitions, preload_s, num(args.rate, 0),
                   num(args.live_seconds, 0), args.capacity, num(args.commit_every, 0),
                   "a %s s live phase and a backlog of %s records" % (
                       num(min(5.0, args.live_seconds), 0), num(args.warmup, 0))
                   if args.warmup > 0 else "none",
                   "one round" if args.rounds == 1 else
                   "%d rounds, order reversed every other round: median (range)" % args.rounds))
    out.append("")
    out.append("| machine | |")
    out.append("|---|---|")
    for k, v in mach:
        out.append("| %s | %s |" % (k, v))
    out.append("")
    out += table(runs, names, args)
    out.append("")
    labels = ["**%s** = %s" % (CONTENDERS[n]["short"], CONTENDERS[n]["label"].format(
        capacity=args.capacity, commit_every=num(args.commit_every, 0))) for n in names]
    out.append("Columns: " + "; ".join(labels) + ".")
    cut = sorted({"%s (%s)" % (CONTENDERS[n]["short"], ph) for (n, ph), rs in runs.items()
                  for r in rs if r.get("timed_out")})
    if cut:
        out.append("")
        out.append("Cut at the phase timeout (figures cover the records handled until then): "
                   "%s." % ", ".join(cut))
    redelivered = sum(r.get("skiff_redelivered") or 0 for rs in runs.values() for r in rs)
    if redelivered:
        out.append("")
        out.append("skiff redelivered %d records (nack, deadline or handler lost)."
                   % redelivered)
    warns = [w for rs in runs.values() for r in rs for w in r.get("skiff_warnings") or []]
    if warns:
        out.append("")
        out.append("skiff logged warnings or errors during the phases; the first: `%s`"
                   % warns[0][:300])
    out += overhead_section(runs, names)
    others: Dict[str, float] = {}
    for rs in runs.values():
        for r in rs:
            for name, c in (r.get("other_cpu") or {}).items():
                others[name] = others.get(name, 0.0) + c
    big = sorted(((c, n) for n, c in others.items() if c >= 0.5), reverse=True)
    if big:
        out.append("")
        out.append("Other processes on the machine during the measured phases (CPU s, summed "
                   "over every phase and round): %s." % ", ".join("%s %.1f" % (n, c)
                                                                  for c, n in big[:10]))
    return "\n".join(out)


BEGIN, END = "<!-- kafka-results:begin -->", "<!-- kafka-results:end -->"


def write_doc(path: Path, text: str) -> None:
    """Replaces the Kafka results block of docs/benchmarks.md (appends a `## Kafka` section
    with one when the file has none)."""
    block = ("%s\n<!-- Written by bench/kafka_bench.py; everything between these markers is "
             "replaced on each run. -->\n\n%s\n\n%s" % (BEGIN, text, END))
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n## Kafka\n\n### Results (Kafka)\n\n%s\n" % block
    path.write_text(new)


# ----------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=20000,
                    help="records pre-loaded for the backlog phase (20000)")
    ap.add_argument("--partitions", type=int, default=6, help="partitions per topic (6)")
    ap.add_argument("--rate", type=float, default=500, help="live phase: records/s (500)")
    ap.add_argument("--live-seconds", type=float, default=20,
                    help="live phase: seconds of production (20)")
    ap.add_argument("--capacity", type=int, default=64, help="the skiff handler's capacity (64)")
    ap.add_argument("--commit-every", type=int, default=1000,
                    help="the peer's asynchronous commit, every N records (1000)")
    ap.add_argument("--warmup", type=int, default=5000,
                    help="warm-up, not reported: a live phase of up to 5 s and a backlog of this "
                         "many records (a topic of their own), for the first skiff and the "
                         "first peer contender; 0: none (5000)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every contender this many times, order reversed every other "
                         "round; the table shows medians and ranges (1)")
    ap.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                    help="comma-separated, from: %s" % ", ".join(CONTENDERS))
    ap.add_argument("--phases", default="live,backlog", help="live,backlog (both)")
    ap.add_argument("--phase-timeout", type=float, default=300,
                    help="seconds a backlog phase may take; a live phase gets this much more "
                         "than its production (300)")
    ap.add_argument("--bootstrap", help="use this running broker (with --registry) instead of "
                                        "starting one")
    ap.add_argument("--registry", help="the schema registry URL that goes with --bootstrap")
    ap.add_argument("--kafka-port", type=int,
                    default=int(os.environ.get("SKIFF_BENCH_KAFKA_PORT", "29192")),
                    help="port of the bench's own broker ($SKIFF_BENCH_KAFKA_PORT, 29192; the "
                         "controller gets the next one)")
    ap.add_argument("--registry-port", type=int,
                    default=int(os.environ.get("SKIFF_BENCH_REGISTRY_PORT", "28181")),
                    help="port of the bench's own registry ($SKIFF_BENCH_REGISTRY_PORT, 28181)")
    ap.add_argument("--skiff", default=str(ROOT / "build-bench" / "skiff"))
    ap.add_argument("--skiff-set", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra skiff setting (e.g. kafka.max_buffered=100); repeatable")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--json", help="also write the raw results (every round) here")
    ap.add_argument("--logs", help="keep the processes' logs in this directory")
    ap.add_argument("--command", default="devstack/kafka.sh python bench/kafka_bench.py",
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    for n in names:
        if n not in CONTENDERS:
            ap.error("unknown contender %s" % n)
    if any(p not in ("live", "backlog") for p in phases):
        ap.error("--phases: live, backlog")
    if any("=" not in kv for kv in args.skiff_set):
        ap.error("--skiff-set takes KEY=VALUE")
    if bool(args.bootstrap) != bool(args.registry):
        ap.error("--bootstrap and --registry go together")
    if not os.access(args.skiff, os.X_OK):
        ap.error("no skiff binary at %s (cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release "
                 "&& cmake --build build-bench --target skiff)" % args.skiff)

    started = datetime.datetime.now(datetime.timezone.utc)
    run_id = uuid.uuid4().hex[:6]
    prefix = "business.bench.order-placed-%s" % run_id
    runs: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    if args.logs:
        os.makedirs(args.logs, exist_ok=True)
    stack = Stack(args)
    kafka = None
    preload_s = 0.0
    try:
        mach = machine(stack, args)
        kafka = Kafka(stack)
        with tempfile.TemporaryDirectory(prefix="skiff-kafka-bench-", dir=args.logs) as tmp:
            workdir = Path(args.logs or tmp)
            rng = random.Random(1)
            backlog_topic = prefix + ".v1"
            if "backlog" in phases:
                kafka.create_topic(backlog_topic, args.partitions)
                recs = kafka.serialize(backlog_topic,
                                       [order_event(i, rng) for i in range(args.records)])
                log("pre-loading %d records into %s" % (args.records, backlog_topic))
                preload_s = Kafka.send(kafka.producer(linger_ms=5), backlog_topic, recs,
                                       stamp=True)
                log("pre-loaded in %.1f s (%.0f records/s)"
                    % (preload_s, args.records / preload_s))
            if args.warmup > 0:
                # Not reported: the broker's fetch and produce paths, the page cache, the
                # registry's answers. A short live phase and a backlog of --warmup records
                # for the first skiff and the first peer contender.
                warm = prefix + ".warmup.v1"
                kafka.create_topic(warm, args.partitions)
                Kafka.send(kafka.producer(linger_ms=5), warm, kafka.serialize(
                    warm, [order_event(i, rng) for i in range(args.warmup)]), stamp=True)
                firsts = [next((n for n in names if CONTENDERS[n]["kind"] == k), None)
                          for k in ("skiff", "peer")]
                for n in [f for f in firsts if f]:
                    run_live(args, stack, kafka, "%s.warmup-live-%s.v1" % (prefix, n), n,
                             "bench-%s-warmup-live-%s" % (run_id, n), workdir, seed=7,
                             seconds=min(5.0, args.live_seconds))
                    r = run_backlog(args, stack, warm, args.warmup, n,
                                    "bench-%s-warmup-%s" % (run_id, n), workdir)
                    log("warm-up %s: %s records/s" % (n, num(r.get("records_per_s"), 0)))
            for rnd, order in rounds(names, args.rounds):
                for n in order:
                    tag = "%s-r%d" % (n, rnd + 1)
                    if "live" in phases:
                        r = run_live(args, stack, kafka, "%s.live-%s.v1" % (prefix, tag), n,
                                     "bench-%s-live-%s" % (run_id, tag), workdir,
                                     seed=1000 + rnd, seconds=args.live_seconds)
                        runs.setdefault((n, "live"), []).append(r)
                        log("%s live: p50 %s ms, p99 %s ms, %d/%d records" % (
                            n, num(r["lat_p50"], 1), num(r["lat_p99"], 1), r["handled"],
                            r["records"]))
                    if "backlog" in phases:
                        r = run_backlog(args, stack, backlog_topic, args.records, n,
                                        "bench-%s-backlog-%s" % (run_id, tag), workdir)
                        runs.setdefault((n, "backlog"), []).append(r)
                        log("%s backlog: %s records/s, peak RSS %s MB" % (
                            n, num(r.get("records_per_s"), 0), ", ".join(
                                "%s %s" % (role, num(mb(kb), 1))
                                for role, kb in r["peak_rss_kb"].items())))
    finally:
        if kafka is not None:
            kafka.delete_topics()
            kafka = None
        stack.close()
    text = report(args, runs, names, mach, started, preload_s)
    publish(args, text, {"%s/%s" % k: v for k, v in runs.items()}, write_doc, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
