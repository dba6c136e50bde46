#!/usr/bin/env bash
# skiff devstack: a Confluent-compatible Schema Registry on loopback. By default the real one,
# Apicurio Registry (devstack/apicurio.sh runs it: this script hands every command over to it).
# With SKIFF_SCHEMA_REGISTRY_IMPL=standin: the STAND-IN below (devstack/kafka/schema_registry.py,
# Python standard library), for the tests that need what Apicurio does not do here (a restart
# keeping the schemas and their ids in 0.1 s, HTTPS requiring client certificates; see
# devstack/README.md). AVRO only; compatibility (BACKWARD by default) is really checked with
# Avro's resolution rules.
#
#   schema-registry.sh start     clean start (no schemas; stops one this script started on
#                                the same port first), waits until it answers; with
#                                SKIFF_SCHEMA_REGISTRY_KEEP=1 it keeps the schemas of the last
#                                run (the same ids), as a real registry restarts
#   schema-registry.sh stop      SIGTERM, wait, then SIGKILL; fine when none runs
#   schema-registry.sh restart   stop + start
#   schema-registry.sh status    exit 0 and the subjects when running, exit 3 when not
#   schema-registry.sh logs [-f|N]   access log (tail)
#   schema-registry.sh env       shell lines to eval: SCHEMA_REGISTRY_URL, ...
#
# It needs nothing but /usr/bin/python3, and no Kafka broker (schemas live in memory and in
# $SKIFF_SCHEMA_REGISTRY_RUN_DIR/schemas.json, not in a _schemas topic).
# With SKIFF_SCHEMA_REGISTRY_TLS_DIR (a directory made by devstack/certs.sh) it speaks HTTPS only
# (server.pem) and requires a client certificate signed by its ca.pem.
# Settings (environment): see devstack/README.md.
set -euo pipefail

case "${SKIFF_SCHEMA_REGISTRY_IMPL:-apicurio}" in
  apicurio) exec "$(dirname "${BASH_SOURCE[0]}")/apicurio.sh" "$@" ;;
  standin) ;;
  *)
    printf 'devstack: error: SKIFF_SCHEMA_REGISTRY_IMPL=%s: expected apicurio or standin\n' \
      "$SKIFF_SCHEMA_REGISTRY_IMPL" >&2
    exit 2
    ;;
esac

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

SR_PY=${SKIFF_SCHEMA_REGISTRY_PYTHON:-/usr/bin/python3}
SR_SCRIPT=$DEVSTACK_DIR/kafka/schema_registry.py
SR_HOST=${SKIFF_SCHEMA_REGISTRY_HOST:-127.0.0.1}
SR_PORT=${SKIFF_SCHEMA_REGISTRY_PORT:-28081}
SR_COMPATIBILITY=${SKIFF_SCHEMA_REGISTRY_COMPATIBILITY:-BACKWARD}
SR_TLS_DIR=${SKIFF_SCHEMA_REGISTRY_TLS_DIR:-}
# What lib/registry.sh needs.
REG_NAME="schema registry"
REG_KIND=stand-in
REG_RUN=${SKIFF_SCHEMA_REGISTRY_RUN_DIR:-$SKIFF_RUN_DIR/schema-registry-$SR_PORT}
REG_LOG=$REG_RUN/schema-registry.log
REG_PIDFILE=$REG_RUN/schema-registry.pid
START_TIMEOUT=${SKIFF_SCHEMA_REGISTRY_START_TIMEOUT:-20}
STOP_TIMEOUT=${SKIFF_SCHEMA_REGISTRY_STOP_TIMEOUT:-10}
REG_POLL=0.05
SR_STATE=$REG_RUN/schemas.json
URL=http://$SR_HOST:$SR_PORT
SR_TLS_ARGS=()
CURL_TLS=()
if [ -n "$SR_TLS_DIR" ]; then
  URL=https://$SR_HOST:$SR_PORT
  SR_TLS_ARGS=(--tls-cert "$SR_TLS_DIR/server.pem" --tls-key "$SR_TLS_DIR/server.key"
    --tls-client-ca "$SR_TLS_DIR/ca.pem")
  CURL_TLS=(--cacert "$SR_TLS_DIR/ca.pem" --cert "$SR_TLS_DIR/client.pem"
    --key "$SR_TLS_DIR/client.key")
fi

# shellcheck source-path=SCRIPTDIR source=lib/registry.sh
. "$DEVSTACK_DIR/lib/registry.sh"

usage() {
  sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# PID of the registry this script started for this port, if it still runs.
registry_pid() {
  devstack_pid "$REG_PIDFILE" schema_registry.py "--state $SR_STATE "
}

# Ready = GET /subjects answers a JSON list with the registry's content type.
answers() {
  local out
  out=$(curl -fsS "${CURL_TLS[@]}" --max-time 2 -D - "$URL/subjects" 2>/dev/null) || return 1
  grep -qi '^content-type: application/vnd.schemaregistry.v1+json' <<<"$out" &&
    grep -q '^\[' <<<"$out"
}

do_start() {
  local pid t0
  [ -x "$SR_PY" ] || devstack_die "$SR_PY not found (SKIFF_SCHEMA_REGISTRY_PYTHON)"
  registry_prepare
  if port_in_use "$SR_HOST" "$SR_PORT"; then
    devstack_die "port $SR_HOST:$SR_PORT is already in use (SKIFF_SCHEMA_REGISTRY_PORT moves it)"
  fi
  t0=$(date +%s%N)
  local kept=""
  if [ "${SKIFF_SCHEMA_REGISTRY_KEEP:-0}" = 1 ] && [ -f "$SR_STATE" ]; then
    kept=$(mktemp)
    cp "$SR_STATE" "$kept"
  fi
  rm -rf "$REG_RUN"
  mkdir -p "$REG_RUN"
  if [ -n "$kept" ]; then
    mv "$kept" "$SR_STATE"
  fi
  registry_spawn "$SR_PY" "$SR_SCRIPT" --host "$SR_HOST" --port "$SR_PORT" \
    --state "$SR_STATE" --compatibility "$SR_COMPATIBILITY" "${SR_TLS_ARGS[@]}"
  pid=$!
  if ! registry_wait_ready "$pid"; then
    do_stop
    exit 1
  fi
  registry_ready "$pid" "$t0" "$SR_COMPATIBILITY"
}

devstack_command "$REG_LOG" "$@"
