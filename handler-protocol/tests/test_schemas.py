"""Checks of handler-protocol/schemas: one schema per frame type, good example
frames pass, bad ones fail. Validation needs the ``jsonschema`` package
(Debian: python3-jsonschema); without it those tests are skipped."""

from __future__ import annotations

import json
import os
import re

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
SCHEMA_DIR = os.path.join(ROOT, "schemas")

FRAME_TYPES = ["hello", "welcome", "task", "complete", "fail", "bpmn_error", "ack", "nack",
               "extend", "call", "reply", "drain", "ping", "pong", "cancel", "error",
               "tasks", "results"]

ZEEBE = {"key": "2251799813685321", "process_instance_key": "2251799813685310",
         "bpmn_process_id": "underwriting", "process_definition_version": 1,
         "element_id": "score-risk", "retries": 3, "worker": "pod-1"}
TASK = {"type": "task", "id": "z-2251799813685321", "source": "zeebe",
        "job_type": "risk-score", "deadline": 1732400000000, "attempt": 1,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "variables": {"amount": 250000}, "headers": {"model": "v3"}, "zeebe": ZEEBE}
KAFKA = {"topic": "business.policy.issued.v1", "partition": 3, "offset": 1742, "key": "P-1",
         "headers": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
         "timestamp": 1732400000000, "schema_id": 7}
KTASK = {"type": "task", "id": "k-business.policy.issued.v1-3-1742-1", "source": "kafka",
         "topic": "business.policy.issued.v1", "deadline": 1732400300000, "attempt": 1,
         "value": {"policyId": "P-1", "premium": "1200.50"}, "kafka": KAFKA}


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


GOOD = [
    {"type": "hello", "version": 1, "name": "risk-scorer", "capacity": 4,
     "job_types": ["risk-score"]},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1, "job_types": ["a", "b"],
     "topics": [], "features": [], "unknown_member": {"ignored": True}},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1, "topics": ["t.v1"]},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1, "job_types": [],
     "topics": ["t.v1", "u.v1"], "features": ["cancel"]},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1, "job_types": ["a"],
     "topics": ["t.v1"]},
    {"type": "welcome", "version": 1, "session": "s-1", "max_frame": 4194304},
    {"type": "welcome", "version": 1, "session": "s-1", "max_frame": 4194304,
     "features": ["cancel", "extend"], "methods": ["publish_message"]},
    {"type": "welcome", "version": 1, "session": "s-1", "max_frame": 4194304,
     "features": ["cancel", "extend"], "methods": ["publish_message", "produce"]},
    TASK,
    KTASK,
    without(KTASK, "traceparent"),
    {**KTASK, "value": None, "attempt": 3},
    {**KTASK, "value": [1, "\u0000\u00ff", {"a": None}]},
    {**KTASK, "kafka": {**without(KAFKA, "timestamp"), "key": None}},
    {**KTASK, "kafka": {**KAFKA, "key": None, "key_base64": "/w==",
                        "headers_base64": {"bin": "AP8="}}},
    {**KTASK, "unknown_member": 1, "kafka": {**KAFKA, "unknown_member": 2}},
    without(TASK, "traceparent"),
    {**TASK, "zeebe": {**ZEEBE, "process_definition_key": "2251799813685249",
                       "element_instance_key": "2251799813685320", "tenant_id": "<default>"}},
    {"type": "complete", "id": "z-1"},
    {"type": "complete", "id": "z-1", "variables": {"riskScore": 42}},
    {"type": "fail", "id": "z-1", "message": "down"},
    {"type": "fail", "id": "z-1", "message": "down", "retries": 0, "retry_backoff_ms": 5000,
     "variables": {}},
    {"type": "fail", "id": "z-1", "message": "RuntimeError: down", "error": {
        "type": "RuntimeError", "message": "down",
        "stack": [{"file": "/app/h.py", "line": 3, "function": "score"},
                  {"file": "", "line": 0, "function": ""}]}},
    {"type": "nack", "id": "k-1", "message": "down", "error": {"message": "down", "stack": []}},
    {"type": "bpmn_error", "id": "z-1", "code": "RISK_TOO_HIGH"},
    {"type": "bpmn_error", "id": "z-1", "code": "RISK_TOO_HIGH", "message": "m",
     "variables": {"a": 1}},
    {"type": "ack", "id": "k-1"},
    {"type": "nack", "id": "k-1", "message": "bad record"},
    {"type": "nack", "id": "k-1", "message": "later", "retry_backoff_ms": 0},
    {"type": "nack", "id": "k-1", "message": "poison", "dead_letter": True},
    {"type": "nack", "id": "k-1", "message": "m", "retry_backoff_ms": 5000, "dead_letter": False},
    {"type": "extend", "id": "z-1", "timeout_ms": 60000},
    {"type": "extend", "id": "z-1", "timeout_ms": 1, "ref": "9"},
    {"type": "call", "ref": "7", "method": "publish_message", "params": {"name": "paid"}},
    {"type": "call", "ref": "7", "method": "publish_message",
     "params": {"name": "paid", "correlation_key": "order-42", "variables": {"amount": 3},
                "time_to_live_ms": 0, "message_id": "m-1", "tenant_id": "<default>"}},
    {"type": "call", "ref": "8", "method": "produce", "params": {"topic": "t", "value": None}},
    {"type": "call", "ref": "8", "method": "produce",
     "params": {"topic": "t", "value": {"policyId": "P-1"}, "key": "P-1",
                "headers": {"source": "x"}}},
    {"type": "reply", "ref": "8", "ok": True,
     "result": {"topic": "t", "partition": 0, "offset": 88, "schema_id": 9}},
    {"type": "call", "ref": "7", "method": "some_future_method"},
    {"type": "call", "ref": "7", "method": "token", "params": {"audience": "billing-api"}},
    {"type": "call", "ref": "7", "method": "secret",
     "params": {"reference": "vault:secret/app/db#password"}},
    {"type": "reply", "ref": "7", "ok": True, "result": {"value": "s3cret", "version": 3}},
    {"type": "reply", "ref": "7", "ok": True, "result": {}},
    {"type": "reply", "ref": "9", "ok": True, "result": {"deadline": 1732400060000}},
    {"type": "reply", "ref": "7", "ok": True,
     "result": {"key": "2251799813685400", "tenant_id": "<default>"}},
    {"type": "reply", "ref": "7", "ok": False,
     "error": {"code": "unknown_method", "message": "no such method"}},
    {"type": "drain", "deadline": 1732400000000},
    {"type": "ping", "ref": "x"},
    {"type": "pong", "ref": "x"},
    {"type": "cancel", "id": "z-1", "reason": "deadline"},
    {"type": "cancel", "id": "z-1", "reason": "job_gone"},
    {"type": "error", "code": "malformed_frame", "message": "not JSON"},
    {"type": "error", "code": "unknown_task", "message": "no open task z-9", "id": "z-9"},
]

