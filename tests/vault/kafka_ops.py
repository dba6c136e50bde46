"""Kafka operations for tests/vault, run with devstack's clients venv (`devstack/kafka.sh
python`): the official confluent-kafka AdminClient and Consumer against a broker's PLAINTEXT
port. Prints JSON.

  kafka_ops.py BOOTSTRAP topic NAME                 create a topic (1 partition)
  kafka_ops.py BOOTSTRAP scram USER PASSWORD        create or rotate a SCRAM-SHA-512 user
  kafka_ops.py BOOTSTRAP count TOPIC N              read TOPIC from the start until N records
                                                    (or 60 s): {"count", "keys"}
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)


def main():
    bootstrap, op, *args = sys.argv[1:]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if op == "topic":
        for f in admin.create_topics([NewTopic(args[0], 1, 1)]).values():
            f.result(30)
        print(json.dumps({"ok": True}))
    elif op == "scram":
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        up = UserScramCredentialUpsertion(args[0], info, args[1].encode())
        for f in admin.alter_user_scram_credentials([up]).values():
            f.result(30)
        print(json.dumps({"ok": True}))
    elif op == "count":
        topic, n = args[0], int(args[1])
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "count-" + uuid.uuid4().hex,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        keys, end = [], time.monotonic() + 60
        while len(keys) < n and time.monotonic() < end:
            m = c.poll(0.5)
            if m is not None and not m.error():
                keys.append(m.key().decode())
        c.close()
        print(json.dumps({"count": len(keys), "keys": keys}))
    else:
        raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    main()
