#!/usr/bin/env bash
# skiff devstack: the Kafka broker of kafka.sh with one more listener, OAUTH (SASL_PLAINTEXT,
# mechanism OAUTHBEARER), whose JWTs Kafka's own OAuthBearerValidatorCallbackHandler checks
# against Keycloak's JWKS (signature, expiry, issuer, audience "zeebe-api"). Keycloak must run
# (keycloak.sh start). With SKIFF_KAFKA_TLS_DIR (certs.sh) a second one, OAUTH_SSL (SASL_SSL,
# mechanism OAUTHBEARER, the same validation), and kafka.sh's SSL and SASL_SSL listeners. The
# PLAINTEXT and CONTROLLER listeners of kafka.sh stay as they are.
#
#   kafka-oauthbearer.sh start|stop|restart|status|logs|env|tool|python   as kafka.sh
#
# Settings (environment): SKIFF_KAFKA_OAUTHBEARER_PORT (default: SKIFF_KAFKA_PORT + 4),
# SKIFF_KAFKA_OAUTHBEARER_SSL_PORT (default: SKIFF_KAFKA_PORT + 5), the kafka.sh and keycloak.sh
# ones. env adds SKIFF_KAFKA_OAUTHBEARER_BOOTSTRAP (and _SSL_BOOTSTRAP with the TLS listener).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

HOST=127.0.0.1
PORT=${SKIFF_KAFKA_PORT:-29092}
CONTROLLER_PORT=${SKIFF_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
OAUTH_PORT=${SKIFF_KAFKA_OAUTHBEARER_PORT:-$((PORT + 4))}
OAUTH_SSL_PORT=${SKIFF_KAFKA_OAUTHBEARER_SSL_PORT:-$((PORT + 5))}
TLS_DIR=${SKIFF_KAFKA_TLS_DIR:-}
SSL_PORT=${SKIFF_KAFKA_SSL_PORT:-$((PORT + 2))}
SASL_SSL_PORT=${SKIFF_KAFKA_SASL_SSL_PORT:-$((PORT + 3))}
PROPS=$SKIFF_RUN_DIR/kafka-oauthbearer-$PORT.properties

# The OAUTHBEARER settings of listener $1 (lower case).
oauth_listener() {
  cat <<EOT
listener.name.$1.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.$1.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;
listener.name.$1.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
listener.name.$1.oauthbearer.connections.max.reauth.ms=0
EOT
}

# Later keys win in a Java properties file: these replace kafka.sh's listener lines.
write_props() {
  local kc listeners map
  kc=$(SKIFF_RUN_DIR=$SKIFF_RUN_DIR "$DEVSTACK_DIR/keycloak.sh" env)
  eval "$kc"
  mkdir -p "$SKIFF_RUN_DIR"
  listeners=PLAINTEXT://$HOST:$PORT,OAUTH://$HOST:$OAUTH_PORT
  map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,OAUTH:SASL_PLAINTEXT
  if [ -n "$TLS_DIR" ]; then
    listeners+=,SSL://$HOST:$SSL_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT
    listeners+=,OAUTH_SSL://$HOST:$OAUTH_SSL_PORT
    map+=,SSL:SSL,SASL_SSL:SASL_SSL,OAUTH_SSL:SASL_SSL
  fi
  {
    printf 'listeners=%s,CONTROLLER://%s:%s\n' "$listeners" "$HOST" "$CONTROLLER_PORT"
    printf 'advertised.listeners=%s\n' "$listeners"
    printf 'listener.security.protocol.map=%s\n' "$map"
    oauth_listener oauth
    if [ -n "$TLS_DIR" ]; then oauth_listener oauth_ssl; fi
  } >"$PROPS"
  cat >>"$PROPS" <<EOT
sasl.oauthbearer.jwks.endpoint.url=$SKIFF_KEYCLOAK_JWKS_URL
sasl.oauthbearer.expected.issuer=$SKIFF_KEYCLOAK_ISSUER
sasl.oauthbearer.expected.audience=zeebe-api
EOT
}

case "${1:-}" in
  start | restart) write_props ;;
  env)
    SKIFF_KAFKA_PROPERTIES=$PROPS "$DEVSTACK_DIR/kafka.sh" env
    printf 'export SKIFF_KAFKA_OAUTHBEARER_BOOTSTRAP=%s:%s\n' "$HOST" "$OAUTH_PORT"
    if [ -n "$TLS_DIR" ]; then
      printf 'export SKIFF_KAFKA_OAUTHBEARER_SSL_BOOTSTRAP=%s:%s\n' "$HOST" "$OAUTH_SSL_PORT"
    fi
    exit 0
    ;;
esac
SKIFF_KAFKA_PROPERTIES=$PROPS exec "$DEVSTACK_DIR/kafka.sh" "$@"