GOOD += [
    {"type": "tasks", "tasks": [TASK, KTASK]},
    {"type": "results", "results": [{"type": "ack", "id": "k-1"},
                                    {"type": "complete", "id": "z-1", "variables": {}}]},
    {"type": "error", "code": "unknown_task", "message": "m", "id": "k-9", "index": 2},
]
BAD = [
    {"type": "tasks", "tasks": []},
    {"type": "tasks", "tasks": [{"type": "ack", "id": "k-1"}]},
    {"type": "results", "results": []},
    {"type": "results", "results": [{"type": "ack"}]},
    {"type": "results", "results": [{"type": "extend", "id": "z-1", "timeout_ms": 5}]},
    {"type": "error", "code": "unknown_task", "message": "m", "index": -1},
    {"type": "hello", "version": 2, "name": "x", "capacity": 1, "job_types": ["a"]},
    {"type": "hello", "version": 1, "name": "x", "capacity": 0, "job_types": ["a"]},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1.5, "job_types": ["a"]},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1, "job_types": []},
    {"type": "hello", "version": 1, "name": "", "capacity": 1, "job_types": ["a"]},
    {"type": "hello", "version": 1, "capacity": 1, "job_types": ["a"]},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1, "job_types": [], "topics": []},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1, "topics": [""]},
    {"type": "hello", "version": 1, "name": "x", "capacity": 1, "topics": "t.v1"},
    {"type": "welcome", "version": 1, "session": "s-1"},
    {"type": "welcome", "version": 1, "session": "s-1", "max_frame": 1, "methods": "x"},
    {"type": "welcome", "version": 1, "session": "s-1", "max_frame": 1, "features": [""]},
    without(TASK, "id"),
    without(TASK, "zeebe"),
    without(TASK, "job_type"),
    {**TASK, "deadline": "soon"},
    {**TASK, "variables": []},
    {**TASK, "traceparent": "not-a-traceparent"},
    {**TASK, "headers": {"n": 1}},
    {**TASK, "zeebe": {**ZEEBE, "key": 2251799813685321}},
    {**TASK, "zeebe": without(ZEEBE, "retries")},
    without(TASK, "variables"),
    without(TASK, "headers"),
    {**TASK, "source": "sqs"},
    without(KTASK, "topic"),
    without(KTASK, "kafka"),
    without(KTASK, "value"),
    without(KTASK, "attempt"),
    {**KTASK, "attempt": 0},
    {**KTASK, "kafka": without(KAFKA, "partition")},
    {**KTASK, "kafka": without(KAFKA, "key")},
    {**KTASK, "kafka": without(KAFKA, "schema_id")},
    {**KTASK, "kafka": {**KAFKA, "partition": "3"}},
    {**KTASK, "kafka": {**KAFKA, "offset": "1742"}},
    {**KTASK, "kafka": {**KAFKA, "key": 1}},
    {**KTASK, "kafka": {**KAFKA, "headers": {"n": 1}}},
    {**KTASK, "kafka": {**KAFKA, "timestamp": "2024-01-02T03:04:05Z"}},
    {**KTASK, "kafka": {**KAFKA, "key_base64": "/w=="}},  # key_base64 only with key null
    {"type": "complete"},
    {"type": "complete", "id": "z-1", "variables": [1]},
    {"type": "complete", "id": ""},
    {"type": "fail", "id": "z-1"},
    {"type": "fail", "id": "z-1", "message": "m", "retries": -1},
    {"type": "fail", "id": "z-1", "message": "m", "retry_backoff_ms": "5s"},
    {"type": "fail", "id": "z-1", "message": "m", "error": {"message": "m"}},
    {"type": "fail", "id": "z-1", "message": "m", "error": {"message": "m", "stack": [
        {"file": "a.py", "line": -1, "function": "f"}]}},
    {"type": "fail", "id": "z-1", "message": "m", "error": {"message": "m", "stack": [
        {"file": "a.py", "line": 1}]}},
    {"type": "nack", "id": "k-1", "message": "m", "error": "boom"},
    {"type": "bpmn_error", "id": "z-1"},
    {"type": "bpmn_error", "id": "z-1", "code": ""},
    {"type": "nack", "id": "k-1"},
    {"type": "nack", "id": "k-1", "message": "m", "retry_backoff_ms": -1},
    {"type": "nack", "id": "k-1", "message": "m", "retry_backoff_ms": 1.5},
    {"type": "nack", "id": "k-1", "message": "m", "dead_letter": "yes"},
    {"type": "ack"},
    {"type": "extend", "id": "z-1", "timeout_ms": 0},
    {"type": "extend", "id": "z-1", "timeout_ms": 1.5},
    {"type": "extend", "id": "z-1", "timeout_ms": 1, "ref": 9},
    {"type": "extend", "id": "z-1", "timeout_ms": 1, "ref": ""},
    {"type": "call", "ref": "7", "method": "publish_message"},
    {"type": "call", "ref": "7", "method": "publish_message", "params": {"name": ""}},
    {"type": "call", "ref": "7", "method": "publish_message", "params": {"correlation_key": "k"}},
    {"type": "call", "ref": "7", "method": "publish_message",
     "params": {"name": "paid", "time_to_live_ms": -1}},
    {"type": "call", "ref": "7", "method": "publish_message",
     "params": {"name": "paid", "variables": [1]}},
    {"type": "call", "ref": "8", "method": "produce"},
    {"type": "call", "ref": "8", "method": "produce", "params": {"topic": "t"}},
    {"type": "call", "ref": "8", "method": "produce", "params": {"value": 1}},
    {"type": "call", "ref": "8", "method": "produce", "params": {"topic": "", "value": 1}},
    {"type": "call", "ref": "8", "method": "produce",
     "params": {"topic": "t", "value": 1, "key": 1}},
    {"type": "call", "ref": "8", "method": "produce",
     "params": {"topic": "t", "value": 1, "headers": {"n": 1}}},
    {"type": "call", "ref": "7"},
    {"type": "call", "ref": 7, "method": "token"},
    {"type": "call", "ref": "7", "method": "token"},
    {"type": "call", "ref": "7", "method": "token", "params": {"audience": ""}},
    {"type": "call", "ref": "7", "method": "secret", "params": {}},
    {"type": "call", "ref": "7", "method": "secret", "params": {"reference": "secret/app#x"}},
    {"type": "reply", "ref": "7", "ok": True},
    {"type": "reply", "ref": "7", "ok": False, "result": {}},
    {"type": "reply", "ref": "7", "ok": False, "error": {"code": "x"}},
    {"type": "drain"},
    {"type": "ping"},
    {"type": "pong", "ref": 1},
    {"type": "cancel", "id": "z-1"},
    {"type": "cancel", "id": "z-1", "reason": "job cancelled"},
    {"type": "error", "code": "oops", "message": "m"},
    {"type": "error", "code": "protocol"},
]
# A frame checked against another type's schema must fail too.
BAD_AS = [("pong", {"type": "ping", "ref": "x"}), ("complete", {"type": "fail", "id": "z-1"})]


