"""skiff handler SDK for Python (handler protocol v1.4, standard library only).

Usage::

    from skiff_handler import Handler, BpmnError, JobFailed, Retry, DeadLetter

    app = Handler("risk-scorer", capacity=4)

    @app.job("risk-score")
    def score(task):
        if task.variables["amount"] > 1_000_000:
            raise BpmnError("RISK_TOO_HIGH", "amount too large")
        return {"riskScore": 42}

    @app.topic("business.policy.issued.v1")
    def index(task):                # task.value, task.record (partition, offset, key, ...)
        if task.value["premium"].startswith("-"):
            raise DeadLetter("negative premium")        # nack, dead_letter: true
        if not search_is_up():
            raise Retry("search down", backoff_ms=10_000)  # nack, retry_backoff_ms
        # returning (any value) acks the record; any other exception nacks it

    app.run()

A job function receives a :class:`Task` and returns a dict of variables (or
``None``) to complete the job. Raising :class:`BpmnError` throws a BPMN error,
raising :class:`JobFailed` fails the job with explicit retries/backoff, and any
other exception fails the job with the exception's message. A topic function
receives a Kafka task (``task.topic``, ``task.value``, ``task.record``): returning
acks the record, raising :class:`Retry` or :class:`DeadLetter` nacks it with a
backoff or to the dead-letter topic, any other exception nacks it with its
message; an ordinary exception also gives the frame a structured ``error`` (type,
message, stack: :func:`error_info`). Up to ``capacity`` tasks run at once: plain
functions on a pool of reused worker threads (it grows only while every thread is busy), or
with ``Handler(..., inline=True)`` on the thread that reads the socket, one after another, the
results of the tasks read together sent in one write (for fast functions: no thread hand-off;
a slow one delays the tasks and pings behind it),
``async def`` functions on one asyncio event loop (``await app.run_async()`` serves from a
coroutine and runs them on the caller's loop), where the calls below have awaitable forms
(``await task.extend_async(ms)``, ``task.publish_message_async(...)``,
``task.produce_async(...)``) and skiff's cancel cancels the coroutine.

Inside a job or topic function (blocking calls, safe from any thread; failures raise
:class:`CallError` with a ``code``)::

    new_deadline = task.extend(60_000)      # deadline = now + 60 s; also sets task.deadline
    if task.cancelled.is_set():             # threading.Event, set when skiff cancels
        return                              # the task (task.cancel_reason: "deadline",
                                            # "job_gone"); its result is never sent
    task.publish_message("paid", correlation_key="order-42", variables={"amount": 3})
    # -> {"key": "2251799813685400", "tenant_id": "<default>"}
    task.produce("business.policy.indexed.v1", {"policyId": "P-1"}, key="P-1",
                 headers={"source": "indexer"})
    # -> {"topic": ..., "partition": 0, "offset": 88, "schema_id": 9}

    password = task.secret("vault:secret/app/db#password")   # 1.3, handler.secrets
    bearer = task.token("billing-api")      # 1.3, an OAuth2 access token (handler.token_audiences)

``app.publish_message(...)``, ``app.produce(...)``, ``app.secret(...)`` and
``app.token(...)`` do the same from outside
a function, on the current connection. Error codes are skiff's (``not_found``,
``unavailable``, ``rejected`` for extend; ``invalid_params``,
``already_exists``, ``unavailable``, ``rejected`` for publish_message;
``invalid_params``, ``invalid_value``, ``schema_not_found``, ``unavailable``,
``produce_failed`` for produce; ``forbidden``, ``not_found``, ``unavailable``,
``invalid_params`` for secret and token; treat any other code as a failure too) or the
SDK's own, raised without waiting for skiff: ``unsupported`` (skiff's welcome
did not list the feature or method, or the task is a Kafka task, which cannot
be extended; nothing was sent), ``cancelled`` (skiff cancelled the task,
also while an extend waits), ``closed`` (not connected, the task's result was
sent, or the connection was lost before the reply: the outcome is unknown),
``invalid_params`` (not JSON-serialisable or larger than ``max_frame``).
A cancelled task no longer counts against ``capacity``: skiff may send a new
one while its function still runs.

Batches (protocol 1.4, ``Handler(..., batch=True)``, the default): the hello lists feature
``batch``, so skiff may send several tasks in one ``tasks`` frame; when skiff's welcome lists it
too, the results that are ready together leave as one ``results`` frame (within ``max_frame``).
Every frame that one read brings is parsed and dispatched before the next read.

``run()`` connects to ``$SKIFF_SOCKET`` (default ``/run/skiff/handler.sock``),
reconnecting with a backoff when skiff is not there yet or the connection is
lost, and returns after skiff sends ``drain`` and the tasks in flight are done.
See ``handler-protocol/SPEC.md`` for the wire protocol.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import json
import logging
import os
import queue
import socket
import struct
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional

__all__ = [
    "Handler", "Task", "Job", "Record", "BpmnError", "JobFailed", "Retry", "DeadLetter",
    "ProtocolError", "CallError",
    "encode_frame", "error_info", "PROTOCOL_VERSION", "DEFAULT_SOCKET", "DEFAULT_MAX_FRAME",
]

PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/skiff/handler.sock"
DEFAULT_MAX_FRAME = 4 * 1024 * 1024

log = logging.getLogger("skiff_handler")

JobFunction = Callable[["Task"], Any]


class BpmnError(Exception):
    """Throw a BPMN error: caught by an error boundary event with ``code``."""

    def __init__(self, code: str, message: str = "",
                 variables: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message
        self.variables = variables


class JobFailed(Exception):
    """Fail the job with explicit control over retries and backoff.

    ``retries=None`` lets skiff use the job's retries - 1; ``retries=0``
    raises an incident.
    """

    def __init__(self, message: str, retries: Optional[int] = None,
                 retry_backoff_ms: Optional[int] = None,
                 variables: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.retries = retries
        self.retry_backoff_ms = retry_backoff_ms
        self.variables = variables


class Retry(JobFailed):
    """Kafka: nack the record so that skiff retries it after ``backoff_ms``
    (``None``: skiff's own backoff). In a job function: fail with that backoff."""

    def __init__(self, message: str, backoff_ms: Optional[int] = None) -> None:
        super().__init__(message, retry_backoff_ms=backoff_ms)
        self.backoff_ms = backoff_ms


class DeadLetter(JobFailed):
    """Kafka: nack the record with ``dead_letter``: skiff writes it to the
    dead-letter topic at once. In a job function: fail with retries 0."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retries=0)


class ProtocolError(Exception):
    """skiff refused the handshake (an ``error`` frame answered ``hello``)."""


class CallError(Exception):
    """An extend or call failed; ``code`` says why (see the module docstring)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Job:
    """Zeebe metadata of a task (the ``zeebe`` member of the task frame)."""

    key: str = ""
    process_instance_key: str = ""
    bpmn_process_id: str = ""
    process_definition_version: int = 0
    element_id: str = ""
    retries: int = 0
    worker: str = ""
    process_definition_key: Optional[str] = None
    element_instance_key: Optional[str] = None
    tenant_id: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Job":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(frozen=True)
class Record:
    """Kafka metadata of a task (the ``kafka`` member of the task frame).

    ``key`` is None without a key or when it is not valid UTF-8 (then
    ``key_base64`` holds it); headers whose value is not valid UTF-8 are in
    ``headers_base64``; ``timestamp`` (epoch ms) is None when the record has none.
    """

    topic: str = ""
    partition: int = 0
    offset: int = 0
    key: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    timestamp: Optional[int] = None
    schema_id: int = 0
    key_base64: Optional[str] = None
    headers_base64: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Record":
        return cls(**{k: v for k, v in d.items() if k in _RECORD_FIELDS and v is not None})


@dataclass(eq=False)
class Task:
    """One task as received from skiff: a Zeebe job (``source == "zeebe"``:
    ``job_type``, ``variables``, ``headers``, ``job``) or a Kafka record
    (``source == "kafka"``: ``topic``, ``value``, ``record``).

    ``deadline`` is updated by :meth:`extend`; ``cancelled`` is set (and
    ``cancel_reason`` filled) when skiff cancels the task.
    """

    id: str
    source: str
    job_type: str
    variables: Dict[str, Any]
    headers: Dict[str, Any]
    deadline: int
    attempt: int = 1
    traceparent: Optional[str] = None
    job: Optional[Job] = None
    topic: str = ""
    value: Any = None
    record: Optional[Record] = None
    frame: Dict[str, Any] = field(default_factory=dict, repr=False)
    cancel_reason: Optional[str] = None
    _cancelled: Optional[threading.Event] = field(default=None, repr=False)
    _conn: Optional["_Connection"] = field(default=None, repr=False)
    _aio: Any = field(default=None, repr=False)  # (loop, asyncio.Task) of an async function

    @property
    def cancelled(self) -> threading.Event:
        """Set when skiff cancels the task (made on first use: most tasks never need it)."""
        event = self._cancelled
        if event is None:
            with _EVENT_LOCK:
                if self._cancelled is None:
                    self._cancelled = threading.Event()
                event = self._cancelled
        return event

    @property
    def route(self) -> str:
        """The job type (Zeebe) or topic (Kafka) that picks the function."""
        return self.topic if self.source == "kafka" else self.job_type

    async def wait_cancelled(self, timeout: Optional[float] = None) -> bool:
        """For ``async def`` functions: wait until skiff cancels the task (True) or
        ``timeout`` seconds pass (False). A cancel also cancels the function's coroutine,
        so any ``await`` raises ``asyncio.CancelledError``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.cancelled.is_set():
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @classmethod
    def from_frame(cls, f: Dict[str, Any]) -> "Task":
        """The task of a frame; TypeError/ValueError when a member has the wrong type."""
        g = f.get
        source, kafka = g("source", "zeebe"), g("kafka")
        if source == "kafka" and type(kafka) is dict and _kafka_frame_ok(f, kafka):
            task = cls.__new__(cls)  # every field set here: the generated __init__'s work, faster
            task.__dict__.update(
                id=f["id"], source="kafka", job_type=g("job_type", ""),
                variables=g("variables") or {}, headers=g("headers") or {},
                deadline=g("deadline", 0), attempt=g("attempt", 1),
                traceparent=g("traceparent"), job=None, topic=g("topic", ""), value=g("value"),
                record=_record(kafka), frame=f, cancel_reason=None, _cancelled=None, _conn=None,
                _aio=None)
            return task
        _check_task_frame(f)
        zeebe = g("zeebe")
        task = cls.__new__(cls)
        task.__dict__.update(
            id=f["id"], source=source,
            job_type=g("job_type", ""),
            variables=g("variables") or {}, headers=g("headers") or {},
            deadline=int(g("deadline", 0)), attempt=int(g("attempt", 1)),
            traceparent=g("traceparent"),
            job=Job.from_dict(zeebe) if isinstance(zeebe, dict) else None,
            topic=g("topic", ""), value=g("value"),
            record=Record.from_dict(kafka) if isinstance(kafka, dict) else None,
            frame=f, cancel_reason=None, _cancelled=None, _conn=None, _aio=None,
        )
        return task

    def seconds_left(self) -> float:
        """Seconds until the task's deadline (negative once it has passed)."""
        return self.deadline / 1000.0 - time.time()

    def extend(self, timeout_ms: int) -> int:
        """Set the job's deadline to now + ``timeout_ms``; returns the new
        deadline (epoch ms). Blocks until skiff answers; raises
        :class:`CallError`, or ValueError if ``timeout_ms`` is not an int >= 1."""
        conn, members = self._extend_request(timeout_ms)
        self.deadline = int(conn.request("extend", members, task=self)["deadline"])
        return self.deadline

    async def extend_async(self, timeout_ms: int) -> int:
        """:meth:`extend` for an ``async def`` function."""
        conn, members = self._extend_request(timeout_ms)
        self.deadline = int((await conn.request_async("extend", members, task=self))["deadline"])
        return self.deadline

    def _extend_request(self, timeout_ms: int) -> "tuple[_Connection, Dict[str, Any]]":
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1:
            raise ValueError(f"timeout_ms must be an int >= 1, not {timeout_ms!r}")
        conn = self._attached()
        if self.source == "kafka" and "kafka_extend" not in conn.features:
            raise CallError("unsupported", "a Kafka task cannot be extended by this skiff")
        if "extend" not in conn.features:
            raise CallError("unsupported", "skiff does not support extend")
        return conn, {"id": self.id, "timeout_ms": timeout_ms}

    def publish_message(self, name: str, correlation_key: str = "",
                        variables: Optional[Dict[str, Any]] = None, time_to_live_ms: int = 0,
                        message_id: Optional[str] = None,
                        tenant_id: Optional[str] = None,
                        traceparent: Optional[str] = None) -> Dict[str, Any]:
        """Publish a Zeebe message through skiff; returns ``{"key", "tenant_id"}``.
        ``traceparent`` (e.g. ``task.traceparent``) names the span the message comes from:
        the jobs it leads to continue that trace. Blocks until skiff answers; raises
        :class:`CallError`."""
        return self._attached().call("publish_message", _message_params(
            name, correlation_key, variables, time_to_live_ms, message_id, tenant_id,
            traceparent))

    async def publish_message_async(self, name: str, correlation_key: str = "",
                                    variables: Optional[Dict[str, Any]] = None,
                                    time_to_live_ms: int = 0, message_id: Optional[str] = None,
                                    tenant_id: Optional[str] = None,
                                    traceparent: Optional[str] = None) -> Dict[str, Any]:
        """:meth:`publish_message` for an ``async def`` function."""
        return await self._attached().call_async("publish_message", _message_params(
            name, correlation_key, variables, time_to_live_ms, message_id, tenant_id,
            traceparent))

    def produce(self, topic: str, value: Any, key: Optional[str] = None,
                headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """Write a Kafka record through skiff (``value`` encoded to Avro with the
        latest schema of ``<topic>-value``); returns ``{"topic", "partition",
        "offset", "schema_id"}`` once the broker confirmed it. Blocks; raises
        :class:`CallError`."""
        return self._attached().call("produce", _produce_params(topic, value, key, headers))

    async def produce_async(self, topic: str, value: Any, key: Optional[str] = None,
                            headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """:meth:`produce` for an ``async def`` function."""
        return await self._attached().call_async("produce",
                                                 _produce_params(topic, value, key, headers))

    def secret(self, reference: str) -> str:
        """Read a secret the pod may read (handler.secrets), e.g.
        ``"vault:secret/app/db#password"``; returns its value. Blocks; raises
        :class:`CallError` (``forbidden``, ``not_found``, ``unavailable``,
        ``invalid_params``)."""
        return self._attached().call("secret", _secret_params(reference))["value"]

    async def secret_async(self, reference: str) -> str:
        """:meth:`secret` for an ``async def`` function."""
        return (await self._attached().call_async("secret", _secret_params(reference)))["value"]

    def token(self, audience: str) -> str:
        """An OAuth2 access token for an audience the pod may use
        (handler.token_audiences); skiff caches and refreshes it. Blocks; raises
        :class:`CallError` (``forbidden``, ``unavailable``, ``invalid_params``)."""
        return self._attached().call("token", _token_params(audience))["access_token"]

    async def token_async(self, audience: str) -> str:
        """:meth:`token` for an ``async def`` function."""
        return (await self._attached().call_async("token",
                                                  _token_params(audience)))["access_token"]

    def _attached(self) -> "_Connection":
        if self._conn is None:
            raise CallError("closed", f"task {self.id} did not come from a skiff connection")
        return self._conn


_TASK_MEMBERS = {"id": str, "source": str, "job_type": str, "topic": str, "deadline": int,
                 "attempt": int, "traceparent": str, "variables": dict, "headers": dict,
                 "zeebe": dict, "kafka": dict}
_KAFKA_MEMBERS = {"topic": str, "partition": int, "offset": int, "schema_id": int,
                  "timestamp": int, "headers": dict, "headers_base64": dict}


_RECORD_FIELDS = frozenset(Record.__dataclass_fields__)
_EVENT_LOCK = threading.Lock()


def _check_members(obj: Dict[str, Any], types: Dict[str, type], where: str) -> None:
    """TypeError naming the first known member of the wrong type (a bool is no int)."""
    for name, v in obj.items():
        kind = types.get(name)
        if kind is None or type(v) is kind or v is None:  # the common case, one type check
            continue
        if not isinstance(v, kind) or isinstance(v, bool):
            raise TypeError(f"{where}{name} must be {kind.__name__}, not {type(v).__name__}")


def _kafka_frame_ok(f: Dict[str, Any], kafka: Dict[str, Any]) -> bool:
    """True when a Kafka task frame has every member of its exact type (what skiff sends);
    anything else takes the general checks, which name what is wrong."""
    g, k = f.get, kafka.get
    tid = g("id")
    return (type(tid) is str and tid != "" and type(g("topic", "")) is str
            and type(g("deadline", 0)) is int and type(g("attempt", 1)) is int
            and type(g("traceparent", "")) is str and type(g("job_type", "")) is str
            and type(g("variables", _D)) is dict and type(g("headers", _D)) is dict
            and type(g("zeebe", _D)) is dict
            and type(k("topic", "")) is str and type(k("partition", 0)) is int
            and type(k("offset", 0)) is int and type(k("schema_id", 0)) is int
            and type(k("timestamp", 0)) in _INT_OR_NONE and type(k("headers", _D)) is dict
            and type(k("headers_base64", _D)) is dict)


def _record(k: Dict[str, Any]) -> Record:
    """:meth:`Record.from_dict` for a checked ``kafka`` member, without the dataclass's
    frozen __init__ (one object.__setattr__ per field)."""
    g = k.get
    rec = _new_record(Record)
    rec.__dict__.update(
        topic=g("topic") or "", partition=g("partition") or 0, offset=g("offset") or 0,
        key=g("key"), headers=g("headers") or {}, timestamp=g("timestamp"),
        schema_id=g("schema_id") or 0, key_base64=g("key_base64"),
        headers_base64=g("headers_base64") or {})
    return rec


_D: Dict[str, Any] = {}
_INT_OR_NONE = (int, type(None))
_new_record = object.__new__


def _check_task_frame(f: Dict[str, Any]) -> None:
    check = _check_members
    check(f, _TASK_MEMBERS, "")
    if not f.get("id"):
        raise ValueError("id must be a non-empty string")
    if f.get("source", "zeebe") not in ("zeebe", "kafka"):
        raise ValueError(f"unknown source {f.get('source')!r}")
    if isinstance(f.get("kafka"), dict):
        check(f["kafka"], _KAFKA_MEMBERS, "kafka.")


def _message_params(name: str, correlation_key: str, variables: Optional[Dict[str, Any]],
                    time_to_live_ms: int, message_id: Optional[str],
                    tenant_id: Optional[str],
                    traceparent: Optional[str] = None) -> Dict[str, Any]:
    params: Dict[str, Any] = {"name": name, "correlation_key": correlation_key,
                              "time_to_live_ms": time_to_live_ms}
    optional = {"variables": variables, "message_id": message_id, "tenant_id": tenant_id,
                "traceparent": traceparent}
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def _secret_params(reference: str) -> Dict[str, Any]:
    if not isinstance(reference, str) or not reference:
        raise ValueError(f"reference must be a non-empty str, not {reference!r}")
    return {"reference": reference}


def _token_params(audience: str) -> Dict[str, Any]:
    if not isinstance(audience, str) or not audience:
        raise ValueError(f"audience must be a non-empty str, not {audience!r}")
    return {"audience": audience}


def _produce_params(topic: str, value: Any, key: Optional[str],
                    headers: Optional[Dict[str, str]]) -> Dict[str, Any]:
    params: Dict[str, Any] = {"topic": topic, "value": value}
    optional = {"key": key, "headers": headers}
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def encode_frame(frame: Dict[str, Any]) -> bytes:
    """Encode one frame: 4-byte big-endian length, then compact UTF-8 JSON."""
    data = json.dumps(frame, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")
    return struct.pack(">I", len(data)) + data


class _Pending:
    """A request waiting for its reply (or for a local failure): a blocked thread waits on
    ``done``, a coroutine on ``on_done`` (called once, from the thread that resolves it)."""

    def __init__(self, task: Optional[Task],
                 on_done: Optional[Callable[[Dict[str, Any]], None]] = None) -> None:
        self.task = task
        self.reply: Dict[str, Any] = {}
        self.done = threading.Event()
        self.on_done = on_done

    def finish(self, reply: Dict[str, Any]) -> None:
        self.reply = reply
        self.done.set()
        if self.on_done is not None:
            self.on_done(reply)


def _failure(code: str, message: str) -> Dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def _reply_result(reply: Dict[str, Any]) -> Dict[str, Any]:
    """A reply's result, or :class:`CallError` with its error."""
    if reply.get("ok") is True:
        result = reply.get("result")
        return result if isinstance(result, dict) else {}
    error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
    raise CallError(str(error.get("code", "rejected")), str(error.get("message", "")))


_RESULTS_OPEN = b'{"type":"results","results":['
_CHUNK = 16  # results per write while a batch is still being worked through
_READ = 262144  # bytes per socket read
_SKIP: Dict[str, Any] = {"type": ""}  # recv's answer for a frame to ignore


class _Connection:
    """One socket and its session state.

    The reader thread reads frames; writes are locked. ``cond`` guards the
    session state: ``open`` (tasks owing a result that skiff may still cancel),
    ``in_flight`` (results owed and not yet sent), ``running`` (job functions
    still running, cancelled ones included) and the pending requests.
    """

    def __init__(self, sock: Optional[socket.socket],
                 stream: Optional["tuple[asyncio.StreamReader, asyncio.StreamWriter]"] = None
                 ) -> None:
        self.sock = sock
        # run_async: the connection is an asyncio stream read on the loop; other threads
        # write through the loop
        self.loop = asyncio.get_running_loop() if stream is not None else None
        self.reader, self.writer = stream if stream is not None else (None, None)
        self._loop_thread = threading.get_ident()
        self.max_frame = DEFAULT_MAX_FRAME
        self.features: frozenset = frozenset()
        self.methods: frozenset = frozenset()
        # socket writes: frames queue in _out; one thread at a time (_flushing) sends all
        # that is queued in one sendall, so results finishing together share a system call
        self._wcond = threading.Condition()
        self._out: "List[tuple[bytes, bool]]" = []  # (frame, is a result)
        self._flushing = False
        self._corked = False
        self.chunk = _CHUNK  # results held before they leave (pool) or sent amid a batch (inline)
        self.inline_reader: Optional[int] = None  # the reading thread, when it runs functions
        self.lock = threading.RLock()  # cond's lock: a `with` cheaper than the Condition's
        self.cond = threading.Condition(self.lock)
        self.open: Dict[str, Task] = {}
        self.in_flight = 0
        self.running = 0
        self.draining = False
        self.closed = False
        self._pending: Dict[str, _Pending] = {}
        self._refs = itertools.count(1)
        self._rbuf = bytearray()

    def _read_exact(self, n: int) -> Optional[bytes]:
        """n bytes from the socket (read ahead in large chunks), None at EOF."""
        while len(self._rbuf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._rbuf)))
            if not chunk:
                return None
            self._rbuf += chunk
        out = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        return out

    def recv_batch(self) -> Optional[List[Dict[str, Any]]]:
        """Every complete frame the read buffer holds (one read of up to ``_READ`` bytes when
        it holds none), None when the connection is closed or the framing is lost (after the
        frames before the bad length). A frame whose body is not a JSON object with a type
        is ``_SKIP``."""
        frames: List[Dict[str, Any]] = []
        buf = self._rbuf
        parse = self._parse
        while True:
            pos, end = 0, len(buf)
            with memoryview(buf) as view:
                while end - pos >= 4:
                    n = int.from_bytes(view[pos:pos + 4], "big")
                    if n == 0 or n > self.max_frame:
                        break
                    if end - pos - 4 < n:
                        break
                    frames.append(parse(view[pos + 4:pos + 4 + n]))
                    pos += 4 + n
            del buf[:pos]
            if len(buf) >= 4:
                n = int.from_bytes(buf[:4], "big")
                if n == 0 or n > self.max_frame:
                    if not frames:
                        self._length_ok(bytes(buf[:4]))  # logs it
                        return None
                    return frames
            if frames:
                return frames
            try:
                chunk = self.sock.recv(_READ)
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk

    def recv(self) -> Optional[Dict[str, Any]]:
        """Next frame, None when the connection is closed (or the framing is lost), or
        ``_SKIP`` for a frame whose body is not a JSON object with a type (ignored)."""
        try:
            head = self._read_exact(4)
            if head is None or not self._length_ok(head):
                return None
            body = self._read_exact(struct.unpack(">I", head)[0])
        except OSError:
            return None
        return None if body is None else self._parse(body)

    async def arecv(self) -> Optional[Dict[str, Any]]:
        """:meth:`recv` on the asyncio stream."""
        try:
            head = await self.reader.readexactly(4)
            if not self._length_ok(head):
                return None
            body = await self.reader.readexactly(struct.unpack(">I", head)[0])
        except (asyncio.IncompleteReadError, OSError):
            return None
        return self._parse(body)

    def _length_ok(self, head: bytes) -> bool:
        (n,) = struct.unpack(">I", head)
        if n == 0 or n > self.max_frame:
            log.error("skiff sent a frame of %d bytes (max %d); closing", n, self.max_frame)
            return False
        return True

    @staticmethod
    def _parse(body: "bytes | memoryview") -> Dict[str, Any]:
        try:
            frame = json.loads(str(body, "utf-8"))
        except ValueError as e:
            log.error("skiff sent an undecodable frame (%s); ignoring it", e)
            return _SKIP
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            log.error("skiff sent a frame that is not an object with a string type; ignoring it")
            return _SKIP
        return frame

    def send(self, frame: Dict[str, Any]) -> bool:
        return self._send_data(encode_frame(frame))

    def on_loop(self) -> bool:
        """True on the thread of run_async's event loop (where blocking would deadlock)."""
        return self.loop is not None and threading.get_ident() == self._loop_thread

    def _send_data(self, data: bytes, result: bool = False) -> bool:
        """Queues one encoded frame; ``result``: a result frame, which may travel with the
        results queued next to it in one ``results`` frame (1.4, welcome feature "batch")."""
        if self.writer is not None:
            if self.closed or self.writer.is_closing():
                return False
            if self.on_loop():
                self.writer.write(data)
            else:
                self.loop.call_soon_threadsafe(self._write, data)
            return True
        with self._wcond:
            self._out.append((data, result))
            if self._corked or self._flushing:
                return True  # the thread that holds the writes sends it
            self._flushing = True
        return self._send_queued()

    def send_results(self, datas: List[bytes], hold: bool = False) -> None:
        """Queues encoded result frames (sent as :meth:`_send_data` sends one)."""
        if self.writer is not None:
            for data in datas:
                self._send_data(data, result=True)
            return
        with self._wcond:
            self._out.extend([(data, True) for data in datas])
            if (self._corked or self._flushing or not self._out
                    or (hold and len(self._out) < self.chunk)):
                return
            self._flushing = True
        self._send_queued()

    def flush(self, force: bool = False) -> None:
        """Sends what is queued (``force``: also while corked) unless another thread is
        sending already (it sends it)."""
        if self.writer is not None:
            return
        with self._wcond:
            if not self._out or self._flushing or (self._corked and not force):
                return
            self._flushing = True
        self._send_queued(force)

    def _send_queued(self, force: bool = False) -> bool:
        """Sends what is queued until nothing is (the caller set ``_flushing``)."""
        ok = True
        while True:
            with self._wcond:
                if not self._out or (self._corked and not force):
                    self._flushing = False
                    self._wcond.notify_all()
                    return ok
                data = self._pack(self._out) if len(self._out) > 1 else self._out[0][0]
                self._out.clear()
            try:
                self.sock.sendall(data)
            except OSError as e:
                log.debug("send failed: %s", e)
                ok = False

    def _pack(self, queued: "List[tuple[bytes, bool]]") -> bytes:
        """The queued frames as bytes for one write; with feature "batch" every run of
        results becomes one ``results`` frame (within max_frame), in the queued order."""
        if "batch" not in self.features:
            return b"".join(data for data, _ in queued)
        out: List[bytes] = []
        run: List[bytes] = []
        size = len(_RESULTS_OPEN) + 2

        def close_run() -> None:
            if len(run) == 1:
                out.append(run[0])
            elif run:
                body = _RESULTS_OPEN + b",".join(r[4:] for r in run) + b"]}"
                out.append(len(body).to_bytes(4, "big") + body)
            run.clear()

        for data, result in queued:
            if not result or (run and size + len(data) - 3 > self.max_frame):
                close_run()
                size = len(_RESULTS_OPEN) + 2
            if result:
                run.append(data)
                size += len(data) - 3  # the body and a comma
            else:
                out.append(data)
        close_run()
        return b"".join(out)

    def cork(self) -> None:
        """Hold socket writes until :meth:`uncork` (the frames of one batch leave at once)."""
        with self._wcond:
            self._corked = True

    def uncork(self) -> None:
        """Send what was held, and what others queue meanwhile."""
        with self._wcond:
            self._corked = False
            while self._flushing:
                self._wcond.wait()
            self._flushing = True
        self._send_queued()

    def _write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def call(self, method: str, params: Dict[str, Any]) -> Dict[str, Any]:
        self._check_method(method)
        return self.request("call", {"method": method, "params": params})

    async def call_async(self, method: str, params: Dict[str, Any]) -> Dict[str, Any]:
        self._check_method(method)
        return await self.request_async("call", {"method": method, "params": params})

    def _check_method(self, method: str) -> None:
        if method not in self.methods:
            raise CallError("unsupported", f"skiff does not offer the method {method}")

    def request(self, kind: str, members: Dict[str, Any],
                task: Optional[Task] = None) -> Dict[str, Any]:
        """Send a frame with a fresh ``ref`` and wait for its reply's result."""
        if self.on_loop():
            raise CallError("unsupported", "a blocking call on the event loop would never get "
                                           "its reply: await the *_async form")
        if self.inline_reader == threading.get_ident():
            raise CallError("unsupported", "a blocking call from an inline function would "
                                           "never get its reply: use Handler(inline=False)")
        pending = self.start_request(kind, members, _Pending(task))
        pending.done.wait()
        return _reply_result(pending.reply)

    async def request_async(self, kind: str, members: Dict[str, Any],
                            task: Optional[Task] = None) -> Dict[str, Any]:
        """:meth:`request` for a coroutine: awaits the reply on the running loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def deliver(reply: Dict[str, Any]) -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(reply))

        self.start_request(kind, members, _Pending(task, deliver))
        return _reply_result(await future)

    def start_request(self, kind: str, members: Dict[str, Any], pending: _Pending) -> _Pending:
        """Register ``pending`` under a fresh ref and send the frame (errors raise at once)."""
        task = pending.task
        with self.cond:
            if self.closed:
                raise CallError("closed", "not connected to skiff")
            if task is not None and task.cancelled.is_set():
                raise CallError("cancelled", f"task {task.id} was cancelled "
                                             f"({task.cancel_reason})")
            if task is not None and task.id not in self.open:
                raise CallError("closed", f"task {task.id} is no longer open")
            ref = str(next(self._refs))
            try:
                data = encode_frame({"type": kind, "ref": ref, **members})
            except (TypeError, ValueError) as e:
                raise CallError("invalid_params", f"not JSON-serialisable: {e}") from None
            if len(data) - 4 > self.max_frame:
                raise CallError("invalid_params", f"{kind} frame of {len(data) - 4} bytes "
                                                  f"exceeds max_frame {self.max_frame}")
            self._pending[ref] = pending
        if not self._send_data(data):
            self.resolve(ref, _failure("closed", "connection to skiff lost"))
        return pending

    def resolve(self, ref: str, reply: Dict[str, Any]) -> None:
        """Hand a reply to the request waiting for ``ref`` (if any)."""
        with self.cond:
            pending = self._pending.pop(ref, None)
        if pending is not None:
            pending.finish(reply)

    def cancel(self, task_id: str, reason: str) -> None:
        """skiff cancelled a task: wake its function and free its slot."""
        with self.cond:
            task = self.open.pop(task_id, None)
            if task is None:
                log.debug("cancel for task %s, which is not open", task_id)
                return
            task.cancel_reason = reason
            task.cancelled.set()
            if task._aio is not None:
                loop, aio = task._aio
                loop.call_soon_threadsafe(aio.cancel)
            failure = _failure("cancelled", f"task {task_id} was cancelled ({reason})")
            for ref, pending in list(self._pending.items()):
                if pending.task is task:
                    del self._pending[ref]
                    pending.finish(failure)
            self.result_done()

    def result_done(self) -> None:
        """One owed result less (sent or cancelled); caller holds ``cond``."""
        self.in_flight -= 1
        if self.draining and self.in_flight == 0:
            self.shutdown()

    def close(self) -> None:
        """The connection ended: fail the pending requests."""
        with self.cond:
            self.closed = True
            pending, self._pending = self._pending, {}
        for p in pending.values():
            p.finish(_failure("closed", "connection to skiff lost before the reply"))

    def shutdown(self) -> None:
        if self.writer is not None:
            self.loop.call_soon_threadsafe(self.writer.close)  # flushes what is queued first
            return
        self.uncork()  # what is queued leaves first
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Handler:
    """A handler process: registers job and topic functions and serves skiff's tasks."""

    def __init__(self, name: str, capacity: int = 1, *,
                 socket_path: Optional[str] = None, reconnect: bool = True,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0,
                 inline: bool = False, batch: bool = True) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.name = name
        self.capacity = capacity
        self.socket_path = socket_path or os.environ.get("SKIFF_SOCKET", DEFAULT_SOCKET)
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.inline = inline
        self.batch = batch
        self._async_fns: Dict[Any, bool] = {}  # function -> is a coroutine function
        self.session: Optional[str] = None
        self._jobs: Dict[str, JobFunction] = {}
        self._topics: Dict[str, JobFunction] = {}
        self._conn: Optional[_Connection] = None
        self._pool = _WorkerPool()
        self._stopping = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_lock = threading.RLock()
        self._loop_queue: List[Any] = []
        self._loop_woken = False

    def job(self, job_type: str) -> Callable[[JobFunction], JobFunction]:
        """Decorator: register ``fn(task)`` for a Zeebe job type."""
        def register(fn: JobFunction) -> JobFunction:
            self._jobs[job_type] = fn
            return fn
        return register

    def topic(self, topic: str) -> Callable[[JobFunction], JobFunction]:
        """Decorator: register ``fn(task)`` for the records of a Kafka topic."""
        def register(fn: JobFunction) -> JobFunction:
            self._topics[topic] = fn
            return fn
        return register

    @property
    def job_types(self) -> List[str]:
        return list(self._jobs)

    @property
    def topics(self) -> List[str]:
        return list(self._topics)

    def publish_message(self, name: str, correlation_key: str = "",
                        variables: Optional[Dict[str, Any]] = None, time_to_live_ms: int = 0,
                        message_id: Optional[str] = None,
                        tenant_id: Optional[str] = None) -> Dict[str, Any]:
        """Publish a Zeebe message on the current connection (same as
        :meth:`Task.publish_message`); raises :class:`CallError` (``closed``
        while not connected)."""
        conn = self._conn
        if conn is None:
            raise CallError("closed", "not connected to skiff")
        return conn.call("publish_message", _message_params(
            name, correlation_key, variables, time_to_live_ms, message_id, tenant_id))

    def produce(self, topic: str, value: Any, key: Optional[str] = None,
                headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """Write a Kafka record on the current connection (same as
        :meth:`Task.produce`); raises :class:`CallError` (``closed`` while not
        connected)."""
        conn = self._conn
        if conn is None:
            raise CallError("closed", "not connected to skiff")
        return conn.call("produce", _produce_params(topic, value, key, headers))

    async def publish_message_async(self, name: str, correlation_key: str = "",
                                    variables: Optional[Dict[str, Any]] = None,
                                    time_to_live_ms: int = 0, message_id: Optional[str] = None,
                                    tenant_id: Optional[str] = None) -> Dict[str, Any]:
        """:meth:`publish_message` for coroutines."""
        return await self._current().call_async("publish_message", _message_params(
            name, correlation_key, variables, time_to_live_ms, message_id, tenant_id))

    async def produce_async(self, topic: str, value: Any, key: Optional[str] = None,
                            headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """:meth:`produce` for coroutines."""
        return await self._current().call_async("produce",
                                                _produce_params(topic, value, key, headers))

    def secret(self, reference: str) -> str:
        """:meth:`Task.secret` on the current connection."""
        return self._current().call("secret", _secret_params(reference))["value"]

    async def secret_async(self, reference: str) -> str:
        """:meth:`secret` for coroutines."""
        return (await self._current().call_async("secret", _secret_params(reference)))["value"]

    def token(self, audience: str) -> str:
        """:meth:`Task.token` on the current connection."""
        return self._current().call("token", _token_params(audience))["access_token"]

    async def token_async(self, audience: str) -> str:
        """:meth:`token` for coroutines."""
        return (await self._current().call_async("token",
                                                 _token_params(audience)))["access_token"]

    def _current(self) -> "_Connection":
        conn = self._conn
        if conn is None:
            raise CallError("closed", "not connected to skiff")
        return conn

    def run(self) -> None:
        """Serve until skiff drains this handler.

        Reconnects with exponential backoff while skiff is unreachable or
        after a lost connection (unless ``reconnect=False``, then it returns).
        Raises :class:`ProtocolError` if skiff rejects the hello.
        """
        if not self._jobs and not self._topics:
            raise ValueError("register at least one job type or topic before run()")
        delay = self.backoff_initial
        self._stopping.clear()
        while not self._stopping.is_set():
            sock = self._connect()
            if sock is not None:
                welcomed, drained = self._serve(sock)
                if drained or self._stopping.is_set():
                    return
                if welcomed:
                    delay = self.backoff_initial
                log.warning("connection to skiff at %s lost", self.socket_path)
            if not self.reconnect:
                if sock is None:
                    raise ConnectionError(f"cannot connect to skiff at {self.socket_path}")
                return
            self._stopping.wait(delay)
            delay = min(delay * 2, self.backoff_max)

    def stop(self) -> None:
        """Make :meth:`run` return: closes the connection (skiff gives the tasks still in
        flight back at once) once the functions running now have returned."""
        self._stopping.set()
        conn = self._conn
        if conn is not None:
            conn.shutdown()

    async def run_async(self) -> None:
        """:meth:`run` as a coroutine (e.g. a FastAPI lifespan task): the connection is an
        asyncio stream of the caller's loop, and ``async def`` functions run on that loop
        (plain ones still on the worker pool). Cancelling it stops the handler
        (:meth:`stop`)."""
        if not self._jobs and not self._topics:
            raise ValueError("register at least one job type or topic before run_async()")
        with self._loop_lock:
            self._loop = asyncio.get_running_loop()
        delay = self.backoff_initial
        self._stopping.clear()
        try:
            while not self._stopping.is_set():
                conn = await self._aconnect()
                if conn is not None:
                    welcomed, drained = await self._aserve(conn)
                    if drained or self._stopping.is_set():
                        return
                    if welcomed:
                        delay = self.backoff_initial
                    log.warning("connection to skiff at %s lost", self.socket_path)
                if not self.reconnect:
                    if conn is None:
                        raise ConnectionError(f"cannot connect to skiff at {self.socket_path}")
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        except asyncio.CancelledError:  # the app shuts down: stop serving
            self.stop()
            raise

    async def _aconnect(self) -> Optional[_Connection]:
        try:
            stream = await asyncio.open_unix_connection(self.socket_path)
        except OSError as e:
            log.info("cannot connect to skiff at %s: %s", self.socket_path, e)
            return None
        return _Connection(None, stream)

    async def _aserve(self, conn: _Connection) -> "tuple[bool, bool]":
        """One session on the event loop; returns (welcomed, drained) once no function runs."""
        try:
            conn.send(self._hello())
            frame = await conn.arecv()
            while frame is _SKIP:
                frame = await conn.arecv()
            if frame is None or not self._welcomed(conn, frame):
                return False, False
            self._conn = conn
            try:
                while True:
                    frame = await conn.arecv()
                    if frame is None:
                        break
                    if frame is not _SKIP:
                        self._dispatch(conn, frame)
            finally:
                self._conn = None
                conn.close()
            while conn.running:  # functions still running (cancelled ones too)
                await asyncio.sleep(0.01)
            return True, conn.draining
        finally:
            conn.writer.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop for ``async def`` functions: run_async's, else one on its own thread."""
        with self._loop_lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="skiff-asyncio",
                                 daemon=True).start()
                self._loop = loop
            return self._loop

    def _connect(self) -> Optional[socket.socket]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
            return sock
        except OSError as e:
            log.info("cannot connect to skiff at %s: %s", self.socket_path, e)
            sock.close()
            return None

    def _serve(self, sock: socket.socket) -> "tuple[bool, bool]":
        """One session; returns (welcomed, drained) once no job function runs."""
        conn = _Connection(sock)
        try:
            if not self._handshake(conn):
                return False, False
            self._conn = conn
            try:
                drained = self._read_loop(conn)
            finally:
                self._conn = None
                conn.close()
            with conn.cond:
                while conn.running:
                    conn.cond.wait()
            return True, drained
        finally:
            sock.close()

    def _hello(self) -> Dict[str, Any]:
        hello: Dict[str, Any] = {"type": "hello", "version": PROTOCOL_VERSION,
                                 "name": self.name, "capacity": self.capacity}
        if self._jobs:
            hello["job_types"] = self.job_types
        if self._topics:
            hello["topics"] = self.topics
        hello["features"] = ["cancel", "batch"] if self.batch else ["cancel"]
        return hello

    def _handshake(self, conn: _Connection) -> bool:
        conn.send(self._hello())
        frame = conn.recv()
        while frame is _SKIP:
            frame = conn.recv()
        return frame is not None and self._welcomed(conn, frame)

    def _welcomed(self, conn: _Connection, frame: Dict[str, Any]) -> bool:
        """Takes skiff's answer to hello: True for a welcome; raises ProtocolError."""
        if frame["type"] == "error":
            raise ProtocolError(f"skiff refused hello: {frame.get('code')}: "
                                f"{frame.get('message')}")
        if frame["type"] != "welcome":
            log.error("expected welcome, got %s; closing", frame["type"])
            return False
        self.session = str(frame.get("session", ""))
        max_frame = frame.get("max_frame")
        if isinstance(max_frame, int) and max_frame > 0:
            conn.max_frame = max_frame
        conn.features = _names(frame.get("features"))
        conn.methods = _names(frame.get("methods"))
        log.info("connected to skiff, session %s", self.session)
        return True

    def _read_loop(self, conn: _Connection) -> bool:
        """Dispatch frames until the connection ends; True if it was drained."""
        if self.inline:
            conn.inline_reader = threading.get_ident()
        while True:
            frames = conn.recv_batch()
            if frames is None:
                return conn.draining
            if self.inline:
                conn.cork()
            try:
                for frame in frames:
                    if frame is not _SKIP:
                        self._dispatch(conn, frame)
            finally:
                if self.inline:
                    conn.uncork()

    def _dispatch(self, conn: _Connection, frame: Dict[str, Any]) -> None:
        """Handle one frame from skiff."""
        kind = frame["type"]
        if kind == "task":
            self._start_tasks(conn, [frame])
        elif kind == "tasks":
            tasks = frame.get("tasks")
            items = []
            for item in tasks if isinstance(tasks, list) else ():
                if type(item) is dict and item.get("type") == "task":
                    items.append(item)
                else:
                    log.error("skiff sent a tasks item that is not a task; ignoring it")
            self._start_tasks(conn, items)
        elif kind == "reply":
            conn.resolve(str(frame.get("ref", "")), frame)
        elif kind == "cancel":
            conn.cancel(str(frame.get("id", "")), str(frame.get("reason", "")))
        elif kind == "ping":
            conn.send({"type": "pong", "ref": frame.get("ref", "")})
        elif kind == "drain":
            log.info("skiff asks to drain; finishing tasks in flight")
            with conn.cond:
                conn.draining = True
                if conn.in_flight == 0:
                    conn.shutdown()
        elif kind == "error":
            log.error("skiff error %s: %s%s%s", frame.get("code"), frame.get("message"),
                      f" (task {frame['id']})" if "id" in frame else "",
                      f" (results item {frame['index']})" if "index" in frame else "")
        elif kind not in ("pong", "welcome"):
            log.warning("ignoring unknown frame type %r", kind)

    def _start_tasks(self, conn: _Connection, frames: List[Dict[str, Any]]) -> None:
        """Start the tasks of one frame: registered together, sync functions run inline or
        handed to the pool at once, async ones to their event loop."""
        tasks: List[Task] = []
        for frame in frames:
            try:
                tasks.append(Task.from_frame(frame))
            except (KeyError, TypeError, ValueError) as e:
                log.error("skiff sent a malformed task %r: %s", frame.get("id"), e)
                if isinstance(frame.get("id"), str) and frame["id"]:
                    kind = "nack" if frame.get("source") == "kafka" else "fail"
                    conn.send({"type": kind, "id": frame["id"],
                               "message": f"malformed task frame: {e}"})
        if not tasks:
            return
        with conn.lock:
            for task in tasks:
                task._conn = conn
                conn.open[task.id] = task
            conn.in_flight += len(tasks)
            conn.running += len(tasks)
        sync: List["tuple[Task, Optional[JobFunction]]"] = []
        for task in tasks:
            fn = (self._topics if task.source == "kafka" else self._jobs).get(task.route)
            is_async = self._async_fns.get(fn)
            if is_async is None:
                is_async = self._async_fns[fn] = inspect.iscoroutinefunction(fn)
            if not is_async:
                sync.append((task, fn))
            elif conn.loop is not None:
                conn.loop.create_task(self._run_async(conn, task, fn))  # run_async: its loop
            else:
                self._to_loop(conn, task, fn)
        if not sync:
            return
        if self.inline:
            self._run_inline(conn, sync)
        else:
            run = self._run_sync
            self._pool.submit_many([functools.partial(run, conn, task, fn) for task, fn in sync],
                                   conn.flush)

    def _run_inline(self, conn: _Connection, items: "List[tuple[Task, Optional[JobFunction]]]"
                    ) -> None:
        """Sync functions one after another on the reading thread; their results leave
        every ``conn.chunk`` tasks, so skiff sends more tasks while the rest run."""
        done: "List[tuple[Task, Optional[bytes]]]" = []
        answer, max_frame = self._answer, conn.max_frame
        for task, fn in items:
            try:
                done.append((task, answer(task, fn, max_frame)))
            except Exception:  # never lose the slot of a task
                log.exception("could not answer task %s", task.id)
                done.append((task, None))
            if len(done) >= conn.chunk:
                self._finish_many(conn, done)
                conn.flush(force=True)
                done = []
        if done:
            self._finish_many(conn, done)

    def _finish_many(self, conn: _Connection, done: "List[tuple[Task, Optional[bytes]]]",
                     hold: bool = False) -> None:
        """:meth:`_finish` for the encoded results of several tasks, under one lock;
        ``hold``: a pool thread's, sent by the pool's next flush (or with the
        ``conn.chunk``-th queued result)."""
        owed: "List[tuple[Task, Optional[bytes]]]" = []
        try:
            with conn.lock:
                pop = conn.open.pop
                owed = [(task, data) for task, data in done if pop(task.id, None) is task]
            conn.send_results([data for _, data in owed if data is not None], hold)
        except Exception:  # never let a worker die silently
            log.exception("could not answer %d tasks", len(done))
        finally:
            with conn.lock:
                for _ in owed:
                    conn.result_done()
                conn.running -= len(done)
                if conn.running == 0:  # _serve waits for it
                    conn.cond.notify_all()

    def _to_loop(self, conn: _Connection, task: Task, fn: JobFunction) -> None:
        """Hand an async task to the event loop; one wake-up serves every task queued
        before the loop gets to them."""
        with self._loop_lock:
            self._loop_queue.append((conn, task, fn))
            if self._loop_woken:
                return
            self._loop_woken = True
        self._event_loop().call_soon_threadsafe(self._start_queued)

    def _start_queued(self) -> None:
        with self._loop_lock:
            queued, self._loop_queue = self._loop_queue, []
            self._loop_woken = False
        loop = asyncio.get_running_loop()
        for conn, task, fn in queued:
            loop.create_task(self._run_async(conn, task, fn))

    def _run_sync(self, conn: _Connection, task: Task, fn: Optional[JobFunction]) -> None:
        """A sync function on a pool thread; its result is held for the pool's flush."""
        try:
            data: Optional[bytes] = self._answer(task, fn, conn.max_frame)
        except Exception:  # never lose the slot of a task
            log.exception("could not answer task %s", task.id)
            data = None
        self._finish_many(conn, [(task, data)], hold=True)

    def _answer(self, task: Task, fn: Optional[JobFunction], max_frame: int) -> bytes:
        """Run a sync function (an awaitable it returns runs to completion): the encoded
        result frame."""
        try:
            value = self._call(task, fn)
            if value is not None and inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
            if task.source == "kafka":
                return _ack_frame(task.id)
            result = self._result(task, value, None)
        except Exception as e:
            result = self._result(task, None, e)
        return self._encoded(result, max_frame)

    async def _run_async(self, conn: _Connection, task: Task, fn: JobFunction) -> None:
        """An ``async def`` function on the handler's event loop; skiff's cancel cancels it."""
        result: Optional[Dict[str, Any]] = None
        try:
            with conn.cond:
                task._aio = (asyncio.get_running_loop(), asyncio.current_task())
                if task.cancelled.is_set():  # cancelled before it started: its first await
                    task._aio[1].cancel()    # raises CancelledError
            result = self._result(task, await fn(task), None)
        except asyncio.CancelledError:
            if not task.cancelled.is_set():
                raise
        except Exception as e:
            result = self._result(task, None, e)
        finally:
            self._finish(conn, task, result)

    @staticmethod
    def _call(task: Task, fn: Optional[JobFunction]) -> Any:
        if fn is None:
            what = "topic" if task.source == "kafka" else "job type"
            raise JobFailed(f"no handler for {what} {task.route!r}")
        return fn(task)

    def _finish(self, conn: _Connection, task: Task, result: Optional[Dict[str, Any]]) -> None:
        """Send the result unless skiff cancelled the task; release its slot."""
        try:
            with conn.cond:
                owed = conn.open.pop(task.id, None) is task
            if owed and result is not None:
                conn._send_data(self._encoded(result, conn.max_frame), result=True)
        except Exception:  # never let a worker die silently
            log.exception("could not answer task %s", task.id)
        finally:
            with conn.cond:
                if owed:
                    conn.result_done()
                conn.running -= 1
                conn.cond.notify_all()

    def _result(self, task: Task, value: Any, exc: Optional[BaseException]) -> Dict[str, Any]:
        """The result frame for a function's return value or exception."""
        if task.source == "kafka":
            return _record_result(task, exc)
        if exc is None and value is not None and not isinstance(value, dict):
            exc = TypeError(f"job function returned {type(value).__name__}, "
                            "expected a dict or None")
        if exc is None:
            return _with_variables({"type": "complete", "id": task.id}, value)
        if isinstance(exc, BpmnError):
            out = {"type": "bpmn_error", "id": task.id, "code": exc.code}
            if exc.message:
                out["message"] = exc.message
            return _with_variables(out, exc.variables)
        if isinstance(exc, JobFailed):
            out = {"type": "fail", "id": task.id, "message": exc.message}
            if exc.retries is not None:
                out["retries"] = int(exc.retries)
            if exc.retry_backoff_ms is not None:
                out["retry_backoff_ms"] = int(exc.retry_backoff_ms)
            return _with_variables(out, exc.variables)
        log.warning("task %s failed: %s: %s", task.id, type(exc).__name__, exc, exc_info=exc)
        return {"type": "fail", "id": task.id, "message": f"{type(exc).__name__}: {exc}",
                "error": error_info(exc)}

    @staticmethod
    def _encoded(result: Dict[str, Any], max_frame: int) -> bytes:
        """The result's frame; a fail (a nack, keeping its other members, for a Kafka
        task) instead when it cannot be encoded or is too large."""
        def failed(message: str) -> bytes:
            if result["type"] == "nack":  # keeps its backoff or dead letter, not its error
                kept = {k: v for k, v in result.items() if k != "error"}
                return encode_frame({**kept, "message": message})
            kind = "nack" if result["type"] == "ack" else "fail"
            return encode_frame({"type": kind, "id": result["id"], "message": message})

        if len(result) == 2 and result["type"] == "ack":  # the common case, without json.dumps
            return _ack_frame(result["id"])
        variables = result.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return failed(f"variables must be a dict, not {type(variables).__name__}")
        try:
            data = encode_frame(result)
        except (TypeError, ValueError) as e:
            return failed(f"result is not JSON-serialisable: {e}")
        if len(data) - 4 > max_frame:
            return failed(f"result frame of {len(data) - 4} bytes exceeds max_frame {max_frame}")
        return data


def _ack_frame(task_id: str) -> bytes:
    """The encoded ack of a task, from a template (json.dumps costs more than the rest)."""
    body = b'{"type":"ack","id":' + _json_string(task_id).encode() + b"}"
    return len(body).to_bytes(4, "big") + body


_json_string = json.encoder.encode_basestring_ascii  # a str as a JSON string, as json.dumps


def _record_result(task: Task, exc: Optional[BaseException]) -> Dict[str, Any]:
    """ack, or the nack for a topic function's exception."""
    if exc is None:
        return {"type": "ack", "id": task.id}
    if isinstance(exc, DeadLetter):
        return {"type": "nack", "id": task.id, "message": exc.message, "dead_letter": True}
    if isinstance(exc, JobFailed):  # Retry too
        out: Dict[str, Any] = {"type": "nack", "id": task.id, "message": exc.message}
        if exc.retry_backoff_ms is not None:
            out["retry_backoff_ms"] = int(exc.retry_backoff_ms)
        return out
    log.warning("task %s failed: %s: %s", task.id, type(exc).__name__, exc, exc_info=exc)
    return {"type": "nack", "id": task.id, "message": f"{type(exc).__name__}: {exc}",
            "error": error_info(exc)}


def error_info(exc: BaseException, limit: int = 64) -> Dict[str, Any]:
    """The structured ``error`` of a fail or nack frame (SPEC §4.2): type, message and the
    stack, innermost frame first, without the SDK's own dispatching frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    while len(frames) > 1 and frames[0].filename == __file__:
        frames = frames[1:]
    stack = [{"file": f.filename, "line": f.lineno or 0, "function": f.name}
             for f in reversed(frames)]
    return {"type": type(exc).__name__, "message": str(exc), "stack": stack[:limit]}


class _WorkerPool:
    """Threads for sync functions, reused from task to task and woken sparingly.

    Jobs wait in one queue. While functions return fast, the thread that runs one takes the
    next itself (no hand-off, no GIL ping-pong) and holds its results until it takes the last
    queued job or finds none (``flush``, the last ``submit_many``'s, sends them). One idle
    thread watches meanwhile: when the oldest job has waited ``patience`` seconds (a function
    blocks), it flushes, takes that job and wakes idle threads for the others, and the next
    idle thread watches. While most functions take over ``_SLOW`` seconds (they block), every
    job wakes an idle thread at once and every result leaves at once. A thread is added only
    when none is idle: never more than the most jobs that ran at once (``capacity``, plus
    cancelled ones that had not returned yet) and a watcher.
    """

    def __init__(self, patience: float = 0.01) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._jobs: "Deque[tuple[float, Callable[[], None]]]" = deque()
        self._idle = 0  # threads waiting for a job (or starting)
        self._busy = 0  # threads running jobs
        self._watching = False
        self._summoned = False  # a thread was woken (or started) to watch
        self._slow = 0.0  # share of recent jobs that took over _SLOW (moving average)
        self.patience = patience  # above the GIL's switch interval: a fast job never waits it
        self.threads = 0
        self.flush: Optional[Callable[[], None]] = None

    def submit(self, job: Callable[[], None]) -> None:
        self.submit_many([job])

    def submit_many(self, jobs: "List[Callable[[], None]]",
                    flush: Optional[Callable[[], None]] = None) -> None:
        now = time.monotonic()
        with self._cond:
            if flush is not None:
                self.flush = flush
            self._jobs.extend([(now, job) for job in jobs])
            if self._slow > 0.5:  # blocking functions: a thread each, now
                self._wake(len(jobs))
            elif self._idle == 0:
                self._spawn()
            elif self._busy == 0 or not self._watching:
                self._cond.notify()

    def _wake(self, n: int) -> None:
        """Idle threads for ``n`` jobs, new ones for the rest (caller holds the lock)."""
        woken = min(n, self._idle)
        self._cond.notify(woken)
        for _ in range(n - woken):
            self._spawn()

    def _spawn(self) -> None:
        """A new thread (caller holds the lock); it counts as idle until it takes a job."""
        self.threads += 1
        self._idle += 1
        threading.Thread(target=self._work, name=f"skiff-worker-{self.threads}",
                         daemon=True).start()

    def _work(self) -> None:
        cond, jobs = self._cond, self._jobs
        with cond:
            while True:
                self._summoned = False  # whoever was summoned is here (or another thread)
                late = jobs and time.monotonic() - jobs[0][0] >= self.patience
                if jobs and (self._busy == 0 or self._slow > 0.5 or late):
                    if late and len(jobs) > 1:
                        self._wake(min(len(jobs) - 1, self._idle))  # the others are late too
                    self._idle -= 1
                    self._busy += 1
                    self._run_jobs()
                    self._busy -= 1
                    self._idle += 1
                elif jobs and self._busy and not self._watching:
                    self._watching = True
                    woken = cond.wait(self.patience)
                    self._watching = False
                    if not woken:
                        self._unlocked(self.flush)  # results a blocked thread held
                else:
                    cond.wait()

    def _run_jobs(self) -> None:
        """Run queued jobs until none is left (caller holds the lock, held again on return)."""
        jobs = self._jobs
        while jobs:
            job = jobs.popleft()[1]
            flush = None
            if not jobs:
                flush = self.flush  # what this thread held leaves before the last job runs
            elif not self._watching and not self._summoned:
                self._summoned = True  # the thread woken (or started) watches
                if self._idle:
                    self._cond.notify()
                else:
                    self._spawn()
            self._cond.release()
            try:
                if flush is not None:
                    flush()
                start = time.monotonic()
                job()
                slow = time.monotonic() - start > _SLOW
            except Exception:  # never let a worker die silently
                log.exception("a worker job failed")
                slow = False
            finally:
                self._cond.acquire()
            self._slow += (slow - self._slow) / 16
            if self._slow > 0.5:
                self._unlocked(self.flush)  # blocking functions: no result waits for the next
        self._unlocked(self.flush)

    def _unlocked(self, fn: Optional[Callable[[], None]]) -> None:
        """Call ``fn`` without the lock (caller holds it)."""
        if fn is None:
            return
        self._cond.release()
        try:
            fn()
        except Exception:
            log.exception("flushing results failed")
        finally:
            self._cond.acquire()


_SLOW = 0.001  # a job that takes longer blocks (a GIL wait rarely makes a fast one as slow)


def _names(value: Any) -> frozenset:
    """The strings of a welcome's ``features`` or ``methods`` (absent: none)."""
    if not isinstance(value, list):
        return frozenset()
    return frozenset(v for v in value if isinstance(v, str))


async def _awaited(value: Any) -> Any:
    return await value


def _with_variables(frame: Dict[str, Any], variables: Any) -> Dict[str, Any]:
    if variables is not None:
        frame["variables"] = variables
    return frame
