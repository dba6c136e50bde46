#!/usr/bin/env bash
# The container image, built for real from the Dockerfile without a Docker engine (buildah on a
# Debian base made by mmdebstrap: devstack/image.sh) and tested inside: skiff --version and
# skiff config check as uid 65532, skiff run answering /healthz as uid 65532, no shell, dpkg
# status entries for every packaged file, size under 30 MB (build-image/image-size.txt); then
# the image's skiff against the real Zeebe broker with a Python SDK handler: it must get ready,
# and its memory at ready (RssAnon, RssFile) is recorded in build-image/image-memory.md and must
# stay under the 8 MB target (DESIGN.md section 10).
# The broker, the test's containers and processes are stopped and removed, also on failure; the
# image stays in local container storage (localhost/skiff:${CI_COMMIT_SHA:-dev}) for a later
# push, with buildah's layer cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
devstack/setup.sh
devstack/image.sh build
devstack/image.sh test

trap 'devstack/zeebe.sh stop >/dev/null 2>&1 || true' EXIT
devstack/zeebe.sh start >/dev/null
eval "$(devstack/zeebe.sh env)"
export ZEEBE_ADDRESS
/usr/bin/python3 bench/image_memory.py --mode zeebe --max-rss-mb 8 \
  "image=image:${SKIFF_IMAGE:-localhost/skiff:${CI_COMMIT_SHA:-dev}}" | tee build-image/image-memory.md
