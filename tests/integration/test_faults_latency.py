"""Network latency between skiff and the gateway: a TCP proxy (tcp_delay_proxy.py) adds 50 ms
to every chunk in each direction. Jobs must flow exactly as without it, only slower, and the
latency must show in skiff's job latency histogram."""
import collections

from broker_ctl import job_outcomes
from conftest import wait_until
from tcp_delay_proxy import DelayProxy
from test_jobs import deploy
import records as zrecords
import zeebe_client

DELAY = 0.05  # seconds, each direction


def lines(path):
    return path.read_text().split() if path.exists() else []


def test_latency_changes_nothing_but_latency(stack, broker, tmp_path, uid):
    """20 jobs through a link with 50 ms each way (100 ms per round trip). Proves: every
    instance completes with the handler's variables, each job activated once and completed
    once, no job fails, times out or is retried, every gateway call answers OK (no deadline
    or keepalive trips over the delay), and skiff_zeebe_job_latency_seconds counts each job
    once with a mean of at least one round trip (activation to CompleteJob acknowledged
    includes the CompleteJob round trip), which a zero-latency path would not give. Nothing is
    lost."""
    n = 20
    job_type, pid = f"it-lat-{uid}", f"p-lat-{uid}"
    deploy(tmp_path, pid, job_type)
    mark = zrecords.end_offset()
    with DelayProxy(broker["ZEEBE_ADDRESS"], delay=DELAY) as dp:
        skiff = stack.skiff([job_type], address=dp.address)
        seen = tmp_path / "seen.log"
        stack.handler(skiff, [job_type], name="slowlink", log=seen, capacity=4)
        keys = [zeebe_client.create_instance(pid, {"x": i})["processInstanceKey"]
                for i in range(n)]

        def done():
            recs = zrecords.records(value_type="PROCESS_INSTANCE", intent="ELEMENT_COMPLETED",
                                    since_offset=mark, bpmnProcessId=pid,
                                    bpmnElementType="PROCESS")
            return {r["value"]["processInstanceKey"] for r in recs} >= set(keys)
        wait_until(done, timeout=90, interval=0.5, what="every instance completed")
        wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=job_type,
                                        outcome="completed") == n, timeout=30,
                   what="every completion acknowledged")
        metrics = {name: skiff.metric(name, job_type=job_type) for name in (
            "skiff_zeebe_job_latency_seconds_count", "skiff_zeebe_job_latency_seconds_sum")}
        requests = skiff.metric("skiff_zeebe_gateway_requests_total")
        requests_ok = skiff.metric("skiff_zeebe_gateway_requests_total", code="OK")
        outcomes = dict(job_outcomes(skiff, job_type))
        stats = dict(dp.stats)

    assert stats["chunks_up"] > 0 and stats["chunks_down"] > 0, stats
    # the engine: each job activated once, completed once with the handler's variables
    completed = zrecords.records(value_type="JOB", intent="COMPLETED", since_offset=mark,
                                 type=job_type)
    per_job = collections.Counter(r["key"] for r in completed)
    assert len(per_job) == n and set(per_job.values()) == {1}, per_job
    by_instance = {r["value"]["processInstanceKey"]: r["value"]["variables"] for r in completed}
    for i, key in enumerate(keys):
        assert by_instance[key] == {"doubled": 2 * i, "handled_by": "slowlink"}
    activated = [k for b in zrecords.records(value_type="JOB_BATCH", intent="ACTIVATED",
                                             since_offset=mark, type=job_type)
                 for k in b["value"]["jobKeys"]]
    assert sorted(activated) == sorted(per_job), "each job activated exactly once"
    assert not zrecords.records(value_type="JOB", intent=["FAILED", "TIMED_OUT"],
                                since_offset=mark, type=job_type)
    assert not zrecords.records(value_type="INCIDENT", since_offset=mark, bpmnProcessId=pid)
    assert sorted(lines(seen)) == sorted(f"z-{k}" for k in per_job)
    # skiff: nothing failed or retried, every call OK
    assert {k: v for k, v in outcomes.items() if v} == {"activated": n, "completed": n}, \
        outcomes
    assert requests == requests_ok, skiff.http("/metrics")[1]
    # the latency shows: every job observed once, mean at least one injected round trip
    count, total = (metrics["skiff_zeebe_job_latency_seconds_count"],
                    metrics["skiff_zeebe_job_latency_seconds_sum"])
    assert count == n, metrics
    assert total / count >= 2 * DELAY, metrics
    print(f"latency: mean job latency {total / count * 1000:.0f} ms with {2 * DELAY * 1000:.0f} "
          f"ms round trip added; proxy {stats}")
