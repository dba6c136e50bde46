"""Tracing of Kafka records, asserted on what the real OpenTelemetry Collector received
(run by tests/tracing.sh, which starts the collector): a record with a `traceparent` header
gives a CONSUMER span `process <topic>` in that trace, child of the header's span, with the
messaging attributes, and the handler's task carries that span as its `traceparent`; an invalid
header starts a new trace; with the collector unreachable spans are dropped and counted while
records are processed as usual."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from conftest import CMD_SCHEMA, acked_offsets, cmd, free_port, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracing"))
from spans import OTLP_ENDPOINT, spans, spans_where  # noqa: E402

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TP = f"00-{TRACE}-{PARENT}-01"
FAST = {"otlp__endpoint": OTLP_ENDPOINT, "otlp__batch_delay": "200ms",
        "trace__resource_attributes": "deployment.environment=test"}


def registry_requests(skiff) -> float:
    """Schema Registry requests skiff made: each one is a CLIENT span too."""
    return skiff.metric("skiff_http_client_request_duration_seconds_count", peer="registry")


def test_record_span_in_the_callers_trace(kafka, stack, uid):
    assert OTLP_ENDPOINT, "run by tests/tracing.sh (collector endpoint in the environment)"
    topic, group = f"kt.trace.{uid}", f"kt-trace-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group, service__name=f"svc-{uid}", **FAST)
    sent = kafka.produce(topic, [("k1", cmd("A"), {"traceparent": TP, "tracestate": "rojo=1"}),
                                 ("k2", cmd("B"), {"traceparent": "00-zz-not-valid"}),
                                 ("k3", cmd("C", fail=1000), None)], schema=CMD_SCHEMA)
    # one span per attempt: A, B, and the three attempts of C (kafka.max_attempts=3)
    wait_until(lambda: len(spans_where(**{"messaging.destination.name": topic})) >= 5,
               what="five record spans at the collector", on_timeout=skiff.tail)
    by_offset = {s["attributes"]["messaging.kafka.offset"]: s
                 for s in spans_where(**{"messaging.destination.name": topic})}
    a = by_offset[sent[0]["offset"]]
    assert a["traceId"] == TRACE and a["parentSpanId"] == PARENT
    assert a["name"] == f"process {topic}"
    assert a["kind"] == 5  # SPAN_KIND_CONSUMER
    assert a["traceState"] == "rojo=1"
    assert a["attributes"]["messaging.system"] == "kafka"
    assert a["attributes"]["messaging.operation.type"] == "process"
    assert a["attributes"]["messaging.consumer.group.name"] == group
    assert a["attributes"]["messaging.destination.partition.id"] == "0"
    assert a["attributes"]["messaging.kafka.message.key"] == "k1"
    assert a["resource"]["service.name"] == f"svc-{uid}"
    assert a["resource"]["deployment.environment"] == "test"
    # the downward API's pod name and namespace (tests/tracing.sh sets them as the chart does)
    assert a["resource"]["k8s.pod.name"] == os.environ["POD_NAME"]
    assert a["resource"]["k8s.namespace.name"] == os.environ["POD_NAMESPACE"]
    assert "error.type" not in a["attributes"]
    # the handler saw that span as its task's traceparent
    start = {e["offset"]: e for e in handler.events("start")}[sent[0]["offset"]]
    assert start["traceparent"] == f"00-{TRACE}-{a['spanId']}-01"
    # an invalid traceparent: a new trace, no parent, processed normally
    b = by_offset[sent[1]["offset"]]
    assert b["traceId"] != TRACE and not b.get("parentSpanId")
    assert (0, sent[1]["offset"]) in acked_offsets([handler], topic)
    # a failing record: one span per attempt, status error with error.type
    c = [s for s in spans_where(**{"messaging.destination.name": topic})
         if s["attributes"]["messaging.kafka.offset"] == sent[2]["offset"]]
    assert len(c) == 3 and all(s["status"].get("code") == 2 for s in c)
    assert {s["attributes"]["error.type"] for s in c} <= {"nack", "dead_letter", "fail"}
    assert skiff.metric("skiff_trace_spans_exported_total") >= 3
    # log lines written for a record's work carry its ids (the retries of the failing one)
    ids = {(s["traceId"], s["spanId"]) for s in c}
    assert [ln for ln in skiff.log_lines() if (ln.get("trace_id"), ln.get("span_id")) in ids], \
        skiff.tail()
    stack.stop_all()


def test_collector_down_spans_dropped_records_unaffected(kafka, stack, uid):
    topic, group = f"kt.trace.down.{uid}", f"kt-trace-down-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    skiff, handler = stack.start([topic], group, otlp__endpoint=dead,
                                 otlp__batch_delay="100ms", otlp__max_queue_size="4")
    n = 20
    sent = kafka.produce(topic, [(f"k{i}", cmd(f"R{i}"), {"traceparent": TP})
                                 for i in range(n)], schema=CMD_SCHEMA)
    wait_until(lambda: len(acked_offsets([handler], topic)) == n,
               what="every record acked with the collector down", on_timeout=skiff.tail)
    assert acked_offsets([handler], topic) == {(r["partition"], r["offset"]) for r in sent}

    def dropped():
        return (skiff.metric("skiff_trace_spans_dropped_total", reason="export_failed") +
                skiff.metric("skiff_trace_spans_dropped_total", reason="queue_full"))
    # every record's span and the CLIENT span of every registry request
    wait_until(lambda: dropped() == n + registry_requests(skiff),
               what="every span counted as dropped", on_timeout=skiff.tail)
    assert skiff.metric("skiff_trace_spans_exported_total") == 0
    assert not [s for s in spans() if s["attributes"].get("messaging.destination.name") == topic]
    stack.stop_all()


def test_spans_flushed_at_shutdown(kafka, stack, uid):
    """With a batch delay far beyond the test, the spans still reach the collector: SIGTERM
    exports the queue within the grace period."""
    topic, group = f"kt.trace.flush.{uid}", f"kt-trace-flush-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group, otlp__endpoint=OTLP_ENDPOINT,
                                 otlp__batch_delay="10m")
    sent = kafka.produce(topic, [(f"k{i}", cmd(f"F{i}"), {"traceparent": TP}) for i in range(3)],
                         schema=CMD_SCHEMA)
    wait_until(lambda: len(acked_offsets([handler], topic)) == len(sent), what="records acked")
    wait_until(lambda: skiff.metric("skiff_trace_queue_spans") ==
               len(sent) + registry_requests(skiff),
               what="the spans queued (not exported before the batch delay)")
    stack.stop_all()  # SIGTERM: exit 0 and no sanitizer report
    wait_until(lambda: len(spans_where(**{"messaging.destination.name": topic})) == len(sent),
               what="the queued spans at the collector after shutdown")


def test_produce_call_gets_a_producer_span(kafka, stack, uid):
    """A handler producing with its task's traceparent in the headers: skiff's PRODUCER span
    `send <topic>` is a child of the task's span, and the produced record carries that span."""
    topic, out, group = f"kt.trace.in.{uid}", f"kt.trace.out.{uid}", f"kt-trace-p-{uid}"
    kafka.create_topic(topic)
    kafka.create_topic(out, dlq=False)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    kafka.register(f"{out}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group, **FAST)
    spec = json.dumps({"topic": out, "value": cmd("OUT"), "key": "ko",
                       "headers": {"traceparent": "{traceparent}", "h": "v"}})
    kafka.produce(topic, [("ki", cmd("IN", produce=spec), {"traceparent": TP})],
                  schema=CMD_SCHEMA)
    (send,) = wait_until(lambda: spans_where(**{"messaging.destination.name": out}),
                         what="the send span at the collector", on_timeout=skiff.tail)
    (proc,) = wait_until(lambda: spans_where(**{"messaging.destination.name": topic}),
                         what="the process span at the collector")
    assert send["name"] == f"send {out}" and send["kind"] == 4  # SPAN_KIND_PRODUCER
    assert send["traceId"] == TRACE and send["parentSpanId"] == proc["spanId"]
    assert send["attributes"]["messaging.operation.type"] == "send"
    assert send["attributes"]["messaging.kafka.message.key"] == "ko"
    assert send["attributes"]["messaging.destination.partition.id"] == "0"
    assert send["attributes"]["messaging.kafka.offset"] == 0
    (rec,) = kafka.read_all(out)
    headers = dict(rec.headers())
    assert headers["traceparent"] == f"00-{TRACE}-{send['spanId']}-01".encode()
    assert headers["h"] == b"v"
    stack.stop_all()


def test_otlp_grpc_and_gzip(kafka, stack, uid):
    """The same spans reach the real Collector over OTLP/gRPC (its gRPC receiver, skiff's own
    gRPC client) and over OTLP/HTTP with a gzip body."""
    modes = {"grpc": {"otlp__protocol": "grpc",
                      "otlp__endpoint": os.environ["SKIFF_OTEL_GRPC_ENDPOINT"]},
             "gzip": {"otlp__compression": "gzip", "otlp__endpoint": OTLP_ENDPOINT}}
    for mode, cfg in modes.items():
        topic, group = f"kt.trace.{mode}.{uid}", f"kt-trace-{mode}-{uid}"
        kafka.create_topic(topic)
        kafka.register(f"{topic}-value", CMD_SCHEMA)
        skiff, handler = stack.start([topic], group, service__name=f"{mode}-{uid}",
                                     otlp__batch_delay="200ms", **cfg)
        sent = kafka.produce(topic, [(f"k{i}", cmd(f"{mode}{i}"), {"traceparent": TP})
                                     for i in range(2)], schema=CMD_SCHEMA)
        got = wait_until(lambda: (lambda s: s if len(s) == len(sent) else None)(
            spans_where(**{"messaging.destination.name": topic})),
            what=f"the record spans over {mode}", on_timeout=skiff.tail)
        assert {s["traceId"] for s in got} == {TRACE}
        assert {s["parentSpanId"] for s in got} == {PARENT}
        assert {s["resource"]["service.name"] for s in got} == {f"{mode}-{uid}"}
        wait_until(lambda: skiff.metric("skiff_trace_spans_exported_total") >=
                   len(sent) + registry_requests(skiff), what="exported spans counted")
        assert skiff.metric("skiff_trace_spans_dropped_total") == 0
    stack.stop_all()


def test_otlp_grpc_receiver_down(kafka, stack, uid):
    """OTLP/gRPC (plaintext: otlp.insecure) with nothing listening: UNAVAILABLE is retried until otlp.export_timeout, then
    the spans are dropped and counted; every record is processed as usual."""
    topic, group = f"kt.trace.grpcdown.{uid}", f"kt-trace-grpcdown-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    skiff, handler = stack.start([topic], group, otlp__protocol="grpc",
                                 otlp__endpoint=f"127.0.0.1:{free_port()}",
                                 otlp__insecure="true",
                                 otlp__batch_delay="100ms", otlp__timeout="500ms",
                                 otlp__export_timeout="1s")
    n = 5
    sent = kafka.produce(topic, [(f"k{i}", cmd(f"G{i}"), {"traceparent": TP}) for i in range(n)],
                         schema=CMD_SCHEMA)
    wait_until(lambda: len(acked_offsets([handler], topic)) == n, what="every record acked")
    assert acked_offsets([handler], topic) == {(r["partition"], r["offset"]) for r in sent}
    wait_until(lambda: skiff.metric("skiff_trace_spans_dropped_total", reason="export_failed") ==
               n + registry_requests(skiff), what="every span counted as dropped",
               on_timeout=skiff.tail)
    assert skiff.metric("skiff_trace_spans_exported_total") == 0
    assert "cannot export" in skiff.logs()
    stack.stop_all()
