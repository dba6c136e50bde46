"""Tracing of Zeebe jobs, asserted on what the real OpenTelemetry Collector received (run by
tests/tracing.sh): a job whose process instance has a `traceparent` variable gives a CONSUMER
span `process <job type>` in that trace, child of the variable's span, with the job's
attributes; an invalid variable starts a new trace; a failed job's span has status ERROR and
error.type `fail`."""
import sys
from pathlib import Path

from bpmn import message_start, service_task
from conftest import wait_until
from raw_handler import RawHandler
import zeebe_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracing"))
from spans import OTLP_ENDPOINT, spans, spans_where  # noqa: E402

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{PARENT}-01"


def deploy(tmp_path, pid, job_type, **kw):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type, **kw))
    zeebe_client.deploy(str(path))


def job_spans(job_type, n):
    return wait_until(lambda: (lambda s: s if len(s) >= n else None)(
        spans_where(**{"zeebe.job.type": job_type})), timeout=60,
        what=f"{n} span(s) of job type {job_type} at the collector")


def test_job_span_in_the_instances_trace(stack, tmp_path, uid):
    assert OTLP_ENDPOINT, "run by tests/tracing.sh (collector endpoint in the environment)"
    job_type, pid = f"it-trace-{uid}", f"p-trace-{uid}"
    deploy(tmp_path, pid, job_type)
    skiff = stack.skiff([job_type], otlp_endpoint=OTLP_ENDPOINT, otlp_batch_delay="200ms")
    stack.handler(skiff, [job_type], name="doubler")
    good = zeebe_client.create_instance_with_result(pid, {"x": 1, "traceparent": TP},
                                                    timeout_s=30)
    bad = zeebe_client.create_instance_with_result(
        pid, {"x": 2, "traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"},
        timeout_s=30)
    by_instance = {s["attributes"]["zeebe.process_instance.key"]: s for s in job_spans(job_type, 2)}
    s = by_instance[str(good["processInstanceKey"])]
    assert s["traceId"] == TRACE and s["parentSpanId"] == PARENT
    assert s["name"] == f"process {job_type}"
    assert s["kind"] == 5  # SPAN_KIND_CONSUMER
    a = s["attributes"]
    assert a["messaging.system"] == "zeebe"
    assert a["zeebe.bpmn_process_id"] == pid
    assert a["zeebe.job.retries"] == 3
    assert a["zeebe.element_id"] and a["zeebe.job.key"].isdigit()
    assert s["status"].get("code", 0) == 0 and "error.type" not in a
    assert s["resource"]["service.name"] == "skiff"
    n = by_instance[str(bad["processInstanceKey"])]
    assert n["traceId"] != TRACE and not n.get("parentSpanId")
    assert skiff.metric("skiff_trace_spans_dropped_total") == 0


def test_failed_job_span_has_error_type(stack, tmp_path, uid):
    job_type, pid = f"it-trace-fail-{uid}", f"p-trace-fail-{uid}"
    deploy(tmp_path, pid, job_type, retries=1)
    skiff = stack.skiff([job_type], otlp_endpoint=OTLP_ENDPOINT, otlp_batch_delay="200ms",
                        trace_zeebe_variable="otelContext")
    stack.handler(skiff, [job_type], behave="fail")
    key = zeebe_client.create_instance(pid, {"otelContext": TP})["processInstanceKey"]
    (s,) = job_spans(job_type, 1)
    assert s["attributes"]["zeebe.process_instance.key"] == str(key)
    assert s["traceId"] == TRACE  # read from the configured variable
    assert s["status"]["code"] == 2  # STATUS_CODE_ERROR
    assert s["attributes"]["error.type"] == "fail"
    assert "handler says no" in s["status"]["message"]


def test_publish_message_call_context(stack, tmp_path, uid):
    """publish_message's `traceparent` param: a valid one is the parent of the PublishMessage
    CLIENT span, whose traceparent the message carries to the job it starts; an invalid one
    starts a new trace without an error; a non-string one is invalid_params."""
    job_type, pid, message = f"it-trace-pub-{uid}", f"p-trace-pub-{uid}", f"m-trace-{uid}"
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(message_start(pid, message, job_type))
    zeebe_client.deploy(str(path))
    skiff = stack.skiff([job_type], otlp_endpoint=OTLP_ENDPOINT, otlp_batch_delay="200ms")
    h = RawHandler(skiff.socket, [job_type])
    r = h.call("publish_message", {"name": message, "correlation_key": "a", "traceparent": TP},
               ref="p1")
    assert r["ok"], r
    t = h.task()
    assert t["variables"]["traceparent"].startswith(f"00-{TRACE}-")
    h.send({"type": "complete", "id": t["id"]})
    bad = "00-ffffffffffffffffffffffffffffffff-00f067aa0ba902b7-zz"
    r = h.call("publish_message", {"name": message, "correlation_key": "b", "traceparent": bad},
               ref="p2")
    assert r["ok"], r
    t2 = h.task()
    assert not t2["variables"]["traceparent"].startswith(f"00-{TRACE}-")
    h.send({"type": "complete", "id": t2["id"]})
    r = h.call("publish_message", {"name": message, "traceparent": 7}, ref="p3")
    assert not r["ok"] and r["error"]["code"] == "invalid_params", r
    assert "traceparent" in r["error"]["message"]
    pubs = wait_until(lambda: (lambda s: s if len(s) >= 2 else None)(
        [s for s in spans() if s["name"] == "gateway_protocol.Gateway/PublishMessage"
         and s["resource"]["service.name"] == "skiff"
         and s["spanId"] in {t["variables"]["traceparent"][36:52],
                             t2["variables"]["traceparent"][36:52]}]),
        what="the two PublishMessage spans")
    first = next(s for s in pubs if s["traceId"] == TRACE)
    assert first["parentSpanId"] == PARENT and first["kind"] == 3
    second = next(s for s in pubs if s["traceId"] != TRACE)
    assert not second.get("parentSpanId")
    job = wait_until(lambda: [s for s in spans_where(**{"zeebe.job.type": job_type})
                              if s["traceId"] == TRACE], what="the job span")
    assert job[0]["parentSpanId"] == first["spanId"]
    h.close()
