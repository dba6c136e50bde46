"""The peer of the Kafka benchmark: a plain confluent-kafka Consumer with the official
AvroDeserializer (Confluent Schema Registry), doing the same trivial work per record as the
skiff handler (bench/kafka_py_handler.py): decode to a dict, touch a field, note it.

As in Confluent's examples: ``Consumer.poll()`` one record at a time, ``AvroDeserializer`` with
no reader schema (the writer's schema from the registry, cached), ``enable.auto.commit=false``
and an asynchronous ``commit()`` every --commit-every records (the consumed positions of every
assigned partition), a synchronous one at the end. ``--batch N`` uses ``consume(N)`` instead.

Started and queried by bench/kafka_bench.py over stdin/stdout (bench/kafka_common.py);
``stop`` (or SIGTERM) ends the loop: last commit, ``close()``, exit.
"""
import argparse
import signal
import sys
import threading
import warnings
from typing import List, Optional

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.serialization import MessageField, SerializationContext

with warnings.catch_warnings():
    # Authlib (pulled in by the registry client) warns about httpx when imported.
    try:
        import authlib.deprecate  # noqa: F401
    except ImportError:
        pass
    warnings.simplefilter("ignore")
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer

from kafka_common import PRODUCED_HEADER, Tally, produced_us, serve_commands  # noqa: E402


def header(msg: Message, name: str) -> Optional[bytes]:
    for k, v in msg.headers() or ():
        if k == name:
            return v
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--commit-every", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=0,
                    help="consume(N) instead of poll(): up to N records per call (0: poll)")
    args = ap.parse_args()

    tally = Tally()
    stop = threading.Event()
    assignment: List[TopicPartition] = []

    def on_assign(consumer: Consumer, partitions: List[TopicPartition]) -> None:
        assignment[:] = partitions

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([args.topic], on_assign=on_assign)
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    ctx = SerializationContext(args.topic, MessageField.VALUE)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serve_commands(tally, assigned=lambda: len(assignment), on_stop=stop.set)
    print("ready", flush=True)

    def handle(msg: Message) -> None:
        if msg.error():
            raise KafkaException(msg.error())
        value = deserialize(msg.value(), ctx)
        _ = value["order_id"]  # the decoded record, a dict
        tally.seen(produced_us(header(msg, PRODUCED_HEADER)))

    uncommitted = 0
    while not stop.is_set():
        if args.batch:
            msgs = consumer.consume(args.batch, timeout=0.5)
        else:
            msg = consumer.poll(0.5)
            msgs = [msg] if msg is not None else []
        for msg in msgs:
            handle(msg)
        uncommitted += len(msgs)
        if uncommitted >= args.commit_every:
            consumer.commit(asynchronous=True)
            uncommitted = 0
    try:
        consumer.commit(asynchronous=False)
    except KafkaException:
        pass  # nothing consumed since the last commit
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
