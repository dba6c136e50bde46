#!/usr/bin/env bash
# Conformance build of the Node SDK: Node.js (Debian's nodejs when missing), then its unit tests.
set -euo pipefail
if ! command -v node >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs >/dev/null
fi
node --version
node --test "$(dirname "${BASH_SOURCE[0]}")/test/"
