"""Fixtures of the Kafka integration tests: the real Kafka broker and the Schema Registry
(devstack), the real skiff binary ($SKIFF_BIN), SDK handlers (handlers/recorder.py), and
Kafka clients with the official Avro serializer / deserializer (confluent-kafka).

Tests assert on what real Kafka clients see (records, headers, committed offsets) and on
skiff's /metrics; every wait is a poll with a generous bound, nothing asserts on timing."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "devstack"))
from devstack_env import shell_env, terminate  # noqa: E402  (devstack/devstack_env.py)

HERE = Path(__file__).resolve().parent
SKIFF_BIN = Path(os.environ.get("SKIFF_BIN", ROOT / "build" / "skiff"))
KAFKA_SH = ROOT / "devstack" / "kafka.sh"
REGISTRY_SH = ROOT / "devstack" / "schema-registry.sh"
RECORDER = HERE / "handlers" / "recorder.py"
WAIT = 60.0  # seconds: upper bound of any wait
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def _import_clients():
    with warnings.catch_warnings():
        # Authlib (pulled in by the registry client) warns about httpx on import.
        try:
            import authlib.deprecate  # noqa: F401
        except ImportError:
            pass
        warnings.simplefilter("ignore")
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: F401
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa
    return Schema, SchemaRegistryClient, AvroSerializer, AvroDeserializer


Schema, SchemaRegistryClient, AvroSerializer, AvroDeserializer = _import_clients()
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

# Seconds before the registry client gives up on a request (and retries it): httpx's default
# is to wait forever, and Apicurio once left a request of the official serializer unanswered.
SR_TIMEOUT = 30

# The schema of the records that drive handlers/recorder.py.
CMD_SCHEMA = {
    "type": "record", "name": "Cmd", "namespace": "skiff.test",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "fail", "type": "int", "default": 0},
        {"name": "poison", "type": "boolean", "default": False},
        {"name": "sleep_ms", "type": "int", "default": 0},
        {"name": "after", "type": ["null", "string"], "default": None},
        {"name": "produce", "type": ["null", "string"], "default": None},
    ],
}


def cmd(id: str, **kw) -> Dict[str, Any]:
    """A Cmd value with its defaults."""
    v = {"id": id, "fail": 0, "poison": False, "sleep_ms": 0, "after": None, "produce": None}
    v.update(kw)
    return v


# ---- small helpers ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], Any], timeout: float = WAIT, interval: float = 0.1,
               what: str = "condition", on_timeout: Optional[Callable[[], str]] = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = ""
            if on_timeout is not None:
                try:
                    extra = "\n" + on_timeout()
                except Exception as e:  # noqa: BLE001 - diagnostics only
                    extra = f"\n(diagnostics failed: {e})"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def parse_metrics(text: str) -> List[Tuple[str, Dict[str, str], float]]:
    """Prometheus text format -> (name, labels, value) samples."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, labels = head, {}
        if "{" in head:
            name, _, rest = head.partition("{")
            rest = rest.rstrip("}")
            i = 0
            while i < len(rest):
                eq = rest.index("=", i)
                k = rest[i:eq].strip().lstrip(",").strip()
                j = eq + 2  # past ="
                v = []
                while rest[j] != '"':
                    if rest[j] == "\\":
                        j += 1
                        v.append({"n": "\n"}.get(rest[j], rest[j]))
                    else:
                        v.append(rest[j])
                    j += 1
                labels[k] = "".join(v)
                i = j + 1
        try:
            out.append((name, labels, float(value)))
        except ValueError:
            pass
    return out


# ---- the broker and the registry -------------------------------------------------------------

