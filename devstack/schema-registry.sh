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
SR_RUN=${SKIFF_SCHEMA_REGISTRY_RUN_DIR:-$SKIFF_RUN_DIR/schema-registry-$SR_PORT}
SR_LOG=$SR_RUN/schema-registry.log
SR_PIDFILE=$SR_RUN/schema-registry.pid
SR_STATE=$SR_RUN/schemas.json
SR_COMPATIBILITY=${SKIFF_SCHEMA_REGISTRY_COMPATIBILITY:-BACKWARD}
START_TIMEOUT=${SKIFF_SCHEMA_REGISTRY_START_TIMEOUT:-20}
STOP_TIMEOUT=${SKIFF_SCHEMA_REGISTRY_STOP_TIMEOUT:-10}
SR_TLS_DIR=${SKIFF_SCHEMA_REGISTRY_TLS_DIR:-}
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

usage() {
  sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# PID of the registry this script started for this port, if it still runs.
registry_pid() {
  devstack_pid "$SR_PIDFILE" schema_registry.py "--state $SR_STATE "
}

log_tail() { devstack_log_tail "$SR_LOG" 40; }

# Ready = GET /subjects answers a JSON list with the registry's content type.
answers() {
  local out
  out=$(curl -fsS "${CURL_TLS[@]}" --max-time 2 -D - "$URL/subjects" 2>/dev/null) || return 1
  grep -qi '^content-type: application/vnd.schemaregistry.v1+json' <<<"$out" &&
    grep -q '^\[' <<<"$out"
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! devstack_running "$pid"; then
      printf 'devstack: error: schema registry exited during start-up\n' >&2
      log_tail
      return 1
    fi
    answers && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'devstack: error: schema registry not ready after %ss (%s)\n' \
        "$START_TIMEOUT" "$URL" >&2
      log_tail
      return 1
    fi
    sleep 0.05
  done
}

do_stop() {
  local pid
  if pid=$(registry_pid); then
    devstack_stop "$pid" "schema registry" "$STOP_TIMEOUT"
  fi
  rm -f "$SR_PIDFILE"
}

do_start() {
  local pid t0 elapsed
  [ -x "$SR_PY" ] || devstack_die "$SR_PY not found (SKIFF_SCHEMA_REGISTRY_PYTHON)"
  if registry_pid >/dev/null; then
    devstack_say "stopping the running schema registry for a clean start"
    do_stop
  fi
  if port_in_use "$SR_HOST" "$SR_PORT"; then
    devstack_die "port $SR_HOST:$SR_PORT is already in use (SKIFF_SCHEMA_REGISTRY_PORT moves it)"
  fi
  case "$SR_RUN" in
    /?*/?*) ;;
    *) devstack_die "refusing to use run dir '$SR_RUN' (wiped on start): give a deeper path" ;;
  esac
  t0=$(date +%s%N)
  local kept=""
  if [ "${SKIFF_SCHEMA_REGISTRY_KEEP:-0}" = 1 ] && [ -f "$SR_STATE" ]; then
    kept=$(mktemp)
    cp "$SR_STATE" "$kept"
  fi
  rm -rf "$SR_RUN"
  mkdir -p "$SR_RUN"
  if [ -n "$kept" ]; then
    mv "$kept" "$SR_STATE"
  fi
  (
    cd "$SR_RUN"
    exec setsid "$SR_PY" "$SR_SCRIPT" --host "$SR_HOST" --port "$SR_PORT" \
      --state "$SR_STATE" --compatibility "$SR_COMPATIBILITY" "${SR_TLS_ARGS[@]}"
  ) >>"$SR_LOG" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" >"$SR_PIDFILE"
  if ! wait_ready "$pid"; then
    do_stop
    exit 1
  fi
  elapsed=$((($(date +%s%N) - t0) / 1000000))
  write_env >"$SR_RUN/env"
  printf 'schema registry (stand-in) ready on %s in %d.%01ds (pid %s, compatibility %s)\n' \
    "$URL" $((elapsed / 1000)) $((elapsed % 1000 / 100)) "$pid" "$SR_COMPATIBILITY"
}

write_env() {
  printf 'export SCHEMA_REGISTRY_URL=%q\n' "$URL"
  printf 'export SKIFF_SCHEMA_REGISTRY_URL=%q\n' "$URL"
  printf 'export SKIFF_SCHEMA_REGISTRY_LOG=%q\n' "$SR_LOG"
}

do_status() {
  local pid subjects
  if pid=$(registry_pid); then
    printf 'schema registry (stand-in) running (pid %s, %s, run dir %s)\n' "$pid" "$URL" "$SR_RUN"
    if subjects=$(curl -fsS "${CURL_TLS[@]}" --max-time 2 "$URL/subjects" 2>/dev/null); then
      printf 'subjects: %s\n' "$subjects"
    else
      printf '(not answering)\n'
    fi
    return 0
  fi
  printf 'schema registry not running (%s)\n' "$URL"
  return 3
}

devstack_command "$SR_LOG" "$@"
