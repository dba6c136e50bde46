"""Conformance handler of the Python SDK (handler-protocol/conformance/CONTRACT.md).

Every SDK ships the same handler: same job types, topics and behaviour, so that one suite
checks them all. Environment: SKIFF_SOCKET, CONF_NAME, CONF_CAPACITY (default 2), CONF_MODE:
"all" (default: job types and topics), "zeebe" (job types only) or "kafka" (topics only);
CONF_STYLE: "sync" (default: plain functions on the SDK's worker pool) or "async" (the same
behaviours as ``async def`` functions on asyncio, served by ``run_async``).
"""

import asyncio
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from skiff_handler import (BpmnError, CallError, DeadLetter, Handler, JobFailed,  # noqa: E402
                           Retry)

app = Handler(os.environ.get("CONF_NAME", "conformance-python"),
              capacity=int(os.environ.get("CONF_CAPACITY", "2")),
              backoff_initial=0.05, backoff_max=0.2)
MODE = os.environ.get("CONF_MODE", "all")
ASYNC = os.environ.get("CONF_STYLE", "sync") == "async"


def _skip(name):
    return lambda fn: fn


job = app.job if MODE != "kafka" else _skip
topic = app.topic if MODE != "zeebe" else _skip

_lock = threading.Lock()
_active = 0
_max_active = 0


@job("conf-complete")
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


@job("conf-none")
def none(task):
    return None


@job("conf-raise")
def fail(task):
    raise RuntimeError("boom " + task.variables.get("msg", ""))


@job("conf-bpmn")
def bpmn(task):
    raise BpmnError("RISK_TOO_HIGH", "too risky", variables={"reason": "amount"})


@job("conf-jobfailed")
def job_failed(task):
    raise JobFailed("try later", retries=2, retry_backoff_ms=5000, variables={"attempted": True})


@job("conf-async")
async def in_async(task):
    await asyncio.sleep(0.01)
    return {"async": True}


@job("conf-sleep")
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


@job("conf-big")
def big(task):
    return {"blob": "x" * task.variables["size"]}


@job("conf-extend")
def extend(task):
    try:
        deadline = task.extend(task.variables["ms"])
    except CallError as e:
        return {"error": {"code": e.code, "message": e.message}}
    return {"deadline": deadline, "task_deadline": task.deadline}


@job("conf-wait-cancel")
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


@job("conf-publish")
def publish(task):
    publish_message = (app.publish_message if task.variables.get("via") == "handler"
                       else task.publish_message)
    try:
        return {"result": publish_message(**task.variables["params"])}
    except CallError as e:
        return {"error": {"code": e.code, "message": e.message}}


@job("conf-produce")
def produce(task):
    produce = app.produce if task.variables.get("via") == "handler" else task.produce
    try:
        return {"result": produce(**task.variables["params"])}
    except CallError as e:
        return {"error": {"code": e.code, "message": e.message}}


# Kafka topics. A topic function cannot return data, so conf.seen reports what it
# saw by producing it (the produce call is the test's window into the function).

@topic("conf.seen")
def seen(task):
    r = task.record
    task.produce("conf.seen.out", {
        "id": task.id, "source": task.source, "topic": task.topic, "value": task.value,
        "attempt": task.attempt, "deadline": task.deadline, "traceparent": task.traceparent,
        "record": {"topic": r.topic, "partition": r.partition, "offset": r.offset,
                   "key": r.key, "key_base64": r.key_base64, "headers": r.headers,
                   "headers_base64": r.headers_base64, "timestamp": r.timestamp,
                   "schema_id": r.schema_id},
    }, key=r.key, headers={"seen-by": "conformance"})
    return {"ignored": True}  # a topic function's return value is ignored: ack


@topic("conf.ok")
def ok(task):
    return None


@topic("conf.raise")
def record_raise(task):
    raise RuntimeError("bad record " + task.value.get("msg", ""))


@topic("conf.retry")
def record_retry(task):
    raise Retry("try later", backoff_ms=task.value["ms"])


@topic("conf.retry-default")
def record_retry_default(task):
    raise Retry("try later")


@topic("conf.dlq")
def record_dlq(task):
    raise DeadLetter("poison record")


@topic("conf.async")
async def record_async(task):
    await asyncio.sleep(0.01)


@topic("conf.extend")
def record_extend(task):
    task.extend(1000)  # a Kafka task cannot be extended: CallError, so a nack


@topic("conf.wait-cancel")
def record_wait_cancel(task):
    cancelled = task.cancelled.wait(task.value.get("ms", 5000) / 1000.0)
    # Tell the test what the function saw; its ack must never be sent.
    task.produce("conf.cancelled", {"cancelled": cancelled, "reason": task.cancel_reason})


@job("conf-echo")
def echo(task):
    return {"echo": task.variables, "key": task.job.key,
            "process_instance_key": task.job.process_instance_key}


def _call(fn, arg):
    try:
        return {"result": fn(arg)}
    except CallError as e:
        return {"error": {"code": e.code, "message": e.message}}


@job("conf-secret")
def secret(task):
    fn = app.secret if task.variables.get("via") == "handler" else task.secret
    return _call(fn, task.variables["reference"])


@job("conf-token")
def token(task):
    fn = app.token if task.variables.get("via") == "handler" else task.token
    return _call(fn, task.variables["audience"])


if ASYNC:  # the same behaviours again, as async def functions (they replace the ones above)
    import conformance_handler_async  # noqa: E402

    conformance_handler_async.register(app, job, topic)

if __name__ == "__main__":
    if ASYNC:
        asyncio.run(app.run_async())
    else:
        app.run()