class Registry:
    """A Schema Registry driven by devstack/schema-registry.sh: Apicurio Registry, or the
    stand-in with SKIFF_SCHEMA_REGISTRY_IMPL=standin in env."""

    def __init__(self, env: Optional[Dict[str, str]] = None) -> None:
        self.env = dict(os.environ, **(env or {}))

    def script(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(REGISTRY_SH), *args], env=self.env, check=check,
                              capture_output=True, text=True)

    def running(self) -> bool:
        return self.script("status", check=False).returncode == 0

    def start(self, keep: bool = False) -> None:
        """A clean start, or with keep a restart that keeps the schemas (and their ids)."""
        if keep:
            subprocess.run([str(REGISTRY_SH), "start"], check=True, capture_output=True,
                           text=True, env=dict(self.env, SKIFF_SCHEMA_REGISTRY_KEEP="1"))
        else:
            self.script("start")

    def stop(self) -> None:
        self.script("stop")

    @property
    def url(self) -> str:
        return shell_env([str(REGISTRY_SH), "env"], env=self.env)["SCHEMA_REGISTRY_URL"]


class KafkaStack:
    """The devstack broker and registry, with the official clients."""

    def __init__(self, bootstrap: str, registry_url: str) -> None:
        self.bootstrap = bootstrap
        self.registry_url = registry_url
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.sr = SchemaRegistryClient({"url": registry_url, "timeout": SR_TIMEOUT})

    # topics
    def create_topic(self, name: str, partitions: int = 1, dlq: bool = True) -> None:
        names = [name] + ([f"{name}.dlq"] if dlq else [])
        futures = self.admin.create_topics(
            [NewTopic(n, num_partitions=partitions if n == name else 1, replication_factor=1)
             for n in names], operation_timeout=15, request_timeout=20)
        for f in futures.values():
            f.result()

        def visible():
            md = self.admin.list_topics(timeout=10)
            return all(n in md.topics and md.topics[n].error is None and
                       len(md.topics[n].partitions) == (partitions if n == name else 1)
                       for n in names)
        wait_until(visible, what=f"topics {names} in the metadata")

    # schemas
    def register(self, subject: str, schema: dict, sr=None) -> int:
        return (sr or self.sr).register_schema(subject, Schema(json.dumps(schema), "AVRO"))

    def serializer(self, schema: dict, sr=None) -> "AvroSerializer":
        return AvroSerializer(sr or self.sr, json.dumps(schema))

    # producing
    def produce(self, topic: str, records: Iterable[Tuple[Optional[bytes], Any, Any]],
                schema: Optional[dict] = None, serializer=None) -> List[Dict[str, Any]]:
        """Produces (key, value, headers) records; with a schema (or serializer) values are
        serialized with the official AvroSerializer, else they are raw bytes. Returns the
        delivery reports (partition, offset, timestamp, key, value bytes) in order."""
        ser = serializer or (self.serializer(schema) if schema is not None else None)
        ctx = SerializationContext(topic, MessageField.VALUE)
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 0})
        reports: List[Any] = []
        errors: List[Any] = []
        for key, value, headers in records:
            if isinstance(key, str):
                key = key.encode()
            raw = ser(value, ctx) if ser is not None else value
            hdrs = [(k, v.encode() if isinstance(v, str) else v)
                    for k, v in (headers.items() if isinstance(headers, dict) else headers or [])]
            p.produce(topic, key=key, value=raw, headers=hdrs or None,
                      on_delivery=lambda err, msg: (errors if err else reports).append(
                          err or msg))
            p.poll(0)
        assert p.flush(30) == 0 and not errors, f"produce failed: {errors}"
        return [{"partition": m.partition(), "offset": m.offset(),
                 "timestamp": m.timestamp()[1], "key": m.key(), "value": m.value()}
                for m in reports]

    # reading
    def consumer(self, group: Optional[str] = None) -> Consumer:
        return Consumer({"bootstrap.servers": self.bootstrap,
                         "group.id": group or f"reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": False})

    def partitions(self, topic: str) -> List[int]:
        md = self.admin.list_topics(topic, timeout=10)
        return sorted(md.topics[topic].partitions)

    def end_offsets(self, topic: str) -> Dict[int, int]:
        c = self.consumer()
        try:
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in self.partitions(topic)}
        finally:
            c.close()

    def read_all(self, topic: str) -> List[Any]:
        """Every record now in the topic (up to the high watermarks), partition by partition."""
        c = self.consumer()
        try:
            ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    for p in self.partitions(topic)}
            want = {p: hi for p, (lo, hi) in ends.items() if hi > lo}
            if not want:
                return []
            c.assign([TopicPartition(topic, p, ends[p][0]) for p in want])
            got: List[Any] = []
            pos = {p: ends[p][0] for p in want}
            deadline = time.monotonic() + WAIT
            while any(pos[p] < want[p] for p in want):
                assert time.monotonic() < deadline, f"could not read {topic} to its end"
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    raise KafkaException(m.error())
                got.append(m)
                pos[m.partition()] = m.offset() + 1
            return sorted(got, key=lambda m: (m.partition(), m.offset()))
        finally:
            c.close()

    def deserialize(self, topic: str, raw: bytes) -> Any:
        de = AvroDeserializer(SchemaRegistryClient({"url": self.registry_url,
                                                    "timeout": SR_TIMEOUT}))
        return de(raw, SerializationContext(topic, MessageField.VALUE))

    def committed(self, group: str, topic: str) -> Dict[int, int]:
        """The group's committed offsets (-1001 when none), as another client sees them."""
        c = self.consumer(group)
        try:
            tps = c.committed([TopicPartition(topic, p) for p in self.partitions(topic)],
                              timeout=10)
            return {tp.partition: tp.offset for tp in tps}
        finally:
            c.close()

    def wait_committed(self, group: str, topic: str, want: Dict[int, int],
                       skiff: Optional["Skiff"] = None, timeout: float = WAIT) -> Dict[int, int]:
        wait_until(lambda: all(self.committed(group, topic).get(p, -1) >= o
                               for p, o in want.items()),
                   timeout=timeout, interval=0.3,
                   what=f"group {group} to commit {want} on {topic}",
                   on_timeout=lambda: f"committed: {self.committed(group, topic)}" +
                   (f"\n{skiff.tail()}" if skiff else ""))
        return self.committed(group, topic)


