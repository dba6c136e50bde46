"""One integration test per SDK language beyond the first ones, through the real skiff and the
real Zeebe broker, judged by what the engine recorded: the underwriting risk scorer of Go, C
and Rust (examples/) scores a job, raises an incident on bad input and exits 0 once skiff drains
it on SIGTERM; the conformance handlers of Go and Node complete jobs, throw BPMN errors, raise
incidents and are drained the same way; the Python SDK's asyncio side extends, publishes and
fails. (The Python SDK's sync side serves most of tests/integration: handlers/behave.py and
handlers/sdk_features.py; Java: test_sdk_java.py.)"""
import os
import subprocess
import sys
from collections import namedtuple

import pytest

from bpmn import service_task
from conftest import ROOT, wait_until
from devstack_env import terminate
import zeebe_client

CONF_JOB_TYPES = ["conf-complete", "conf-none", "conf-raise", "conf-bpmn", "conf-jobfailed",
                  "conf-async", "conf-sleep", "conf-big", "conf-extend", "conf-wait-cancel",
                  "conf-publish", "conf-produce", "conf-echo", "conf-secret", "conf-token"]
PY_CONFORMANCE = ROOT / "handler-protocol" / "python" / "conformance_handler.py"
RUST_RELEASE = ROOT / "handler-protocol" / "rust" / "target" / "release"
# Per language: the build scripts, the built risk scorer, the conformance handler's command,
# and the line its SDK logs when skiff drains it (None: nothing by default, as Go and Node). A
# handler that lost skiff without a drain reconnects forever, so exiting 0 alone already says
# that the drain reached it.
Sdk = namedtuple("Sdk", "builds risk_scorer conformance drain_line")
SDKS = {
    "go": Sdk(["handler-protocol/go/conformance/build.sh", "examples/go/build.sh"],
              ROOT / "examples" / "go" / ".build" / "risk_scorer",
              [ROOT / "handler-protocol" / "go" / ".build" / "conformance-handler"], None),
    "c": Sdk(["handler-protocol/c/build.sh"], ROOT / "handler-protocol" / "c" / ".build" /
             "risk-scorer", [ROOT / "handler-protocol" / "c" / ".build" / "conformance-handler"],
             "skiff asks to drain"),
    "rust": Sdk(["handler-protocol/rust/build.sh"], RUST_RELEASE / "examples" / "risk-scorer",
                [RUST_RELEASE / "conformance-handler"], "skiff asks to drain"),
    "node": Sdk(["handler-protocol/node/conformance_build.sh"], None,
                ["node", ROOT / "handler-protocol" / "node" / "conformance_handler.mjs"], None),
}


def build_sdk(lang):
    """Builds (idempotently) what the language's tests run; returns its Sdk."""
    for script in SDKS[lang].builds:
        build = subprocess.run([str(ROOT / script)], capture_output=True, text=True, timeout=1800)
        assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return lang, SDKS[lang]


@pytest.fixture(scope="module", params=["go", "c", "rust"])
def risk_scorer_sdk(request):
    return build_sdk(request.param)


@pytest.fixture(scope="module", params=["go", "node"])
def conformance_sdk(request):
    return build_sdk(request.param)


@pytest.fixture
def run_handler(tmp_path):
    procs = []

    def start(cmd, skiff, **env):
        log_path = tmp_path / f"handler-{len(procs)}.log"
        log = open(log_path, "wb")
        e = dict(os.environ, SKIFF_SOCKET=skiff.socket, CONF_MODE="zeebe", CONF_CAPACITY="4",
                 **env)
        p = subprocess.Popen([str(c) for c in cmd], env=e, stdout=log, stderr=log)
        p.log_path = log_path
        procs.append((p, log))
        return p

    yield start
    for p, log in procs:
        terminate(p, timeout=10)
        log.close()


def assert_drained(skiff, proc, drain_line):
    """SIGTERM to skiff: it drains the handler, which ends by itself with status 0."""
    assert skiff.stop() == 0, skiff.logs()[-4000:]
    assert proc.wait(30) == 0, proc.log_path.read_text(errors="replace")[-4000:]
    if drain_line:
        assert drain_line in proc.log_path.read_text(errors="replace")


def deploy(tmp_path, pid, job_type, **kw):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type, **kw))
    zeebe_client.deploy(str(path))


def test_risk_scorer_example(stack, tmp_path, uid, risk_scorer_sdk, run_handler):
    lang, sdk = risk_scorer_sdk
    pid = f"p-{lang}-risk-{uid}"
    deploy(tmp_path, pid, "risk-score", retries=3)
    skiff = stack.skiff(["risk-score"])
    proc = run_handler([sdk.risk_scorer], skiff)
    result = zeebe_client.create_instance_with_result(
        pid, {"amount": 1000000, "applicant": {"age": 22, "priorClaims": 1}}, timeout_s=30)
    assert result["variables"]["riskScore"] == 90
    assert result["variables"]["riskFactors"] == ["amount +40", "young applicant +20",
                                                  "prior claims +10"]
    wait_until(lambda: stack.find("JOB", "COMPLETED",
                                  processInstanceKey=result["processInstanceKey"]),
               what="JOB COMPLETED record")
    key = zeebe_client.create_instance(pid, {"amount": 5})["processInstanceKey"]
    incident = wait_until(lambda: stack.find("INCIDENT", "CREATED", processInstanceKey=key),
                          timeout=60, what="incident for missing input")
    assert "'amount' and 'applicant.age' are required" in incident["value"]["errorMessage"]
    assert [r["value"]["retries"] for r in
            stack.find_all("JOB", "FAILED", processInstanceKey=key)] == [0]
    assert_drained(skiff, proc, sdk.drain_line)


def test_sdk_results_through_skiff(stack, tmp_path, uid, conformance_sdk, run_handler):
    lang, sdk = conformance_sdk
    skiff = stack.skiff(CONF_JOB_TYPES)
    proc = run_handler(sdk.conformance, skiff, CONF_NAME=f"{lang}-it")
    ok, err, bad = f"p-{lang}-ok-{uid}", f"p-{lang}-bpmn-{uid}", f"p-{lang}-raise-{uid}"
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
    key = zeebe_client.create_instance(bad, {"msg": f"from {lang}"})["processInstanceKey"]
    incident = wait_until(lambda: stack.find("INCIDENT", "CREATED", processInstanceKey=key),
                          timeout=60, what="incident")
    assert f"boom from {lang}" in incident["value"]["errorMessage"]
    assert_drained(skiff, proc, sdk.drain_line)


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


