#!/usr/bin/env bash
# Tracing integration tests: the real skiff (ASan+UBSan build) exports its spans over OTLP/HTTP
# (and OTLP/gRPC, gzip) to the real OpenTelemetry Collector (devstack/otel.sh), whose file
# exporter the tests read; Kafka records against the devstack broker and registry, Zeebe jobs
# and messages against the devstack broker; the trace that crosses everything (a record through
# two skiffs, produce, publish_message, a process and its job: tests/kafka/tracing_cross.py).
# A second collector whose receivers speak TLS and require a client certificate (devstack/
# certs.sh's CA) checks the exporter's TLS and mTLS, both protocols (tests/kafka/tracing_tls.py).
# Stops the collectors it started, also on failure.
#
#   tests/tracing.sh [pytest args]
# The collector's ports: SKIFF_OTEL_HTTP_PORT (default 4318) and the two below it/above it;
# the TLS collector's: SKIFF_OTEL_TLS_HTTP_PORT (default SKIFF_OTEL_HTTP_PORT + 10), the one
# below it, and SKIFF_OTEL_TLS_HEALTH_PORT (default its HTTP port + 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=/usr/bin/python3
export SKIFF_BIN=${SKIFF_BIN:-$ROOT/build-asan/skiff}

# The Kafka fixtures leave the broker and registry running: stop them here unless they were
# already up (the Zeebe fixture stops the broker it started itself).
kafka_up=0 registry_up=0
devstack/kafka.sh status >/dev/null 2>&1 && kafka_up=1
devstack/schema-registry.sh status >/dev/null 2>&1 && registry_up=1
OTEL_HTTP_PORT=${SKIFF_OTEL_HTTP_PORT:-4318}
TLS_HTTP_PORT=${SKIFF_OTEL_TLS_HTTP_PORT:-$((OTEL_HTTP_PORT + 10))}
TLS_HEALTH_PORT=${SKIFF_OTEL_TLS_HEALTH_PORT:-$((TLS_HTTP_PORT + 2))}
CERTS=$(mktemp -d /tmp/skiff-otel-certs.XXXXXX)
tls_collector() { # otel.sh command for the TLS collector
  SKIFF_OTEL_HTTP_PORT=$TLS_HTTP_PORT SKIFF_OTEL_GRPC_PORT=$((TLS_HTTP_PORT - 1)) \
    SKIFF_OTEL_HEALTH_PORT=$TLS_HEALTH_PORT SKIFF_OTEL_TLS_DIR=$CERTS \
    SKIFF_OTEL_TLS_CLIENT_CA=$CERTS/ca.pem SKIFF_OTEL_JAEGER_ENDPOINT='' devstack/otel.sh "$1"
}
cleanup() {
  tls_collector stop
  rm -rf "$CERTS"
  devstack/otel.sh stop
  [ "$kafka_up" = 1 ] || devstack/kafka.sh stop
  [ "$registry_up" = 1 ] || devstack/schema-registry.sh stop
}
trap cleanup EXIT
devstack/otel.sh start
eval "$(devstack/otel.sh env)"
export OTEL_EXPORTER_OTLP_ENDPOINT SKIFF_OTEL_SPANS_FILE SKIFF_OTEL_GRPC_ENDPOINT
devstack/certs.sh "$CERTS" >/dev/null
tls_collector start
tls_env=$(tls_collector env)
SKIFF_OTEL_TLS_HTTP_ENDPOINT=$(sed -n 's/^export OTEL_EXPORTER_OTLP_ENDPOINT=//p' <<<"$tls_env")
SKIFF_OTEL_TLS_GRPC_ENDPOINT=$(sed -n 's/^export SKIFF_OTEL_GRPC_ENDPOINT=//p' <<<"$tls_env")
SKIFF_OTEL_TLS_SPANS_FILE=$(sed -n 's/^export SKIFF_OTEL_SPANS_FILE=//p' <<<"$tls_env")
export SKIFF_OTEL_TLS_HTTP_ENDPOINT SKIFF_OTEL_TLS_GRPC_ENDPOINT SKIFF_OTEL_TLS_SPANS_FILE
export SKIFF_OTEL_TLS_CERTS=$CERTS
# What the chart's downward API gives skiff in a pod: the resource's k8s.* attributes.
export POD_NAME=tracing-pod-0 POD_NAMESPACE=tracing-ns

ASAN_OPTIONS=detect_leaks=1 $PY -m pytest -q -p no:cacheprovider \
  tests/integration/tracing_zeebe.py "$@"
# The Kafka tests run in the clients' venv (confluent-kafka), like tests/kafka.
ASAN_OPTIONS=detect_leaks=1 devstack/kafka.sh python -m pytest -q -p no:cacheprovider \
  tests/kafka/tracing_kafka.py tests/kafka/tracing_cross.py tests/kafka/tracing_tls.py "$@"
