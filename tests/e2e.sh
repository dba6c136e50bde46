#!/usr/bin/env bash
# End-to-end test of a deployed environment (the pipeline's run-e2e-tests, after
# deploy-to-staging): deploys the underwriting model to the environment's Zeebe gateway, starts
# one application, and waits for the deployed agents (skiff + handlers) to take it through
# risk scoring to an end event. zbctl reads the gateway's OAuth client credentials from the
# environment (ZEEBE_CLIENT_ID, ZEEBE_CLIENT_SECRET, ZEEBE_AUTHORIZATION_SERVER_URL,
# ZEEBE_TOKEN_AUDIENCE); ZEEBE_INSECURE=true only for a plaintext development gateway.
#
#   ZEEBE_ADDRESS=gateway:26500 tests/e2e.sh
#   E2E_APPLICATION='{"amount": ...}'   another application (default: a low-risk one, which
#                                       goes on to issue-policy)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${ZEEBE_ADDRESS:?set ZEEBE_ADDRESS to the Zeebe gateway of the environment}"
ZBCTL=${SKIFF_ZBCTL:-devstack/node_modules/zbctl/bin/zbctl-cli.linux}
flags=(--address "$ZEEBE_ADDRESS")
[ "${ZEEBE_INSECURE:-false}" = true ] && flags+=(--insecure)

low_risk='{"amount": 250000, "applicant": {"age": 41, "priorClaims": 0}}'

"$ZBCTL" "${flags[@]}" deploy resource examples/underwriting/underwriting.bpmn >/dev/null
result=$("$ZBCTL" "${flags[@]}" --requestTimeout 120s create instance underwriting \
  --variables "${E2E_APPLICATION:-$low_risk}" --withResult)
/usr/bin/python3 - "$result" <<'PY'
import json, sys
res = json.loads(sys.argv[1])
variables = json.loads(res.get("variables") or "{}")
score = variables.get("riskScore")
if not isinstance(score, int):
    sys.exit(f"e2e: instance {res.get('processInstanceKey')} ended without a riskScore: {variables}")
print(f"e2e: instance {res['processInstanceKey']} completed, riskScore {score}")
PY
