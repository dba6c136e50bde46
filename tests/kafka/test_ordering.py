"""kafka.ordering=key under concurrency: records of one key never overlap and run in offset
order, other keys run in parallel; every record is acked and committed."""
from __future__ import annotations

import random
from collections import defaultdict

from conftest import CMD_SCHEMA, cmd, wait_until

N_RECORDS = 200
N_KEYS = 10


def test_key_ordering_under_concurrency(kafka, stack, uid):
    topic = f"kt.order.{uid}"
    group = f"kt-order-{uid}"
    kafka.create_topic(topic, partitions=2)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group, capacity=8, kafka__ordering="key")

    rnd = random.Random(uid)
    records = [(f"key-{i % N_KEYS}", cmd(f"r{i}", sleep_ms=rnd.randint(0, 20)), None)
               for i in range(N_RECORDS)]
    sent = kafka.produce(topic, records, schema=CMD_SCHEMA)
    want = {(r["partition"], r["offset"]) for r in sent}

    def acked():
        return {(e["partition"], e["offset"]) for e in handler.events("end")
                if e.get("outcome") == "ack"}
    wait_until(lambda: acked() >= want, what=f"all {N_RECORDS} records acked",
               on_timeout=lambda: f"{len(acked())} acked\n{skiff.tail()}")

    ev = handler.events()
    by_key = defaultdict(list)
    for e in ev:
        by_key[e["key"]].append(e)
    assert len(by_key) == N_KEYS
    for key, seq in by_key.items():
        # In the handler's write order: start, end, start, end... (never two open at once),
        # each end belonging to the start before it, offsets increasing.
        kinds = [e["event"] for e in seq]
        assert kinds == ["start", "end"] * (len(seq) // 2), f"{key}: overlapping records {kinds}"
        offsets = [e["offset"] for e in seq[::2]]
        assert [e["offset"] for e in seq[1::2]] == offsets
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), (key, offsets)
        assert len({e["partition"] for e in seq}) == 1
        # The same with the handler's clock: each record ended before the next one started.
        for prev, nxt in zip(seq[1::2], seq[2::2]):
            assert prev["t"] <= nxt["t"], (key, prev["offset"], nxt["offset"])
    assert len(ev) == 2 * N_RECORDS, "a record was delivered more than once"

    # Other keys ran in parallel (capacity 8): at some point several records were open.
    open_now, most = 0, 0
    for e in ev:
        open_now += 1 if e["event"] == "start" else -1
        most = max(most, open_now)
    assert 2 <= most <= 8, f"at most {most} records in flight at once"

    ends = kafka.end_offsets(topic)
    kafka.wait_committed(group, topic, ends, skiff)
    wait_until(lambda: skiff.metric("skiff_kafka_records_processed_total", topic=topic,
                                    outcome="acked") == N_RECORDS, what="acked metric")
    wait_until(lambda: skiff.metric("skiff_kafka_records_held", topic=topic) == 0 and
               skiff.metric("skiff_kafka_partitions_paused", topic=topic) == 0,
               what="nothing held or paused at the end")
    stack.stop_all()
