#!/usr/bin/env bash
# skiff devstack: zbctl (the real CLI from the npm package "zbctl") against the devstack gateway.
#   zb.sh status
#   zb.sh deploy testdata/devstack-smoke.bpmn
#   zb.sh create instance devstack-smoke --variables '{"a":1}' [--withResult]
#   zb.sh activate jobs devstack-smoke ; zb.sh fail job KEY --retries 0
# Address: $SKIFF_ZEEBE_ADDRESS, else 127.0.0.1:$SKIFF_ZEEBE_PORT (26500). Plaintext (--insecure).
# OAuth settings in the environment (ZEEBE_CLIENT_ID, ...) are ignored.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

[ -x "$ZBCTL" ] || devstack_die "zbctl missing ($ZBCTL): run devstack/setup.sh"
[ $# -gt 0 ] || { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
unset ZEEBE_ADDRESS ZEEBE_HOST ZEEBE_PORT ZEEBE_CLIENT_ID ZEEBE_CLIENT_SECRET \
  ZEEBE_AUTHORIZATION_SERVER_URL ZEEBE_TOKEN_AUDIENCE ZEEBE_CA_CERTIFICATE_PATH \
  ZEEBE_OVERRIDE_AUTHORITY ZEEBE_CLIENT_CONFIG_PATH
exec "$ZBCTL" --insecure --address "${SKIFF_ZEEBE_ADDRESS:-$ZEEBE_BIND_HOST:$ZEEBE_GATEWAY_PORT}" "$@"
