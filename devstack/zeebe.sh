#!/usr/bin/env bash
# skiff devstack: the real Zeebe broker (embedded gateway, single node) on loopback.
#
#   zeebe.sh start     clean start (fresh data dir; stops a broker this script started on the
#                      same port first), waits until the partition is leader and healthy
#   zeebe.sh stop      SIGTERM, wait, then SIGKILL; fine when nothing runs
#   zeebe.sh restart   stop + start
#   zeebe.sh status    exit 0 and topology when running, exit 3 when not
#   zeebe.sh logs [-f] broker log (tail)
#   zeebe.sh env       shell lines to eval: ZEEBE_ADDRESS, SKIFF_ZEEBE_RECORDS, ...
#
# Every engine record (JOB, INCIDENT, PROCESS_INSTANCE, ...) is written as one JSON line to
# $SKIFF_ZEEBE_RUN_DIR/records.jsonl by Zeebe's built-in DebugLogExporter; see records.py.
# With SKIFF_ZEEBE_TLS_CERT/_KEY/_CA the gateway speaks TLS only (devstack/certs.sh makes them).
# Settings (environment): see devstack/README.md. Run devstack/setup.sh first.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ZEEBE_HEAP=${SKIFF_ZEEBE_HEAP:-512m}
ZEEBE_HEAP_MIN=${SKIFF_ZEEBE_HEAP_MIN:-128m}
ZEEBE_CPUS=${SKIFF_ZEEBE_CPUS:-2}
ZEEBE_JIT=${SKIFF_ZEEBE_JIT:-fast}
START_TIMEOUT=${SKIFF_ZEEBE_START_TIMEOUT:-120}
STOP_TIMEOUT=${SKIFF_ZEEBE_STOP_TIMEOUT:-30}
MONITOR_URL=http://$ZEEBE_BIND_HOST:$ZEEBE_MONITOR_PORT
ADDRESS=$ZEEBE_BIND_HOST:$ZEEBE_GATEWAY_PORT

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# PID of the broker this script started for this port (with our run dir), if it still runs.
broker_pid() {
  devstack_pid "$ZEEBE_PIDFILE" StandaloneBroker "-Dskiff.run=$ZEEBE_RUN "
}

log_tail() { devstack_log_tail "$ZEEBE_LOG" 60; }

# TLS on the gateway (SKIFF_ZEEBE_TLS_CERT, _KEY: PEM chain and PKCS#8 key; SKIFF_ZEEBE_TLS_CA:
# the CA zbctl trusts, for the readiness check).
ZEEBE_TLS_CERT=${SKIFF_ZEEBE_TLS_CERT:-}
ZEEBE_TLS_KEY=${SKIFF_ZEEBE_TLS_KEY:-}
ZEEBE_TLS_CA=${SKIFF_ZEEBE_TLS_CA:-}

zbctl_status() {
  local sec=(--insecure)
  [ -n "$ZEEBE_TLS_CERT" ] && sec=(--certPath "$ZEEBE_TLS_CA")
  "$ZBCTL" status "${sec[@]}" --address "$ADDRESS" --requestTimeout 3s 2>/dev/null
}

# True when every partition reported by the gateway has a healthy leader.
topology_ready() {
  local out want have
  out=$(zbctl_status) || return 1
  want=$(sed -n 's/^Partitions count: *\([0-9]*\).*/\1/p' <<<"$out")
  have=$(grep -c 'Leader, Healthy' <<<"$out" || true)
  [ -n "$want" ] && [ "$want" -gt 0 ] && [ "$have" -ge "$want" ]
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! devstack_running "$pid"; then
      printf 'devstack: error: Zeebe broker exited during start-up\n' >&2
      log_tail
      return 1
    fi
    # 1) the broker's own health group, 2) the gateway sees a healthy leader per partition.
    if curl -fs -o /dev/null --max-time 2 "$MONITOR_URL/actuator/health/status" &&
      topology_ready; then
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'devstack: error: Zeebe broker not ready after %ss (gateway %s, monitor %s)\n' \
        "$START_TIMEOUT" "$ADDRESS" "$MONITOR_URL" >&2
      log_tail
      return 1
    fi
    sleep 0.2
  done
}

do_stop() {
  local pid
  if pid=$(broker_pid); then
    devstack_stop "$pid" "Zeebe broker" "$STOP_TIMEOUT"
  fi
  rm -f "$ZEEBE_PIDFILE"
}

