"""The OAUTHBEARER listener of devstack/kafka-oauthbearer.sh, checked with the official client
(confluent-kafka, whose bundled librdkafka has `oidc`) and Keycloak's real tokens: a client with
the `zeebe-api` audience produces and consumes a record; a client whose tokens lack it is
refused by the broker. Run with the Kafka clients' venv (devstack/kafka.sh python)."""
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = os.environ["SKIFF_KAFKA_OAUTHBEARER_BOOTSTRAP"]
TOKEN_URL = os.environ["SKIFF_KAFKA_OAUTHBEARER_TOKEN_URL"]


def oidc(client_id, secret):
    return {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": client_id, "sasl.oauthbearer.client.secret": secret,
            "sasl.oauthbearer.token.endpoint.url": TOKEN_URL,
            "sasl.oauthbearer.extensions": "", "log_level": 3}


def main():
    good = oidc("skiff-worker", "skiff-worker-secret")
    topic = f"oauthbearer-check-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(good)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer(good)
    delivered = []
    p.produce(topic, b"through the OAUTHBEARER listener",
              on_delivery=lambda err, msg: delivered.append(err))
    p.flush(30)
    assert delivered == [None], delivered
    c = Consumer(dict(good, **{"group.id": topic, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    deadline = time.monotonic() + 30
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = c.poll(1)
    c.close()
    assert msg is not None and msg.value() == b"through the OAUTHBEARER listener", msg
    errors = []
    bad = dict(oidc("skiff-noaud", "skiff-noaud-secret"), error_cb=errors.append)
    refused = AdminClient(bad)
    try:
        refused.list_topics(timeout=10)
    except KafkaException as e:
        errors.append(e)
    refused.poll(1)  # serves error_cb
    text = " ".join(str(e) for e in errors)
    assert "SASL authentication error" in text, text
    print(f"OAUTHBEARER listener ok: a record produced and consumed on {topic} with "
          f"skiff-worker's tokens; skiff-noaud refused ({text[:200]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