def load(name: str) -> dict:
    with open(os.path.join(SCHEMA_DIR, f"{name}.schema.json"), encoding="utf-8") as f:
        return json.load(f)


def test_one_schema_per_frame_type():
    names = sorted(n[: -len(".schema.json")] for n in os.listdir(SCHEMA_DIR)
                   if n.endswith(".schema.json"))
    assert names == sorted(FRAME_TYPES)
    for name in names:
        s = load(name)
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert s["properties"]["type"] == {"const": name}
        assert "type" in s["required"]


def test_every_frame_type_is_in_the_spec():
    with open(os.path.join(ROOT, "SPEC.md"), encoding="utf-8") as f:
        spec = f.read()
    for name in FRAME_TYPES:
        assert f"`{name}`" in spec, name


def spec_examples() -> list:
    """Every frame in the ```json blocks of SPEC.md (one or more per block)."""
    with open(os.path.join(ROOT, "SPEC.md"), encoding="utf-8") as f:
        spec = f.read()
    decoder = json.JSONDecoder()
    frames = []
    for block in re.findall(r"```json\n(.*?)```", spec, re.S):
        pos = 0
        while block[pos:].strip():
            pos += len(block[pos:]) - len(block[pos:].lstrip())
            frame, pos = decoder.raw_decode(block, pos)
            frames.append(frame)
    inline = re.findall(r"`(\{\"type\":.*?\})`", spec)  # e.g. the error frame of §4.6
    return frames + [json.loads(f) for f in inline]


