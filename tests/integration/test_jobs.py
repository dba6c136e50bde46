"""A job's life through the real broker, skiff and SDK handlers, judged by the engine."""
import subprocess

from bpmn import service_task
from conftest import wait_until
import zeebe_client


def deploy(tmp_path, pid, job_type, **kw):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type, **kw))
    zeebe_client.deploy(str(path))


def test_job_completes_with_handler_variables(stack, tmp_path, uid):
    job_type, pid = f"it-complete-{uid}", f"p-complete-{uid}"
    deploy(tmp_path, pid, job_type)
    skiff = stack.skiff([job_type])
    stack.handler(skiff, [job_type], name="doubler")
    result = zeebe_client.create_instance_with_result(pid, {"x": 21}, timeout_s=30)
    assert result["variables"]["doubled"] == 42
    assert result["variables"]["handled_by"] == "doubler"
    wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=job_type,
                                    outcome="completed") == 1, what="completion acknowledged")
    assert skiff.metric("skiff_handler_duration_seconds_count", route=job_type) == 1
    # the live exposition lints clean
    lint = subprocess.run(["promtool", "check", "metrics"], input=skiff.http("/metrics")[1],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr


def test_fail_decrements_retries_then_incident(stack, tmp_path, uid):
    job_type, pid = f"it-fail-{uid}", f"p-fail-{uid}"
    deploy(tmp_path, pid, job_type, retries=3)
    skiff = stack.skiff([job_type])
    stack.handler(skiff, [job_type], behave="fail")
    key = zeebe_client.create_instance(pid, {"x": 1})["processInstanceKey"]
    incident = wait_until(lambda: stack.find("INCIDENT", "CREATED", processInstanceKey=key),
                          timeout=60, what="incident")
    assert "handler says no" in incident["value"]["errorMessage"]
    failed = stack.find_all("JOB", "FAILED", processInstanceKey=key)
    assert [r["value"]["retries"] for r in failed] == [2, 1, 0]
    assert all(r["value"]["errorMessage"].endswith("handler says no") for r in failed)


def test_bpmn_error_takes_boundary_path(stack, tmp_path, uid):
    job_type, pid = f"it-bpmn-{uid}", f"p-bpmn-{uid}"
    deploy(tmp_path, pid, job_type, error_code="REJECTED")
    skiff = stack.skiff([job_type])
    stack.handler(skiff, [job_type], behave="bpmn_error", error_code="REJECTED")
    result = zeebe_client.create_instance_with_result(pid, {"x": 1}, timeout_s=30)
    key = result["processInstanceKey"]
    # The exporter writes the record stream a moment after the instance completed.
    wait_until(lambda: stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=key,
                                  elementId="rejected"), what="the error path's end recorded")
    assert not stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=key,
                          elementId="done")
    wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=job_type,
                                    outcome="bpmn_error") == 1, what="bpmn error acknowledged")


def test_no_handler_means_no_activation_and_not_ready(stack, tmp_path, uid):
    job_type, pid = f"it-idle-{uid}", f"p-idle-{uid}"
    deploy(tmp_path, pid, job_type)
    skiff = stack.skiff([job_type])
    wait_until(lambda: skiff.metric("skiff_zeebe_gateway_requests_total") >= 0, what="metrics")
    status, body = skiff.http("/readyz")
    assert status == 503 and "no handler" in body
    key = zeebe_client.create_instance(pid, {"x": 2})["processInstanceKey"]
    wait_until(lambda: stack.find("JOB", "CREATED", processInstanceKey=key), what="job created")
    import time
    time.sleep(3)
    assert not stack.find("JOB_BATCH", "ACTIVATED", type=job_type)
    assert skiff.metric("skiff_zeebe_gateway_requests_total", method="ActivateJobs") == 0
    stack.handler(skiff, [job_type])
    wait_until(lambda: skiff.http("/readyz")[0] == 200, what="ready")
    wait_until(lambda: stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=key,
                                  elementId=pid), timeout=30, what="instance completed")


def test_handler_killed_mid_job_is_reactivated_at_once(stack, tmp_path, uid):
    job_type, pid = f"it-kill-{uid}", f"p-kill-{uid}"
    deploy(tmp_path, pid, job_type, retries=3)
    skiff = stack.skiff([job_type], zeebe_job_timeout="10m")
    log = tmp_path / "seen.log"
    slow = stack.handler(skiff, [job_type], behave="sleep", sleep=3600, log=log, capacity=1)
    key = zeebe_client.create_instance(pid, {"x": 5})["processInstanceKey"]
    wait_until(lambda: log.exists() and log.read_text().strip(), timeout=30, what="task seen")
    slow.kill()
    # given back at once, retries unchanged, long before the 10 minute job timeout
    failed = wait_until(lambda: stack.find("JOB", "FAILED", processInstanceKey=key), timeout=20,
                        what="job failed back")
    assert failed["value"]["retries"] == 3
    stack.handler(skiff, [job_type], name="second")
    wait_until(lambda: stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=key,
                                  elementId=pid), timeout=30, what="instance completed")
    assert not stack.find("JOB", "TIMED_OUT", processInstanceKey=key)
    assert skiff.metric("skiff_tasks_abandoned_total", source="zeebe") == 1
    wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=job_type,
                                    outcome="completed") == 1, what="completion acknowledged")


def test_result_for_cancelled_job_is_counted_as_not_found(stack, tmp_path, uid):
    job_type, pid = f"it-gone-{uid}", f"p-gone-{uid}"
    deploy(tmp_path, pid, job_type)
    skiff = stack.skiff([job_type])
    log = tmp_path / "seen.log"
    stack.handler(skiff, [job_type], behave="sleep", sleep=2, log=log, capacity=1)
    key = zeebe_client.create_instance(pid, {"x": 1})["processInstanceKey"]
    wait_until(lambda: log.exists() and log.read_text().strip(), timeout=30, what="task seen")
    zeebe_client.cancel_instance(key)
    wait_until(lambda: stack.find("JOB", "CANCELED", processInstanceKey=key), what="job cancelled")
    wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=job_type,
                                    outcome="not_found") == 1, timeout=20, what="not_found counted")
    assert "is gone" in skiff.logs()
    assert skiff.metric("skiff_zeebe_gateway_requests_total", method="CompleteJob",
                        code="NOT_FOUND") == 1
