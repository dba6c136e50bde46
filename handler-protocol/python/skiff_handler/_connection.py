"""One connection to skiff: framing, batched writes, requests and their replies."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import threading
from typing import Any, Callable, Dict, List, Optional

from ._task import DEFAULT_MAX_FRAME, CallError, Task, encode_frame, log


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
        self.chunk = _CHUNK  # inline: results sent amid a batch
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

    def send_results(self, datas: List[bytes]) -> None:
        """Queues encoded result frames (sent as :meth:`_send_data` sends one)."""
        if self.writer is not None:
            for data in datas:
                self._send_data(data, result=True)
            return
        with self._wcond:
            self._out.extend([(data, True) for data in datas])
            if self._corked or self._flushing or not self._out:
                return
            self._flushing = True
        self._send_queued()

    def flush(self) -> None:
        """Sends what is queued, also while corked, unless another thread is sending
        already (it sends it; while corked, the uncork does)."""
        if self.writer is not None:
            return
        with self._wcond:
            if not self._out or self._flushing:
                return
            self._flushing = True
        self._send_queued(force=True)

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
