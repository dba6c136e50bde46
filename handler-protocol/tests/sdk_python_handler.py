"""Conformance test handler for the Python SDK (driven by test_sdk_conformance.py).

Every SDK ships the same handler: same name scheme, same job types, same
behaviour, so that one suite checks them all. Environment: SKIFF_SOCKET,
CONF_CAPACITY (default 2).
"""

import asyncio
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from skiff_handler import BpmnError, CallError, Handler, JobFailed  # noqa: E402

app = Handler("conformance-python", capacity=int(os.environ.get("CONF_CAPACITY", "2")),
              backoff_initial=0.05, backoff_max=0.2)

_lock = threading.Lock()
_active = 0
_max_active = 0


@app.job("conf-complete")
def complete(task):
    return {
        "doubled": task.variables["n"] * 2,
        "seen": {
            "id": task.id, "job_type": task.job_type, "headers": task.headers,
            "key": task.job.key, "retries": task.job.retries,
            "traceparent": task.traceparent, "deadline": task.deadline,
            "attempt": task.attempt,
        },
    }


@app.job("conf-none")
def none(task):
    return None


@app.job("conf-raise")
def fail(task):
    raise RuntimeError("boom " + task.variables.get("msg", ""))


@app.job("conf-bpmn")
def bpmn(task):
    raise BpmnError("RISK_TOO_HIGH", "too risky", variables={"reason": "amount"})


@app.job("conf-jobfailed")
def job_failed(task):
    raise JobFailed("try later", retries=2, retry_backoff_ms=5000, variables={"attempted": True})


@app.job("conf-async")
async def in_async(task):
    await asyncio.sleep(0.01)
    return {"async": True}


@app.job("conf-sleep")
def sleepy(task):
    global _active, _max_active
    with _lock:
        _active += 1
        _max_active = max(_max_active, _active)
        seen = _active
    time.sleep(task.variables.get("ms", 100) / 1000.0)
    with _lock:
        _active -= 1
        return {"active_at_start": seen, "max_active": _max_active}


@app.job("conf-big")
def big(task):
    return {"blob": "x" * task.variables["size"]}


@app.job("conf-extend")
def extend(task):
    try:
        deadline = task.extend(task.variables["ms"])
    except CallError as e:
        return {"error": {"code": e.code, "message": e.message}}
    return {"deadline": deadline, "task_deadline": task.deadline}


@app.job("conf-wait-cancel")
def wait_cancel(task):
    cancelled = task.cancelled.wait(task.variables.get("ms", 5000) / 1000.0)
    try:
        task.extend(1000)
        extend_error = None
    except CallError as e:
        extend_error = e.code
    # Tell the test what the job saw; the return value must never be sent.
    task.publish_message("cancelled", correlation_key=task.id, variables={
        "cancelled": cancelled, "reason": task.cancel_reason, "extend_error": extend_error})
    return {"late": True}


@app.job("conf-publish")
def publish(task):
    publish_message = (app.publish_message if task.variables.get("via") == "handler"
                       else task.publish_message)
    try:
        return {"result": publish_message(**task.variables["params"])}
    except CallError as e:
        return {"error": {"code": e.code, "message": e.message}}


if __name__ == "__main__":
    app.run()
