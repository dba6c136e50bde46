"""The OTLP exporter over TLS, asserted on what the real OpenTelemetry Collector received: a
collector whose OTLP receivers (HTTP and gRPC) speak TLS with devstack/certs.sh's server
certificate and require a client certificate signed by its CA (mTLS) is started by
tests/tracing.sh. skiff reaches it at https:// over OTLP/HTTP (libcurl) and OTLP/gRPC (its own
gRPC client, ALPN h2) with the CA and client certificate of the OTEL_EXPORTER_OTLP_* variables;
with the wrong CA, or without a client certificate, the spans are dropped and counted, the
cause is named in the log and every record is processed as usual."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import CMD_SCHEMA, acked_offsets, cmd, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracing"))
from spans import spans_where  # noqa: E402

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TP = f"00-{TRACE}-{PARENT}-01"
CERTS = Path(os.environ.get("SKIFF_OTEL_TLS_CERTS", "/nonexistent"))
TLS_SPANS = Path(os.environ.get("SKIFF_OTEL_TLS_SPANS_FILE", "/nonexistent"))
ENDPOINTS = {"http/protobuf": os.environ.get("SKIFF_OTEL_TLS_HTTP_ENDPOINT", ""),
             "grpc": os.environ.get("SKIFF_OTEL_TLS_GRPC_ENDPOINT", "")}


def exporter_env(protocol: str, ca: str = "ca.pem", client: bool = True) -> dict:
    """The OpenTelemetry variables a pod would set (the general ones; the per-signal ones are
    covered by the config unit tests)."""
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
           "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINTS[protocol],
           "OTEL_EXPORTER_OTLP_CERTIFICATE": str(CERTS / ca)}
    if client:
        env["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] = str(CERTS / "client.pem")
        env["OTEL_EXPORTER_OTLP_CLIENT_KEY"] = str(CERTS / "client.key")
    return env


def start(kafka, stack, topic: str, group: str, env: dict, **config):
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", CMD_SCHEMA)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # skiff inherits the test's environment
    try:
        return stack.start([topic], group, otlp__batch_delay="200ms",
                           security__plaintext="warn", **config)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_mtls_export(kafka, stack, uid, protocol):
    assert ENDPOINTS[protocol], "run by tests/tracing.sh (TLS collector in the environment)"
    mode = "grpc" if protocol == "grpc" else "http"
    topic, group = f"kt.trace.tls.{mode}.{uid}", f"kt-trace-tls-{mode}-{uid}"
    skiff, handler = start(kafka, stack, topic, group, exporter_env(protocol),
                           service__name=f"tls-{mode}-{uid}")
    sent = kafka.produce(topic, [(f"k{i}", cmd(f"T{i}"), {"traceparent": TP}) for i in range(3)],
                         schema=CMD_SCHEMA)
    got = wait_until(lambda: (lambda s: s if len(s) == len(sent) else None)(
        spans_where(TLS_SPANS, **{"messaging.destination.name": topic})),
        what=f"the record spans over {protocol} with mTLS", on_timeout=skiff.tail)
    assert {s["traceId"] for s in got} == {TRACE}
    assert {s["resource"]["service.name"] for s in got} == {f"tls-{mode}-{uid}"}
    assert skiff.metric("skiff_trace_spans_dropped_total") == 0
    # an https:// endpoint is no plaintext peer; the certificate's expiry is watched
    assert skiff.metric("skiff_plaintext_peers", peer="otlp") == 0
    assert skiff.metric("skiff_tls_certificate_expiry_seconds", peer="otlp") > 0
    stack.stop_all()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("case", ["wrong_ca", "no_client_certificate"])
def test_refused_tls_drops_and_counts(kafka, stack, uid, protocol, case):
    """The receiver's certificate signed by a CA skiff does not trust, or no client certificate
    for a receiver that requires one: nothing reaches the collector, the spans are counted as
    dropped, the log names the cause, the records are processed."""
    mode = "grpc" if protocol == "grpc" else "http"
    topic, group = f"kt.trace.{case}.{mode}.{uid}", f"kt-trace-{case}-{mode}-{uid}"
    env = exporter_env(protocol, ca="other-ca.pem") if case == "wrong_ca" else \
        exporter_env(protocol, client=False)
    skiff, handler = start(kafka, stack, topic, group, env, otlp__timeout="1s",
                           otlp__export_timeout="2s")
    n = 4
    sent = kafka.produce(topic, [(f"k{i}", cmd(f"W{i}"), {"traceparent": TP}) for i in range(n)],
                         schema=CMD_SCHEMA)
    wait_until(lambda: len(acked_offsets([handler], topic)) == n, what="every record acked")
    assert acked_offsets([handler], topic) == {(r["partition"], r["offset"]) for r in sent}
    wait_until(lambda: skiff.metric("skiff_trace_spans_dropped_total", reason="export_failed") >=
               n, what="the spans counted as dropped", on_timeout=skiff.tail)
    assert skiff.metric("skiff_trace_spans_exported_total") == 0
    assert spans_where(TLS_SPANS, **{"messaging.destination.name": topic}) == []
    drops = [ln for ln in skiff.log_lines() if "cannot export" in ln.get("message", "")]
    assert drops, skiff.tail()
    why = drops[0]["message"].lower()
    assert ENDPOINTS[protocol].lower() in why or protocol == "grpc", why
    if case == "wrong_ca":
        assert "unknown ca" in why or "unable to get local issuer certificate" in why, why
    elif protocol == "grpc":
        assert "client certificate" in why, why
    # OTLP/HTTP without a client certificate: with TLS 1.3 the receiver's refusal is an alert
    # after libcurl's handshake finished, which libcurl reports as a failed send (the reason is
    # not named; the gRPC transport keeps the alert and names it).
    stack.stop_all()
