#!/usr/bin/env bash
# The container image, built for real from the Dockerfile without a Docker engine (buildah on a
# Debian base made by mmdebstrap: devstack/image.sh) and tested inside: skiff --version and
# skiff config check as uid 65532, skiff run answering /healthz as uid 65532, no shell, dpkg
# status entries for every packaged file, size under 30 MB (recorded in build-image/).
# The test's containers and processes are removed; the image stays in local container storage
# (localhost/skiff:${CI_COMMIT_SHA:-dev}) for a later push, with buildah's layer cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
devstack/image.sh build
devstack/image.sh test