@pytest.fixture(scope="session")
def kafka() -> KafkaStack:
    """The devstack broker + registry, started here when not running (and left running)."""
    if subprocess.run([str(KAFKA_SH), "status"], capture_output=True).returncode != 0:
        subprocess.run([str(KAFKA_SH), "start"], check=True, capture_output=True)
    reg = Registry()
    if not reg.running():
        reg.start()
    kenv = shell_env([str(KAFKA_SH), "env"])
    renv = shell_env([str(REGISTRY_SH), "env"])
    return KafkaStack(kenv["KAFKA_BOOTSTRAP"], renv["SCHEMA_REGISTRY_URL"])


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


# ---- skiff and handlers ----------------------------------------------------------------------

class Skiff:
    """The real skiff binary, configured on its command line; stderr kept in a file."""

    def __init__(self, tmp: Path, kafka: KafkaStack, topics: List[str], group: str,
                 registry_url: Optional[str] = None, socket_path: Optional[str] = None,
                 **config: Any) -> None:
        self.tmp = tmp
        self.socket = socket_path or str(tmp / "h.sock")
        self.admin_port = free_port()
        self.group = group
        self.topics = topics
        self.log_path = tmp / f"skiff-{uuid.uuid4().hex[:6]}.log"
        self.expect_exit_0 = True
        self.checked = False
        settings = {
            "handler.socket": self.socket,
            "admin.address": f"127.0.0.1:{self.admin_port}",
            "kafka.brokers": kafka.bootstrap,
            "schema_registry.url": registry_url or kafka.registry_url,
            "kafka.topics": ",".join(topics),
            "kafka.group_id": group,
            "kafka.commit_interval": "200ms",
            "kafka.retry_backoff_initial": "100ms",
            "kafka.retry_backoff_max": "1s",
            "kafka.max_attempts": "3",
            "log.level": "info",
        }
        settings.update({k.replace("__", "."): str(v) for k, v in config.items()})
        self.args = [str(SKIFF_BIN)] + [f"--{k}={v}" for k, v in settings.items()]
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = "detect_leaks=1"
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        for k in list(env):  # only the command line configures skiff
            if k.startswith("SKIFF_") and k != "SKIFF_BIN":
                del env[k]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=env, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        wait_until(lambda: self.http("/healthz")[0] == 200 or self.proc.poll() is not None,
                   timeout=30, what="skiff /healthz")
        assert self.proc.poll() is None, f"skiff exited at start:\n{self.tail()}"

    def __enter__(self) -> "Skiff":
        return self

    def __exit__(self, *exc: Any) -> None:
        """SIGTERM; asserts exit 0 (unless killed on purpose) and no sanitizer report."""
        rc = self.stop()
        self.checked = True
        self.log.close()
        assert not self.expect_exit_0 or rc == 0, f"skiff exited {rc}: {self.command}\n{self.tail()}"
        report = self.sanitizer_report()
        assert report is None, f"sanitizer report from skiff:\n{report}"

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.args)

    def http(self, path: str) -> Tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}",
                                        timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = WAIT) -> None:
        wait_until(lambda: self.http("/readyz")[0] == 200 or self.proc.poll() is not None,
                   timeout=timeout, what="skiff /readyz",
                   on_timeout=lambda: f"/readyz: {self.http('/readyz')}\n{self.tail()}")
        assert self.proc.poll() is None, f"skiff exited:\n{self.tail()}"

    def metrics(self) -> List[Tuple[str, Dict[str, str], float]]:
        return parse_metrics(self.http("/metrics")[1])

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return sum(v for n, lab, v in self.metrics()
                   if n == name and all(lab.get(k) == val for k, val in labels.items()))

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> List[Dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def tail(self, n: int = 60) -> str:
        lines = self.logs().splitlines()
        return f"skiff log ({self.log_path}), last {n} lines:\n" + "\n".join(lines[-n:])

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (no exit-code check at teardown)."""
        self.expect_exit_0 = False
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, then the exit code (SIGKILL after timeout: then -9)."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def sanitizer_report(self) -> Optional[str]:
        text = self.logs()
        for mark in SANITIZER_MARKS:
            i = text.find(mark)
            if i >= 0:
                return text[max(0, i - 200):i + 6000]
        return None


class HandlerProc:
    """handlers/recorder.py in its own process; its JSON-lines output is read by the tests."""

    def __init__(self, skiff: Skiff, topics: List[str], capacity: int = 4, sleep_ms: int = 0,
                 name: Optional[str] = None, extend_ms: int = 0) -> None:
        self.name = name or f"recorder-{uuid.uuid4().hex[:6]}"
        self.out_path = skiff.tmp / f"{self.name}.jsonl"
        self.log_path = skiff.tmp / f"{self.name}.log"
        env = dict(os.environ)
        env.update({
            "SKIFF_SOCKET": skiff.socket, "HANDLER_TOPICS": ",".join(topics),
            "HANDLER_OUT": str(self.out_path), "HANDLER_NAME": self.name,
            "HANDLER_CAPACITY": str(capacity), "HANDLER_SLEEP_MS": str(sleep_ms),
            "HANDLER_EXTEND_MS": str(extend_ms),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "handler-protocol" / "python")] +
                ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        })
        self.out = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(RECORDER)], env=env, stdout=self.out,
                                     stderr=self.out, stdin=subprocess.DEVNULL)

    def events(self, event: Optional[str] = None) -> List[Dict[str, Any]]:
        if not self.out_path.exists():
            return []
        out = []
        for line in self.out_path.read_text().splitlines():
            if line.strip():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if event is None or e.get("event") == event:
                    out.append(e)
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        terminate(self.proc, timeout=10)
        self.out.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def events_of(handlers: Iterable[HandlerProc], event: Optional[str] = None,
              topic: Optional[str] = None) -> List[Dict[str, Any]]:
    out = []
    for h in handlers:
        out.extend(e for e in h.events(event) if topic is None or e.get("topic") == topic)
    return out


def acked_offsets(handlers: Iterable[HandlerProc], topic: str) -> set:
    """(partition, offset) of the records a handler answered with an ack."""
    return {(e["partition"], e["offset"]) for e in events_of(handlers, "end", topic)
            if e.get("outcome") == "ack"}


class Stack:
    """Per-test factory of skiff instances and handlers. At teardown each skiff still running
    gets SIGTERM and must exit 0 (unless the test killed it), and no skiff may have written a
    sanitizer report; then the handlers are stopped."""

    def __init__(self, kafka: KafkaStack, tmp: Path) -> None:
        self.kafka = kafka
        self.tmp = tmp
        self.skiffs: List[Skiff] = []
        self.handlers: List[HandlerProc] = []
        self.sockdir = tempfile.mkdtemp(prefix="skk-", dir="/tmp")

    def skiff(self, topics: List[str], group: str, **config: Any) -> Skiff:
        d = Path(tempfile.mkdtemp(prefix="s", dir=self.tmp))
        if "socket_path" not in config:  # a socket address holds at most 107 bytes
            config["socket_path"] = os.path.join(self.sockdir, f"{len(self.skiffs)}.sock")
        s = Skiff(d, self.kafka, topics, group, **config)
        self.skiffs.append(s)
        return s

    def handler(self, skiff: Skiff, topics: List[str], **kw: Any) -> HandlerProc:
        h = HandlerProc(skiff, topics, **kw)
        self.handlers.append(h)
        return h

    def start(self, topics: List[str], group: str, capacity: int = 4, sleep_ms: int = 0,
              **config: Any) -> Tuple[Skiff, HandlerProc]:
        """skiff + one handler, ready (handler connected, partitions assigned)."""
        s = self.skiff(topics, group, **config)
        h = self.handler(s, topics, capacity=capacity, sleep_ms=sleep_ms)
        s.wait_ready()
        return s, h

    def stop_all(self) -> None:
        """SIGTERM to every skiff still running: each must exit 0 (unless the test killed it
        on purpose) and none may have written a sanitizer report. Then the handlers stop.
        Tests call it last, so that these checks belong to the test itself; the fixture
        calls it again at teardown for whatever is left."""
        problems = []
        for s in self.skiffs:
            if s.checked:
                continue
            s.checked = True
            if s.proc.poll() is None:
                rc = s.stop()
                if s.expect_exit_0 and rc != 0:
                    problems.append(f"skiff exited {rc} after SIGTERM (want 0): {s.command}\n"
                                    f"{s.tail()}")
            elif s.expect_exit_0 and s.proc.returncode != 0:
                problems.append(f"skiff had exited with {s.proc.returncode}: {s.command}\n"
                                f"{s.tail()}")
            s.log.close()
            report = s.sanitizer_report()
            if report:
                problems.append(f"sanitizer report from skiff ({s.log_path}):\n{report}")
        for h in self.handlers:
            h.stop()
        assert not problems, "\n\n".join(problems)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def stop_stack(st: Stack, request) -> None:
    """st.stop_all() at the end of a test: its problems fail a test that passed; after a test
    that already failed (or xfailed) they are printed, not added as a teardown error."""
    try:
        st.stop_all()
    except AssertionError as e:
        call = getattr(request.node, "rep_call", None)
        if call is not None and call.passed:
            raise
        print(f"teardown of a failed test: {e}")


@pytest.fixture
def stack(kafka: KafkaStack, tmp_path: Path, request):
    st = Stack(kafka, tmp_path)
    try:
        yield st
    finally:
        try:
            stop_stack(st, request)
        finally:
            shutil.rmtree(st.sockdir, ignore_errors=True)
