# shellcheck shell=bash
# Sourced by tests/run.sh: what a test run starts, it stops when it ends, however it ends
# (success, a failed step, Ctrl-C, SIGTERM), and nothing else.
#
#   services_begin            notes which shared devstack services already run, marks every
#                             process started from now on, installs the traps
#   services_ensure SCRIPT..  starts those of the services that do not run yet
#
# - The shared services (Zeebe broker, Kafka broker, Schema Registry, on the ports that
#   SKIFF_ZEEBE_PORT, SKIFF_KAFKA_PORT and SKIFF_SCHEMA_REGISTRY_PORT give) that run before the
#   tests are the user's: the tests reuse them and the run never stops them.
# - Those that do not run then are started by the run (by run.sh or a test fixture) and are
#   stopped at the end with their script's `stop` (a controlled shutdown).
# - Every process the run starts inherits TESTS_RUN_MARK=<id> in its environment: the brokers
#   of the tests' own, skiff, handlers, proxies. Whatever of them still runs at the end (a test
#   killed before its clean-up) gets SIGTERM, then SIGKILL. The user's processes do not carry
#   the mark, so they are never touched.

SERVICES_SHARED=(devstack/zeebe.sh devstack/kafka.sh devstack/schema-registry.sh)
SERVICES_OURS=()

services_begin() {
  local s
  for s in "${SERVICES_SHARED[@]}"; do
    if "$s" status >/dev/null 2>&1; then
      printf 'tests: reusing the running %s service (left running at the end)\n' "${s##*/}"
    else
      SERVICES_OURS+=("$s")
    fi
  done
  TESTS_RUN_MARK="skiff-tests-$$-$(date +%s%N)"
  export TESTS_RUN_MARK
  trap services_end EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

services_ensure() {
  local s
  for s in "$@"; do
    "$s" status >/dev/null 2>&1 || "$s" start
  done
}

# PIDs of the processes whose environment holds the line $1.
services_marked() {
  local f pid
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}
    pid=${pid%/environ}
    [ "$pid" != "$$" ] || continue
    grep -qzxF -- "$1" "$f" 2>/dev/null && printf '%s\n' "$pid"
  done
  return 0
}

services_end() {
  local rc=$? mark="TESTS_RUN_MARK=${TESTS_RUN_MARK:-}" s pids i
  trap - EXIT INT TERM
  # What runs from here on is not part of the run: it must not find itself marked.
  unset TESTS_RUN_MARK
  for s in "${SERVICES_OURS[@]}"; do
    if "$s" status >/dev/null 2>&1; then
      printf 'tests: stopping the %s service this run started\n' "${s##*/}"
      "$s" stop >/dev/null 2>&1 || true
    fi
  done
  for ((i = 0; i < 100; i++)); do
    mapfile -t pids < <(services_marked "$mark")
    [ "${#pids[@]}" -gt 0 ] || break
    if [ "$i" = 0 ]; then
      printf 'tests: stopping %d leftover process(es) of this run: %s\n' "${#pids[@]}" "${pids[*]}"
      kill -TERM "${pids[@]}" 2>/dev/null || true
    elif [ "$i" = 99 ]; then
      kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    sleep 0.1
  done
  exit "$rc"
}
