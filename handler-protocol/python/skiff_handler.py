"""skiff handler SDK for Python (handler protocol v1, standard library only).

Usage::

    from skiff_handler import Handler, BpmnError, JobFailed

    app = Handler("risk-scorer", capacity=4)

    @app.job("risk-score")
    def score(task):
        if task.variables["amount"] > 1_000_000:
            raise BpmnError("RISK_TOO_HIGH", "amount too large")
        return {"riskScore": 42}

    app.run()

A job function receives a :class:`Task` and returns a dict of variables (or
``None``) to complete the job. Raising :class:`BpmnError` throws a BPMN error,
raising :class:`JobFailed` fails the job with explicit retries/backoff, and any
other exception fails the job with the exception's message. ``async def`` job
functions are supported too. Up to ``capacity`` tasks run at once, each on its
own worker thread.

``run()`` connects to ``$SKIFF_SOCKET`` (default ``/run/skiff/handler.sock``),
reconnecting with a backoff when skiff is not there yet or the connection is
lost, and returns after skiff sends ``drain`` and the tasks in flight are done.
See ``handler-protocol/SPEC.md`` for the wire protocol.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

__all__ = [
    "Handler", "Task", "Job", "BpmnError", "JobFailed", "ProtocolError",
    "encode_frame", "PROTOCOL_VERSION", "DEFAULT_SOCKET", "DEFAULT_MAX_FRAME",
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


class ProtocolError(Exception):
    """skiff refused the handshake (an ``error`` frame answered ``hello``)."""


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
class Task:
    """One task as received from skiff."""

    id: str
    source: str
    job_type: str
    variables: Dict[str, Any]
    headers: Dict[str, Any]
    deadline: int
    attempt: int = 1
    traceparent: Optional[str] = None
    job: Optional[Job] = None
    frame: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_frame(cls, f: Dict[str, Any]) -> "Task":
        zeebe = f.get("zeebe")
        return cls(
            id=f["id"], source=f.get("source", "zeebe"),
            job_type=f.get("job_type", ""),
            variables=f.get("variables") or {}, headers=f.get("headers") or {},
            deadline=int(f.get("deadline", 0)), attempt=int(f.get("attempt", 1)),
            traceparent=f.get("traceparent"),
            job=Job.from_dict(zeebe) if isinstance(zeebe, dict) else None,
            frame=f,
        )

    def seconds_left(self) -> float:
        """Seconds until the task's deadline (negative once it has passed)."""
        return self.deadline / 1000.0 - time.time()


