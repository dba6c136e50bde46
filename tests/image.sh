#!/usr/bin/env bash
# The container image, built for real from the Dockerfile without a Docker engine (buildah on a
# Debian base made by mmdebstrap: devstack/image.sh) and tested inside: skiff --version and
# skiff config check as uid 65532, skiff run answering /healthz as uid 65532, no shell, dpkg
# status entries for every packaged file, size under 30 MB (build-image/image-size.txt); then
# the image's skiff with a Python SDK handler, against the real Zeebe broker (mode zeebe) and
# with Kafka on as well (mode kafka: consumer joined with its partitions assigned, the real
# Kafka broker and Schema Registry): it must get ready, and its memory at ready (RssAnon,
# RssFile) is recorded in build-image/image-memory.md; it must stay under the 8 MB target
# (DESIGN.md section 10) in both modes: with Kafka on it measures 7.3-7.5 MB, its file pages
# varying by up to 0.3 MB between runs (docs/adr/0020-kafka-idle-memory.md).
# The Zeebe broker, the Kafka broker and the registry are the shared devstack services when
# they run (reused, never stopped); those this script had to start it stops again, also on
# failure, and so it does with its topic and its containers. The image stays in local
# container storage (localhost/skiff:${CI_COMMIT_SHA:-dev}) for a later push, with buildah's
# layer cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
devstack/setup.sh
devstack/image.sh build
devstack/image.sh test

STARTED=()
TOPIC=image.memory.$$.$RANDOM
cleanup() {
  devstack/kafka.sh tool topics --delete --topic "$TOPIC" --bootstrap-server "${KAFKA_BOOTSTRAP:-}" \
    >/dev/null 2>&1 || true
  local s
  for s in "${STARTED[@]}"; do
    "$s" stop >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
for s in devstack/zeebe.sh devstack/kafka.sh devstack/schema-registry.sh; do
  if ! "$s" status >/dev/null 2>&1; then
    "$s" start >/dev/null
    STARTED+=("$s")
  fi
done
eval "$(devstack/zeebe.sh env)"
eval "$(devstack/kafka.sh env)"
eval "$(devstack/schema-registry.sh env)"
export ZEEBE_ADDRESS KAFKA_BOOTSTRAP SCHEMA_REGISTRY_URL TOPIC
devstack/kafka.sh tool topics --create --topic "$TOPIC" --partitions 3 \
  --bootstrap-server "$KAFKA_BOOTSTRAP" >/dev/null
/usr/bin/python3 bench/image_memory.py --mode zeebe --mode kafka --max-rss-mb 8 \
  "image=image:${SKIFF_IMAGE:-localhost/skiff:${CI_COMMIT_SHA:-dev}}" | tee build-image/image-memory.md
