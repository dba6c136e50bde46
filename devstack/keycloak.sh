#!/usr/bin/env bash
# skiff devstack: Keycloak (the real one, from Maven Central) as the OAuth authorization server
# on loopback, with the realm devstack/keycloak/skiff-realm.json imported at start through the
# admin API (in-memory database: every start is a fresh realm).
#
#   keycloak.sh start     fetch once (Maven), start, wait until it answers, import the realm,
#                         wait until its OpenID configuration answers; stops one this script
#                         started on the port first
#   keycloak.sh stop      SIGTERM, wait, then SIGKILL; fine when none runs
#   keycloak.sh restart   stop + start
#   keycloak.sh status    exit 0 when running and answering, exit 3 when not
#   keycloak.sh logs [-f|N]   server log (tail)
#   keycloak.sh env       shell lines to eval: SKIFF_KEYCLOAK_URL, token and JWKS URLs, admin
#
# Realm "skiff": confidential clients with service accounts, skiff-worker (300 s tokens) and
# skiff-short (8 s tokens) with an audience mapper adding "zeebe-api", and skiff-noaud (no
# audience mapper); login events (CLIENT_LOGIN, CLIENT_LOGIN_ERROR) are kept. The issuer is
# always $URL/realms/skiff, whatever address a request came through (--hostname), so tokens
# fetched through a test proxy still validate. Settings (environment): SKIFF_KEYCLOAK_PORT
# (default 18080), SKIFF_KEYCLOAK_MANAGEMENT_PORT (port + 1), SKIFF_KEYCLOAK_VERSION,
# SKIFF_KEYCLOAK_HEAP (default 384m). With SKIFF_KEYCLOAK_TLS_DIR (a directory made by
# devstack/certs.sh) Keycloak also speaks HTTPS (server.pem, DNS:localhost and IP:127.0.0.1) on
# SKIFF_KEYCLOAK_HTTPS_PORT (port + 2); env then adds SKIFF_KEYCLOAK_HTTPS_TOKEN_URL,
# SKIFF_KEYCLOAK_HTTPS_JWKS_URL and SKIFF_KEYCLOAK_CA_FILE (the CA to verify it with). Plain
# HTTP stays on for the admin API and the existing clients; the issuer stays the http:// one.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

KC_VERSION=${SKIFF_KEYCLOAK_VERSION:-26.7.3}
KC_HOME=${SKIFF_KEYCLOAK_HOME:-$SKIFF_CACHE/keycloak/keycloak-$KC_VERSION}
KC_HOST=127.0.0.1
KC_PORT=${SKIFF_KEYCLOAK_PORT:-18080}
KC_MGMT_PORT=${SKIFF_KEYCLOAK_MANAGEMENT_PORT:-$((KC_PORT + 1))}
KC_HEAP=${SKIFF_KEYCLOAK_HEAP:-384m}
KC_TLS_DIR=${SKIFF_KEYCLOAK_TLS_DIR:-}
KC_HTTPS_PORT=${SKIFF_KEYCLOAK_HTTPS_PORT:-$((KC_PORT + 2))}
KC_RUN=${SKIFF_KEYCLOAK_RUN_DIR:-$SKIFF_RUN_DIR/keycloak-$KC_PORT}
KC_LOG=$KC_RUN/keycloak.log
KC_PIDFILE=$KC_RUN/keycloak.pid
KC_REALM_FILE=$DEVSTACK_DIR/keycloak/skiff-realm.json
KC_ADMIN_USER="admin"
KC_ADMIN_PASSWORD=${SKIFF_KEYCLOAK_ADMIN_PASSWORD:-skiff-admin}
START_TIMEOUT=${SKIFF_KEYCLOAK_START_TIMEOUT:-240}
STOP_TIMEOUT=${SKIFF_KEYCLOAK_STOP_TIMEOUT:-30}
URL=http://$KC_HOST:$KC_PORT
REALM_URL=$URL/realms/skiff
HTTPS_REALM_URL=https://$KC_HOST:$KC_HTTPS_PORT/realms/skiff
KC_TLS_ARGS=()
if [ -n "$KC_TLS_DIR" ]; then
  [ -r "$KC_TLS_DIR/server.pem" ] || devstack_die "no $KC_TLS_DIR/server.pem (run devstack/certs.sh)"
  KC_TLS_ARGS=(--https-port "$KC_HTTPS_PORT" --https-certificate-file "$KC_TLS_DIR/server.pem"
    --https-certificate-key-file "$KC_TLS_DIR/server.key")
fi

