"""The handler: registration, the session with skiff, dispatching and results."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import socket
import threading
import traceback
from typing import Any, Callable, Dict, List, Optional

from ._connection import _SKIP, _Connection
from ._pool import _WorkerPool
from ._task import (DEFAULT_SOCKET, PROTOCOL_VERSION, BpmnError, CallError, DeadLetter,
                    JobFailed, JobFunction, ProtocolError, Task, _message_params,
                    _produce_params, _secret_params, _token_params, encode_frame, log)

_SDK_DIR = os.path.dirname(os.path.abspath(__file__))


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
                        tenant_id: Optional[str] = None, traceparent: Optional[str] = None,
                        tracestate: Optional[str] = None) -> Dict[str, Any]:
        """Publish a Zeebe message on the current connection (same as
        :meth:`Task.publish_message`, ``traceparent`` and ``tracestate`` included);
        raises :class:`CallError` (``closed`` while not connected)."""
        conn = self._conn
        if conn is None:
            raise CallError("closed", "not connected to skiff")
        return conn.call("publish_message", _message_params(
            name, correlation_key, variables, time_to_live_ms, message_id, tenant_id,
            traceparent, tracestate))

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
                                    tenant_id: Optional[str] = None,
                                    traceparent: Optional[str] = None,
                                    tracestate: Optional[str] = None) -> Dict[str, Any]:
        """:meth:`publish_message` for coroutines."""
        return await self._current().call_async("publish_message", _message_params(
            name, correlation_key, variables, time_to_live_ms, message_id, tenant_id,
            traceparent, tracestate))

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
                                   self._finish_pool)

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
                conn.flush()
                done = []
        if done:
            self._finish_many(conn, done)

    def _finish_many(self, conn: _Connection, done: "List[tuple[Task, Optional[bytes]]]"
                     ) -> None:
        """:meth:`_finish` for the encoded results of several tasks, under one lock."""
        owed: "List[tuple[Task, Optional[bytes]]]" = []
        try:
            with conn.lock:
                pop = conn.open.pop
                owed = [(task, data) for task, data in done if pop(task.id, None) is task]
            conn.send_results([data for _, data in owed if data is not None])
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

    def _run_sync(self, conn: _Connection, task: Task, fn: Optional[JobFunction]
                  ) -> "tuple[_Connection, Task, Optional[bytes]]":
        """A sync function on a pool thread: (conn, task, encoded result) for
        :meth:`_finish_pool`, which the pool calls for several at once."""
        try:
            return conn, task, self._answer(task, fn, conn.max_frame)
        except Exception:  # never lose the slot of a task
            log.exception("could not answer task %s", task.id)
            return conn, task, None

    def _finish_pool(self, done: "List[tuple[_Connection, Task, Optional[bytes]]]") -> None:
        """Send the results of pool threads, per connection, and release their slots."""
        conn = done[0][0]
        if all(c is conn for c, _, _ in done):
            self._finish_many(conn, [(task, data) for _, task, data in done])
            return
        for c in {c for c, _, _ in done}:  # the tasks of an old connection too
            self._finish_many(c, [(task, data) for c2, task, data in done if c2 is c])

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
    while len(frames) > 1 and os.path.dirname(os.path.abspath(frames[0].filename)) == _SDK_DIR:
        frames = frames[1:]
    stack = [{"file": f.filename, "line": f.lineno or 0, "function": f.name}
             for f in reversed(frames)]
    return {"type": type(exc).__name__, "message": str(exc), "stack": stack[:limit]}


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
