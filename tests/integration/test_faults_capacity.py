"""Several handlers of different capacities serving one job type through one skiff: work goes
where credits are free, in proportion to capacity, and nothing is lost. Judged by the engine
(which handler's result completed each job) and by the handlers' own logs."""
import collections

from broker_ctl import needle, scan
from conftest import wait_until
from test_jobs import deploy
import gateway_rpc
import records as zrecords

CAPACITIES = (1, 4, 16)


def lines(path):
    return path.read_text().split() if path.exists() else []


def test_work_spreads_by_free_credits(stack, broker, tmp_path, uid):
    """Three handler processes with capacities 1, 4 and 16 on one job type, each job taking
    100 ms, 240 jobs waiting. Proves: every handler gets work; the share follows the free
    credits (the 16-credit handler completes several times what the 1-credit one does, the
    4-credit one in between); each job is delivered once and completed once in the engine by
    the handler that received it; every instance completes. Nothing is lost."""
    n = 240
    job_type, pid = f"it-cap-{uid}", f"p-cap-{uid}"
    deploy(tmp_path, pid, job_type)
    mark = zrecords.end_offset()
    path = stack.records_path or zrecords.default_path()
    skiff = stack.skiff([job_type])  # zeebe.max_jobs_active 32 >= 1 + 4 + 16
    logs = {}
    for cap in CAPACITIES:
        logs[f"cap{cap}"] = tmp_path / f"cap{cap}.log"
        stack.handler(skiff, [job_type], behave="sleep", sleep=0.1, capacity=cap,
                      name=f"cap{cap}", log=logs[f"cap{cap}"])
    wait_until(lambda: skiff.metric("skiff_handler_sessions") == len(CAPACITIES), timeout=30,
               what="all handlers connected")
    keys = gateway_rpc.create_instances(broker["ZEEBE_ADDRESS"], pid,
                                        [{"x": i} for i in range(n)])

    def completed():
        return {r["value"]["processInstanceKey"] for r in scan(
            path, needle("bpmnProcessId", pid), b'"ELEMENT_COMPLETED"',
            b'"bpmnElementType":"PROCESS"', since_offset=mark)}
    wait_until(lambda: completed() >= set(keys), timeout=120, interval=0.5,
               what="every instance completed")

    jobs = scan(path, needle("type", job_type), b'"valueType":"JOB"', since_offset=mark)
    done = [r for r in jobs if r["valueType"] == "JOB" and r["intent"] == "COMPLETED"]
    per_job = collections.Counter(r["key"] for r in done)
    assert len(per_job) == n and set(per_job.values()) == {1}, "each job completed once"
    assert not [r for r in jobs if r["valueType"] == "JOB" and
                r["intent"] in ("FAILED", "TIMED_OUT")]
    by_engine = collections.Counter(r["value"]["variables"]["handled_by"] for r in done)
    by_handler = {name: lines(path) for name, path in logs.items()}
    # the handler whose result the engine holds is the one that received the job, once
    for name, ids in by_handler.items():
        assert len(ids) == len(set(ids)) == by_engine[name], (name, by_engine)
    for r in done:
        assert f"z-{r['key']}" in by_handler[r["value"]["variables"]["handled_by"]]
    c1, c4, c16 = (by_engine[f"cap{c}"] for c in CAPACITIES)
    assert c1 + c4 + c16 == n
    assert c1 >= 1, f"every handler gets work: {by_engine}"
    assert c16 > c4 > c1, f"share follows capacity: {by_engine}"
    assert c16 >= 4 * c1, f"the 16-credit handler does clearly more: {by_engine}"
    print(f"capacity spread (1/4/16): {c1}/{c4}/{c16} of {n}")
