"""Unit tests of the Python SDK's pieces that the conformance suite sees only from outside:
the bounded worker pool, structured errors, async functions on the caller's loop."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

import skiff_handler  # noqa: E402
from fake_skiff import FakeSkiff, make_task  # noqa: E402


def test_pool_reuses_threads_and_grows_only_when_all_are_busy():
    pool = skiff_handler._WorkerPool()
    done = threading.Semaphore(0)
    for _ in range(200):  # one at a time: one thread does them all
        pool.submit(done.release)
        assert done.acquire(timeout=5)
    assert pool.threads == 1
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocked():
        started.release()
        gate.wait(5)
        done.release()

    for _ in range(3):  # three at once: three threads, the first one reused
        pool.submit(blocked)
    for _ in range(3):
        assert started.acquire(timeout=5)
    assert pool.threads == 3
    gate.set()
    for _ in range(3):
        assert done.acquire(timeout=5)
    for _ in range(50):
        pool.submit(done.release)
        assert done.acquire(timeout=5)
    assert pool.threads == 3


def inner():
    raise ValueError("deep down")


def outer():
    inner()


def test_error_info_is_innermost_first():
    try:
        outer()
    except ValueError as e:
        info = skiff_handler.error_info(e)
    assert info["type"] == "ValueError" and info["message"] == "deep down"
    names = [f["function"] for f in info["stack"]]
    assert names[:3] == ["inner", "outer", "test_error_info_is_innermost_first"]
    assert all(f["file"] == __file__ and f["line"] > 0 for f in info["stack"][:3])


def test_async_functions_run_on_the_loop_of_run_async():
    app = skiff_handler.Handler("unit", capacity=2)
    seen = {}

    @app.job("where")
    async def where(task):
        seen["loop"] = asyncio.get_running_loop()
        seen["calls"] = await task.publish_message_async("m")
        return {"ok": True}

    async def main(path):
        app.socket_path = path
        seen["main"] = asyncio.get_running_loop()
        await app.run_async()

    with FakeSkiff() as skiff:
        t = threading.Thread(target=lambda: asyncio.run(main(skiff.path)))
        t.start()
        conn = skiff.accept()
        conn.handshake()
        task = make_task("where")
        assert conn.run_tasks([task])[task["id"]]["variables"] == {"ok": True}
        conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
        conn.wait_closed(5)
        t.join(10)
    assert seen["loop"] is seen["main"]
    assert seen["calls"]["tenant_id"] == "<default>"


def test_cancelling_run_async_stops_the_handler():
    app = skiff_handler.Handler("unit", capacity=1, backoff_initial=0.05)

    @app.job("noop")
    async def noop(task):
        return None

    async def main(path):
        app.socket_path = path
        runner = asyncio.ensure_future(app.run_async())
        await asyncio.sleep(0.5)
        runner.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            return "cancelled"

    with FakeSkiff() as skiff:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=asyncio.run(main(skiff.path))))
        t.start()
        conn = skiff.accept()
        conn.handshake()
        assert conn.wait_closed(5) == []  # stop() closed the connection
        t.join(10)
    assert not t.is_alive() and out["r"] == "cancelled"


def test_run_async_serves_plain_functions_on_the_pool_too():
    """Under run_async the connection lives on the loop: a plain function's result and its
    blocking call go through the loop from a pool thread; a blocking call made on the loop
    itself is refused (it could never get its reply)."""
    app = skiff_handler.Handler("unit", capacity=2)

    @app.job("plain")
    def plain(task):
        return {"thread": threading.current_thread().name,
                "key": task.publish_message("m")["key"]}

    @app.job("blocking-on-loop")
    async def blocking_on_loop(task):
        try:
            task.publish_message("m")
        except skiff_handler.CallError as e:
            return {"code": e.code}
        return {"code": None}

    async def main(path):
        app.socket_path = path
        await app.run_async()

    with FakeSkiff() as skiff:
        t = threading.Thread(target=lambda: asyncio.run(main(skiff.path)))
        t.start()
        conn = skiff.accept()
        conn.handshake()
        a, b = make_task("plain"), make_task("blocking-on-loop")
        r = conn.run_tasks([a, b])
        conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
        conn.wait_closed(5)
        t.join(10)
    assert r[a["id"]]["variables"]["thread"].startswith("skiff-worker")
    assert r[a["id"]]["variables"]["key"].isdigit()
    assert r[b["id"]]["variables"] == {"code": "unsupported"}
    assert [f["type"] for f in conn.others] == ["call"]
