"""One integration test per SDK language beyond the first ones: the Go SDK (its example and
its conformance handler) and the Python SDK's asyncio side, through the real skiff and the
real Zeebe broker, judged by what the engine recorded."""
import os
import subprocess
import sys

import pytest

from bpmn import service_task
from conftest import ROOT, wait_until
from devstack_env import terminate
import zeebe_client

CONF_JOB_TYPES = ["conf-complete", "conf-none", "conf-raise", "conf-bpmn", "conf-jobfailed",
                  "conf-async", "conf-sleep", "conf-big", "conf-extend", "conf-wait-cancel",
                  "conf-publish", "conf-produce", "conf-echo"]
GO_CONFORMANCE = ROOT / "handler-protocol" / "go" / ".build" / "conformance-handler"
GO_RISK_SCORER = ROOT / "examples" / "go" / ".build" / "risk_scorer"
PY_CONFORMANCE = ROOT / "handler-protocol" / "python" / "conformance_handler.py"


@pytest.fixture(scope="module")
def go_built():
    """Go from PATH, /usr/local/go or Debian; the SDK's conformance handler and the example."""
    for script in ("handler-protocol/go/conformance/build.sh", "examples/go/build.sh"):
        subprocess.run([str(ROOT / script)], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture
def run_handler(tmp_path):
    procs = []

    def start(cmd, skiff, **env):
        log = open(tmp_path / f"handler-{len(procs)}.log", "wb")
        e = dict(os.environ, SKIFF_SOCKET=skiff.socket, CONF_MODE="zeebe", CONF_CAPACITY="4",
                 **env)
        p = subprocess.Popen([str(c) for c in cmd], env=e, stdout=log, stderr=log)
        procs.append((p, log))
        return p

    yield start
    for p, log in procs:
        terminate(p, timeout=10)
        log.close()


def deploy(tmp_path, pid, job_type, **kw):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type, **kw))
    zeebe_client.deploy(str(path))


def test_go_risk_scorer_example(stack, tmp_path, uid, go_built, run_handler):
    pid = f"p-go-risk-{uid}"
    deploy(tmp_path, pid, "risk-score", retries=3)
    skiff = stack.skiff(["risk-score"])
    run_handler([GO_RISK_SCORER], skiff)
    result = zeebe_client.create_instance_with_result(
        pid, {"amount": 1000000, "applicant": {"age": 22, "priorClaims": 1}}, timeout_s=30)
    assert result["variables"]["riskScore"] == 90
    assert result["variables"]["riskFactors"] == ["amount +40", "young applicant +20",
                                                  "prior claims +10"]
    key = zeebe_client.create_instance(pid, {"amount": 5})["processInstanceKey"]
    incident = wait_until(lambda: stack.find("INCIDENT", "CREATED", processInstanceKey=key),
                          timeout=60, what="incident for missing input")
    assert "'amount' and 'applicant.age' are required" in incident["value"]["errorMessage"]
    assert [r["value"]["retries"] for r in
            stack.find_all("JOB", "FAILED", processInstanceKey=key)] == [0]


def test_go_sdk_results_through_skiff(stack, tmp_path, uid, go_built, run_handler):
    skiff = stack.skiff(CONF_JOB_TYPES)
    run_handler([GO_CONFORMANCE], skiff, CONF_NAME="go-it")
    ok, err, bad = f"p-go-ok-{uid}", f"p-go-bpmn-{uid}", f"p-go-raise-{uid}"
    deploy(tmp_path, ok, "conf-complete")
    deploy(tmp_path, err, "conf-bpmn", error_code="RISK_TOO_HIGH")
    deploy(tmp_path, bad, "conf-raise", retries=1)
    done = zeebe_client.create_instance_with_result(ok, {"n": 21}, timeout_s=30)
    assert done["variables"]["doubled"] == 42
    job = wait_until(lambda: stack.find("JOB", "COMPLETED",
                                        processInstanceKey=done["processInstanceKey"]),
                     what="JOB COMPLETED record")
    assert done["variables"]["seen"]["key"] == str(job["key"])  # int64 key, as a string
    caught = zeebe_client.create_instance_with_result(err, {}, timeout_s=30)
    wait_until(lambda: stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", elementId="rejected",
                                  processInstanceKey=caught["processInstanceKey"]),
               what="the error boundary path")
    key = zeebe_client.create_instance(bad, {"msg": "from go"})["processInstanceKey"]
    incident = wait_until(lambda: stack.find("INCIDENT", "CREATED", processInstanceKey=key),
                          timeout=60, what="incident")
    assert "boom from go" in incident["value"]["errorMessage"]


def test_python_async_extend_publish_and_fail(stack, tmp_path, uid, run_handler):
    skiff = stack.skiff(CONF_JOB_TYPES)
    run_handler([sys.executable, PY_CONFORMANCE], skiff, CONF_STYLE="async",
                CONF_NAME="py-async-it")
    ext, pub, bad = f"p-pa-ext-{uid}", f"p-pa-pub-{uid}", f"p-pa-raise-{uid}"
    deploy(tmp_path, ext, "conf-extend")
    deploy(tmp_path, pub, "conf-publish")
    deploy(tmp_path, bad, "conf-raise", retries=1)
    done = zeebe_client.create_instance_with_result(ext, {"ms": 120000}, timeout_s=30)
    variables = done["variables"]
    assert variables["deadline"] == variables["task_deadline"], variables
    wait_until(lambda: stack.find("JOB", "TIMEOUT_UPDATED",
                                  processInstanceKey=done["processInstanceKey"]),
               what="TIMEOUT_UPDATED record")
    params = {"name": f"it-msg-{uid}", "correlation_key": "c-1", "time_to_live_ms": 0}
    done = zeebe_client.create_instance_with_result(pub, {"params": params}, timeout_s=30)
    message_key = done["variables"]["result"]["key"]
    published = wait_until(lambda: stack.find("MESSAGE", "PUBLISHED", name=f"it-msg-{uid}"),
                           what="MESSAGE PUBLISHED record")
    assert str(published["key"]) == message_key
    key = zeebe_client.create_instance(bad, {"msg": "async"})["processInstanceKey"]
    incident = wait_until(lambda: stack.find("INCIDENT", "CREATED", processInstanceKey=key),
                          timeout=60, what="incident")
    assert "boom async" in incident["value"]["errorMessage"]


