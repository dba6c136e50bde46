"""Test handler built on the Python SDK; its behaviour comes from the environment.

BEHAVE=complete   returns {"doubled": 2 * x, "handled_by": NAME}
BEHAVE=fail       raises an exception (fail, default retries)
BEHAVE=fail_explicit raises JobFailed("try later", retries=2, retry_backoff_ms=60000)
BEHAVE=bpmn_error raises BpmnError(ERROR_CODE) with variables {"reason": "declined"}
BEHAVE=sleep      sleeps SLEEP seconds, then completes like "complete"
Every task id received is appended to the file LOG (one per line) before it is worked on.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "handler-protocol" / "python"))
from skiff_handler import BpmnError, Handler, JobFailed  # noqa: E402

NAME = os.environ.get("NAME", "behave")
BEHAVE = os.environ.get("BEHAVE", "complete")
JOB_TYPES = os.environ["JOB_TYPES"].split(",")
LOG = os.environ.get("LOG")

app = Handler(NAME, capacity=int(os.environ.get("CAPACITY", "4")))


def work(task):
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(task.id + "\n")
    if BEHAVE == "fail":
        raise RuntimeError("handler says no")
    if BEHAVE == "fail_explicit":
        raise JobFailed("try later", retries=2, retry_backoff_ms=60000)
    if BEHAVE == "bpmn_error":
        raise BpmnError(os.environ.get("ERROR_CODE", "REJECTED"), "declined by handler",
                        variables={"reason": "declined"})
    if BEHAVE == "sleep":
        time.sleep(float(os.environ.get("SLEEP", "1")))
    return {"doubled": 2 * task.variables.get("x", 0), "handled_by": NAME}


for job_type in JOB_TYPES:
    app.job(job_type)(work)

app.run()
