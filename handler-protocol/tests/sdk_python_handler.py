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

from skiff_handler import BpmnError, Handler, JobFailed  # noqa: E402

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


if __name__ == "__main__":
    app.run()
