#!/usr/bin/env bash
# skiff benchmark, one command: skiff vs the official clients' job workers, side by side,
# against the real Zeebe broker (devstack), on this machine. Writes docs/benchmarks.md (the
# results section) and prints the tables.
#
#   bench/run.sh [--instances N] [--rate R] [--rounds K] [--contenders a,b,...] [--no-doc] ...
#                (bench/zeebe_bench.py --help lists every option)
#
# The broker runs on its own ports (gateway 26700, monitoring 9800; override with
# SKIFF_BENCH_ZEEBE_PORT / SKIFF_BENCH_MONITOR_PORT) and is stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t_start=$(date +%s)

say() { printf 'bench: %s\n' "$*" >&2; }

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
if ! { cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release &&
  cmake --build build-bench -j2 --target skiff; } >"$buildlog" 2>&1; then
  cat "$buildlog" >&2
  exit 1
fi
rm -f "$buildlog"

say "Node peer (@camunda8/sdk, bench/node_modules)"
if [ ! -d bench/node_modules ] || [ bench/package-lock.json -nt bench/node_modules ]; then
  (cd bench && npm ci --no-audit --no-fund --loglevel=error)
  touch bench/node_modules
fi

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

say "Zeebe broker on 127.0.0.1:$SKIFF_ZEEBE_PORT (JIT $SKIFF_ZEEBE_JIT)"
trap 'devstack/zeebe.sh stop' EXIT
devstack/zeebe.sh start

args=(--command "bench/run.sh${*:+ $*}")
[ -n "$pyzeebe_missing" ] && args+=(--pyzeebe-missing "$pyzeebe_missing")
/usr/bin/python3 bench/zeebe_bench.py "${args[@]}" "$@"
say "done in $(($(date +%s) - t_start)) s"