def encode_frame(frame: Dict[str, Any]) -> bytes:
    """Encode one frame: 4-byte big-endian length, then compact UTF-8 JSON."""
    data = json.dumps(frame, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")
    return struct.pack(">I", len(data)) + data


class _Connection:
    """One socket: exact-length reads on the reader thread, locked writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.max_frame = DEFAULT_MAX_FRAME
        self._wlock = threading.Lock()

    def _read_exact(self, n: int) -> Optional[bytes]:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                return None
            got += k
        return bytes(buf)

    def recv(self) -> Optional[Dict[str, Any]]:
        """Next frame, or None when the connection is closed."""
        try:
            head = self._read_exact(4)
            if head is None:
                return None
            (n,) = struct.unpack(">I", head)
            if n == 0 or n > self.max_frame:
                log.error("skiff sent a frame of %d bytes (max %d); closing",
                          n, self.max_frame)
                return None
            body = self._read_exact(n)
        except OSError:
            return None
        if body is None:
            return None
        try:
            frame = json.loads(body.decode("utf-8"))
        except ValueError as e:
            log.error("skiff sent an undecodable frame (%s); closing", e)
            return None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            log.error("skiff sent a frame without a type; closing")
            return None
        return frame

    def send(self, frame: Dict[str, Any]) -> bool:
        data = encode_frame(frame)
        with self._wlock:
            try:
                self.sock.sendall(data)
                return True
            except OSError as e:
                log.debug("send of %s failed: %s", frame.get("type"), e)
                return False

    def shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Handler:
    """A handler process: registers job functions and serves skiff's tasks."""

    def __init__(self, name: str, capacity: int = 1, *,
                 socket_path: Optional[str] = None, reconnect: bool = True,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.name = name
        self.capacity = capacity
        self.socket_path = socket_path or os.environ.get("SKIFF_SOCKET", DEFAULT_SOCKET)
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.session: Optional[str] = None
        self._jobs: Dict[str, JobFunction] = {}
        self._cond = threading.Condition()
        self._in_flight = 0
        self._draining = False

    def job(self, job_type: str) -> Callable[[JobFunction], JobFunction]:
        """Decorator: register ``fn(task)`` for a Zeebe job type."""
        def register(fn: JobFunction) -> JobFunction:
            self._jobs[job_type] = fn
            return fn
        return register

    @property
    def job_types(self) -> List[str]:
        return list(self._jobs)

    def run(self) -> None:
        """Serve until skiff drains this handler.

        Reconnects with exponential backoff while skiff is unreachable or
        after a lost connection (unless ``reconnect=False``, then it returns).
        Raises :class:`ProtocolError` if skiff rejects the hello.
        """
        if not self._jobs:
            raise ValueError("register at least one job type before run()")
        delay = self.backoff_initial
        while True:
            sock = self._connect()
            if sock is not None:
                welcomed, drained = self._serve(sock)
                if drained:
                    return
                if welcomed:
                    delay = self.backoff_initial
                log.warning("connection to skiff at %s lost", self.socket_path)
            if not self.reconnect:
                if sock is None:
                    raise ConnectionError(f"cannot connect to skiff at {self.socket_path}")
                return
            time.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

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
        """One session; returns (welcomed, drained)."""
        conn = _Connection(sock)
        try:
            if not self._handshake(conn):
                return False, False
            self._draining = False
            with ThreadPoolExecutor(max_workers=self.capacity,
                                    thread_name_prefix="skiff-task") as pool:
                drained = self._read_loop(conn, pool)
            return True, drained
        finally:
            sock.close()

    def _handshake(self, conn: _Connection) -> bool:
        conn.send({"type": "hello", "version": PROTOCOL_VERSION, "name": self.name,
                   "capacity": self.capacity, "job_types": self.job_types})
        frame = conn.recv()
        if frame is None:
            return False
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
        log.info("connected to skiff, session %s", self.session)
        return True

    def _read_loop(self, conn: _Connection, pool: ThreadPoolExecutor) -> bool:
        """Dispatch frames until the connection ends; True if it was drained."""
        while True:
            frame = conn.recv()
            if frame is None:
                return self._draining
            kind = frame["type"]
            if kind == "task":
                with self._cond:
                    self._in_flight += 1
                pool.submit(self._run_task, conn, frame)
            elif kind == "ping":
                conn.send({"type": "pong", "ref": frame.get("ref", "")})
            elif kind == "drain":
                log.info("skiff asks to drain; finishing tasks in flight")
                with self._cond:
                    self._draining = True
                    if self._in_flight == 0:
                        conn.shutdown()
            elif kind == "error":
                log.error("skiff error %s: %s%s", frame.get("code"), frame.get("message"),
                          f" (task {frame['id']})" if "id" in frame else "")
            elif kind not in ("pong", "reply", "welcome"):
                log.warning("ignoring unknown frame type %r", kind)

    def _run_task(self, conn: _Connection, frame: Dict[str, Any]) -> None:
        try:
            result = self._execute(frame)
            data = self._checked(result, conn.max_frame)
            conn.send(data)
        except Exception:  # never let a worker thread die silently
            log.exception("could not answer task %s", frame.get("id"))
        finally:
            with self._cond:
                self._in_flight -= 1
                if self._draining and self._in_flight == 0:
                    conn.shutdown()

    def _execute(self, frame: Dict[str, Any]) -> Dict[str, Any]:
        """Run the job function for one task frame and build its result frame."""
        task_id = frame.get("id", "")
        try:
            task = Task.from_frame(frame)
            fn = self._jobs.get(task.job_type)
            if fn is None:
                raise JobFailed(f"no handler for job type {task.job_type!r}")
            value = fn(task)
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"job function returned {type(value).__name__}, "
                                "expected a dict or None")
            return _with_variables({"type": "complete", "id": task_id}, value)
        except BpmnError as e:
            out = {"type": "bpmn_error", "id": task_id, "code": e.code}
            if e.message:
                out["message"] = e.message
            return _with_variables(out, e.variables)
        except JobFailed as e:
            out = {"type": "fail", "id": task_id, "message": e.message}
            if e.retries is not None:
                out["retries"] = int(e.retries)
            if e.retry_backoff_ms is not None:
                out["retry_backoff_ms"] = int(e.retry_backoff_ms)
            return _with_variables(out, e.variables)
        except Exception as e:
            log.warning("task %s failed: %s: %s", task_id, type(e).__name__, e,
                        exc_info=True)
            return {"type": "fail", "id": task_id, "message": f"{type(e).__name__}: {e}"}

    @staticmethod
    def _checked(result: Dict[str, Any], max_frame: int) -> Dict[str, Any]:
        """Replace a result that cannot be encoded or is too large by a fail."""
        variables = result.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return {"type": "fail", "id": result["id"],
                    "message": f"variables must be a dict, not {type(variables).__name__}"}
        try:
            size = len(encode_frame(result)) - 4
        except (TypeError, ValueError) as e:
            return {"type": "fail", "id": result["id"],
                    "message": f"result is not JSON-serialisable: {e}"}
        if size > max_frame:
            return {"type": "fail", "id": result["id"],
                    "message": f"result frame of {size} bytes exceeds max_frame {max_frame}"}
        return result


async def _awaited(value: Any) -> Any:
    return await value


def _with_variables(frame: Dict[str, Any], variables: Any) -> Dict[str, Any]:
    if variables is not None:
        frame["variables"] = variables
    return frame
