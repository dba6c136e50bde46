#!/usr/bin/env bash
# The skiff demo: the real Zeebe broker, skiff, a Python and a Node handler run the
# underwriting process (examples/underwriting) for a batch of applications; prints what
# happened and shuts everything down. Installs what it needs first (idempotent).
#
#   devstack/demo.sh [--instances N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
devstack/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target skiff >/dev/null
exec python3 devstack/demo.py "$@"
