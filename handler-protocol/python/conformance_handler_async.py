"""The conformance handler's functions as ``async def`` (CONF_STYLE=async): the Python SDK
on asyncio. Same job types, topics and behaviours as conformance_handler.py."""

import asyncio

from skiff_handler import BpmnError, CallError, DeadLetter, JobFailed, Retry

_counts = {"active": 0, "max": 0}


async def _cancelled_within(task, ms):
    """True if skiff cancelled the task within ms: the SDK cancels the coroutine."""
    try:
        await asyncio.sleep(ms / 1000.0)
        return False
    except asyncio.CancelledError:
        return True


def register(app, job, topic):
    """Register every function with ``job`` / ``topic`` (the handler's mode filters)."""

    @job("conf-complete")
    async def complete(task):
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
    async def none(task):
        return None

    @job("conf-raise")
    async def conformance_raise(task):
        await asyncio.sleep(0)
        raise RuntimeError("boom " + task.variables.get("msg", ""))

    @job("conf-bpmn")
    async def bpmn(task):
        raise BpmnError("RISK_TOO_HIGH", "too risky", variables={"reason": "amount"})

    @job("conf-jobfailed")
    async def job_failed(task):
        raise JobFailed("try later", retries=2, retry_backoff_ms=5000,
                        variables={"attempted": True})

    @job("conf-async")
    async def in_async(task):
        await asyncio.sleep(0.01)
        return {"async": True}

    @job("conf-sleep")
    async def sleepy(task):
        _counts["active"] += 1
        _counts["max"] = max(_counts["max"], _counts["active"])
        seen = _counts["active"]
        await asyncio.sleep(task.variables.get("ms", 100) / 1000.0)
        _counts["active"] -= 1
        return {"active_at_start": seen, "max_active": _counts["max"]}

    @job("conf-big")
    async def big(task):
        return {"blob": "x" * task.variables["size"]}

    @job("conf-echo")
    async def echo(task):
        return {"echo": task.variables, "key": task.job.key,
                "process_instance_key": task.job.process_instance_key}

    @job("conf-extend")
    async def extend(task):
        try:
            deadline = await task.extend_async(task.variables["ms"])
        except CallError as e:
            return {"error": {"code": e.code, "message": e.message}}
        return {"deadline": deadline, "task_deadline": task.deadline}

    @job("conf-wait-cancel")
    async def wait_cancel(task):
        cancelled = await _cancelled_within(task, task.variables.get("ms", 5000))
        try:
            await task.extend_async(1000)
            extend_error = None
        except CallError as e:
            extend_error = e.code
        await task.publish_message_async("cancelled", correlation_key=task.id, variables={
            "cancelled": cancelled, "reason": task.cancel_reason,
            "extend_error": extend_error})
        return {"late": True}

    @job("conf-publish")
    async def publish(task):
        publish_message = (app.publish_message_async if task.variables.get("via") == "handler"
                           else task.publish_message_async)
        try:
            return {"result": await publish_message(**task.variables["params"])}
        except CallError as e:
            return {"error": {"code": e.code, "message": e.message}}

    @job("conf-produce")
    async def produce(task):
        produce = (app.produce_async if task.variables.get("via") == "handler"
                   else task.produce_async)
        try:
            return {"result": await produce(**task.variables["params"])}
        except CallError as e:
            return {"error": {"code": e.code, "message": e.message}}

    async def _call(fn, arg):
        try:
            return {"result": await fn(arg)}
        except CallError as e:
            return {"error": {"code": e.code, "message": e.message}}

    @job("conf-secret")
    async def secret(task):
        fn = app.secret_async if task.variables.get("via") == "handler" else task.secret_async
        return await _call(fn, task.variables["reference"])

    @job("conf-token")
    async def token(task):
        fn = app.token_async if task.variables.get("via") == "handler" else task.token_async
        return await _call(fn, task.variables["audience"])

    @topic("conf.seen")
    async def seen(task):
        r = task.record
        await task.produce_async("conf.seen.out", {
            "id": task.id, "source": task.source, "topic": task.topic, "value": task.value,
            "attempt": task.attempt, "deadline": task.deadline, "traceparent": task.traceparent,
            "record": {"topic": r.topic, "partition": r.partition, "offset": r.offset,
                       "key": r.key, "key_base64": r.key_base64, "headers": r.headers,
                       "headers_base64": r.headers_base64, "timestamp": r.timestamp,
                       "schema_id": r.schema_id},
        }, key=r.key, headers={"seen-by": "conformance"})
        return {"ignored": True}

    @topic("conf.ok")
    async def ok(task):
        return None

    @topic("conf.raise")
    async def record_raise(task):
        raise RuntimeError("bad record " + task.value.get("msg", ""))

    @topic("conf.retry")
    async def record_retry(task):
        raise Retry("try later", backoff_ms=task.value["ms"])

    @topic("conf.retry-default")
    async def record_retry_default(task):
        raise Retry("try later")

    @topic("conf.dlq")
    async def record_dlq(task):
        raise DeadLetter("poison record")

    @topic("conf.async")
    async def record_async(task):
        await asyncio.sleep(0.01)

    @topic("conf.extend")
    async def record_extend(task):
        await task.extend_async(1000)

    @topic("conf.wait-cancel")
    async def record_wait_cancel(task):
        cancelled = await _cancelled_within(task, task.value.get("ms", 5000))
        await task.produce_async("conf.cancelled",
                                 {"cancelled": cancelled, "reason": task.cancel_reason})
