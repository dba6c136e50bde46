"""skiff contender (Python): a handler written with skiff's Python SDK doing the bench's
trivial work: complete with {"ok": True}. Job types from $JOB_TYPES, socket $SKIFF_SOCKET."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "handler-protocol", "python"))
from skiff_handler import Handler  # noqa: E402

app = Handler("bench-python", capacity=int(os.environ.get("CAPACITY", "32")))
for job_type in os.environ["JOB_TYPES"].split(","):
    app.job(job_type)(lambda task: {"ok": True})
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print("ready", flush=True)
app.run()
