#!/usr/bin/env bash
# OAuth to the Zeebe gateway, end to end: Keycloak (devstack/keycloak.sh, started once for the
# whole step), the token-validating gRPC proxy checked with Keycloak's tokens, then the real
# skiff (ASan+UBSan) through that proxy to the real broker (tests/oauth/). Stops what it started,
# also on failure.
#
#   tests/oauth.sh [pytest args]     SKIFF_BIN: the skiff binary (default build-asan/skiff)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=/usr/bin/python3

started=0
cleanup() {
  if [ "$started" = 1 ]; then devstack/keycloak.sh stop || true; fi
}
trap cleanup EXIT
if ! devstack/keycloak.sh status >/dev/null 2>&1; then
  devstack/keycloak.sh start
  started=1
fi
SKIFF_BIN=${SKIFF_BIN:-$ROOT/build-asan/skiff} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
  $PY -m pytest -q -p no:cacheprovider tests/oauth "$@"
