"""The SDK's errors, the task and its metadata, and frame encoding (see the package's
docstring for how they are used)."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

if TYPE_CHECKING:
    from ._connection import _Connection

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
    tracestate: Optional[str] = None
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
                traceparent=g("traceparent"), tracestate=g("tracestate"), job=None,
                topic=g("topic", ""), value=g("value"),
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
            traceparent=g("traceparent"), tracestate=g("tracestate"),
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
                        traceparent: Optional[str] = None,
                        tracestate: Optional[str] = None) -> Dict[str, Any]:
        """Publish a Zeebe message through skiff; returns ``{"key", "tenant_id"}``.
        ``traceparent`` (e.g. ``task.traceparent``) names the span the message comes from:
        the jobs it leads to continue that trace; ``tracestate`` (e.g. ``task.tracestate``)
        is the W3C tracestate that goes with it. Blocks until skiff answers; raises
        :class:`CallError`."""
        return self._attached().call("publish_message", _message_params(
            name, correlation_key, variables, time_to_live_ms, message_id, tenant_id,
            traceparent, tracestate))

    async def publish_message_async(self, name: str, correlation_key: str = "",
                                    variables: Optional[Dict[str, Any]] = None,
                                    time_to_live_ms: int = 0, message_id: Optional[str] = None,
                                    tenant_id: Optional[str] = None,
                                    traceparent: Optional[str] = None,
                                    tracestate: Optional[str] = None) -> Dict[str, Any]:
        """:meth:`publish_message` for an ``async def`` function."""
        return await self._attached().call_async("publish_message", _message_params(
            name, correlation_key, variables, time_to_live_ms, message_id, tenant_id,
            traceparent, tracestate))

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
                 "attempt": int, "traceparent": str, "tracestate": str,
                 "variables": dict, "headers": dict,
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
            and type(g("traceparent", "")) is str and type(g("tracestate", "")) is str
            and type(g("job_type", "")) is str
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
                    traceparent: Optional[str] = None,
                    tracestate: Optional[str] = None) -> Dict[str, Any]:
    params: Dict[str, Any] = {"name": name, "correlation_key": correlation_key,
                              "time_to_live_ms": time_to_live_ms}
    optional = {"variables": variables, "message_id": message_id, "tenant_id": tenant_id,
                "traceparent": traceparent, "tracestate": tracestate}
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
