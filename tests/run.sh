#!/usr/bin/env bash
# Runs every test of skiff on this machine, installing what it needs first (idempotent):
# unit tests (plain -Werror build and ASan+UBSan build), gRPC conformance against grpcio and
# grpc-js, handler protocol and SDK conformance, short fuzz runs, and integration tests of the
# real skiff binary (sanitized) against the real Zeebe broker with SDK handlers; then devstack's
# Kafka broker and Schema Registry checked with the official Kafka and Avro clients, and the
# Kafka integration tests of skiff against them (and the librdkafka mock cluster for faults);
# then the container image built from the Dockerfile with buildah and tested inside.
#
#   tests/run.sh                 everything
#   SKIFF_FUZZ_SECONDS=60 ...    longer fuzz runs (default 10 s per target)
#
# It stops every service and process it started when it ends, also on failure or interrupt,
# and reuses (and leaves running) the devstack services that ran before (tests/services.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=tests/services.sh
. tests/services.sh
services_begin

step() { printf '\n== %s ==\n' "$*"; }
# Debian's interpreter: pytest, grpcio and jsonschema come from its packages (setup.sh).
PY=/usr/bin/python3

step "setup"
devstack/setup.sh

step "test teardown: what a run starts it stops, what ran before it reuses"
tests/services_test.sh

step "format and lint"
git ls-files '*.c' '*.h' '*.inc' | xargs clang-format-14 --dry-run --Werror
git ls-files '*.sh' .ci/run | xargs shellcheck -x

step "build (-Werror) and unit tests"
cmake -S . -B build -DSKIFF_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure -j "$(nproc)"

step "delivery: Helm charts, schema gate, SAST, models, GitLab CI in gitlab-ci-local"
tests/delivery.sh

step "ASan+UBSan build and unit tests"
cmake -S . -B build-asan -DSKIFF_WERROR=ON -DSKIFF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$(nproc)"

step "fuzz targets (${SKIFF_FUZZ_SECONDS:-10} s each)"
cmake -S . -B build-fuzz -DSKIFF_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j "$(nproc)"
for fuzzer in build-fuzz/fuzz_*; do
  name=$(basename "$fuzzer")
  corpus=sidecar/tests/fuzz/corpus/$name
  work=$(mktemp -d)
  [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
  "$fuzzer" -max_total_time="${SKIFF_FUZZ_SECONDS:-10}" -print_final_stats=0 "$work" 2>"$work.log" ||
    { tail -n 40 "$work.log"; echo "fuzzer $name found a crash"; exit 1; }
  echo "$name: $(grep -o "Done [0-9]* runs" "$work.log" || echo ran) ok"
  rm -rf "$work" "$work.log"
done

step "handler protocol: schemas, examples and the SDK conformance suite"
$PY -m pytest -q -p no:cacheprovider handler-protocol/tests
tests/conformance.sh

step "Java SDK: unit tests, Spring Boot starter, example (Maven)"
handler-protocol/java/build.sh test

step "C and Rust SDKs: format, lint, unit tests (C also ASan+UBSan, TSan and fuzz)"
handler-protocol/c/build.sh test
handler-protocol/rust/build.sh test

step "integration: skiff (ASan+UBSan) + real Zeebe broker + SDK handlers"
SKIFF_BIN=$ROOT/build-asan/skiff ASAN_OPTIONS=detect_leaks=1 \
  $PY -m pytest -q -p no:cacheprovider tests/integration "$@"

step "OAuth: Keycloak + token-validating proxy + skiff (ASan+UBSan) + real Zeebe broker"
tests/oauth.sh

step "Vault: OpenBao (Kubernetes auth) + Keycloak + skiff (ASan+UBSan)"
# The registry-password test creates its topics on the shared Kafka broker.
services_ensure devstack/kafka.sh
tests/vault.sh

step "devstack Kafka: real broker + Schema Registry, checked with the official clients"
services_ensure devstack/kafka.sh devstack/schema-registry.sh
$PY devstack/kafka_selfcheck.py --no-start

step "integration: skiff (ASan+UBSan) + real Kafka broker + Schema Registry + SDK handlers"
SKIFF_BIN=$ROOT/build-asan/skiff SKIFF_KAFKA_MOCK_BIN=$ROOT/build/skiff-kafka-mock \
  ASAN_OPTIONS=detect_leaks=1 devstack/kafka.sh python -m pytest -q -p no:cacheprovider tests/kafka

step "tracing: skiff (ASan+UBSan) -> real OpenTelemetry Collector (Kafka records, Zeebe jobs)"
# The trace that crosses everything deploys a process on the shared Zeebe broker.
services_ensure devstack/zeebe.sh devstack/kafka.sh devstack/schema-registry.sh
tests/tracing.sh

step "observability: dashboards, alert rules and exemplars on a real Prometheus scraping skiff (ASan+UBSan)"
services_ensure devstack/zeebe.sh devstack/kafka.sh devstack/schema-registry.sh
SKIFF_BIN=$ROOT/build-asan/skiff tests/observability.sh

step "egress: skiff (ASan+UBSan) + OpenAI-compatible stand-in + OpenBao, official openai client"
tests/egress.sh

step "container image: built with buildah from the Dockerfile, tested inside as uid 65532"
tests/image.sh

step "all tests passed"
