#!/usr/bin/env bash
# skiff devstack: Jaeger all-in-one (memory storage) on loopback, built from the Go module proxy
# (github.com/jaegertracing/jaeger/cmd/jaeger, its own module, cached). A Go build has no UI
# assets: read traces from the query API (/api/traces, /api/services; devstack/demo.sh --trace
# prints one as a tree).
#
#   jaeger.sh install   idempotent: builds Jaeger into $SKIFF_CACHE/jaeger-<version> (~5 min of
#                       CPU, once; niced, one package at a time)
#   jaeger.sh start     clean start (stops a Jaeger this script started on the same port
#                       first), waits until the query API answers
#   jaeger.sh stop      SIGTERM, wait, then SIGKILL; fine when none runs
#   jaeger.sh status    exit 0 when running, exit 3 when not
#   jaeger.sh env       shell lines to eval: SKIFF_JAEGER_QUERY_URL, SKIFF_JAEGER_OTLP_GRPC
#
# Settings (environment): SKIFF_JAEGER_PORT (query API over HTTP, default 16686); the query
# gRPC port is +1, the OTLP/gRPC receiver +2, the OTLP/HTTP receiver +3.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

JAEGER_VERSION=${SKIFF_JAEGER_VERSION:-v1.75.0}
JAEGER_HOME=$SKIFF_CACHE/jaeger-$JAEGER_VERSION
JAEGER_BIN=$JAEGER_HOME/jaeger
JAEGER_PORT=${SKIFF_JAEGER_PORT:-16686}
JAEGER_RUN=$SKIFF_RUN_DIR/jaeger-$JAEGER_PORT
JAEGER_LOG=$JAEGER_RUN/jaeger.log
JAEGER_PIDFILE=$JAEGER_RUN/jaeger.pid
START_TIMEOUT=${SKIFF_JAEGER_START_TIMEOUT:-60}

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# A subshell: the build changes directory and exports GOFLAGS (one package at a time).
jaeger_build() (
  cd "$JAEGER_HOME/mod" || exit
  [ -f go.mod ] || go mod init skiff-devstack/jaeger >/dev/null 2>&1
  export GOFLAGS=-p=1
  nice -n 15 go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" &&
    nice -n 15 go build -o "$JAEGER_BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
)

jaeger_install() {
  [ -x "$JAEGER_BIN" ] && return 0
  mkdir -p "$JAEGER_HOME/mod"
  devstack_say "building Jaeger $JAEGER_VERSION (once, ~5 min of CPU)"
  devstack_go_build Jaeger "$JAEGER_HOME/build.log" jaeger_build
  mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
}

# PID of the Jaeger this script started for this port, if it still runs.
jaeger_pid() {
  devstack_pid "$JAEGER_PIDFILE" "$JAEGER_BIN" "--config=$JAEGER_RUN/config.yaml"
}

jaeger_healthy() {
  curl -fsS -o /dev/null "http://127.0.0.1:$JAEGER_PORT/api/services" 2>/dev/null
}

jaeger_stop() {
  local pid
  if pid=$(jaeger_pid); then
    devstack_stop "$pid" Jaeger 10
  fi
  rm -f "$JAEGER_PIDFILE"
}

jaeger_start() {
  jaeger_install
  jaeger_stop
  rm -rf "$JAEGER_RUN"
  mkdir -p "$JAEGER_RUN"
  sed -e "s|@QUERY_HTTP@|127.0.0.1:$JAEGER_PORT|" -e "s|@QUERY_GRPC@|127.0.0.1:$((JAEGER_PORT + 1))|" \
    -e "s|@OTLP_GRPC@|127.0.0.1:$((JAEGER_PORT + 2))|" \
    -e "s|@OTLP_HTTP@|127.0.0.1:$((JAEGER_PORT + 3))|" \
    "$DEVSTACK_DIR/jaeger/config.yaml" >"$JAEGER_RUN/config.yaml"
  # OTEL_SDK_DISABLED: Jaeger would export its own spans to localhost:4318 otherwise.
  OTEL_SDK_DISABLED=true setsid "$JAEGER_BIN" --config="$JAEGER_RUN/config.yaml" \
    >"$JAEGER_LOG" 2>&1 </dev/null &
  echo $! >"$JAEGER_PIDFILE"
  devstack_wait_ready $! jaeger_healthy "$START_TIMEOUT" 0.1 Jaeger \
    "http://127.0.0.1:$JAEGER_PORT" "$JAEGER_LOG" || { jaeger_stop; exit 1; }
}

jaeger_env() {
  printf 'export SKIFF_JAEGER_QUERY_URL=%q\n' "http://127.0.0.1:$JAEGER_PORT"
  printf 'export SKIFF_JAEGER_OTLP_GRPC=%q\n' "127.0.0.1:$((JAEGER_PORT + 2))"
}

case "${1:-}" in
  install) jaeger_install ;;
  start) jaeger_start ;;
  stop) jaeger_stop ;;
  status) jaeger_pid >/dev/null && jaeger_healthy || exit 3 ;;
  env) jaeger_env ;;
  *) usage ;;
esac
