#!/usr/bin/env bash
# The dashboards, alert rules and exemplars against a real Prometheus (Debian's) scraping a real
# skiff during real work (tests/observability/test_dashboards.py): Kafka records against the
# devstack broker and registry, Zeebe jobs against the devstack broker (reused when running,
# else started here and stopped at the end). Prometheus listens on 127.0.0.1:${OBS_PROM_PORT:-19500}, skiff's admin
# server on ${OBS_SKIFF_PORT:-19510}; the Prometheus the test starts is stopped at the end, also
# on failure.
#
#   tests/observability.sh [pytest args]      (SKIFF_BIN: default build/skiff)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export SKIFF_BIN=${SKIFF_BIN:-$PWD/build/skiff}
command -v prometheus >/dev/null || { echo "observability: Debian's prometheus is missing" >&2; exit 1; }
[ -x "$SKIFF_BIN" ] || { echo "observability: no skiff at $SKIFF_BIN" >&2; exit 1; }

tmp=$(mktemp -d)
export OBS_PROM_PIDFILE=$tmp/prometheus.pid
started=()
cleanup() {
  local pid s
  pid=$(cat "$OBS_PROM_PIDFILE" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
  fi
  for s in "${started[@]}"; do "$s" stop || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

for s in devstack/zeebe.sh devstack/kafka.sh devstack/schema-registry.sh; do
  if ! "$s" status >/dev/null 2>&1; then
    "$s" start
    started+=("$s")
  fi
done
devstack/kafka.sh python -m pytest -q -p no:cacheprovider tests/observability "$@"
