#!/usr/bin/env python3
"""End-to-end check of the Zeebe devstack: real broker, zbctl, record stream, fault proxy.

    python3 devstack/selfcheck.py [--no-start] [--keep] [--show]

Starts the broker with zeebe.sh (unless --no-start), deploys the test BPMNs, drives instances
and jobs with zbctl (directly and through grpc-fault-proxy.mjs), checks the records that show up
in the record stream, stops the broker (unless --keep). --show prints sample records.
Ends with the line "N passed, N failed"; exit status 1 if anything failed.
"""

import json
import os
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import records  # noqa: E402
import zeebe_client as zc  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402

SMOKE = os.path.join(HERE, "testdata", "devstack-smoke.bpmn")
PASSTHROUGH = os.path.join(HERE, "testdata", "devstack-passthrough.bpmn")

results = []
shown = {}


def check(name):
    def deco(fn):
        def run():
            t0 = time.monotonic()
            try:
                fn()
                results.append((name, True))
                print("ok   %-48s %.2fs" % (name, time.monotonic() - t0), flush=True)
            except Exception:  # noqa: BLE001 - report every failure and go on
                results.append((name, False))
                print("FAIL %s\n%s" % (name, traceback.format_exc()), flush=True)
        run.__name__ = fn.__name__
        return run
    return deco


