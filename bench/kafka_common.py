"""What the two Kafka consumers of bench/kafka_bench.py share (standard library only): the
tally of the records they have seen and the line protocol the driver talks to them with.

The protocol: the process prints ``ready`` on stdout once its imports are done; then, for
every line the driver writes on its stdin, it answers with one JSON line on stdout:

    count   {"count": n, "assigned": partitions or null}
    stats   {"count": n, "first_us": ..., "last_us": ..., "latency_us": [...]}
    stop    {"stopping": true}; the process then finishes (see its own docstring)

Latency: a record produced by the bench carries its produce time (epoch µs, taken just
before ``Producer.produce``) in the header ``bench-produced-us``; the consumer subtracts it
from the wall clock when the decoded record reaches the code that handles it. Records
without that header (the bench's primers) are counted but have no latency.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

PRODUCED_HEADER = "bench-produced-us"


class Tally:
    """Records seen by one consumer process; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.first_us: Optional[int] = None
        self.last_us: Optional[int] = None
        self.latency_us: List[int] = []

    def seen(self, produced_us: Optional[int]) -> None:
        """One record handled now; ``produced_us`` from its header, if it had one."""
        now = time.time_ns() // 1000
        with self._lock:
            self.count += 1
            if self.first_us is None:
                self.first_us = now
            self.last_us = now
            if produced_us is not None:
                self.latency_us.append(now - produced_us)

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {"count": self.count, "first_us": self.first_us, "last_us": self.last_us,
                    "latency_us": list(self.latency_us)}


def produced_us(value: Optional[bytes | str]) -> Optional[int]:
    """The header's value as an int (None when absent or not a number)."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def serve_commands(tally: Tally, assigned: Callable[[], Optional[int]],
                   on_stop: Callable[[], None]) -> threading.Thread:
    """Answers the driver's commands on a daemon thread; returns the thread."""
    out_lock = threading.Lock()

    def reply(obj: Dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
            sys.stdout.flush()

    def loop() -> None:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "count":
                reply({"count": tally.count, "assigned": assigned()})
            elif cmd == "stats":
                reply(tally.stats())
            elif cmd == "stop":
                reply({"stopping": True})
                on_stop()
                return
            elif cmd:
                reply({"error": "unknown command %r" % cmd})
        on_stop()  # stdin closed: the driver is gone

    t = threading.Thread(target=loop, name="bench-commands", daemon=True)
    t.start()
    return t
