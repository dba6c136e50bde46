#!/usr/bin/env bash
# skiff devstack: a real OpenTelemetry Collector (OTLP receiver, batch processor, file exporter)
# on loopback, built with the collector builder from the Go module proxy.
#
#   otel.sh install   idempotent: builds the collector into $SKIFF_CACHE/otelcol (~4 min, once)
#   otel.sh start     clean start (fresh output file; stops a collector this script started on
#                     the same port first), waits until its health endpoint answers
#   otel.sh stop      SIGTERM, wait, then SIGKILL; fine when none runs
#   otel.sh status    exit 0 when running, exit 3 when not
#   otel.sh env       shell lines to eval: OTEL_EXPORTER_OTLP_ENDPOINT, SKIFF_OTEL_SPANS_FILE,
#                     SKIFF_OTEL_GRPC_ENDPOINT (the OTLP/gRPC receiver); https:// with TLS
#
# Settings (environment): SKIFF_OTEL_HTTP_PORT (OTLP/HTTP, default 4318), SKIFF_OTEL_GRPC_PORT
# (OTLP/gRPC, default HTTP port - 1), SKIFF_OTEL_HEALTH_PORT (default HTTP port + 2),
# SKIFF_OTEL_JAEGER_ENDPOINT (host:port of Jaeger's OTLP/gRPC receiver, devstack/jaeger.sh env:
# the spans go there too; default none), SKIFF_OTEL_TLS_DIR (a directory made by certs.sh: both
# receivers speak TLS with its server.pem/server.key; default none: plaintext),
# SKIFF_OTEL_TLS_CLIENT_CA (with SKIFF_OTEL_TLS_DIR: a PEM CA bundle; the receivers then require
# a client certificate signed by it, mTLS).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

OTEL_BUILDER_VERSION=${SKIFF_OTEL_BUILDER_VERSION:-v0.161.0}
OTEL_HOME=$SKIFF_CACHE/otelcol-$OTEL_BUILDER_VERSION
OTEL_BIN=$OTEL_HOME/otelcol-skiff
OTEL_HTTP_PORT=${SKIFF_OTEL_HTTP_PORT:-4318}
OTEL_GRPC_PORT=${SKIFF_OTEL_GRPC_PORT:-$((OTEL_HTTP_PORT - 1))}
OTEL_HEALTH_PORT=${SKIFF_OTEL_HEALTH_PORT:-$((OTEL_HTTP_PORT + 2))}
OTEL_RUN=$SKIFF_RUN_DIR/otel-$OTEL_HTTP_PORT
OTEL_SPANS=$OTEL_RUN/spans.jsonl
OTEL_LOG=$OTEL_RUN/otelcol.log
OTEL_PIDFILE=$OTEL_RUN/otelcol.pid
START_TIMEOUT=${SKIFF_OTEL_START_TIMEOUT:-60}

usage() {
  sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

otel_build() {
  local gobin=$OTEL_HOME/gobin build=$OTEL_HOME/build
  GOBIN=$gobin go install "go.opentelemetry.io/collector/cmd/builder@$OTEL_BUILDER_VERSION" &&
    sed "s|OUTPUT_PATH|$build|" "$DEVSTACK_DIR/otel/manifest.yaml" >"$OTEL_HOME/manifest.yaml" &&
    "$gobin/builder" --config="$OTEL_HOME/manifest.yaml" &&
    mv "$build/otelcol-skiff" "$OTEL_BIN" &&
    rm -rf "$build"
}

otel_install() {
  [ -x "$OTEL_BIN" ] && return 0
  devstack_say "building the OpenTelemetry Collector $OTEL_BUILDER_VERSION (once, ~4 min)"
  devstack_go_build "the collector" "$OTEL_HOME/build.log" otel_build
}

# PID of the collector this script started for this port, if it still runs.
otel_pid() {
  devstack_pid "$OTEL_PIDFILE" "$OTEL_BIN" "--config=$OTEL_RUN/config.yaml"
}

otel_healthy() {
  curl -fsS -o /dev/null "http://127.0.0.1:$OTEL_HEALTH_PORT/" 2>/dev/null
}

otel_stop() {
  local pid
  if pid=$(otel_pid); then
    devstack_stop "$pid" "the collector" 10
  fi
  rm -f "$OTEL_PIDFILE"
}

otel_start() {
  otel_install
  otel_stop
  rm -rf "$OTEL_RUN"
  mkdir -p "$OTEL_RUN"
  local jaeger_exporter="" jaeger_name=""
  if [ -n "${SKIFF_OTEL_JAEGER_ENDPOINT:-}" ]; then
    jaeger_exporter=$(printf '  otlp_grpc/jaeger:\n    endpoint: %s\n    tls:\n      insecure: true' \
      "$SKIFF_OTEL_JAEGER_ENDPOINT")
    jaeger_name=", otlp_grpc/jaeger"
  fi
  local tls=""
  if [ -n "${SKIFF_OTEL_TLS_DIR:-}" ]; then
    tls=$(printf '        tls:\n          cert_file: %s\n          key_file: %s' \
      "$SKIFF_OTEL_TLS_DIR/server.pem" "$SKIFF_OTEL_TLS_DIR/server.key")
    [ -n "${SKIFF_OTEL_TLS_CLIENT_CA:-}" ] &&
      tls=$(printf '%s\n          client_ca_file: %s' "$tls" "$SKIFF_OTEL_TLS_CLIENT_CA")
  fi
  local cfg
  cfg=$(sed -e "s|@GRPC@|127.0.0.1:$OTEL_GRPC_PORT|" -e "s|@HTTP@|127.0.0.1:$OTEL_HTTP_PORT|" \
    -e "s|@HEALTH@|127.0.0.1:$OTEL_HEALTH_PORT|" -e "s|@SPANS@|$OTEL_SPANS|" \
    "$DEVSTACK_DIR/otel/config.yaml")
  cfg=${cfg//@RECEIVER_TLS@/$tls}
  cfg=${cfg//@JAEGER_EXPORTER@/$jaeger_exporter}
  printf '%s\n' "${cfg//@JAEGER_NAME@/$jaeger_name}" >"$OTEL_RUN/config.yaml"
  setsid "$OTEL_BIN" --config="$OTEL_RUN/config.yaml" >"$OTEL_LOG" 2>&1 </dev/null &
  echo $! >"$OTEL_PIDFILE"
  devstack_wait_ready $! otel_healthy "$START_TIMEOUT" 0.1 "the collector" \
    "http://127.0.0.1:$OTEL_HEALTH_PORT/" "$OTEL_LOG" || { otel_stop; exit 1; }
}

otel_env() {
  local scheme=http
  [ -n "${SKIFF_OTEL_TLS_DIR:-}" ] && scheme=https
  printf 'export OTEL_EXPORTER_OTLP_ENDPOINT=%q\n' "$scheme://127.0.0.1:$OTEL_HTTP_PORT"
  printf 'export SKIFF_OTEL_SPANS_FILE=%q\n' "$OTEL_SPANS"
  printf 'export SKIFF_OTEL_GRPC_ENDPOINT=%q\n' "$scheme://127.0.0.1:$OTEL_GRPC_PORT"
}

case "${1:-}" in
  install) otel_install ;;
  start) otel_start ;;
  stop) otel_stop ;;
  status) otel_pid >/dev/null && otel_healthy || exit 3 ;;
  env) otel_env ;;
  *) usage ;;
esac
