# shellcheck shell=bash
# skiff devstack: what the two schema registry scripts share, apicurio.sh (the real one) and
# schema-registry.sh (the stand-in). Source it after lib/common.sh, once the script has set:
#   REG_NAME      the registry as messages name it ("Apicurio Registry", "schema registry")
#   REG_KIND      in status and ready lines ("Apicurio 3.3.3", "stand-in")
#   URL           its Confluent-compatible API; CURL_TLS: curl's TLS options (an array)
#   REG_RUN       run dir (wiped on start), REG_LOG its log, REG_PIDFILE its pid file
#   START_TIMEOUT, STOP_TIMEOUT (seconds), REG_POLL (seconds between readiness probes)
# and defined registry_pid (the PID it started, if it still runs) and answers (it is ready).
# It defines do_stop, do_status and write_env for devstack_command, and the steps of do_start.

do_stop() {
  local pid
  if pid=$(registry_pid); then
    devstack_stop "$pid" "$REG_NAME" "$STOP_TIMEOUT"
  fi
  rm -f "$REG_PIDFILE"
}

# Before a start: stops the one this script started (a clean start) and refuses a run dir too
# shallow to be wiped.
registry_prepare() {
  if registry_pid >/dev/null; then
    devstack_say "stopping the running $REG_NAME for a clean start"
    do_stop
  fi
  case "$REG_RUN" in
    /?*/?*) ;;
    *) devstack_die "refusing to use run dir '$REG_RUN' (wiped on start): give a deeper path" ;;
  esac
}

# Starts "$@" in the run dir, in a session of its own, its output appended to the log; records
# its PID ($! after the call).
registry_spawn() {
  (
    cd "$REG_RUN" || exit
    exec setsid "$@"
  ) >>"$REG_LOG" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$REG_PIDFILE"
}

registry_wait_ready() {
  devstack_wait_ready "$1" answers "$START_TIMEOUT" "$REG_POLL" "$REG_NAME" "$URL" "$REG_LOG"
}

# Once it answers: the env file, and the line saying so (process $1 started at $2, a date
# +%s%N, compatibility $3).
registry_ready() {
  local elapsed=$((($(date +%s%N) - $2) / 1000000))
  write_env >"$REG_RUN/env"
  printf 'schema registry (%s) ready on %s in %d.%01ds (pid %s, compatibility %s)\n' \
    "$REG_KIND" "$URL" $((elapsed / 1000)) $((elapsed % 1000 / 100)) "$1" "$3"
}

write_env() {
  printf 'export SCHEMA_REGISTRY_URL=%q\n' "$URL"
  printf 'export SKIFF_SCHEMA_REGISTRY_URL=%q\n' "$URL"
  printf 'export SKIFF_SCHEMA_REGISTRY_LOG=%q\n' "$REG_LOG"
}

do_status() {
  local pid subjects
  if pid=$(registry_pid); then
    printf 'schema registry (%s) running (pid %s, %s, run dir %s)\n' "$REG_KIND" "$pid" "$URL" \
      "$REG_RUN"
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
