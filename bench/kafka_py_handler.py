"""skiff contender (Kafka): a handler written with skiff's Python SDK that acks every record.

skiff decodes each Avro record and hands it over as a task; the SDK parses the task frame into
a dict (``task.value``) and runs the topic function on a worker thread; returning acks it.
The function notes the record (bench/kafka_common.py: count, latency from the produce-time
header) and touches one field of the value, the same trivial work as bench/kafka_py_consumer.py.

Environment: SKIFF_SOCKET (read by the SDK), TOPICS (comma-separated), CAPACITY (64), INLINE
(1: ``Handler(inline=True)``, the function runs on the reading thread).
Started and queried by bench/kafka_bench.py over stdin/stdout (kafka_common's protocol);
``stop`` is a no-op here: the handler leaves when skiff drains it (or on SIGTERM).
"""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "handler-protocol" / "python"))
from skiff_handler import Handler, Task  # noqa: E402

from kafka_common import PRODUCED_HEADER, Tally, produced_us, serve_commands  # noqa: E402

tally = Tally()
app = Handler("bench-kafka-python", capacity=int(os.environ.get("CAPACITY", "64")),
              inline=os.environ.get("INLINE") == "1")


def on_record(task: Task) -> None:
    """Ack (return) after noting the record."""
    _ = task.value["order_id"]  # the decoded record, a dict
    tally.seen(produced_us(task.record.headers.get(PRODUCED_HEADER)))


for topic in os.environ["TOPICS"].split(","):
    app.topic(topic)(on_record)

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
serve_commands(tally, assigned=lambda: None, on_stop=lambda: None)
print("ready", flush=True)
app.run()
