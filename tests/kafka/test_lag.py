"""Consumer lag, the platform's most critical metric: skiff_kafka_consumer_lag counts the
records not yet processed (here a new group that has never committed and has no handler yet),
follows records written while its partitions are paused (not fetched: their ends are asked of
the broker), and returns to 0 once they are processed and committed."""
from __future__ import annotations

from conftest import CMD_SCHEMA, cmd, wait_until


def test_lag_counts_unprocessed_records(kafka, stack, uid):
    topic = f"kt.lag.{uid}"
    group = f"kt-lag-{uid}"
    kafka.create_topic(topic, partitions=2)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    kafka.produce(topic, [(f"k{i}", cmd(f"r{i}"), None) for i in range(30)], schema=CMD_SCHEMA)
    ends = kafka.end_offsets(topic)
    assert sum(ends.values()) == 30, ends

    # No handler yet: nothing is processed or committed; the lag is the whole backlog.
    skiff = stack.skiff([topic], group)

    def lag() -> dict:
        return {p: skiff.metric("skiff_kafka_consumer_lag", topic=topic, partition=str(p))
                for p in ends}

    wait_until(lambda: lag() == {p: float(n) for p, n in ends.items()},
               what=f"lag per partition {ends} before any handler",
               on_timeout=lambda: f"lag {lag()}\n{skiff.tail()}")

    # Both partitions are paused (records waiting, no handler): no fetch tells skiff their new
    # ends, the lag must still grow with what is written now.
    assert skiff.metric("skiff_kafka_partitions_paused", topic=topic) == len(ends)
    kafka.produce(topic, [(f"m{i}", cmd(f"s{i}"), None) for i in range(20)], schema=CMD_SCHEMA)
    ends = kafka.end_offsets(topic)
    assert sum(ends.values()) == 50, ends
    wait_until(lambda: lag() == {p: float(n) for p, n in ends.items()},
               what=f"lag per partition {ends} after records written while paused",
               on_timeout=lambda: f"lag {lag()}\n{skiff.tail()}")

    stack.handler(skiff, [topic], capacity=4)
    kafka.wait_committed(group, topic, ends, skiff)
    wait_until(lambda: lag() == {p: 0.0 for p in ends}, what="lag back to 0",
               on_timeout=lambda: f"lag {lag()}\n{skiff.tail()}")
    assert skiff.metric("skiff_kafka_records_processed_total", topic=topic,
                        outcome="acked") == 50
    stack.stop_all()
