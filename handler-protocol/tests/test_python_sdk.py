"""Unit tests of the Python SDK's pieces that the conformance suite sees only from outside:
the bounded worker pool, structured errors, async functions on the caller's loop, inline
functions and batched answers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

import skiff_handler  # noqa: E402
from fake_skiff import FakeSkiff, encode, make_kafka_task, make_task  # noqa: E402


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


def test_task_from_frame_sets_every_field():
    """from_frame fills the dataclass without its __init__: no field may be left out."""
    task = skiff_handler.Task.from_frame(make_kafka_task("orders", {"a": 1}))
    assert set(task.__dict__) == {f.name for f in dataclasses.fields(skiff_handler.Task)}
    assert task.record.partition == 3 and task.value == {"a": 1}
    assert not task.cancelled.is_set() and task.cancelled is task.cancelled


def test_inline_runs_a_batch_on_the_reader_and_answers_it_in_one_write():
    app = skiff_handler.Handler("unit", capacity=8, inline=True)
    threads = set()

    @app.topic("orders")
    def on_record(task):
        threads.add(threading.get_ident())
        if task.value == "nack":
            raise skiff_handler.Retry("again", backoff_ms=5)
        if task.value == "call":
            try:
                task.publish_message("m")
            except skiff_handler.CallError as e:
                raise skiff_handler.DeadLetter(e.code) from None

    with FakeSkiff() as skiff:
        app.socket_path = skiff.path
        t = threading.Thread(target=app.run)
        t.start()
        conn = skiff.accept()
        conn.handshake()
        tasks = [make_kafka_task("orders", v) for v in ("a", "nack", "call", "b", "c")]
        conn.send_raw(b"".join(encode(f) for f in tasks))  # one write, one batch
        results = [conn.recv() for _ in tasks]
        conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
        conn.wait_closed(5)
        t.join(10)
    assert [r["id"] for r in results] == [f["id"] for f in tasks]  # in order: one thread
    assert [r["type"] for r in results] == ["ack", "nack", "nack", "ack", "ack"]
    assert results[1]["retry_backoff_ms"] == 5
    assert results[2]["dead_letter"] is True and results[2]["message"] == "unsupported"
    assert len(threads) == 1 and t.ident in threads


def test_kafka_task_extend_only_when_skiff_offers_kafka_extend():
    """SPEC §4.3: with `kafka_extend` in the welcome the SDK sends `extend` for a Kafka task and
    takes the new deadline; without it, it refuses locally and sends nothing."""
    app = skiff_handler.Handler("unit", capacity=1)
    got = []

    @app.topic("orders")
    def orders(task):
        try:
            got.append(task.extend(60000))
        except skiff_handler.CallError as e:
            got.append(e.code)

    for features in (["cancel", "extend", "kafka_extend"], ["cancel", "extend"]):
        got.clear()
        with FakeSkiff() as skiff:
            app.socket_path = skiff.path
            t = threading.Thread(target=app.run)
            t.start()
            conn = skiff.accept()
            conn.handshake(features=features)
            task = make_kafka_task("orders", "v")
            conn.send(task)
            frame = conn.recv()
            if "kafka_extend" in features:
                assert frame["type"] == "extend" and frame["id"] == task["id"], frame
                assert frame["timeout_ms"] == 60000
                conn.reply(frame["ref"], {"deadline": 1234567890123})
                frame = conn.recv()
            assert frame["type"] == "ack" and frame["id"] == task["id"], frame
            conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
            conn.wait_closed(5)
            t.join(10)
        want = 1234567890123 if "kafka_extend" in features else "unsupported"
        assert got == [want], (features, got)


def serve_inline_batch(features, max_frame=4 * 1024 * 1024):
    """An inline handler given five Kafka tasks in one tasks frame: (conn, results)."""
    app = skiff_handler.Handler("unit", capacity=8, inline=True)

    @app.topic("orders")
    def on_record(task):
        if task.value == "nack":
            raise skiff_handler.Retry("again", backoff_ms=5)

    with FakeSkiff(max_frame=max_frame) as skiff:
        app.socket_path = skiff.path
        t = threading.Thread(target=app.run)
        t.start()
        conn = skiff.accept()
        assert "batch" in conn.handshake(features=features)["features"]
        tasks = [make_kafka_task("orders", v) for v in ("a", "nack", "b", "c", "d")]
        conn.send_tasks(tasks)
        results = [conn.recv() for _ in tasks]
        conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
        conn.wait_closed(5)
        t.join(10)
    assert [r["id"] for r in results] == [f["id"] for f in tasks]
    assert [r["type"] for r in results] == ["ack", "nack", "ack", "ack", "ack"]
    return conn, results


def test_batch_tasks_frame_answered_with_one_results_frame():
    """1.4: an inline handler answers the tasks of one tasks frame with one results frame."""
    conn, _ = serve_inline_batch(["batch", "cancel", "extend"])
    assert conn.results_frames == 1 and conn.results_items == 5


def test_batch_results_not_sent_without_the_welcome_feature():
    conn, _ = serve_inline_batch(["cancel", "extend"])
    assert conn.results_frames == 0


def test_batch_results_frames_stay_within_max_frame():
    """Runs of results become results frames that never exceed max_frame, other frames keep
    their place between them, and one result alone stays a plain frame."""
    conn = skiff_handler._Connection(None)
    conn.features, conn.max_frame = frozenset({"batch"}), 150
    acks = [skiff_handler.Handler._encoded({"type": "ack", "id": f"k-{i:03d}"}, 150)
            for i in range(12)]
    pong = encode({"type": "pong", "ref": "p"})
    data = conn._pack([(a, True) for a in acks[:10]] + [(pong, False), (acks[10], True)])
    frames, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        assert n <= 150
        frames.append(json.loads(data[pos + 4:pos + 4 + n]))
        pos += 4 + n
    assert [f["type"] for f in frames[-2:]] == ["pong", "ack"]
    batched = frames[:-2]
    assert len(batched) >= 2 and all(f["type"] == "results" for f in batched)
    assert [r["id"] for f in batched for r in f["results"]] == [f"k-{i:03d}" for i in range(10)]


def test_inline_answers_a_big_batch_in_chunks_while_it_runs():
    """A batch larger than the chunk: the first results leave while later tasks of the same
    batch still run (so skiff can send more meanwhile), all in order, one thread."""
    app = skiff_handler.Handler("unit", capacity=64, inline=True)
    first_frame_seen = threading.Event()
    waited = []

    @app.topic("orders")
    def on_record(task):
        if task.value == 20:  # a task after the first chunk: waits until its results arrived
            waited.append(first_frame_seen.wait(10))

    with FakeSkiff() as skiff:
        app.socket_path = skiff.path
        t = threading.Thread(target=app.run)
        t.start()
        conn = skiff.accept()
        conn.handshake()
        tasks = [make_kafka_task("orders", i) for i in range(40)]
        conn.send_tasks(tasks)
        results = [conn.recv()]
        first_items = conn.results_items
        first_frame_seen.set()
        results += [conn.recv() for _ in tasks[1:]]
        conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
        conn.wait_closed(5)
        t.join(10)
    assert waited == [True]  # the first results frame came before task 20 returned
    assert first_items == skiff_handler._connection._CHUNK
    assert [r["id"] for r in results] == [f["id"] for f in tasks]
    assert all(r["type"] == "ack" for r in results)
    assert conn.results_frames == 3  # 16 + 16 + the 8 left at the end of the batch


def test_pool_runs_fast_jobs_back_to_back_on_one_thread():
    """Jobs queued together while none blocks: one thread takes them one after the other (no
    hand-off per job); what they return reaches ``finish`` in order, several at a time."""
    pool = skiff_handler._WorkerPool(patience=60.0)  # the watcher never takes over here
    threads, handed, done = set(), [], threading.Event()

    def job(i):
        threads.add(threading.get_ident())
        return i

    def finish(batch):
        handed.append(batch)
        if batch[-1] == 49:
            done.set()

    pool.submit_many([lambda i=i: job(i) for i in range(50)], finish)
    assert done.wait(10)
    assert [i for batch in handed for i in batch] == list(range(50))
    assert len(handed) <= 6 and max(len(b) for b in handed) <= 16
    assert len(threads) == 1
    assert pool.threads <= 2  # the runner and, at most, the watcher it summoned


def test_pool_watcher_takes_over_from_a_blocked_job():
    """A job blocks: the queued ones still run, on other threads, without waiting for it."""
    pool = skiff_handler._WorkerPool(patience=0.01)
    others_done = threading.Event()
    count = []
    blocker_saw = []

    def blocker():
        blocker_saw.append(others_done.wait(10))

    def quick():
        count.append(1)
        if len(count) == 5:
            others_done.set()

    pool.submit_many([blocker] + [quick] * 5)
    assert others_done.wait(10)
    deadline = time.monotonic() + 10
    while not blocker_saw:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert blocker_saw == [True]  # the quick jobs ran while the blocker still blocked


def test_pool_gives_blocking_functions_a_thread_each_at_once():
    """Once most jobs block (take over 1 ms), queued jobs wake a thread each at once: four jobs
    that wait for each other all run, with a patience no test would wait for."""
    pool = skiff_handler._WorkerPool(patience=60.0)
    done = threading.Semaphore(0)

    def slow():
        time.sleep(0.003)
        done.release()

    for _ in range(20):  # one at a time: the pool learns that jobs block
        pool.submit(slow)
        assert done.acquire(timeout=10)
    barrier = threading.Barrier(4, timeout=10)
    met = []
    for _ in range(4):
        pool.submit(lambda: (met.append(barrier.wait() is not None), done.release()))
    for _ in range(4):
        assert done.acquire(timeout=15)
    assert met == [True] * 4


def test_kafka_task_fast_path_matches_the_general_one():
    """Task.from_frame's shortcut for skiff's exact types gives what the checked path gives,
    and frames with other types still get the checks."""
    frames = [make_kafka_task("orders", {"a": 1}),
              make_kafka_task("orders", [1, 2], key=None, headers={"h": "v"}),
              make_kafka_task("orders", "v", kafka={"topic": "orders", "partition": 0,
                                                     "offset": 5, "key": None,
                                                     "key_base64": "AAE=",
                                                     "headers_base64": {"b": "AA=="},
                                                     "extra": 1})]
    for f in frames:
        fast = skiff_handler.Task.from_frame(f)
        skiff_handler._task._check_task_frame(f)
        assert fast.record == skiff_handler.Record.from_dict(f["kafka"])
        assert (fast.id, fast.topic, fast.value, fast.deadline, fast.attempt,
                fast.traceparent) == (f["id"], f["topic"], f["value"], f["deadline"],
                                      f["attempt"], f.get("traceparent"))
        assert fast.job is None and fast.frame is f and fast.source == "kafka"
    for bad in ({"deadline": True}, {"attempt": "1"}, {"variables": []},
                {"kafka": {"topic": "orders", "partition": "3"}}):
        f = {**make_kafka_task("orders", 1), **bad}
        try:
            skiff_handler.Task.from_frame(f)
        except TypeError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_ack_template_is_the_json_of_an_ack():
    for task_id in ("k-orders-3-17-1", 'k-"q"\\-0-1-1', "k-ü-0-1-1", "k-\u2028-0-1-1"):
        data = skiff_handler._handler._ack_frame(task_id)
        assert int.from_bytes(data[:4], "big") == len(data) - 4
        assert json.loads(data[4:]) == {"type": "ack", "id": task_id}