usage() {
  sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# PID of kc.sh as this script started it (a process group leader: java is its child).
keycloak_pid() {
  devstack_pid "$KC_PIDFILE" kc.sh "--http-port $KC_PORT "
}

log_tail() { devstack_log_tail "$KC_LOG" 60; }

fetch() {
  [ -x "$KC_HOME/bin/kc.sh" ] && return 0
  local dir
  dir=$(dirname "$KC_HOME")
  mkdir -p "$dir"
  devstack_say "fetching org.keycloak:keycloak-quarkus-dist:$KC_VERSION from Maven Central"
  mvn -q dependency:copy "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KC_VERSION:zip" \
    "-DoutputDirectory=$dir" >&2
  (cd "$dir" && unzip -q -o "keycloak-quarkus-dist-$KC_VERSION.zip" && rm -f "keycloak-quarkus-dist-$KC_VERSION.zip")
  [ -x "$KC_HOME/bin/kc.sh" ] || devstack_die "no $KC_HOME/bin/kc.sh after unpacking"
}

answers() {
  curl -fs -o /dev/null --max-time 2 "$REALM_URL/.well-known/openid-configuration" || return 1
  [ -z "$KC_TLS_DIR" ] || curl -fs -o /dev/null --max-time 2 --cacert "$KC_TLS_DIR/ca.pem" \
    "$HTTPS_REALM_URL/.well-known/openid-configuration"
}

master_answers() {
  curl -fs -o /dev/null --max-time 2 "$URL/realms/master/.well-known/openid-configuration"
}

# Creates the realm with the admin API (an admin token from the master realm's admin-cli).
import_realm() {
  local token
  token=$(curl -fsS --max-time 10 -d grant_type=password -d client_id=admin-cli \
    -d "username=$KC_ADMIN_USER" -d "password=$KC_ADMIN_PASSWORD" \
    "$URL/realms/master/protocol/openid-connect/token" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') ||
    return 1
  curl -fsS --max-time 30 -o /dev/null -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data-binary "@$KC_REALM_FILE" "$URL/admin/realms"
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
  until master_answers; do
    if ! devstack_running "$pid"; then
      printf 'devstack: error: Keycloak exited during start-up\n' >&2
      log_tail
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'devstack: error: Keycloak not ready after %ss at %s\n' "$START_TIMEOUT" "$URL" >&2
      log_tail
      return 1
    fi
    sleep 0.5
  done
  import_realm || {
    printf 'devstack: error: importing %s into Keycloak failed\n' "$KC_REALM_FILE" >&2
    return 1
  }
  answers
}

do_stop() {
  local pid
  local i
  if pid=$(keycloak_pid); then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      pgrep -g "$pid" >/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$KC_PIDFILE"
}

do_start() {
  local java pid
  do_stop
  fetch
  java=$(find_java) || devstack_die "no Java >= $ZEEBE_MIN_JAVA (run devstack/setup.sh)"
  port_in_use "$KC_HOST" "$KC_PORT" && devstack_die "port $KC_PORT is in use (SKIFF_KEYCLOAK_PORT)"
  if [ -n "$KC_TLS_DIR" ] && port_in_use "$KC_HOST" "$KC_HTTPS_PORT"; then
    devstack_die "port $KC_HTTPS_PORT is in use (SKIFF_KEYCLOAK_HTTPS_PORT)"
  fi
  rm -rf "$KC_RUN"
  mkdir -p "$KC_RUN"
  devstack_say "starting Keycloak $KC_VERSION on $URL (log $KC_LOG)"
  JAVA_HOME=$(dirname "$(dirname "$java")") \
    JAVA_OPTS_KC_HEAP="-Xms64m -Xmx$KC_HEAP" \
    JAVA_OPTS_APPEND="-Dskiff.run=$KC_RUN -XX:TieredStopAtLevel=1 -Xss512k" \
    KC_BOOTSTRAP_ADMIN_USERNAME=$KC_ADMIN_USER KC_BOOTSTRAP_ADMIN_PASSWORD=$KC_ADMIN_PASSWORD \
    setsid "$KC_HOME/bin/kc.sh" start-dev --db=dev-mem --http-host "$KC_HOST" \
    --http-port "$KC_PORT" --http-management-port "$KC_MGMT_PORT" --hostname "$URL" \
    "${KC_TLS_ARGS[@]}" >"$KC_LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$KC_PIDFILE"
  if ! wait_ready "$pid"; then
    do_stop
    exit 1
  fi
  devstack_say "Keycloak ready: realm skiff at $REALM_URL"
}

do_status() {
  if keycloak_pid >/dev/null && answers; then
    printf 'Keycloak %s at %s (realm skiff)\n' "$KC_VERSION" "$URL"
    return 0
  fi
  printf 'Keycloak not running on %s\n' "$URL"
  return 3
}

write_env() {
  cat <<EOT
export SKIFF_KEYCLOAK_URL=$URL
export SKIFF_KEYCLOAK_REALM_URL=$REALM_URL
export SKIFF_KEYCLOAK_TOKEN_URL=$REALM_URL/protocol/openid-connect/token
export SKIFF_KEYCLOAK_JWKS_URL=$REALM_URL/protocol/openid-connect/certs
export SKIFF_KEYCLOAK_ISSUER=$REALM_URL
export SKIFF_KEYCLOAK_ADMIN_USER=$KC_ADMIN_USER
export SKIFF_KEYCLOAK_ADMIN_PASSWORD=$KC_ADMIN_PASSWORD
EOT
  [ -n "$KC_TLS_DIR" ] || return 0
  cat <<EOT
export SKIFF_KEYCLOAK_HTTPS_TOKEN_URL=$HTTPS_REALM_URL/protocol/openid-connect/token
export SKIFF_KEYCLOAK_HTTPS_JWKS_URL=$HTTPS_REALM_URL/protocol/openid-connect/certs
export SKIFF_KEYCLOAK_CA_FILE=$KC_TLS_DIR/ca.pem
EOT
}

devstack_command "$KC_LOG" "$@"
