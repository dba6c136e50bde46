"""The trace that crosses everything, asserted on what the real OpenTelemetry Collector received
(run by tests/tracing.sh): a record produced with a `traceparent` by confluent-kafka -> skiff A
-> handler -> `produce` -> skiff B -> handler -> `publish_message` -> the process (message start
event) -> a job -> skiff B -> handler. One trace id, every parent link right, attributes by the
OpenTelemetry messaging, RPC and HTTP conventions."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import CMD_SCHEMA, ROOT, cmd, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracing"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from bpmn import message_start  # noqa: E402  (tests/integration/bpmn.py)
from spans import OTLP_ENDPOINT, spans  # noqa: E402

import zeebe_client  # noqa: E402  (devstack/, on the path through conftest)

TRACE = "5c1f2a9e7d3b4c6a8e0f1a2b3c4d5e6f"
ORIGIN = "a1b2c3d4e5f60718"
RELAY = ROOT / "tests" / "tracing" / "relay_handler.py"
FAST = {"otlp__endpoint": OTLP_ENDPOINT, "otlp__batch_delay": "200ms"}


def relay(skiff, out: Path, **env: str) -> subprocess.Popen:
    e = dict(os.environ)
    e.update({"SKIFF_SOCKET": skiff.socket, "RELAY_OUT": str(out),
              "PYTHONPATH": str(ROOT / "handler-protocol" / "python")}, **env)
    log = open(out.with_suffix(".log"), "ab")
    return subprocess.Popen([sys.executable, str(RELAY)], env=e, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)


def lines(path: Path):
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def test_one_trace_from_a_kafka_record_to_a_zeebe_job(kafka, stack, uid, tmp_path):
    assert OTLP_ENDPOINT, "run by tests/tracing.sh (collector endpoint in the environment)"
    t1, t2, group = f"kt.cross.a.{uid}", f"kt.cross.b.{uid}", f"kt-cross-{uid}"
    job_type, pid, message = f"cross-job-{uid}", f"p-cross-{uid}", f"cross-msg-{uid}"
    for t in (t1, t2):
        kafka.create_topic(t)
        kafka.register(f"{t}-value", CMD_SCHEMA)
    bpmn = tmp_path / f"{pid}.bpmn"
    bpmn.write_text(message_start(pid, message, job_type))
    zeebe_client.deploy(str(bpmn))
    a = stack.skiff([t1], f"{group}-a", service__name="skiff-a", **FAST)
    b = stack.skiff([t2], f"{group}-b", service__name="skiff-b", zeebe__job_types=job_type,
                    **FAST)
    out_a, out_b = tmp_path / "relay-a.jsonl", tmp_path / "relay-b.jsonl"
    procs = [relay(a, out_a, RELAY_FORWARD=f"{t1}={t2}"),
             relay(b, out_b, RELAY_PUBLISH=f"{t2}={message}", RELAY_JOB=job_type)]
    try:
        a.wait_ready()
        b.wait_ready()
        kafka.produce(t1, [("k", cmd(f"order-{uid}"), {"traceparent": f"00-{TRACE}-{ORIGIN}-01"})],
                      schema=CMD_SCHEMA)
        done = wait_until(lambda: [r for r in lines(out_b) if r["route"] == job_type],
                          what="the job at the end of the chain", on_timeout=b.tail)
        names = {f"process {t1}", f"send {t2}", f"process {t2}",
                 "gateway_protocol.Gateway/PublishMessage", f"process {job_type}",
                 "gateway_protocol.Gateway/CompleteJob"}
        got = wait_until(lambda: (lambda s: s if names <= {x["name"] for x in s} else None)(
            [x for x in spans() if x["traceId"] == TRACE]), what="the whole trace at the collector",
            on_timeout=lambda: sorted({x["name"] for x in spans() if x["traceId"] == TRACE}))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    by = {x["name"]: x for x in got}
    p1, send, p2 = by[f"process {t1}"], by[f"send {t2}"], by[f"process {t2}"]
    pub, job, complete = (by["gateway_protocol.Gateway/PublishMessage"],
                          by[f"process {job_type}"], by["gateway_protocol.Gateway/CompleteJob"])
    # the parent links, from the producer's span to the job's command
    assert p1["parentSpanId"] == ORIGIN
    assert send["parentSpanId"] == p1["spanId"]
    assert p2["parentSpanId"] == send["spanId"]
    assert pub["parentSpanId"] == p2["spanId"]
    assert job["parentSpanId"] == pub["spanId"]
    assert complete["parentSpanId"] == job["spanId"]
    # kinds: CONSUMER 5, PRODUCER 4, CLIENT 3
    assert [x["kind"] for x in (p1, send, p2, pub, job, complete)] == [5, 4, 5, 3, 5, 3]
    assert p1["resource"]["service.name"] == "skiff-a"
    assert {x["resource"]["service.name"] for x in (p2, pub, job, complete)} == {"skiff-b"}
    # the handlers saw skiff's spans as their tasks' traceparent
    assert lines(out_a)[0]["traceparent"] == f"00-{TRACE}-{p1['spanId']}-01"
    assert done[0]["traceparent"] == f"00-{TRACE}-{job['spanId']}-01"
    # the process got the publish span as its variable
    assert done[0]["variables"]["traceparent"] == f"00-{TRACE}-{pub['spanId']}-01"
    # RPC conventions on the gateway commands
    for x, method in ((pub, "PublishMessage"), (complete, "CompleteJob")):
        at = x["attributes"]
        assert at["rpc.system"] == "grpc" and at["rpc.service"] == "gateway_protocol.Gateway"
        assert at["rpc.method"] == method and at["rpc.grpc.status_code"] == 0
        assert at["server.address"] == "127.0.0.1" and at["server.port"] == 26500
        assert x["status"].get("code", 0) == 0
    # messaging conventions on the Kafka spans, job attributes on the job's
    assert send["attributes"]["messaging.destination.name"] == t2
    assert p2["attributes"]["messaging.consumer.group.name"] == f"{group}-b"
    assert job["attributes"]["zeebe.bpmn_process_id"] == pid
    assert job["attributes"]["zeebe.job.type"] == job_type
    stack.stop_all()


def test_registry_requests_get_client_spans(kafka, stack, uid):
    """skiff's Schema Registry lookups are HTTP CLIENT spans by the HTTP client conventions,
    without the registry's credentials in url.full."""
    topic, group = f"kt.cross.http.{uid}", f"kt-cross-http-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group, service__name=f"http-{uid}",
                                 schema_registry__username="canary-user",
                                 schema_registry__password="canary-Secret-7f3", **FAST)
    kafka.produce(topic, [("k", cmd("H"), None)], schema=CMD_SCHEMA)
    gets = wait_until(lambda: [x for x in spans() if x["resource"].get("service.name") ==
                               f"http-{uid}" and x["name"] == "GET"],
                      what="a registry GET span", on_timeout=skiff.tail)
    g = gets[0]
    assert g["kind"] == 3  # CLIENT
    at = g["attributes"]
    assert at["http.request.method"] == "GET" and at["http.response.status_code"] == 200
    assert at["url.full"].startswith(kafka.registry_url.rstrip("/") + "/")
    assert at["server.address"] == "127.0.0.1" and isinstance(at["server.port"], int)
    assert "canary" not in json.dumps(g)
    assert skiff.metric("skiff_http_client_request_duration_seconds_count", peer="registry") >= 1
    assert skiff.metric("skiff_http_client_ttfb_seconds_count", peer="registry") >= 1
    stack.stop_all()
