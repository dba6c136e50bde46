#!/usr/bin/env bash
# Tracing integration tests: the real skiff (ASan+UBSan build) exports its spans over OTLP/HTTP
# (and OTLP/gRPC, gzip) to the real OpenTelemetry Collector (devstack/otel.sh), whose file
# exporter the tests read; Kafka records against the devstack broker and registry, Zeebe jobs
# and messages against the devstack broker; the trace that crosses everything (a record through
# two skiffs, produce, publish_message, a process and its job: tests/kafka/tracing_cross.py).
# Stops the collector it started, also on failure.
#
#   tests/tracing.sh [pytest args]
# The collector's ports: SKIFF_OTEL_HTTP_PORT (default 4318) and the two below it/above it.
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
cleanup() {
  devstack/otel.sh stop
  [ "$kafka_up" = 1 ] || devstack/kafka.sh stop
  [ "$registry_up" = 1 ] || devstack/schema-registry.sh stop
}
trap cleanup EXIT
devstack/otel.sh start
eval "$(devstack/otel.sh env)"
export OTEL_EXPORTER_OTLP_ENDPOINT SKIFF_OTEL_SPANS_FILE SKIFF_OTEL_GRPC_ENDPOINT
# What the chart's downward API gives skiff in a pod: the resource's k8s.* attributes.
export POD_NAME=tracing-pod-0 POD_NAMESPACE=tracing-ns

ASAN_OPTIONS=detect_leaks=1 $PY -m pytest -q -p no:cacheprovider \
  tests/integration/tracing_zeebe.py "$@"
# The Kafka tests run in the clients' venv (confluent-kafka), like tests/kafka.
ASAN_OPTIONS=detect_leaks=1 devstack/kafka.sh python -m pytest -q -p no:cacheprovider \
  tests/kafka/tracing_kafka.py tests/kafka/tracing_cross.py "$@"
