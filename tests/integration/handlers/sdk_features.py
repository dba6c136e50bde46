"""SDK handler (Python) for the protocol 1.1 features; its behaviour comes from the environment.

FEATURE=extend   task.extend(EXTEND_MS), sleeps SLEEP seconds, completes with {"deadline": ...}
FEATURE=publish  publishes MESSAGE with the task's orderId as correlation key, then completes
FEATURE=cancel   sleeps until skiff cancels the task (never completes it); appends
                 "<id> <reason>" to LOG for each cancellation
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "handler-protocol" / "python"))
from skiff_handler import Handler  # noqa: E402

FEATURE = os.environ["FEATURE"]
app = Handler("sdk-features", capacity=int(os.environ.get("CAPACITY", "2")))


def work(task):
    if FEATURE == "extend":
        deadline = task.extend(int(os.environ["EXTEND_MS"]))
        time.sleep(float(os.environ.get("SLEEP", "0")))
        return {"deadline": deadline}
    if FEATURE == "publish":
        reply = task.publish_message(os.environ["MESSAGE"], task.variables["orderId"],
                                     variables={"paid": True}, time_to_live_ms=60000)
        return {"message_key": reply["key"]}
    task.cancelled.wait()
    with open(os.environ["LOG"], "a", encoding="utf-8") as f:
        f.write(f"{task.id} {task.cancel_reason}\n")
    return None


for job_type in os.environ["JOB_TYPES"].split(","):
    app.job(job_type)(work)
app.run()
