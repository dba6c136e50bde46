#!/usr/bin/env bash
# Checks tests/services.sh, the teardown of tests/run.sh, with the Schema Registry stand-in
# (it starts in well under a second) on a port and run dir of its own:
#   1. a registry the user started before is reused and left running;
#   2. a registry the run starts is stopped at the end, also when the run fails;
#   3. a process the run started and left behind is stopped, on failure and on SIGTERM,
#      while a process started outside the run is not touched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The stand-in, not Apicurio (schema-registry.sh's default): this checks services.sh, and the
# stand-in starts in 0.1 s instead of 10-20 s.
export SKIFF_RUN_DIR=$work/run SKIFF_SCHEMA_REGISTRY_PORT=$port SKIFF_SCHEMA_REGISTRY_IMPL=standin
outsider=
cleanup() {
  devstack/schema-registry.sh stop >/dev/null 2>&1 || true
  [ -z "$outsider" ] || kill "$outsider" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  printf 'services_test: FAIL: %s\n' "$*" >&2
  exit 1
}
registry_runs() { devstack/schema-registry.sh status >/dev/null 2>&1; }
alive() { kill -0 "$1" 2>/dev/null; }

# A run (a child bash, as tests/run.sh is): services_begin, then $1 (shell code), exit $2.
run() {
  bash -c '
    set -euo pipefail
    . tests/services.sh
    SERVICES_SHARED=(devstack/schema-registry.sh)
    services_begin
    eval "$1"
    exit "$2"' run "$1" "$2" >"$work/run.log" 2>&1 || return $?
}

# 1. the user's registry
devstack/schema-registry.sh start >/dev/null
user_pid=$(cat "$work/run/schema-registry-$port/schema-registry.pid")
run 'services_ensure devstack/schema-registry.sh' 0 || fail "run 1 failed: $(cat "$work/run.log")"
registry_runs || fail "the user's registry was stopped"
[ "$(cat "$work/run/schema-registry-$port/schema-registry.pid")" = "$user_pid" ] ||
  fail "the user's registry was restarted"
grep -q 'reusing the running schema-registry.sh' "$work/run.log" || fail "no reuse line"
devstack/schema-registry.sh stop >/dev/null

# 2. + 3. the run's registry and a leftover process, the run failing; an outsider survives
sleep 300 &
outsider=$!
rc=0
run 'services_ensure devstack/schema-registry.sh; sleep 300 & echo "leftover $!"' 3 || rc=$?
[ "$rc" = 3 ] || fail "the run's exit status $rc, want 3"
registry_runs && fail "the registry the run started still runs"
leftover=$(sed -n 's/^leftover //p' "$work/run.log")
[ -n "$leftover" ] || fail "no leftover pid: $(cat "$work/run.log")"
alive "$leftover" && fail "the run's leftover process $leftover still runs"
alive "$outsider" || fail "a process started outside the run was stopped"

# 3. on SIGTERM: the run waits in a command; its trap stops what it started
bash -c '
  . tests/services.sh
  SERVICES_SHARED=(devstack/schema-registry.sh)
  services_begin
  services_ensure devstack/schema-registry.sh
  sleep 300 &
  echo "$!" >"$0/child"
  wait' "$work" >"$work/run.log" 2>&1 &
runner=$!
for _ in $(seq 100); do [ -s "$work/child" ] && break; sleep 0.1; done
registry_runs || fail "the run did not start the registry: $(cat "$work/run.log")"
kill -TERM "$runner"
rc=0
wait "$runner" || rc=$?
[ "$rc" = 143 ] || fail "exit status $rc after SIGTERM, want 143"
registry_runs && fail "the registry still runs after SIGTERM"
alive "$(cat "$work/child")" && fail "the run's child still runs after SIGTERM"
alive "$outsider" || fail "the outsider was stopped"
echo "services_test: ok (reuse, stop on failure, leftovers, SIGTERM)"
