"""SIGTERM with jobs in flight: readiness drops, activation stops, in-flight tasks finish in the
grace period or are given back with retries unchanged; skiff exits 0; no job is lost."""
import signal

from conftest import wait_until
from test_jobs import deploy
import zeebe_client


def completed(stack, key, pid):
    return stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=key,
                      elementId=pid)


def test_sigterm_lets_in_flight_tasks_finish(stack, tmp_path, uid):
    job_type, pid = f"it-term-{uid}", f"p-term-{uid}"
    deploy(tmp_path, pid, job_type)
    skiff = stack.skiff([job_type], shutdown_grace_period="30s")
    stack.handler(skiff, [job_type], behave="sleep", sleep=2, capacity=4)
    keys = [zeebe_client.create_instance(pid, {"x": i})["processInstanceKey"] for i in range(8)]
    wait_until(lambda: skiff.metric("skiff_tasks_open") == 4, timeout=30, what="4 tasks in flight")
    skiff.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: skiff.http("/readyz")[0] in (503, 0), timeout=5, what="not ready")
    assert skiff.wait(timeout=40) == 0
    # the four in-flight tasks finished within the grace period and were completed
    wait_until(lambda: sum(1 for k in keys if completed(stack, k, pid)) >= 4, timeout=20,
               what="in-flight jobs completed")
    # a new skiff picks up the rest: every instance completes
    second = stack.skiff([job_type])
    stack.handler(second, [job_type], capacity=8)
    for k in keys:
        wait_until(lambda: completed(stack, k, pid), timeout=60, what=f"instance {k} completed")


def test_grace_period_over_gives_jobs_back(stack, tmp_path, uid):
    job_type, pid = f"it-grace-{uid}", f"p-grace-{uid}"
    deploy(tmp_path, pid, job_type, retries=3)
    skiff = stack.skiff([job_type], shutdown_grace_period="1s", zeebe_job_timeout="10m")
    stack.handler(skiff, [job_type], behave="sleep", sleep=3600, capacity=2)
    keys = [zeebe_client.create_instance(pid, {"x": i})["processInstanceKey"] for i in range(2)]
    wait_until(lambda: skiff.metric("skiff_tasks_open") == 2, timeout=30, what="2 tasks in flight")
    assert skiff.stop(signal.SIGTERM, timeout=30) == 0
    for k in keys:
        failed = wait_until(lambda: stack.find("JOB", "FAILED", processInstanceKey=k), timeout=20,
                            what="job given back")
        assert failed["value"]["retries"] == 3, "given back with retries unchanged"
    second = stack.skiff([job_type])
    stack.handler(second, [job_type])
    for k in keys:
        wait_until(lambda: completed(stack, k, pid), timeout=60, what=f"instance {k} completed")
