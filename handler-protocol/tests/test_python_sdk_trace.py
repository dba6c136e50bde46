"""The Python SDK's trace context (protocol 1.3, SPEC §4.4): a task's ``tracestate`` next to its
``traceparent``, and both as params of ``publish_message`` on the task and on the handler,
sync and async, asserted on the call frames the SDK writes."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

import skiff_handler  # noqa: E402
from fake_skiff import FakeSkiff, make_kafka_task, make_task  # noqa: E402

TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def serve(app: skiff_handler.Handler, run_async: bool, task: dict) -> list:
    """Run app against a fake skiff for one task; returns the params of its calls in order."""
    with FakeSkiff() as skiff:
        app.socket_path = skiff.path
        target = (lambda: asyncio.run(app.run_async())) if run_async else app.run
        t = threading.Thread(target=target)
        t.start()
        conn = skiff.accept()
        conn.handshake()
        result = conn.run_tasks([task])[task["id"]]
        conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
        conn.wait_closed(5)
        t.join(10)
    assert result["type"] == "complete", result
    calls = [f for f in conn.others if f["type"] == "call"]
    assert [c["method"] for c in calls] == ["publish_message"] * 3
    return [c["params"] for c in calls]


def check_params(params: list, task: dict) -> None:
    own, parent_only, plain = params
    assert own == {"name": "paid", "correlation_key": "o-1", "time_to_live_ms": 0,
                   "traceparent": task["traceparent"], "tracestate": TRACESTATE}
    assert parent_only == {"name": "paid", "correlation_key": "o-2", "time_to_live_ms": 0,
                           "traceparent": OTHER}
    assert plain == {"name": "paid", "correlation_key": "o-3", "time_to_live_ms": 0}


def test_publish_message_sends_traceparent_and_tracestate():
    app = skiff_handler.Handler("unit", capacity=1)

    @app.job("traced")
    def traced(task):
        task.publish_message("paid", "o-1", traceparent=task.traceparent,
                             tracestate=task.tracestate)
        app.publish_message("paid", "o-2", traceparent=OTHER)
        task.publish_message("paid", "o-3")

    task = make_task("traced", tracestate=TRACESTATE)
    check_params(serve(app, False, task), task)


def test_publish_message_async_sends_traceparent_and_tracestate():
    app = skiff_handler.Handler("unit", capacity=1)

    @app.job("traced")
    async def traced(task):
        await task.publish_message_async("paid", "o-1", traceparent=task.traceparent,
                                         tracestate=task.tracestate)
        await app.publish_message_async("paid", "o-2", traceparent=OTHER)
        await task.publish_message_async("paid", "o-3")

    task = make_task("traced", tracestate=TRACESTATE)
    check_params(serve(app, True, task), task)


@pytest.mark.parametrize("make", [lambda **kw: make_task("j", **kw),
                                  lambda **kw: make_kafka_task("t", "v", **kw)])
def test_task_tracestate_from_the_frame(make):
    assert skiff_handler.Task.from_frame(make(tracestate=TRACESTATE)).tracestate == TRACESTATE
    assert skiff_handler.Task.from_frame(make()).tracestate is None
    with pytest.raises(TypeError, match="tracestate must be str"):
        skiff_handler.Task.from_frame(make(tracestate=7))
