"""Sustained gateway backpressure: the devstack fault proxy answers every ActivateJobs and
every CompleteJob with RESOURCE_EXHAUSTED for a few seconds, then lets calls through again.
Judged by the engine (every instance completes, every job once) and by counts of calls seen
on both sides of the proxy (a backoff, not a hot loop)."""
import collections
import sys
import time

import pytest

from broker_ctl import job_outcomes
from conftest import ROOT, wait_until
from test_jobs import deploy
import records as zrecords
import zeebe_client

sys.path.insert(0, str(ROOT / "devstack"))
from fault_proxy import FaultProxy  # noqa: E402


@pytest.fixture
def proxy(broker, tmp_path):
    with FaultProxy(target=broker["ZEEBE_ADDRESS"], log_path=str(tmp_path / "proxy.log"),
                    quiet=True) as fp:
        yield fp


def lines(path):
    return path.read_text().split() if path.exists() else []


def requests(skiff, method, code=None):
    labels = {"method": method}
    if code:
        labels["code"] = code
    return skiff.metric("skiff_zeebe_gateway_requests_total", **labels)


def test_sustained_backpressure_on_activation_and_completion(proxy, stack, tmp_path, uid):
    """Four jobs are held by the handler when the gateway starts refusing ActivateJobs and
    CompleteJob with RESOURCE_EXHAUSTED; the handler then answers them, so their completions
    and the next activations meet the refusals for a few seconds. Proves: skiff keeps the
    results and retries them with a growing backoff (the number of ActivateJobs attempts in
    the window stays a handful per second where a retry loop without backoff makes thousands),
    counts every refusal (its metric equals what the proxy injected), and once the gateway
    takes calls again all twelve instances complete, each job exactly once, with the handler's
    variables, no job delivered twice, no incident. Nothing is lost."""
    n, capacity = 12, 4
    job_type, pid = f"it-bp-{uid}", f"p-bp-{uid}"
    deploy(tmp_path, pid, job_type)
    mark = zrecords.end_offset()
    # the jobs wait before skiff starts: its first activation fills the handler's credits
    keys = [zeebe_client.create_instance(pid, {"x": i})["processInstanceKey"] for i in range(n)]
    skiff = stack.skiff([job_type], address=proxy.address, zeebe_backoff_initial="50ms",
                        zeebe_backoff_max="1s")
    gate, seen = tmp_path / "gate", tmp_path / "seen.log"
    stack.handler(skiff, [job_type], behave="gate", gate=gate, log=seen, capacity=capacity)
    wait_until(lambda: len(lines(seen)) == capacity, timeout=30, what="handler full")

    proxy.fail("RESOURCE_EXHAUSTED", method="ActivateJobs")
    proxy.fail("RESOURCE_EXHAUSTED", method="CompleteJob")
    injected_before = proxy.status()["counters"]["failed"]
    activations_before = requests(skiff, "ActivateJobs")
    t0 = time.monotonic()
    gate.touch()  # the four results arrive during the backpressure
    wait_until(lambda: requests(skiff, "CompleteJob", "RESOURCE_EXHAUSTED") >= capacity
               and requests(skiff, "ActivateJobs", "RESOURCE_EXHAUSTED") >= 2,
               timeout=30, what="completions and activations refused")
    time.sleep(3)  # keep refusing for a few seconds
    attempts = requests(skiff, "ActivateJobs") - activations_before
    completes = requests(skiff, "CompleteJob")
    window = time.monotonic() - t0
    proxy.normal()

    # a backoff, not a loop: with 50 ms doubling to 1 s (jittered down to half), a few calls
    # per second at most after the first ones; a loop without backoff makes thousands
    assert 2 <= attempts <= 10 + 4 * window, (attempts, window)
    assert completes <= capacity * (10 + 4 * window), (completes, window)
    # skiff counted every refusal the proxy injected, no more, no less
    wait_until(lambda: requests(skiff, "ActivateJobs", "RESOURCE_EXHAUSTED")
               + requests(skiff, "CompleteJob", "RESOURCE_EXHAUSTED")
               == proxy.status()["counters"]["failed"] - injected_before, timeout=15,
               what="skiff's RESOURCE_EXHAUSTED count equal to the proxy's")

    def done():
        recs = zrecords.records(value_type="PROCESS_INSTANCE", intent="ELEMENT_COMPLETED",
                                since_offset=mark, bpmnProcessId=pid,
                                bpmnElementType="PROCESS")
        return {r["value"]["processInstanceKey"] for r in recs} >= set(keys)
    wait_until(done, timeout=60, interval=0.5, what="every instance completed")
    wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=job_type,
                                    outcome="completed") == n, timeout=30,
               what="every completion acknowledged")

    completed = zrecords.records(value_type="JOB", intent="COMPLETED", since_offset=mark,
                                 type=job_type)
    per_job = collections.Counter(r["key"] for r in completed)
    assert len(per_job) == n and set(per_job.values()) == {1}, per_job
    assert sorted(r["value"]["variables"]["doubled"] for r in completed) == \
        [2 * i for i in range(n)]
    assert sorted(lines(seen)) == sorted(f"z-{k}" for k in per_job), "each job delivered once"
    assert not zrecords.records(value_type="INCIDENT", since_offset=mark, bpmnProcessId=pid)
    assert not zrecords.records(value_type="JOB", intent=["FAILED", "TIMED_OUT"],
                                since_offset=mark, type=job_type)
    o = job_outcomes(skiff, job_type)
    assert {k: v for k, v in o.items() if v} == {"activated": n, "completed": n}, dict(o)
    assert requests(skiff, "ActivateJobs", "RESOURCE_EXHAUSTED") > 0
    assert requests(skiff, "CompleteJob", "RESOURCE_EXHAUSTED") >= capacity
    print(f"backpressure: {attempts:.0f} ActivateJobs and {completes:.0f} CompleteJob attempts "
          f"in {window:.1f} s of RESOURCE_EXHAUSTED")
