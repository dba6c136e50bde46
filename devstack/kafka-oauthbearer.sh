#!/usr/bin/env bash
# skiff devstack: the Kafka broker of kafka.sh with one more listener, OAUTH (SASL_PLAINTEXT,
# mechanism OAUTHBEARER), whose JWTs Kafka's own OAuthBearerValidatorCallbackHandler checks
# against Keycloak's JWKS (signature, expiry, issuer, audience "zeebe-api"). Keycloak must run
# (keycloak.sh start). The PLAINTEXT and CONTROLLER listeners of kafka.sh stay as they are.
#
#   kafka-oauthbearer.sh start|stop|restart|status|logs|env|tool|python   as kafka.sh
#
# Settings (environment): SKIFF_KAFKA_OAUTHBEARER_PORT (default: SKIFF_KAFKA_PORT + 3), the
# kafka.sh and keycloak.sh ones. env adds SKIFF_KAFKA_OAUTHBEARER_BOOTSTRAP.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

HOST=127.0.0.1
PORT=${SKIFF_KAFKA_PORT:-29092}
CONTROLLER_PORT=${SKIFF_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
OAUTH_PORT=${SKIFF_KAFKA_OAUTHBEARER_PORT:-$((PORT + 3))}
PROPS=$SKIFF_RUN_DIR/kafka-oauthbearer-$PORT.properties

# Later keys win in a Java properties file: these replace kafka.sh's listener lines.
write_props() {
  local kc
  kc=$(SKIFF_RUN_DIR=$SKIFF_RUN_DIR "$DEVSTACK_DIR/keycloak.sh" env)
  eval "$kc"
  mkdir -p "$SKIFF_RUN_DIR"
  cat >"$PROPS" <<EOT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT,OAUTH://$HOST:$OAUTH_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,OAUTH://$HOST:$OAUTH_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,OAUTH:SASL_PLAINTEXT
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;
listener.name.oauth.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
listener.name.oauth.oauthbearer.connections.max.reauth.ms=0
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
    exit 0
    ;;
esac
SKIFF_KAFKA_PROPERTIES=$PROPS exec "$DEVSTACK_DIR/kafka.sh" "$@"
