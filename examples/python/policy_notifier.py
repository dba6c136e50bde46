"""Underwriting example: a Kafka consumer, written with the Python SDK.

Consumes the business event ``business.policy.issued.v1`` (Avro, schema
../../schemas/business.policy.issued.v1.avsc), which the issue-policy worker
(../node/policy_issuer.mjs) produces through skiff, and sends the policyholder
their welcome notification. skiff decodes each record and hands over its value
as JSON::

    {"policyId": "POL-2251799813685321", "processInstanceKey": "2251799813685321",
     "premium": "1450.00", "currency": "EUR", "riskScore": 52,
     "issuedAt": "2025-01-02T03:04:05.123Z"}

"Sending" appends one JSON line per policy to the outbox file
``$POLICY_NOTIFIER_OUTBOX`` (default: standard output), with where the record
came from. Events arrive at least once, so a policy already notified is acked
without a second notification. A malformed event goes to the dead-letter topic
``business.policy.issued.v1.dlq`` at once (retrying cannot fix it).
Run it next to skiff (kafka.topics=business.policy.issued.v1) or
tests/fake_skiff.py: SKIFF_SOCKET=... python3 policy_notifier.py
"""

import json
import os
import sys
import threading
from typing import Any, Dict, Set

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "handler-protocol", "python"))

from skiff_handler import DeadLetter, Handler  # noqa: E402

TOPIC = "business.policy.issued.v1"

app = Handler("policy-notifier", capacity=4)
outbox_path = os.environ.get("POLICY_NOTIFIER_OUTBOX")
lock = threading.Lock()
notified: Set[str] = set()  # policy ids already notified (loaded from the outbox at start)


def load_outbox() -> None:
    if not outbox_path or not os.path.exists(outbox_path):
        return
    with open(outbox_path, encoding="utf-8") as f:
        for line in f:
            try:
                notified.add(json.loads(line)["policyId"])
            except (ValueError, KeyError, TypeError):
                pass  # a torn last line: that policy is notified again


def send(notification: Dict[str, Any]) -> None:
    line = json.dumps(notification, separators=(",", ":")) + "\n"
    if outbox_path:
        with open(outbox_path, "a", encoding="utf-8") as f:
            f.write(line)
    else:
        sys.stdout.write(line)
        sys.stdout.flush()


@app.topic(TOPIC)
def notify(task):
    event = task.value
    if not isinstance(event, dict) or not event.get("policyId"):
        raise DeadLetter(f"not a PolicyIssued event: {event!r:.200}")
    if event["premium"].startswith("-"):
        raise DeadLetter(f"{event['policyId']}: negative premium {event['premium']}")
    with lock:
        if event["policyId"] in notified:
            return  # a duplicate: ack it, the policyholder already has the letter
        rec = task.record
        send({"policyId": event["policyId"], "event": event, "attempt": task.attempt,
              "kafka": {"partition": rec.partition, "offset": rec.offset, "key": rec.key,
                        "schemaId": rec.schema_id, "timestamp": rec.timestamp}})
        notified.add(event["policyId"])


if __name__ == "__main__":
    load_outbox()
    app.run()