def test_spec_examples_cover_every_frame_type():
    # drain and pong are only described in tables
    assert {f["type"] for f in spec_examples()} == set(FRAME_TYPES) - {"drain", "pong"}


def test_spec_has_kafka_examples():
    frames = spec_examples()
    assert any(f["type"] == "hello" and "job_types" not in f and f.get("topics") for f in frames)
    assert any(f["type"] == "task" and f["source"] == "kafka" for f in frames)
    assert any(f["type"] == "call" and f["method"] == "produce" for f in frames)
    nacks = [f for f in frames if f["type"] == "nack"]
    assert any("retry_backoff_ms" in f for f in nacks) and any(f.get("dead_letter") for f in nacks)


@pytest.mark.parametrize("frame", spec_examples(), ids=lambda f: f["type"])
def test_spec_examples_pass(jsonschema, frame):
    jsonschema.Draft202012Validator(load(frame["type"])).validate(frame)


def test_spec_hex_example_is_right():
    with open(os.path.join(ROOT, "SPEC.md"), encoding="utf-8") as f:
        spec = f.read()
    hexline = re.search(r"^00 00 00 19 [0-9a-f ]+$", spec, re.M).group(0)
    data = bytes.fromhex(hexline)
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert json.loads(data[4:]) == {"type": "ping", "ref": "7"}


@pytest.fixture(scope="module")
def jsonschema():
    return pytest.importorskip(
        "jsonschema", reason="jsonschema not installed (Debian: apt-get install "
        "python3-jsonschema); schema validation tests skipped")


def test_schemas_are_valid(jsonschema):
    for name in FRAME_TYPES:
        jsonschema.Draft202012Validator.check_schema(load(name))


@pytest.mark.parametrize("frame", GOOD, ids=lambda f: f["type"])
def test_good_frames_pass(jsonschema, frame):
    jsonschema.Draft202012Validator(load(frame["type"])).validate(frame)


@pytest.mark.parametrize("name,frame", [(f["type"], f) for f in BAD] + BAD_AS,
                         ids=lambda x: x if isinstance(x, str) else "")
def test_bad_frames_fail(jsonschema, name, frame):
    errors = list(jsonschema.Draft202012Validator(load(name)).iter_errors(frame))
    assert errors, f"{name} schema should reject {frame}"
