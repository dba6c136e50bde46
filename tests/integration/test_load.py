"""Load with a chaos scenario: 10,000 process instances through one skiff and two handler
processes, one of them SIGKILLed twice mid-run and restarted each time. Judged by the engine's
record stream (a broker of the test's own, so the shared stream stays small for other tests).

SKIFF_LOAD_INSTANCES changes the number of instances (default 10000)."""
import collections
import os
import threading
import time

import pytest

from bpmn import service_task
from broker_ctl import OwnBroker, Tail, job_outcomes, needle, scan, settled
from conftest import wait_until
import gateway_rpc

N = int(os.environ.get("SKIFF_LOAD_INSTANCES", "10000"))
CAPACITY = 16  # per handler; two handlers = zeebe.max_jobs_active (32)


@pytest.fixture(scope="module")
def load_broker(tmp_path_factory):
    ob = OwnBroker(tmp_path_factory.mktemp("load-broker"), keep_data=False).start()
    yield ob
    ob.stop(archive=False)


def lines(path):
    return path.read_text().split() if path.exists() else []


class Incarnation:
    """One handler process: what it received (LOG) and finished (DONE_LOG)."""

    def __init__(self, stack, skiff, job_type, tmp_path, name, n):
        self.name = f"{name}{n}"
        self.seen = tmp_path / f"{self.name}.seen"
        self.done = tmp_path / f"{self.name}.done"
        self.proc = stack.handler(skiff, [job_type], behave="sleep", sleep=0.01,
                                  capacity=CAPACITY, name=name, log=self.seen,
                                  done_log=self.done)
        self.killed = False

    def in_flight(self):
        return len(lines(self.seen)) - len(lines(self.done))

    def kill(self):
        self.proc.kill()
        self.killed = True


