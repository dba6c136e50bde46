"""A TCP proxy that adds latency: every chunk read from one side is written to the other side
`delay` seconds after it was read, in order (Python asyncio, in a thread of its own).

Chunks are pipelined, not serialised: a steady stream keeps its throughput and gains `delay`
of latency per direction, as on a long link. Used between skiff and the Zeebe gateway, below
HTTP/2 (the gRPC fault proxy delays at the HTTP/2 level; this one shows what a plain slow
network does).

    with DelayProxy("127.0.0.1:26500", delay=0.05) as dp:
        ... point skiff at dp.address ...
        dp.stats   # {"connections": .., "chunks_up": .., "chunks_down": .., ...}
"""
import asyncio
import threading


class DelayProxy:
    def __init__(self, target: str, delay: float = 0.05, host: str = "127.0.0.1"):
        self.target_host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.delay = delay
        self.host = host
        self.port = None
        self.stats = {"connections": 0, "chunks_up": 0, "chunks_down": 0, "bytes_up": 0,
                      "bytes_down": 0}
        self._loop = None
        self._thread = None
        self._server = None
        self._writers = set()
        self._ready = threading.Event()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self._run, name="tcp-delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("delay proxy did not start")
        return self

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, self.host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _accept(self, down_r, down_w):
        self.stats["connections"] += 1
        try:
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            down_w.close()
            return
        self._writers.update((down_w, up_w))
        await asyncio.gather(self._pipe(down_r, up_w, "up"), self._pipe(up_r, down_w, "down"),
                             return_exceptions=True)
        for w in (down_w, up_w):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, src, dst, direction):
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()

        async def read():
            try:
                while True:
                    data = await src.read(65536)
                    await queue.put((loop.time() + self.delay, data))
                    if not data:
                        return
                    self.stats[f"chunks_{direction}"] += 1
                    self.stats[f"bytes_{direction}"] += len(data)
            except OSError:
                queue.put_nowait((loop.time(), b""))

        reader = asyncio.ensure_future(read())
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()
        except OSError:
            return
        finally:
            reader.cancel()

    def stop(self):
        if self._loop is None:
            return

        def shutdown():
            self._server.close()
            for w in list(self._writers):
                w.close()
            self._loop.call_later(0.1, self._loop.stop)
        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