do_start() {
  local java major port pid t0 elapsed
  [ -f "$ZEEBE_HOME/.skiff-installed" ] ||
    devstack_die "Zeebe $ZEEBE_VERSION is not installed in $ZEEBE_HOME: run devstack/setup.sh"
  [ -x "$ZBCTL" ] || devstack_die "zbctl missing ($ZBCTL): run devstack/setup.sh"
  java=$(find_java) || devstack_die "no Java >= $ZEEBE_MIN_JAVA: run devstack/setup.sh"
  major=$(java_major "$java")

  if broker_pid >/dev/null; then
    devstack_say "stopping the running broker for a clean start"
    do_stop
  fi
  for port in "$ZEEBE_GATEWAY_PORT" "$ZEEBE_COMMAND_PORT" "$ZEEBE_INTERNAL_PORT" \
    "$ZEEBE_REST_PORT" "$ZEEBE_MONITOR_PORT"; do
    if port_in_use "$ZEEBE_BIND_HOST" "$port"; then
      devstack_die "port $ZEEBE_BIND_HOST:$port is already in use (SKIFF_ZEEBE_PORT, SKIFF_ZEEBE_MONITOR_PORT... move the broker's ports)"
    fi
  done

  case "$ZEEBE_RUN" in
    /?*/?*) ;;
    *) devstack_die "refusing to use run dir '$ZEEBE_RUN' (wiped on start): give a deeper path" ;;
  esac
  rm -rf "$ZEEBE_RUN"
  mkdir -p "$ZEEBE_RUN/data" "$ZEEBE_RUN/tmp"

  local jvm=(
    "-Xms$ZEEBE_HEAP_MIN" "-Xmx$ZEEBE_HEAP"
    -XX:+UseSerialGC "-XX:ActiveProcessorCount=$ZEEBE_CPUS"
    -XX:MaxDirectMemorySize=256m -XX:ReservedCodeCacheSize=96m -XX:MaxMetaspaceSize=192m
    -XX:+ExitOnOutOfMemoryError -Xshare:auto -Dfile.encoding=UTF-8
    "-Djava.io.tmpdir=$ZEEBE_RUN/tmp"
    "-Dlog4j2.configurationFile=$DEVSTACK_DIR/zeebe/log4j2.xml"
    "-Dskiff.records=$ZEEBE_RECORDS" "-Dskiff.run=$ZEEBE_RUN"
    -Dapp.name=broker "-Dapp.home=$ZEEBE_HOME" "-Dbasedir=$ZEEBE_HOME"
  )
  # "fast": C1 only, starts ~25 % faster and uses less memory and CPU while warming up (what
  # tests want on 2 cores); "full": the JVM's default tiered JIT (for benchmarks).
  [ "$ZEEBE_JIT" = full ] || jvm+=(-XX:TieredStopAtLevel=1)
  if [ "$major" -ge 24 ]; then
    # Netty and RocksDB use Unsafe and JNI; silence the JDK 24+ warnings about them.
    jvm+=(--enable-native-access=ALL-UNNAMED --sun-misc-unsafe-memory-access=allow)
  fi
  # shellcheck disable=SC2206 # word splitting of extra JVM options is intended
  jvm+=(${SKIFF_ZEEBE_JAVA_OPTS:-})

  local cfg=(
    # Loopback only, single node, one partition.
    "ZEEBE_BROKER_NETWORK_HOST=$ZEEBE_BIND_HOST"
    "ZEEBE_BROKER_NETWORK_ADVERTISEDHOST=$ZEEBE_BIND_HOST"
    "ZEEBE_BROKER_NETWORK_COMMANDAPI_PORT=$ZEEBE_COMMAND_PORT"
    "ZEEBE_BROKER_NETWORK_INTERNALAPI_PORT=$ZEEBE_INTERNAL_PORT"
    ZEEBE_BROKER_GATEWAY_ENABLE=true
    "ZEEBE_BROKER_GATEWAY_NETWORK_HOST=$ZEEBE_BIND_HOST"
    "ZEEBE_BROKER_GATEWAY_NETWORK_PORT=$ZEEBE_GATEWAY_PORT"
    ZEEBE_BROKER_GATEWAY_LONGPOLLING_ENABLED=true
    ZEEBE_BROKER_GATEWAY_THREADS_MANAGEMENTTHREADS=1
    "SERVER_ADDRESS=$ZEEBE_BIND_HOST" "SERVER_PORT=$ZEEBE_REST_PORT"
    "MANAGEMENT_SERVER_ADDRESS=$ZEEBE_BIND_HOST" "MANAGEMENT_SERVER_PORT=$ZEEBE_MONITOR_PORT"
    ZEEBE_BROKER_CLUSTER_NODEID=0
    ZEEBE_BROKER_CLUSTER_CLUSTERSIZE=1
    ZEEBE_BROKER_CLUSTER_REPLICATIONFACTOR=1
    ZEEBE_BROKER_CLUSTER_PARTITIONSCOUNT=1
    ZEEBE_BROKER_THREADS_CPUTHREADCOUNT=1
    ZEEBE_BROKER_THREADS_IOTHREADCOUNT=1
    # Throw-away data: small segments, no preallocation, no fsync, no disk watermarks.
    "ZEEBE_BROKER_DATA_DIRECTORY=$ZEEBE_RUN/data"
    ZEEBE_BROKER_DATA_LOGSEGMENTSIZE=16MB
    ZEEBE_BROKER_DATA_DISK_ENABLEMONITORING=false
    ZEEBE_BROKER_EXPERIMENTAL_RAFT_PREALLOCATESEGMENTFILES=false
    ZEEBE_BROKER_CLUSTER_RAFT_FLUSH_ENABLED=false
    ZEEBE_BROKER_EXPERIMENTAL_ROCKSDB_MEMORYLIMIT=64MB
    # The record stream: Zeebe's DebugLogExporter, one JSON line per record (log4j2.xml
    # routes its logger, io.camunda.zeebe.broker.exporter.records, to records.jsonl).
    ZEEBE_BROKER_EXPORTERS_RECORDS_CLASSNAME=io.camunda.zeebe.broker.exporter.debug.DebugLogExporter
    ZEEBE_BROKER_EXPORTERS_RECORDS_ARGS_LOGLEVEL=info
    ZEEBE_BROKER_EXPORTERS_RECORDS_ARGS_PRETTYPRINT=false
  )

  if [ -n "$ZEEBE_TLS_CERT" ]; then
    if [ -z "$ZEEBE_TLS_KEY" ] || [ -z "$ZEEBE_TLS_CA" ]; then
      devstack_die "SKIFF_ZEEBE_TLS_CERT needs SKIFF_ZEEBE_TLS_KEY and SKIFF_ZEEBE_TLS_CA"
    fi
    cfg+=(ZEEBE_BROKER_GATEWAY_SECURITY_ENABLED=true
      "ZEEBE_BROKER_GATEWAY_SECURITY_CERTIFICATECHAINPATH=$ZEEBE_TLS_CERT"
      "ZEEBE_BROKER_GATEWAY_SECURITY_PRIVATEKEYPATH=$ZEEBE_TLS_KEY")
  else
    cfg+=(ZEEBE_BROKER_GATEWAY_SECURITY_ENABLED=false)
  fi

  t0=$(date +%s%N)
  (
    cd "$ZEEBE_RUN"
    exec env "${cfg[@]}" setsid "$java" "${jvm[@]}" \
      -classpath "$ZEEBE_HOME/config:$ZEEBE_HOME/lib/*" \
      io.camunda.zeebe.broker.StandaloneBroker
  ) >>"$ZEEBE_LOG" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" >"$ZEEBE_PIDFILE"
  if ! wait_ready "$pid"; then
    do_stop
    exit 1
  fi
  elapsed=$((($(date +%s%N) - t0) / 1000000))
  write_env >"$ZEEBE_RUN/env"
  printf 'zeebe %s ready on %s in %d.%01ds (pid %s, java %s, records %s)\n' \
    "$ZEEBE_VERSION" "$ADDRESS" $((elapsed / 1000)) $((elapsed % 1000 / 100)) "$pid" \
    "$major" "$ZEEBE_RECORDS"
}

write_env() {
  printf 'export ZEEBE_ADDRESS=%q\n' "$ADDRESS"
  printf 'export SKIFF_ZEEBE_ADDRESS=%q\n' "$ADDRESS"
  printf 'export SKIFF_ZEEBE_RECORDS=%q\n' "$ZEEBE_RECORDS"
  printf 'export SKIFF_ZEEBE_LOG=%q\n' "$ZEEBE_LOG"
  printf 'export SKIFF_ZEEBE_MONITOR_URL=%q\n' "$MONITOR_URL"
  printf 'export SKIFF_ZBCTL=%q\n' "$ZBCTL"
}

do_status() {
  local pid
  if pid=$(broker_pid); then
    printf 'zeebe %s running (pid %s, gateway %s, run dir %s)\n' \
      "$ZEEBE_VERSION" "$pid" "$ADDRESS" "$ZEEBE_RUN"
    zbctl_status || printf '(gateway not answering yet)\n'
    return 0
  fi
  printf 'zeebe not running (gateway %s)\n' "$ADDRESS"
  return 3
}

devstack_command "$ZEEBE_LOG" "$@"
