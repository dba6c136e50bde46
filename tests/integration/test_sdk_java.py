"""The Java SDK through the real skiff and the real Zeebe broker: the underwriting risk scorer
(examples/java, Spring Boot starter) scores a job, raises an incident on bad input, and exits 0
after skiff drains it on SIGTERM."""
import os
import subprocess

import pytest

from bpmn import service_task
from conftest import ROOT, wait_until
import zeebe_client

JAR = ROOT / "examples" / "java" / "target" / "risk-scorer.jar"


@pytest.fixture(scope="module")
def risk_scorer_jar():
    build = subprocess.run([str(ROOT / "handler-protocol" / "java" / "build.sh"), "package"],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout + build.stderr
    return JAR


def test_java_risk_scorer_through_skiff(stack, tmp_path, uid, risk_scorer_jar):
    job_type, pid = f"it-java-risk-{uid}", f"p-java-risk-{uid}"
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type, retries=3))
    zeebe_client.deploy(str(path))
    skiff = stack.skiff([job_type])
    log = open(tmp_path / "risk-scorer.log", "wb")
    proc = subprocess.Popen(
        ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar", str(risk_scorer_jar),
         f"--underwriting.risk-score.job-type={job_type}", "--skiff.name=java-risk-scorer"],
        env=dict(os.environ, SKIFF_SOCKET=skiff.socket), stdout=log, stderr=log)
    try:
        result = zeebe_client.create_instance_with_result(
            pid, {"amount": 250000, "applicant": {"age": 41}}, timeout_s=120)
        assert result["variables"]["riskScore"] == 30
        assert result["variables"]["riskFactors"] == ["amount +10"]
        key = zeebe_client.create_instance(pid, {"amount": 5})["processInstanceKey"]
        incident = wait_until(lambda: stack.find("INCIDENT", "CREATED", processInstanceKey=key),
                              timeout=60, what="incident")
        assert "applicant.age" in incident["value"]["errorMessage"]
        failed = stack.find_all("JOB", "FAILED", processInstanceKey=key)
        assert [r["value"]["retries"] for r in failed] == [0]  # retries 0: no retry first
        assert skiff.stop() == 0  # SIGTERM: skiff drains the handler, which exits 0
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "risk-scorer.log").read_text(errors="replace")
    assert "skiff drained the handler" in text, text[-4000:]
