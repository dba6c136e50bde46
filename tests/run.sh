#!/usr/bin/env bash
# Runs every test of skiff on this machine, installing what it needs first (idempotent):
# unit tests (plain -Werror build and ASan+UBSan build), gRPC conformance against grpcio and
# grpc-js, handler protocol and SDK conformance, short fuzz runs, and integration tests of the
# real skiff binary (sanitized) against the real Zeebe broker with SDK handlers; then devstack's
# Kafka broker and Schema Registry checked with the official Kafka and Avro clients, and the
# Kafka integration tests of skiff against them (and the librdkafka mock cluster for faults).
#
#   tests/run.sh                 everything
#   SKIFF_FUZZ_SECONDS=60 ...    longer fuzz runs (default 10 s per target)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

step() { printf '\n== %s ==\n' "$*"; }
# Debian's interpreter: pytest, grpcio and jsonschema come from its packages (setup.sh).
PY=/usr/bin/python3

step "setup"
devstack/setup.sh

step "format and lint"
git ls-files '*.c' '*.h' | xargs clang-format-14 --dry-run --Werror
git ls-files '*.sh' .ci/run | xargs shellcheck -x

step "build (-Werror) and unit tests"
cmake -S . -B build -DSKIFF_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure -j "$(nproc)"

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

step "handler protocol: schemas and SDK conformance"
$PY -m pytest -q -p no:cacheprovider handler-protocol/tests

step "integration: skiff (ASan+UBSan) + real Zeebe broker + SDK handlers"
SKIFF_BIN=$ROOT/build-asan/skiff ASAN_OPTIONS=detect_leaks=1 \
  $PY -m pytest -q -p no:cacheprovider tests/integration "$@"

step "OAuth: Keycloak + token-validating proxy + skiff (ASan+UBSan) + real Zeebe broker"
tests/oauth.sh

step "Vault: OpenBao (Kubernetes auth) + Keycloak + skiff (ASan+UBSan)"
tests/vault.sh

step "devstack Kafka: real broker + Schema Registry, checked with the official clients"
$PY devstack/kafka_selfcheck.py

step "integration: skiff (ASan+UBSan) + real Kafka broker + Schema Registry + SDK handlers"
SKIFF_BIN=$ROOT/build-asan/skiff SKIFF_KAFKA_MOCK_BIN=$ROOT/build/skiff-kafka-mock \
  ASAN_OPTIONS=detect_leaks=1 devstack/kafka.sh python -m pytest -q -p no:cacheprovider tests/kafka

step "all tests passed"
