#!/usr/bin/env bash
# Conformance build of the Node SDK: only Node.js itself (Debian's nodejs when missing).
set -euo pipefail
if ! command -v node >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs >/dev/null
fi
node --version
