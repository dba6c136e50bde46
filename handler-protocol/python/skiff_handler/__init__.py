"""skiff handler SDK for Python (handler protocol v1.4, standard library only).

A package: vendor the directory ``skiff_handler/`` (or put ``handler-protocol/python`` on
``sys.path``); ``from skiff_handler import Handler, Task`` imports it.

Usage::

    from skiff_handler import Handler, BpmnError, JobFailed, Retry, DeadLetter

    app = Handler("risk-scorer", capacity=4)

    @app.job("risk-score")
    def score(task):
        if task.variables["amount"] > 1_000_000:
            raise BpmnError("RISK_TOO_HIGH", "amount too large")
        return {"riskScore": 42}

    @app.topic("business.policy.issued.v1")
    def index(task):                # task.value, task.record (partition, offset, key, ...)
        if task.value["premium"].startswith("-"):
            raise DeadLetter("negative premium")        # nack, dead_letter: true
        if not search_is_up():
            raise Retry("search down", backoff_ms=10_000)  # nack, retry_backoff_ms
        # returning (any value) acks the record; any other exception nacks it

    app.run()

A job function receives a :class:`Task` and returns a dict of variables (or
``None``) to complete the job. Raising :class:`BpmnError` throws a BPMN error,
raising :class:`JobFailed` fails the job with explicit retries/backoff, and any
other exception fails the job with the exception's message. A topic function
receives a Kafka task (``task.topic``, ``task.value``, ``task.record``): returning
acks the record, raising :class:`Retry` or :class:`DeadLetter` nacks it with a
backoff or to the dead-letter topic, any other exception nacks it with its
message; an ordinary exception also gives the frame a structured ``error`` (type,
message, stack: :func:`error_info`). Up to ``capacity`` tasks run at once: plain
functions on a pool of reused worker threads (a thread is added only while every one is busy;
while functions return fast, one thread runs the queued ones back to back and their results
leave together; when one blocks, an idle thread takes the queued tasks over within 10 ms, and
while most block, every task wakes a thread at once), or
with ``Handler(..., inline=True)`` on the thread that reads the socket, one after another, the
results leaving every 16 tasks and at the end of what one read brought (for fast functions: no
thread hand-off; a slow one delays the tasks and pings behind it),
``async def`` functions on one asyncio event loop (``await app.run_async()`` serves from a
coroutine and runs them on the caller's loop), where the calls below have awaitable forms
(``await task.extend_async(ms)``, ``task.publish_message_async(...)``,
``task.produce_async(...)``) and skiff's cancel cancels the coroutine.

Inside a job or topic function (blocking calls, safe from any thread; failures raise
:class:`CallError` with a ``code``)::

    new_deadline = task.extend(60_000)      # deadline = now + 60 s; also sets task.deadline
    if task.cancelled.is_set():             # threading.Event, set when skiff cancels
        return                              # the task (task.cancel_reason: "deadline",
                                            # "job_gone"); its result is never sent
    task.publish_message("paid", correlation_key="order-42", variables={"amount": 3},
                         traceparent=task.traceparent, tracestate=task.tracestate)
    # -> {"key": "2251799813685400", "tenant_id": "<default>"}; the trace params (1.3,
    # optional, left out when None) make the jobs the message leads to continue this trace
    task.produce("business.policy.indexed.v1", {"policyId": "P-1"}, key="P-1",
                 headers={"source": "indexer"})
    # -> {"topic": ..., "partition": 0, "offset": 88, "schema_id": 9}

    password = task.secret("vault:secret/app/db#password")   # 1.3, handler.secrets
    bearer = task.token("billing-api")      # 1.3, an OAuth2 access token (handler.token_audiences)

``app.publish_message(...)``, ``app.produce(...)``, ``app.secret(...)`` and
``app.token(...)`` do the same from outside
a function, on the current connection. Error codes are skiff's (``not_found``,
``unavailable``, ``rejected`` for extend; ``invalid_params``,
``already_exists``, ``unavailable``, ``rejected`` for publish_message;
``invalid_params``, ``invalid_value``, ``schema_not_found``, ``unavailable``,
``produce_failed`` for produce; ``forbidden``, ``not_found``, ``unavailable``,
``invalid_params`` for secret and token; treat any other code as a failure too) or the
SDK's own, raised without waiting for skiff: ``unsupported`` (skiff's welcome
did not list the feature or method, or the task is a Kafka task, which cannot
be extended; nothing was sent), ``cancelled`` (skiff cancelled the task,
also while an extend waits), ``closed`` (not connected, the task's result was
sent, or the connection was lost before the reply: the outcome is unknown),
``invalid_params`` (not JSON-serialisable or larger than ``max_frame``).
A cancelled task no longer counts against ``capacity``: skiff may send a new
one while its function still runs.

Batches (protocol 1.4, ``Handler(..., batch=True)``, the default): the hello lists feature
``batch``, so skiff may send several tasks in one ``tasks`` frame; when skiff's welcome lists it
too, the results that are ready together leave as one ``results`` frame (within ``max_frame``).
Every frame that one read brings is parsed and dispatched before the next read.

``run()`` connects to ``$SKIFF_SOCKET`` (default ``/run/skiff/handler.sock``),
reconnecting with a backoff when skiff is not there yet or the connection is
lost, and returns after skiff sends ``drain`` and the tasks in flight are done.
See ``handler-protocol/SPEC.md`` for the wire protocol.
"""

from ._connection import _Connection  # noqa: F401 (the SDK's unit tests use it)
from ._handler import Handler, error_info
from ._pool import _WorkerPool  # noqa: F401 (the SDK's unit tests use it)
from ._task import (DEFAULT_MAX_FRAME, DEFAULT_SOCKET, PROTOCOL_VERSION, BpmnError, CallError,
                    DeadLetter, Job, JobFailed, ProtocolError, Record, Retry, Task,
                    encode_frame)

__all__ = [
    "Handler", "Task", "Job", "Record", "BpmnError", "JobFailed", "Retry", "DeadLetter",
    "ProtocolError", "CallError",
    "encode_frame", "error_info", "PROTOCOL_VERSION", "DEFAULT_SOCKET", "DEFAULT_MAX_FRAME",
]
