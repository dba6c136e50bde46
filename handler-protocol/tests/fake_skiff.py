"""A tiny fake skiff: the skiff side of handler protocol v1.4, standard library only.

Used by the SDK conformance suite, and handy to try a handler by hand::

    python3 fake_skiff.py --socket /tmp/skiff.sock \\
        --task 'risk-score={"amount": 250000, "applicant": {"age": 41}}' \\
        --record 'business.policy.issued.v1={"policyId": "P-1", "premium": "1200.50"}'

It waits for one handler, answers its hello, sends the tasks and Kafka records
(never more than the handler's capacity open at once), answers extends,
``publish_message`` and ``produce`` calls as if the engine and the broker
agreed, prints every result (then every other frame) as a JSON line, sends a
ping, then drains the handler and waits for it to close.

When the ``jsonschema`` package is importable, every frame sent or received is
checked against ``handler-protocol/schemas``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import socket
import struct
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

DEFAULT_MAX_FRAME = 4 * 1024 * 1024
FEATURES = ["batch", "cancel", "extend"]  # what skiff v1.4 lists in its welcome
METHODS = ["publish_message", "produce"]  # produce: with a Kafka producer configured
RESULTS = ("complete", "fail", "bpmn_error", "ack", "nack")
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schemas")

try:
    import jsonschema
except ImportError:  # validation is a bonus, not a requirement
    jsonschema = None

_keys = itertools.count(2251799813685321)
_offsets = itertools.count(1742)


class Closed(Exception):
    """The handler closed the connection."""


def load_validators() -> Dict[str, Any]:
    """Frame type -> jsonschema validator (empty without jsonschema)."""
    if jsonschema is None:
        return {}
    out = {}
    for name in os.listdir(SCHEMA_DIR):
        if name.endswith(".schema.json"):
            with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
                schema = json.load(f)
            out[name[: -len(".schema.json")]] = jsonschema.Draft202012Validator(schema)
    return out


def check_frame(validators: Dict[str, Any], frame: Dict[str, Any]) -> None:
    """Raise AssertionError if the frame breaks its schema."""
    v = validators.get(frame.get("type"))
    if v is None:
        return
    errors = sorted(v.iter_errors(frame), key=str)
    if errors:
        raise AssertionError(f"{frame.get('type')} frame breaks its schema: "
                             f"{errors[0].message}: {frame}")


def make_task(job_type: str, variables: Optional[Dict[str, Any]] = None,
              headers: Optional[Dict[str, str]] = None, **extra: Any) -> Dict[str, Any]:
    """A well-formed Zeebe task frame with a fresh id."""
    key = next(_keys)
    frame = {
        "type": "task", "id": f"z-{key}", "source": "zeebe", "job_type": job_type,
        "deadline": int(time.time() * 1000) + 30000, "attempt": 1,
        "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
        "variables": variables or {}, "headers": headers or {},
        "zeebe": {
            "key": str(key), "process_instance_key": str(key - 11),
            "bpmn_process_id": "conformance", "process_definition_version": 1,
            "element_id": job_type, "retries": 3, "worker": "fake-skiff",
        },
    }
    frame.update(extra)
    return frame


def make_kafka_task(topic: str, value: Any = None, key: Optional[str] = "k-1",
                    headers: Optional[Dict[str, str]] = None, partition: int = 3,
                    attempt: int = 1, **extra: Any) -> Dict[str, Any]:
    """A well-formed Kafka task frame with a fresh offset (``extra`` goes to the top level)."""
    offset = next(_offsets)
    now = int(time.time() * 1000)
    frame = {
        "type": "task", "id": f"k-{topic}-{partition}-{offset}-{attempt}", "source": "kafka",
        "topic": topic, "deadline": now + 30000, "attempt": attempt,
        "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
        "value": value,
        "kafka": {"topic": topic, "partition": partition, "offset": offset, "key": key,
                  "headers": headers or {}, "timestamp": now - 1000, "schema_id": 7},
    }
    frame.update(extra)
    return frame


def encode(frame: Dict[str, Any]) -> bytes:
    """One frame on the wire: 4-byte big-endian length, then UTF-8 JSON."""
    data = json.dumps(frame, separators=(",", ":")).encode("utf-8")
    return struct.pack(">I", len(data)) + data


class Conn:
    """One accepted handler connection."""

    def __init__(self, sock: socket.socket, max_frame: int,
                 validators: Dict[str, Any]) -> None:
        self.sock = sock
        self.max_frame = max_frame
        self.validators = validators
        self.hello: Optional[Dict[str, Any]] = None
        self._buf = b""
        self.welcome: Dict[str, Any] = {}
        self._items: List[Dict[str, Any]] = []  # results of a results frame not returned yet
        self.results_frames = 0  # results frames received (1.4)
        self.results_items = 0  # results received inside them

    def send(self, frame: Dict[str, Any], validate: bool = True) -> None:
        if validate:
            check_frame(self.validators, frame)
        self.send_raw(encode(frame))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, need: int, deadline: float) -> None:
        while len(self._buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the handler in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no frame from the handler in time") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed("handler closed the connection")
            self._buf += chunk

    def batches(self) -> bool:
        """The handler's hello listed feature "batch": it takes tasks frames."""
        return "batch" in (self.hello or {}).get("features", [])

    def send_tasks(self, tasks: List[Dict[str, Any]], validate: bool = True) -> None:
        """Several tasks in one tasks frame (1.4); each is checked as a task frame."""
        if validate:
            for t in tasks:
                check_frame(self.validators, t)
        self.send({"type": "tasks", "tasks": tasks}, validate=validate)

    def recv(self, timeout: float = 10.0) -> Dict[str, Any]:
        """Next frame; raises Closed on EOF, TimeoutError, AssertionError if malformed.
        The items of a results frame (1.4) come one by one, as if each had come alone."""
        if self._items:
            return self._items.pop(0)
        frame = self._recv_frame(timeout)
        if frame["type"] != "results":
            return frame
        assert "batch" in self.welcome.get("features", []), \
            f"results frame although the welcome did not list feature batch: {frame}"
        for item in frame["results"]:
            assert isinstance(item, dict) and item.get("type") in RESULTS, \
                f"results item is not a result frame: {item}"
            check_frame(self.validators, item)
        self.results_frames += 1
        self.results_items += len(frame["results"])
        self._items = list(frame["results"])
        return self._items.pop(0)

    def _recv_frame(self, timeout: float) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        self._fill(4, deadline)
        (n,) = struct.unpack(">I", self._buf[:4])
        assert 0 < n <= self.max_frame, f"bad frame length {n}"
        self._fill(4 + n, deadline)
        body, self._buf = self._buf[4:4 + n], self._buf[4 + n:]
        frame = json.loads(body.decode("utf-8"))
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        check_frame(self.validators, frame)
        return frame

    def expect(self, kind: str, timeout: float = 10.0) -> Dict[str, Any]:
        frame = self.recv(timeout)
        assert frame["type"] == kind, f"expected {kind}, got {frame}"
        return frame

    def handshake(self, session: str = "s-1", features: Optional[List[str]] = FEATURES,
                  methods: Optional[List[str]] = METHODS, **extra: Any) -> Dict[str, Any]:
        """Read hello, answer welcome; returns the hello frame.

        ``features`` or ``methods`` None leaves the member out, as skiff v1.0 did.
        """
        self.hello = self.expect("hello")
        welcome = {"type": "welcome", "version": 1, "session": session,
                   "max_frame": self.max_frame}
        if features is not None:
            welcome["features"] = features
        if methods is not None:
            welcome["methods"] = methods
        self.welcome = {**welcome, **extra}
        self.send(self.welcome)
        return self.hello

    def reply(self, ref: str, result: Optional[Dict[str, Any]] = None,
              error: Optional[Tuple[str, str]] = None) -> None:
        """Answer an extend or call: ok with ``result``, or ``error=(code, message)``."""
        if error is None:
            self.send({"type": "reply", "ref": ref, "ok": True, "result": result or {}})
        else:
            code, message = error
            self.send({"type": "reply", "ref": ref, "ok": False,
                       "error": {"code": code, "message": message}})

    def answer(self, frame: Dict[str, Any]) -> None:
        """Answer an extend or call as skiff would if the engine (or broker) agreed."""
        if frame["type"] == "extend":
            if "ref" in frame:
                self.reply(frame["ref"],
                           {"deadline": int(time.time() * 1000) + frame["timeout_ms"]})
        elif frame["method"] == "publish_message":
            self.reply(frame["ref"], {"key": str(next(_keys)),
                                      "tenant_id": frame["params"].get("tenant_id", "<default>")})
        elif frame["method"] == "produce":
            self.reply(frame["ref"], {"topic": frame["params"]["topic"], "partition": 0,
                                      "offset": next(_offsets), "schema_id": 1})
        else:
            self.reply(frame["ref"], error=("unknown_method", f"no method {frame['method']}"))

    def wait_closed(self, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """Read until the handler closes; returns the frames read meanwhile."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return frames

    def run_tasks(self, tasks: Iterable[Dict[str, Any]],
                  timeout: float = 10.0) -> Dict[str, Dict[str, Any]]:
        """Send tasks within the handler's capacity; returns id -> result frame.

        Extends and calls are answered with :meth:`answer`. Frames other than
        results (extends, calls, pongs, ...) are kept in ``self.others``.
        """
        capacity = int(self.hello["capacity"]) if self.hello else 1
        pending = list(tasks)
        open_ids: set = set()
        results: Dict[str, Dict[str, Any]] = {}
        self.others: List[Dict[str, Any]] = []
        while pending or open_ids:
            batch = []
            while pending and len(open_ids) < capacity:
                task = pending.pop(0)
                open_ids.add(task["id"])
                batch.append(task)
            if len(batch) > 1 and self.batches():
                self.send_tasks(batch)
            else:
                for task in batch:
                    self.send(task)
            frame = self.recv(timeout)
            if frame["type"] in RESULTS:
                assert frame["id"] in open_ids, f"result for a task not open: {frame}"
                open_ids.discard(frame["id"])
                results[frame["id"]] = frame
            else:
                if frame["type"] == "extend":
                    assert frame["id"] in open_ids, f"extend for a task not open: {frame}"
                if frame["type"] in ("extend", "call"):
                    self.answer(frame)
                self.others.append(frame)
        return results

    def close(self) -> None:
        self.sock.close()


class FakeSkiff:
    """A listening Unix socket speaking the skiff side of the protocol."""

    def __init__(self, path: Optional[str] = None, max_frame: int = DEFAULT_MAX_FRAME,
                 listen: bool = True) -> None:
        self._tmp = None
        if path is None:
            self._tmp = tempfile.mkdtemp(prefix="skiff-")
            path = os.path.join(self._tmp, "handler.sock")
        self.path = path
        self.max_frame = max_frame
        self.validators = load_validators()
        self.sock: Optional[socket.socket] = None
        if listen:
            self.listen()

    def listen(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)

    def accept(self, timeout: float = 30.0) -> Conn:
        assert self.sock is not None, "call listen() first"
        self.sock.settimeout(timeout)
        try:
            s, _ = self.sock.accept()
        except socket.timeout:
            raise TimeoutError("no handler connected in time") from None
        s.settimeout(None)
        return Conn(s, self.max_frame, self.validators)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if os.path.exists(self.path):
            os.unlink(self.path)
        if self._tmp:
            os.rmdir(self._tmp)
            self._tmp = None

    def __enter__(self) -> "FakeSkiff":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _parse_task(arg: str) -> Dict[str, Any]:
    job_type, _, variables = arg.partition("=")
    return make_task(job_type, json.loads(variables) if variables else {})


def _parse_record(arg: str) -> Dict[str, Any]:
    topic, _, value = arg.partition("=")
    return make_kafka_task(topic, json.loads(value) if value else None)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", default=os.environ.get("SKIFF_SOCKET", "/tmp/skiff.sock"))
    p.add_argument("--task", action="append", default=[], metavar="JOB_TYPE=JSON",
                   help="a task to send (repeatable); JSON is its variables")
    p.add_argument("--record", action="append", default=[], metavar="TOPIC=JSON",
                   help="a Kafka task to send (repeatable); JSON is the record value")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    with FakeSkiff(args.socket) as skiff:
        print(f"fake skiff listening on {skiff.path}", file=sys.stderr)
        conn = skiff.accept(timeout=args.timeout)
        hello = conn.handshake()
        print(json.dumps(hello), flush=True)
        tasks = [_parse_task(t) for t in args.task] + [_parse_record(r) for r in args.record]
        for result in conn.run_tasks(tasks, timeout=args.timeout).values():
            print(json.dumps(result), flush=True)
        for frame in conn.others:
            print(json.dumps(frame), flush=True)
        conn.send({"type": "ping", "ref": "p-1"})
        print(json.dumps(conn.expect("pong", timeout=args.timeout)), flush=True)
        conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 10000})
        conn.wait_closed(timeout=args.timeout)
        print("handler drained and closed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
