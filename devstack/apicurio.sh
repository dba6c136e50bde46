#!/usr/bin/env bash
# skiff devstack: a real Schema Registry on loopback, Apicurio Registry (Apache-2.0, from Maven
# Central) with its Confluent-compatible API at /apis/ccompat/v7. In-memory storage; the
# compatibility level is set globally (BACKWARD by default) once it answers.
#
#   apicurio.sh install     fetch io.apicurio:apicurio-registry-app:<v>:tar.gz:all through Maven
#                           and unpack it into $SKIFF_CACHE/apicurio (once; under a lock)
#   apicurio.sh start       clean start (no schemas; stops one this script started on the same
#                           port first), installs first if needed, waits until it answers
#   apicurio.sh stop        SIGTERM, wait, then SIGKILL; fine when none runs
#   apicurio.sh restart     stop + start
#   apicurio.sh status      exit 0 and the subjects when running, exit 3 when not
#   apicurio.sh logs [-f|N] its log (tail)
#   apicurio.sh env         shell lines to eval: SCHEMA_REGISTRY_URL, ...
#
# devstack/schema-registry.sh runs this script unless SKIFF_SCHEMA_REGISTRY_IMPL=standin, so
# the settings are the registry's: SKIFF_SCHEMA_REGISTRY_PORT (28081), _HOST, _RUN_DIR,
# _COMPATIBILITY (BACKWARD), _START_TIMEOUT (120 s); SKIFF_APICURIO_MANAGEMENT_PORT (port + 1),
# SKIFF_APICURIO_VERSION (3.3.3, needs Java >= 21), SKIFF_APICURIO_JAVA.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

AP_VERSION=${SKIFF_APICURIO_VERSION:-3.3.3}
AP_HOME=$SKIFF_CACHE/apicurio/apicurio-registry-app-$AP_VERSION
AP_HOST=${SKIFF_SCHEMA_REGISTRY_HOST:-127.0.0.1}
AP_PORT=${SKIFF_SCHEMA_REGISTRY_PORT:-28081}
AP_MGMT_PORT=${SKIFF_APICURIO_MANAGEMENT_PORT:-$((AP_PORT + 1))}
AP_COMPATIBILITY=${SKIFF_SCHEMA_REGISTRY_COMPATIBILITY:-BACKWARD}
BASE=http://$AP_HOST:$AP_PORT
# What lib/registry.sh needs.
REG_NAME="Apicurio Registry"
REG_KIND="Apicurio $AP_VERSION"
URL=$BASE/apis/ccompat/v7
CURL_TLS=()
REG_RUN=${SKIFF_SCHEMA_REGISTRY_RUN_DIR:-$SKIFF_RUN_DIR/apicurio-$AP_PORT}
REG_LOG=$REG_RUN/apicurio.log
REG_PIDFILE=$REG_RUN/apicurio.pid
START_TIMEOUT=${SKIFF_SCHEMA_REGISTRY_START_TIMEOUT:-120}
STOP_TIMEOUT=${SKIFF_SCHEMA_REGISTRY_STOP_TIMEOUT:-15}
REG_POLL=0.2

# shellcheck source-path=SCRIPTDIR source=lib/registry.sh
. "$DEVSTACK_DIR/lib/registry.sh"

usage() {
  sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# PID of the registry this script started for this port, if it still runs.
registry_pid() {
  devstack_pid "$REG_PIDFILE" quarkus-run.jar "-Dquarkus.http.port=$AP_PORT "
}

do_install() {
  [ -f "$AP_HOME/quarkus-run.jar" ] && return 0
  command -v mvn >/dev/null || devstack_die "mvn not found (Debian: maven)"
  mkdir -p "$SKIFF_CACHE/apicurio"
  (
    flock 9
    [ -f "$AP_HOME/quarkus-run.jar" ] && exit 0
    local tmp
    tmp=$(mktemp -d "$SKIFF_CACHE/apicurio/.unpack.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    devstack_say "fetching Apicurio Registry $AP_VERSION from Maven Central (about 160 MB)"
    mvn -q -B dependency:copy \
      "-Dartifact=io.apicurio:apicurio-registry-app:$AP_VERSION:tar.gz:all" \
      "-DoutputDirectory=$tmp" >&2
    mkdir -p "$tmp/app"
    tar -xzf "$tmp/apicurio-registry-app-$AP_VERSION-all.tar.gz" -C "$tmp/app"
    [ -f "$tmp/app/quarkus-run.jar" ] || devstack_die "no quarkus-run.jar in the archive"
    mv "$tmp/app" "$AP_HOME"
  ) 9>"$SKIFF_CACHE/apicurio/install.lock"
}

# Java >= 21 (Apicurio 3.x): SKIFF_APICURIO_JAVA, else the newest installed one.
apicurio_java() {
  if [ -n "${SKIFF_APICURIO_JAVA:-}" ]; then
    printf '%s\n' "$SKIFF_APICURIO_JAVA"
    return 0
  fi
  find_java || devstack_die "no Java >= 21 for Apicurio Registry $AP_VERSION (SKIFF_APICURIO_JAVA)"
}

# Ready = the Confluent-compatible API lists the subjects (a JSON array).
answers() {
  local out
  out=$(curl -fsS --max-time 2 "$URL/subjects" 2>/dev/null) || return 1
  grep -q '^\[' <<<"$out"
}

# The platform's compatibility rule for every subject (Apicurio's default is NONE).
set_compatibility() {
  curl -fsS --max-time 10 -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
    --data "{\"compatibility\":\"$AP_COMPATIBILITY\"}" "$URL/config" >/dev/null
}

do_start() {
  local pid t0 java
  if [ "${SKIFF_SCHEMA_REGISTRY_KEEP:-0}" = 1 ]; then
    devstack_die "SKIFF_SCHEMA_REGISTRY_KEEP=1: Apicurio keeps its schemas in memory only;" \
      "use the stand-in for that (SKIFF_SCHEMA_REGISTRY_IMPL=standin)"
  fi
  do_install
  java=$(apicurio_java)
  registry_prepare
  local port
  for port in "$AP_PORT" "$AP_MGMT_PORT"; do
    if port_in_use "$AP_HOST" "$port"; then
      if curl -fsS --max-time 2 "$BASE/subjects" >/dev/null 2>&1; then
        devstack_die "the schema registry stand-in (the previous default) runs on" \
          "$AP_HOST:$port: stop it first (SKIFF_SCHEMA_REGISTRY_IMPL=standin" \
          "devstack/schema-registry.sh stop)"
      fi
      devstack_die "port $AP_HOST:$port is already in use (SKIFF_SCHEMA_REGISTRY_PORT moves it)"
    fi
  done
  t0=$(date +%s%N)
  rm -rf "$REG_RUN"
  mkdir -p "$REG_RUN"
  # A bounded JVM: serial GC, C1 only (start-up matters more than peak speed here).
  registry_spawn "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dquarkus.http.host="$AP_HOST" -Dquarkus.http.port="$AP_PORT" \
    -Dquarkus.management.host="$AP_HOST" -Dquarkus.management.port="$AP_MGMT_PORT" \
    -jar "$AP_HOME/quarkus-run.jar"
  pid=$!
  if ! registry_wait_ready "$pid" || ! set_compatibility; then
    do_stop
    exit 1
  fi
  registry_ready "$pid" "$t0" "$AP_COMPATIBILITY"
}

if [ "${1:-}" = install ]; then
  do_install
  exit 0
fi
devstack_command "$REG_LOG" "$@"
