"""A handler for the trace that crosses everything (tests/kafka/tracing_kafka.py), on the
Python SDK. Environment: SKIFF_SOCKET, RELAY_OUT (JSON lines: one per task, with its route and
traceparent), and what to do:
  RELAY_FORWARD="<in topic>=<out topic>"  produce each record's value to the out topic with the
                                          task's traceparent in the headers
  RELAY_PUBLISH="<topic>=<message name>"  publish_message(name, correlation key = the value's id,
                                          traceparent = the task's)
  RELAY_JOB="<job type>"                  complete each job
"""
import json
import os
import threading

from skiff_handler import Handler

OUT = os.environ["RELAY_OUT"]
lock = threading.Lock()
app = Handler("trace-relay", capacity=2)


def record(task, **extra):
    with lock, open(OUT, "a", encoding="utf-8") as f:
        f.write(json.dumps({"route": task.route, "traceparent": task.traceparent, **extra}) + "\n")


if os.environ.get("RELAY_FORWARD"):
    src, dst = os.environ["RELAY_FORWARD"].split("=")

    @app.topic(src)
    def forward(task):
        r = task.produce(dst, task.value, key="fwd", headers={"traceparent": task.traceparent})
        record(task, produced=r)

if os.environ.get("RELAY_PUBLISH"):
    topic, message = os.environ["RELAY_PUBLISH"].split("=")

    @app.topic(topic)
    def publish(task):
        r = task.publish_message(message, correlation_key=task.value["id"],
                                 variables={"via": "relay"}, time_to_live_ms=60000,
                                 traceparent=task.traceparent)
        record(task, published=r)

if os.environ.get("RELAY_JOB"):
    @app.job(os.environ["RELAY_JOB"])
    def job(task):
        record(task, variables=task.variables)
        return {"relayed": True}

app.run()
