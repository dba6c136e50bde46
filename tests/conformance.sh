#!/usr/bin/env bash
# The handler SDK conformance suite (handler-protocol/conformance): every scenario against
# every registered SDK (handler-protocol/conformance/sdks/*.json), whose builds (toolchains
# included, idempotent) run first. Select SDKs with SKIFF_CONFORMANCE_SDKS=python,go.
#
#   tests/conformance.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider handler-protocol/conformance "$@"