def expect_error(code, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except zc.ZbctlError as e:
        assert e.code == code, "expected %s, got %s: %s" % (code, e.code, e)
        return e
    raise AssertionError("expected %s, call succeeded" % code)


@check("deploy both test processes")
def t_deploy():
    res = zc.deploy(SMOKE, PASSTHROUGH)
    ids = sorted(p["bpmnProcessId"] for p in res["processes"])
    assert ids == ["devstack-passthrough", "devstack-smoke"], res
    records.wait_for(value_type="PROCESS", intent="CREATED", bpmnProcessId="devstack-smoke")


@check("create instance -> JOB CREATED record")
def t_job_created():
    mark = records.end_offset()
    pi = zc.create_instance("devstack-smoke", {"a": 1, "s": "x"})
    pik = pi["processInstanceKey"]
    assert isinstance(pik, int)
    rec = records.wait_for(value_type="JOB", intent="CREATED", since_offset=mark,
                           processInstanceKey=pik, timeout=10)
    assert rec["value"]["type"] == "devstack-smoke" and rec["value"]["retries"] == 3
    shown["JOB CREATED"] = rec


@check("create instance with result (variables back)")
def t_with_result():
    res = zc.create_instance_with_result("devstack-passthrough", {"x": 42, "y": "z"}, 20)
    assert res["variables"] == {"x": 42, "y": "z"}, res


@check("activate + fail(retries 0) -> INCIDENT CREATED")
def t_incident():
    mark = records.end_offset()
    pik = zc.create_instance("devstack-smoke", {"n": 1})["processInstanceKey"]
    records.wait_for(value_type="JOB", intent="CREATED", since_offset=mark, processInstanceKey=pik)
    job = None
    for _ in range(20):
        for j in zc.activate_jobs("devstack-smoke", max_jobs=32, timeout_s=60):
            if j["processInstanceKey"] == pik:
                job = j
            else:
                zc.complete_job(j["key"])
        if job:
            break
    assert job and job["variables"] == {"n": 1}, job
    zc.fail_job(job["key"], retries=0, error_message="selfcheck failure")
    inc = records.wait_for(value_type="INCIDENT", intent="CREATED", since_offset=mark,
                           processInstanceKey=pik, timeout=10)
    assert inc["value"]["errorType"] == "JOB_NO_RETRIES", inc
    assert inc["value"]["errorMessage"] == "selfcheck failure", inc
    shown["JOB FAILED"] = records.wait_for(value_type="JOB", intent="FAILED", since_offset=mark,
                                           key=job["key"])
    shown["INCIDENT CREATED"] = inc
    zc.cancel_instance(pik)


@check("complete job -> PROCESS ELEMENT_COMPLETED")
def t_complete():
    mark = records.end_offset()
    pik = zc.create_instance("devstack-smoke", {})["processInstanceKey"]
    records.wait_for(value_type="JOB", intent="CREATED", since_offset=mark, processInstanceKey=pik)
    done = False
    for _ in range(20):
        for j in zc.activate_jobs("devstack-smoke", max_jobs=32, timeout_s=60):
            zc.complete_job(j["key"], {"result": "ok"})
            done = done or j["processInstanceKey"] == pik
        if done:
            break
    assert done
    shown["JOB COMPLETED"] = records.wait_for(value_type="JOB", intent="COMPLETED",
                                              since_offset=mark, processInstanceKey=pik)
    rec = records.wait_for(value_type="PROCESS_INSTANCE", intent="ELEMENT_COMPLETED",
                           since_offset=mark, processInstanceKey=pik, bpmnElementType="PROCESS")
    shown["PROCESS_INSTANCE ELEMENT_COMPLETED (PROCESS)"] = rec


@check("long polling: activation waits for a new job")
def t_long_poll():
    jt = "devstack-longpoll"
    got = {}

    def activate():
        t0 = time.monotonic()
        got["jobs"] = zc.Zeebe(request_timeout_s=15).zbctl(
            "activate", "jobs", jt, "--maxJobsToActivate", 1, "--timeout", "60s")
        got["t"] = time.monotonic() - t0

    # A process whose task has the long-poll job type: deploy the smoke BPMN with a new type.
    with open(SMOKE) as f:
        xml = f.read().replace('id="devstack-smoke"', 'id="devstack-longpoll"') \
                      .replace('type="devstack-smoke"', 'type="%s"' % jt)
    path = os.path.join(os.path.dirname(records.default_path()), "longpoll.bpmn")
    with open(path, "w") as f:
        f.write(xml)
    zc.deploy(path)
    th = threading.Thread(target=activate)
    th.start()
    time.sleep(1.5)
    zc.create_instance("devstack-longpoll", {})
    th.join(20)
    jobs = got.get("jobs", {}).get("jobs", [])
    assert len(jobs) == 1, got
    assert 1.0 < got["t"] < 8, got


def proxy_checks():
    with FaultProxy(target=zc.default_address(), quiet=True) as fp:
        via = zc.Zeebe(fp.address)

        @check("proxy: forwards status/deploy/create")
        def t_fwd():
            assert "Leader, Healthy" in via.status()
            via.deploy(SMOKE)
            assert isinstance(via.create_instance("devstack-smoke", {})["processInstanceKey"], int)
            res = via.create_instance_with_result("devstack-passthrough", {"p": [1, 2]}, 20)
            assert res["variables"] == {"p": [1, 2]}

        @check("proxy: injected UNAVAILABLE (count 1)")
        def t_unavail():
            fp.fail("UNAVAILABLE", count=1)
            e = expect_error("UNAVAILABLE", via.status)
            assert "injected" in str(e)
            via.status()

        @check("proxy: RESOURCE_EXHAUSTED for one method")
        def t_exhausted():
            fp.fail("RESOURCE_EXHAUSTED", method="CreateProcessInstance", count=2)
            via.status()  # other methods pass
            expect_error("RESOURCE_EXHAUSTED", via.create_instance, "devstack-smoke", {})
            expect_error("RESOURCE_EXHAUSTED", via.create_instance, "devstack-smoke", {})
            via.create_instance("devstack-smoke", {})
            assert fp.status()["rules"] == []

        @check("proxy: latency 250 ms each way")
        def t_latency():
            t0 = time.monotonic()
            via.status()
            base = time.monotonic() - t0
            fp.latency(250)
            t0 = time.monotonic()
            via.status()
            slow = time.monotonic() - t0
            fp.normal()
            assert slow >= 0.5 and slow > base + 0.4, (base, slow)

        @check("proxy: reset during a long poll -> UNAVAILABLE")
        def t_reset():
            err = {}

            def poll():
                try:
                    via.zbctl("activate", "jobs", "devstack-nothing", request_timeout_s=20)
                except zc.ZbctlError as e:
                    err["e"] = e
            th = threading.Thread(target=poll)
            th.start()
            for _ in range(50):
                if fp.status()["openCalls"] >= 1:
                    break
                time.sleep(0.1)
            fp.reset()
            th.join(10)
            assert err.get("e") is not None and err["e"].code == "UNAVAILABLE", err
            via.status()

        @check("proxy: stall -> DEADLINE_EXCEEDED; down/up")
        def t_stall_down():
            fp.stall(method="Topology", count=1)
            expect_error("DEADLINE_EXCEEDED", via.zbctl, "status", parse=False,
                         request_timeout_s=1)
            fp.down()
            expect_error("UNAVAILABLE", via.zbctl, "status", parse=False, request_timeout_s=2)
            fp.up()
            via.status()

        for t in (t_fwd, t_unavail, t_exhausted, t_latency, t_reset, t_stall_down):
            t()


def main(argv):
    start = "--no-start" not in argv
    keep = "--keep" in argv
    zeebe_sh = os.path.join(HERE, "zeebe.sh")
    if start:
        subprocess.run([zeebe_sh, "start"], check=True)
    try:
        for t in (t_deploy, t_job_created, t_with_result, t_incident, t_complete, t_long_poll):
            t()
        proxy_checks()
    finally:
        if start and not keep:
            subprocess.run([zeebe_sh, "stop"], check=False)
    if "--show" in argv:
        for k, v in shown.items():
            print("--- %s\n%s" % (k, json.dumps(v, indent=1)))
    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print("selfcheck: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
