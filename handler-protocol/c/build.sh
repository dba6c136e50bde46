#!/usr/bin/env bash
# Builds the C SDK, its conformance handler, unit tests and example (idempotent; installs
# jansson and cmocka from Debian when missing).
#   handler-protocol/c/build.sh          build into handler-protocol/c/.build
#   handler-protocol/c/build.sh test     build, format check, unit tests (plain, ASan+UBSan, TSan),
#                                        and a short fuzz run of the frame reader
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
missing=()
[ -f /usr/include/jansson.h ] || missing+=(libjansson-dev)
[ -f /usr/include/cmocka.h ] || missing+=(libcmocka-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get install -y -q "${missing[@]}" >/dev/null
fi
make -s -j2 all
if [ "${1:-}" = test ]; then
  make -s format-check
  make -s test
  make -s asan
  make -s tsan
  if command -v clang >/dev/null; then
    make -s fuzz
    work=$(mktemp -d)
    .build/fuzz_frame -max_total_time="${SKIFF_FUZZ_SECONDS:-10}" -print_final_stats=0 \
      "$work" 2>"$work.log" || { tail -n 40 "$work.log"; echo "fuzz_frame found a crash"; exit 1; }
    rm -rf "$work" "$work.log"
  fi
fi
