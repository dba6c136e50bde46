"""Backpressure: skiff stops reading from librdkafka at kafka.max_buffered waiting records per
partition (ADR 0019), so the records it holds stay bounded while the handler is stuck; when no
record starts for a while it pauses the partitions as a last resort and keeps serving the
consumer queue; once the handler moves again everything is processed exactly once (no
rebalance here), committed to the end, and nothing stays paused."""
from __future__ import annotations

from collections import Counter

from conftest import CMD_SCHEMA, cmd, wait_until

MAX_BUFFERED = 5
CAPACITY = 2
PARTITIONS = 2
N_FAST = 200
SLOW_MS = 10000


def test_bounded_while_stuck_then_everything_once(kafka, stack, uid):
    topic = f"kt.bp.{uid}"
    group = f"kt-bp-{uid}"
    kafka.create_topic(topic, partitions=PARTITIONS)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group, capacity=CAPACITY, kafka__ordering="none",
                                 kafka__max_buffered=MAX_BUFFERED)
    # Two slow records first (they take both of the handler's slots early), then many fast
    # ones that must wait in skiff or in librdkafka.
    records = [(f"slow-{i}", cmd(f"slow{i}", sleep_ms=SLOW_MS), None) for i in range(CAPACITY)]
    records += [(f"k{i % 17}", cmd(f"r{i}"), None) for i in range(N_FAST)]
    sent = kafka.produce(topic, records, schema=CMD_SCHEMA)
    want = {(r["partition"], r["offset"]) for r in sent}

    # The slow records hold every slot: reading stops at the bound, and after a second
    # without any record starting every partition is paused (the consumer queue is still
    # served: rebalances, max.poll.interval).
    wait_until(lambda: skiff.metric("skiff_kafka_partitions_paused", topic=topic) == PARTITIONS,
               what="every partition paused while the handler is stuck",
               on_timeout=lambda: skiff.tail())
    # Records read and not processed: at most the running ones plus the bound (an invariant,
    # whenever it is read).
    held = skiff.metric("skiff_kafka_records_held", topic=topic)
    assert held <= CAPACITY + MAX_BUFFERED * PARTITIONS, f"{held} records held"
    assert "partitions paused until half" in skiff.logs()

    def acked():
        return [(e["partition"], e["offset"]) for e in handler.events("end")
                if e.get("outcome") == "ack"]
    wait_until(lambda: set(acked()) >= want, what=f"all {len(want)} records acked",
               on_timeout=lambda: f"{len(set(acked()))} acked\n{skiff.tail()}")
    twice = [k for k, n in Counter(acked()).items() if n > 1]
    assert twice == [], f"records delivered more than once without a rebalance: {twice}"
    kafka.wait_committed(group, topic, kafka.end_offsets(topic), skiff)
    wait_until(lambda: skiff.metric("skiff_kafka_records_held", topic=topic) == 0 and
               skiff.metric("skiff_kafka_partitions_paused", topic=topic) == 0,
               what="nothing held or paused at the end")
    stack.stop_all()
