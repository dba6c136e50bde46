#!/usr/bin/env bash
# Vault end to end: OpenBao (devstack/openbao.sh, built once from the Go module proxy) with its
# TokenReview stand-in checked with hvac and an HTTPS listener requiring client certificates,
# Keycloak (devstack/keycloak.sh), and the real skiff
# (ASan+UBSan) reading its OAuth client secret from OpenBao (tests/vault/). Stops what it
# started, also on failure.
#
#   tests/vault.sh [pytest args]     SKIFF_BIN: the skiff binary (default build-asan/skiff)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=/usr/bin/python3

keycloak=0
certs=$(mktemp -d)
cleanup() {
  devstack/openbao.sh stop || true
  rm -rf "$certs"
  if [ "$keycloak" = 1 ]; then devstack/keycloak.sh stop || true; fi
}
trap cleanup EXIT
if ! devstack/keycloak.sh status >/dev/null 2>&1; then
  devstack/keycloak.sh start
  keycloak=1
fi
devstack/certs.sh "$certs" >/dev/null
export SKIFF_OPENBAO_TLS_DIR=$certs # OpenBao's second listener: HTTPS with client certificates
devstack/openbao.sh start
eval "$(devstack/openbao.sh env)"
eval "$(devstack/keycloak.sh env)"
$PY devstack/openbao_selfcheck.py
SKIFF_BIN=${SKIFF_BIN:-$ROOT/build-asan/skiff} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
  $PY -m pytest -q -p no:cacheprovider tests/vault "$@"
