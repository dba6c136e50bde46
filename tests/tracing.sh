#!/usr/bin/env bash
# Tracing integration tests: the real skiff (ASan+UBSan build) exports its task spans over
# OTLP/HTTP to the real OpenTelemetry Collector (devstack/otel.sh), whose file exporter the
# tests read; Kafka records against the devstack broker and registry, Zeebe jobs against the
# devstack broker. Stops the collector it started, also on failure.
#
#   tests/tracing.sh [pytest args]
# The collector's ports: SKIFF_OTEL_HTTP_PORT (default 4318) and the two below it/above it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=/usr/bin/python3
export SKIFF_BIN=${SKIFF_BIN:-$ROOT/build-asan/skiff}

trap 'devstack/otel.sh stop' EXIT
devstack/otel.sh start
eval "$(devstack/otel.sh env)"
export OTEL_EXPORTER_OTLP_ENDPOINT SKIFF_OTEL_SPANS_FILE

ASAN_OPTIONS=detect_leaks=1 $PY -m pytest -q -p no:cacheprovider \
  tests/integration/tracing_zeebe.py "$@"
# The Kafka tests run in the clients' venv (confluent-kafka), like tests/kafka.
ASAN_OPTIONS=detect_leaks=1 devstack/kafka.sh python -m pytest -q -p no:cacheprovider \
  tests/kafka/tracing_kafka.py "$@"
