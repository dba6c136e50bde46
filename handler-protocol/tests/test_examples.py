"""The underwriting examples: the BPMN is consistent with the handlers, and the
handlers give the expected answers through the fake skiff."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples")
sys.path.insert(0, HERE)

from fake_skiff import FakeSkiff, make_task  # noqa: E402

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
      "zeebe": "http://camunda.org/schema/zeebe/1.0"}


def test_bpmn_is_consistent():
    root = ET.parse(os.path.join(EXAMPLES, "underwriting", "underwriting.bpmn")).getroot()
    process = root.find("bpmn:process", NS)
    assert process.get("id") == "underwriting" and process.get("isExecutable") == "true"
    ids = {e.get("id") for e in process}
    types = {t.get("id"): t.find("bpmn:extensionElements/zeebe:taskDefinition", NS).get("type")
             for t in process.findall("bpmn:serviceTask", NS)}
    assert types == {"score-risk": "risk-score", "issue-policy": "issue-policy"}
    for flow in process.findall("bpmn:sequenceFlow", NS):
        assert flow.get("sourceRef") in ids and flow.get("targetRef") in ids, flow.get("id")
    gateway = process.find("bpmn:exclusiveGateway", NS)
    assert gateway.get("default") in ids
    cond = process.find("bpmn:sequenceFlow/bpmn:conditionExpression", NS)
    assert cond.text == "=riskScore < 70"
    boundary = process.find("bpmn:boundaryEvent", NS)
    assert boundary.get("attachedToRef") == "issue-policy"
    error_ref = boundary.find("bpmn:errorEventDefinition", NS).get("errorRef")
    error = root.find(f"bpmn:error[@id='{error_ref}']", NS)
    assert error.get("errorCode") == "POLICY_REJECTED"
    drawn = {e.get("bpmnElement") for e in root.iter()
             if e.tag.endswith("}BPMNShape") or e.tag.endswith("}BPMNEdge")}
    assert ids <= drawn, f"elements without diagram: {ids - drawn}"


def run_handler(cmd, tasks):
    with FakeSkiff() as skiff:
        proc = subprocess.Popen(cmd, env=dict(os.environ, SKIFF_SOCKET=skiff.path))
        try:
            conn = skiff.accept()
            conn.handshake()
            results = conn.run_tasks(tasks)
            conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
            conn.wait_closed(5)
            assert proc.wait(5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    return [results[t["id"]] for t in tasks]


def risk_scorer_command(lang):
    """The risk scorer in one language (Go, C and Rust are built first by their build.sh)."""
    if lang == "python":
        return [sys.executable, os.path.join(EXAMPLES, "python", "risk_scorer.py")]
    if lang == "python-async":
        return [sys.executable, os.path.join(EXAMPLES, "python", "risk_scorer_async.py")]
    if lang == "go":
        subprocess.run([os.path.join(EXAMPLES, "go", "build.sh")], check=True)
        return [os.path.join(EXAMPLES, "go", ".build", "risk_scorer")]
    root = os.path.join(HERE, "..", "..")
    built = {"c": ("handler-protocol/c/build.sh", "handler-protocol/c/.build/risk-scorer"),
             "rust": ("handler-protocol/rust/build.sh",
                      "handler-protocol/rust/target/release/examples/risk-scorer")}
    script, binary = built[lang]
    subprocess.run([os.path.join(root, script)], check=True, cwd=root)
    return [os.path.join(root, binary)]


@pytest.mark.parametrize("lang", ["python", "python-async", "go", "c", "rust"])
def test_risk_scorer(lang):
    tasks = [make_task("risk-score", {"amount": 250000, "applicant": {"age": 41}}),
             make_task("risk-score",
                       {"amount": 10**6, "applicant": {"age": 22, "priorClaims": 1}}),
             make_task("risk-score", {"amount": 5})]
    low, high, bad = run_handler(risk_scorer_command(lang), tasks)
    assert low["type"] == "complete" and low["variables"] == {
        "riskScore": 30, "riskFactors": ["amount +10"]}
    assert high["type"] == "complete" and high["variables"] == {
        "riskScore": 90, "riskFactors": ["amount +40", "young applicant +20", "prior claims +10"]}
    assert bad["type"] == "fail" and bad["retries"] == 0


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_policy_issuer():
    tasks = [make_task("issue-policy", {"amount": 250000, "riskScore": 30}),
             make_task("issue-policy", {"amount": 800000, "riskScore": 52})]
    issued, rejected = run_handler(
        ["node", os.path.join(EXAMPLES, "node", "policy_issuer.mjs")], tasks)
    assert issued["type"] == "complete"
    assert issued["variables"]["policyId"] == "POL-" + tasks[0]["zeebe"]["process_instance_key"]
    assert rejected["type"] == "bpmn_error" and rejected["code"] == "POLICY_REJECTED"


def test_risk_scorer_java():
    """The Spring Boot risk scorer (examples/java) gives the Python example's answers."""
    build = subprocess.run([os.path.join(HERE, "..", "java", "build.sh"), "package"],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout + build.stderr
    jar = os.path.join(EXAMPLES, "java", "target", "risk-scorer.jar")
    tasks = [make_task("risk-score", {"amount": 250000, "applicant": {"age": 41}}),
             make_task("risk-score",
                       {"amount": 10**6, "applicant": {"age": 22, "priorClaims": 1}}),
             make_task("risk-score", {"amount": 5})]
    with FakeSkiff() as skiff:
        proc = subprocess.Popen(["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar",
                                 jar], env=dict(os.environ, SKIFF_SOCKET=skiff.path))
        try:
            conn = skiff.accept(timeout=60)  # a JVM and Spring start: allow a loaded machine
            conn.handshake()
            results = conn.run_tasks(tasks)
            conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
            conn.wait_closed(10)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    low, high, bad = [results[t["id"]] for t in tasks]
    assert low["type"] == "complete" and low["variables"]["riskScore"] == 30
    assert low["variables"]["riskFactors"] == ["amount +10"]
    assert high["type"] == "complete" and high["variables"]["riskScore"] == 90
    assert bad["type"] == "fail" and bad["retries"] == 0