def test_10k_instances_two_handlers_one_killed_twice(load_broker, stack, tmp_path, uid):
    """10,000 instances of a one-service-task process, created concurrently through the
    gateway while two handlers (capacity 16 each, 10 ms per job) work; handler A is SIGKILLed
    with tasks in flight at 25 % and at 60 % of the completions, and restarted each time.
    Proves, from the engine's records: every instance completes (none stuck, no incident);
    every job is completed exactly once; a job reached a handler twice only if it was in
    flight in a killed handler and skiff gave it back to the engine (a FAILED record with its
    retries unchanged); skiff's counts agree with the engine (its give-backs, abandoned or
    yielded, = the FAILED records; abandoned >= jobs delivered twice; completed = 10,000;
    activated = 10,000 + give-backs). Nothing is lost."""
    ob = load_broker
    job_type, pid = f"it-load-{uid}", f"p-load-{uid}"
    bpmn = tmp_path / f"{pid}.bpmn"
    bpmn.write_text(service_task(pid, job_type))
    ob.deploy(bpmn)
    skiff = stack.skiff([job_type], address=ob.address, log_level="info")
    a = [Incarnation(stack, skiff, job_type, tmp_path, "A", 0)]
    b = Incarnation(stack, skiff, job_type, tmp_path, "B", 0)
    wait_until(lambda: skiff.metric("skiff_handler_sessions") == 2, timeout=30,
               what="both handlers connected")

    t0 = time.monotonic()
    created, errors, timing = [], [], {}

    def create():
        try:
            created.extend(gateway_rpc.create_instances(
                ob.address, pid, [{"x": i} for i in range(N)], concurrency=32))
            timing["created"] = time.monotonic() - t0
        except Exception as e:  # reported by the main thread
            errors.append(e)
    creator = threading.Thread(target=create, daemon=True)
    creator.start()

    def completed_jobs():
        return skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="completed")

    for share in (0.25, 0.60):
        wait_until(lambda: completed_jobs() >= share * N or errors, timeout=300, interval=0.2,
                   what=f"{share:.0%} of the jobs completed")
        assert not errors, errors
        victim = a[-1]
        wait_until(lambda: victim.in_flight() > 0, timeout=30, what="tasks in flight in A")
        victim.kill()
        timing[f"kill at {share:.0%}"] = time.monotonic() - t0
        a.append(Incarnation(stack, skiff, job_type, tmp_path, "A", len(a)))

    creator.join(timeout=600)
    assert not errors, errors
    assert len(created) == N and len(set(created)) == N

    tail = Tail(ob.records_path, needle("bpmnProcessId", pid), b'"ELEMENT_COMPLETED"',
                b'"bpmnElementType":"PROCESS"')
    ended = set()

    def all_ended():
        ended.update(r["value"]["processInstanceKey"] for r in tail.new())
        return len(ended) >= N
    wait_until(all_ended, timeout=600, interval=0.5,
               what=f"every instance completed ({len(ended)} of {N} so far)")
    timing["all completed"] = time.monotonic() - t0

    # ---- the engine's view ----
    t_read = time.monotonic()
    assert ended == set(created), "every instance completed, and only ours"
    jobs = scan(ob.records_path, b'"valueType":"JOB"', needle("type", job_type))
    incidents = scan(ob.records_path, b'"valueType":"INCIDENT"', needle("bpmnProcessId", pid))
    timing["records read"] = time.monotonic() - t_read
    by_intent = collections.defaultdict(list)
    for r in jobs:
        if r["recordType"] == "EVENT":
            by_intent[r["intent"]].append(r)
    assert not incidents, f"{len(incidents)} incidents"
    per_job = collections.Counter(r["key"] for r in by_intent["COMPLETED"])
    assert len(per_job) == N and set(per_job.values()) == {1}, "each job completed exactly once"
    assert {r["key"] for r in by_intent["CREATED"]} == set(per_job)
    assert not by_intent["TIMED_OUT"], "no job timed out"
    given_back = by_intent["FAILED"]
    assert all(r["value"]["retries"] == 3 for r in given_back), "given back, retries unchanged"
    given_back_keys = collections.Counter(r["key"] for r in given_back)

    # ---- the handlers' view ----
    deliveries = collections.Counter()
    in_killed = set()
    for inc in a + [b]:
        ids = [int(t.removeprefix("z-")) for t in lines(inc.seen)]
        deliveries.update(ids)
        if inc.killed:
            in_killed.update(ids)
    assert set(deliveries) == set(per_job), "every job reached a handler"
    twice = {k for k, c in deliveries.items() if c > 1}
    assert twice <= in_killed, f"delivered twice but never in a killed handler: {twice - in_killed}"
    assert twice <= set(given_back_keys), \
        f"delivered twice without the engine recording a give-back: {twice - set(given_back_keys)}"
    for k in twice:
        assert deliveries[k] <= given_back_keys[k] + 1

    # ---- skiff's counts agree ----
    abandoned = skiff.metric("skiff_tasks_abandoned_total", source="zeebe")
    wait_until(lambda: settled(job_outcomes(skiff, job_type)), timeout=30,
               what="every activation accounted for in skiff")
    o = job_outcomes(skiff, job_type)
    assert abandoned >= 2, "both kills caught tasks in flight"
    assert abandoned == o["abandoned"] >= len(twice), (abandoned, dict(o), len(twice))
    # every give-back skiff sent is one the engine recorded (handler gone: abandoned; or
    # activated when no handler had a free credit: yielded)
    assert o["abandoned"] + o["yielded"] == len(given_back), (dict(o), len(given_back))
    assert o["completed"] == N and o["activated"] == N + len(given_back), dict(o)
    for outcome in ("failed", "not_found", "rejected", "deadline_passed", "timed_out"):
        assert o[outcome] == 0, dict(o)
    o = dict(o)
    print(f"load: {N} instances, timings (s from first create) "
          + ", ".join(f"{k} {v:.1f}" for k, v in timing.items())
          + f"; creation retries (backpressure) {gateway_rpc.create_instances.last_retries}; "
          f"given back {len(given_back)}, delivered twice {len(twice)}; outcomes {o}")
