"""The Kafka benchmark's contenders and phases (bench/kafka_bench.py): the consumer processes
(skiff + an SDK handler, or a peer), how they are started and queried, and the live and
backlog phases that measure them."""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from kafka_records import BENCH, ROOT, Kafka, Stack, order_event
# The /proc, HTTP and histogram helpers of the Zeebe benchmark (stdlib only).
from zeebe_bench import (all_cpu, cpu_seconds, cpu_used, free_port, histogram,  # noqa: E402
                         histogram_delta, http_get, metric_sum, pct, skiff_warnings, split_cpu,
                         start_skiff, status_kb, wait_until)

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
    "skiff-node": dict(kind="skiff", ordering="key", lang="node", short="skiff + Node SDK",
                       label="skiff + a handler written with skiff's Node SDK "
                             "(`handler-protocol/node`, capacity {capacity}; "
                             "bench/kafka_node_handler.mjs) that acks every record, "
                             "`kafka.ordering=key`"),
    "skiff-node-none": dict(kind="skiff", ordering="none", lang="node",
                            short="skiff + Node SDK, ordering none",
                            label="the same with `kafka.ordering=none`"),
    "node": dict(kind="peer", lang="node", each="message", short="kafkajs",
                 label="kafkajs `Consumer` + `@kafkajs/confluent-schema-registry` (avsc, the "
                       "writer's schema by the id in the record, cached), `eachMessage` (the "
                       "handler kafkajs' documentation starts with: one record at a time, its "
                       "offset resolved when the function returns), `autoCommitThreshold` "
                       "{commit_every} (bench/kafka_node_consumer.mjs)"),
    "node-batch": dict(kind="peer", lang="node", each="batch", short="kafkajs eachBatch",
                       label="the same with `eachBatch`: the fetched batch at once, "
                             "`resolveOffset()` per record, `heartbeat()` per batch"),
}
DEFAULT_CONTENDERS = ["skiff-key", "skiff-none", "skiff-inline", "python", "skiff-node", "node"]


def lang(name: str) -> str:
    """The language of a contender's handling code: python or node (a peer is compared with
    the skiff contenders whose handler is written in the same language)."""
    return CONTENDERS[name].get("lang", "python")


def node_modules() -> None:
    """bench/node_modules (kafkajs and the registry client, pinned by bench/package-lock.json),
    installed with `npm ci` when missing or older than the lock file, as bench/run.sh does."""
    mods = BENCH / "node_modules"
    if mods.is_dir() and (mods / "kafkajs").is_dir() and \
            mods.stat().st_mtime >= (BENCH / "package-lock.json").stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=str(BENCH),
                   check=True, stdout=subprocess.DEVNULL)
    os.utime(mods)


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
            hcmd = (["node", str(BENCH / "kafka_node_handler.mjs")] if lang(self.name) == "node"
                    else [py, str(BENCH / "kafka_py_handler.py")])
            self.counter = Child("handler", hcmd, henv, self.workdir)
            self.procs.append(self.counter)
            self.cpu0["handler"] = self.counter.wait_ready()
            wait_until(lambda: http_get("http://%s/readyz" % self.admin)[0] == 200, 30,
                       "skiff /readyz (handler connected)")
        else:
            common = ["--bootstrap", stack.bootstrap, "--registry", stack.registry, "--topic",
                      self.topic, "--group", group, "--commit-every", str(args.commit_every)]
            if lang(self.name) == "node":
                cmd = ["node", str(BENCH / "kafka_node_consumer.mjs")] + common + [
                    "--each", self.spec["each"]]
            else:
                cmd = [py, str(BENCH / "kafka_py_consumer.py")] + common + [
                    "--batch", str(self.spec["batch"])]
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
