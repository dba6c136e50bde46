"""Transient gateway errors, injected by the devstack fault proxy between skiff and the real
gateway: activation backs off and recovers, job commands are retried until they land, and the
engine ends up with every job done exactly as the handler said."""
import sys

import pytest

from conftest import ROOT, wait_until
from test_jobs import deploy
import zeebe_client

sys.path.insert(0, str(ROOT / "devstack"))
from fault_proxy import FaultProxy  # noqa: E402


@pytest.fixture
def proxy(broker, tmp_path):
    with FaultProxy(target=broker["ZEEBE_ADDRESS"], log_path=str(tmp_path / "proxy.log"),
                    quiet=True) as fp:
        yield fp


def completed(stack, key, pid):
    return stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=key,
                      elementId=pid)


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED"])
def test_completion_retried_through_transient_errors(stack, proxy, tmp_path, uid, code):
    job_type, pid = f"it-cmdretry-{uid}", f"p-cmdretry-{uid}"
    deploy(tmp_path, pid, job_type)
    skiff = stack.skiff([job_type], address=proxy.address, zeebe_backoff_initial="50ms")
    stack.handler(skiff, [job_type])
    proxy.fail(code, method="CompleteJob", count=3)
    key = zeebe_client.create_instance(pid, {"x": 7})["processInstanceKey"]
    wait_until(lambda: completed(stack, key, pid), timeout=30, what="instance completed")
    wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=job_type,
                                    outcome="completed") == 1, what="completion acknowledged")
    assert skiff.metric("skiff_zeebe_gateway_requests_total", method="CompleteJob", code=code) == 3
    assert len(stack.find_all("JOB", "COMPLETED", processInstanceKey=key)) == 1


def test_activation_backs_off_and_recovers(stack, proxy, tmp_path, uid):
    job_type, pid = f"it-actretry-{uid}", f"p-actretry-{uid}"
    deploy(tmp_path, pid, job_type)
    proxy.fail("RESOURCE_EXHAUSTED", method="ActivateJobs", count=4)
    skiff = stack.skiff([job_type], address=proxy.address, zeebe_backoff_initial="50ms",
                        zeebe_backoff_max="1s")
    stack.handler(skiff, [job_type])
    key = zeebe_client.create_instance(pid, {"x": 8})["processInstanceKey"]
    wait_until(lambda: completed(stack, key, pid), timeout=30, what="instance completed")
    assert skiff.metric("skiff_zeebe_gateway_requests_total", method="ActivateJobs",
                        code="RESOURCE_EXHAUSTED") == 4
    assert "job activation failed" in skiff.logs()


def test_fail_passes_retries_and_backoff_through(stack, tmp_path, uid):
    job_type, pid = f"it-backoff-{uid}", f"p-backoff-{uid}"
    deploy(tmp_path, pid, job_type, retries=5)
    skiff = stack.skiff([job_type])
    stack.handler(skiff, [job_type], behave="fail_explicit")
    key = zeebe_client.create_instance(pid, {"x": 1})["processInstanceKey"]
    failed = wait_until(lambda: stack.find("JOB", "FAILED", processInstanceKey=key), timeout=30,
                        what="job failed")
    assert failed["value"]["retries"] == 2
    assert failed["value"]["retryBackoff"] == 60000
    assert failed["value"]["errorMessage"] == "try later"
