"""Kafka test handler built on the Python SDK (handler-protocol/python/skiff_handler/).

Every task is written to $HANDLER_OUT as JSON lines (one "start" line before the work, one
"end" line after it, with the outcome), so the tests see exactly what reached the handler.

Environment:
  SKIFF_SOCKET       skiff's handler socket (read by the SDK)
  HANDLER_TOPICS     comma-separated topics to serve (required)
  HANDLER_OUT        JSON-lines file to append to (required)
  HANDLER_NAME       name sent in hello (default "recorder")
  HANDLER_CAPACITY   capacity sent in hello (default 4)
  HANDLER_SLEEP_MS   sleep before answering every task (default 0)
  HANDLER_EXTEND_MS  while sleeping, every this many ms extend the task by twice as much
                     (default 0: no extend); the new deadlines (or the CallError code) go into
                     the "end" line as "extends"

Behaviour from the record value, when it is an object (the test schema `Cmd`):
  fail: n        raise on attempts 1..n (a plain exception: nack without backoff)
  poison: true   raise DeadLetter (nack with dead_letter: true)
  sleep_ms: n    sleep n ms before answering
  after: "<id>"  wait (at most 60 s) until the record whose value.id is <id> has been
                 acked by this process, before answering
  produce: JSON  a produce call: {"topic", "value", "key"?, "headers"?, "via": "task"|"app"};
                 its reply (or CallError code and message) goes into the "end" line
"""
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "handler-protocol" / "python"))
from skiff_handler import CallError, DeadLetter, Handler  # noqa: E402

OUT = os.environ["HANDLER_OUT"]
TOPICS = [t for t in os.environ["HANDLER_TOPICS"].split(",") if t]
SLEEP_MS = int(os.environ.get("HANDLER_SLEEP_MS", "0"))
EXTEND_MS = int(os.environ.get("HANDLER_EXTEND_MS", "0"))

_lock = threading.Lock()
_acked = set()
_acked_cond = threading.Condition(_lock)

app = Handler(os.environ.get("HANDLER_NAME", "recorder"),
              capacity=int(os.environ.get("HANDLER_CAPACITY", "4")),
              backoff_initial=0.05, backoff_max=0.5)


def write(event):
    line = json.dumps(event, ensure_ascii=True, sort_keys=True) + "\n"
    with _lock:
        with open(OUT, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()


def describe(task):
    r = task.record
    return {
        "pid": os.getpid(), "task_id": task.id, "topic": task.topic, "attempt": task.attempt,
        "partition": r.partition, "offset": r.offset, "key": r.key, "key_base64": r.key_base64,
        "headers": r.headers, "headers_base64": r.headers_base64, "timestamp": r.timestamp,
        "schema_id": r.schema_id, "value": task.value, "deadline": task.deadline,
        "traceparent": task.traceparent, "frame_kafka": task.frame.get("kafka"),
    }


def do_produce(task, spec):
    params = json.loads(spec)
    via = params.pop("via", "task")
    fn = app.produce if via == "app" else task.produce
    try:
        headers = {k: task.traceparent if v == "{traceparent}" else v  # the task's context
                   for k, v in (params.get("headers") or {}).items()} or None
        return {"ok": True, "result": fn(params["topic"], params["value"],
                                         key=params.get("key"), headers=headers)}
    except CallError as e:
        return {"ok": False, "code": e.code, "message": e.message}


def sleep_extending(task, ms):
    """Sleeps ms in slices of EXTEND_MS, extending the task by 2 * EXTEND_MS after each."""
    out = []
    end = time.monotonic() + ms / 1000.0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return out
        time.sleep(min(left, EXTEND_MS / 1000.0))
        try:
            out.append(task.extend(2 * EXTEND_MS))
        except CallError as e:
            out.append(e.code)


def work(task):
    info = describe(task)
    write(dict(info, event="start", t=time.time()))
    v = task.value if isinstance(task.value, dict) else {}
    outcome, extra = "ack", {}
    try:
        sleep = SLEEP_MS + int(v.get("sleep_ms") or 0)
        if sleep and EXTEND_MS:
            extra["extends"] = sleep_extending(task, sleep)
        elif sleep:
            time.sleep(sleep / 1000.0)
        after = v.get("after")
        if after:
            with _acked_cond:
                _acked_cond.wait_for(lambda: after in _acked, timeout=60)
                extra["after_seen"] = after in _acked
        if v.get("produce"):
            extra["produce"] = do_produce(task, v["produce"])
        if v.get("poison"):
            outcome = "dead_letter"
            raise DeadLetter(f"poison record {v.get('id')}")
        if task.attempt <= int(v.get("fail") or 0):
            outcome = "nack"
            raise RuntimeError(f"planned failure {task.attempt} of {v.get('fail')}")
    finally:
        write(dict(info, event="end", outcome=outcome, t=time.time(), **extra))
    if isinstance(v.get("id"), str):
        with _acked_cond:
            _acked.add(v["id"])
            _acked_cond.notify_all()


for topic in TOPICS:
    app.topic(topic)(work)

if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app.run()
    write({"event": "exit", "pid": os.getpid(), "t": time.time()})
