"""Test handler built on the Python SDK; its behaviour comes from the environment.

BEHAVE=complete   returns {"doubled": 2 * x, "handled_by": NAME}
BEHAVE=echo       returns {"echo": the job's variables, "echo_headers": its custom headers}
BEHAVE=fail       raises an exception (fail, default retries)
BEHAVE=fail_explicit raises JobFailed("try later", retries=2, retry_backoff_ms=60000)
BEHAVE=bpmn_error raises BpmnError(ERROR_CODE) with variables {"reason": "declined"}
BEHAVE=sleep      sleeps SLEEP seconds, then completes like "complete"
BEHAVE=gate       waits until the file GATE exists, then completes like "complete"
BEHAVE=sleep_first sleeps SLEEP seconds on the first delivery of a task (by task id, in this
                  process), completes at once on later ones; adds {"delivery": n}
Every task id received is appended to the file LOG (one per line) before it is worked on, and
to DONE_LOG (if set) once the work is done, just before the result is returned.
"""
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "handler-protocol" / "python"))
from skiff_handler import BpmnError, Handler, JobFailed  # noqa: E402

NAME = os.environ.get("NAME", "behave")
BEHAVE = os.environ.get("BEHAVE", "complete")
JOB_TYPES = os.environ["JOB_TYPES"].split(",")
LOG = os.environ.get("LOG")
DONE_LOG = os.environ.get("DONE_LOG")
GATE = os.environ.get("GATE")
SEEN = {}
SEEN_LOCK = threading.Lock()

app = Handler(NAME, capacity=int(os.environ.get("CAPACITY", "4")))


def append(path, line):
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def work(task):
    if LOG:
        append(LOG, task.id)
    result = behave(task)
    if DONE_LOG:
        append(DONE_LOG, task.id)
    return result


def behave(task):
    if BEHAVE == "echo":
        return {"echo": task.variables, "echo_headers": task.headers}
    if BEHAVE == "fail":
        raise RuntimeError("handler says no")
    if BEHAVE == "fail_explicit":
        raise JobFailed("try later", retries=2, retry_backoff_ms=60000)
    if BEHAVE == "bpmn_error":
        raise BpmnError(os.environ.get("ERROR_CODE", "REJECTED"), "declined by handler",
                        variables={"reason": "declined"})
    if BEHAVE == "sleep":
        time.sleep(float(os.environ.get("SLEEP", "1")))
    if BEHAVE == "gate":
        while not os.path.exists(GATE):
            time.sleep(0.05)
    if BEHAVE == "sleep_first":
        with SEEN_LOCK:
            SEEN[task.id] = delivery = SEEN.get(task.id, 0) + 1
        if delivery == 1:
            time.sleep(float(os.environ.get("SLEEP", "1")))
        return {"doubled": 2 * task.variables.get("x", 0), "handled_by": NAME,
                "delivery": delivery}
    return {"doubled": 2 * task.variables.get("x", 0), "handled_by": NAME}


for job_type in JOB_TYPES:
    app.job(job_type)(work)

app.run()
