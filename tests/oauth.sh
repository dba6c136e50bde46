#!/usr/bin/env bash
# OAuth end to end: Keycloak (devstack/keycloak.sh, started once for the whole step), the
# token-validating gRPC proxy checked with Keycloak's tokens, the real skiff (ASan+UBSan) through
# that proxy to the real broker (tests/oauth/), and the Kafka broker's OAUTHBEARER listener
# (devstack/kafka-oauthbearer.sh, over SASL_PLAINTEXT and over SASL_SSL with certificates from
# devstack/certs.sh) checked with confluent-kafka's OIDC client, then skiff's records through
# both with tokens from its token service (tests/kafka/test_oauthbearer.py). Stops what it
# started, also on failure.
#
#   tests/oauth.sh [pytest args]     SKIFF_BIN: the skiff binary (default build-asan/skiff)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=/usr/bin/python3

started=0 kafka=0
certs=$(mktemp -d)
cleanup() {
  if [ "$kafka" = 1 ]; then
    devstack/schema-registry.sh stop || true
    devstack/kafka-oauthbearer.sh stop || true
  fi
  if [ "$started" = 1 ]; then devstack/keycloak.sh stop || true; fi
  rm -rf "$certs"
}
trap cleanup EXIT
devstack/certs.sh "$certs"
export SKIFF_KEYCLOAK_TLS_DIR=$certs # Keycloak speaks HTTPS too (tests/oauth/test_oauth_tls.py)
if ! devstack/keycloak.sh status >/dev/null 2>&1; then
  devstack/keycloak.sh start
  started=1
fi
SKIFF_BIN=${SKIFF_BIN:-$ROOT/build-asan/skiff} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
  $PY -m pytest -q -p no:cacheprovider tests/oauth "$@"

kafka=1
export SKIFF_KAFKA_TLS_DIR=$certs
devstack/kafka-oauthbearer.sh start
eval "$(devstack/kafka-oauthbearer.sh env)"
eval "$(devstack/keycloak.sh env)"
SKIFF_KAFKA_OAUTHBEARER_TOKEN_URL=$SKIFF_KEYCLOAK_TOKEN_URL \
  devstack/kafka.sh python tests/oauth/kafka_oauthbearer_check.py
SKIFF_BIN=${SKIFF_BIN:-$ROOT/build-asan/skiff} \
  devstack/kafka-oauthbearer.sh python -m pytest -q -p no:cacheprovider tests/kafka/test_oauthbearer.py
