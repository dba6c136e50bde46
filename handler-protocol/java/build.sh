#!/bin/sh
# Builds (and tests) the Java SDK with Maven; installs JDK 17 and Maven from Debian when missing.
#   build.sh conformance   the SDK and the conformance handler, no tests (the suite's build step)
#   build.sh package       everything packaged, no tests (the example jar for test_examples.py)
#   build.sh test          everything: unit tests, the Spring Boot starter, the example (default);
#                          the SDK's unit tests once more on a JDK >= 21 if one is installed
#                          (virtual threads)
# Offline once ~/.m2 holds the dependencies (the first run fetches them from Maven Central).
set -eu
cd "$(dirname "$0")"
if ! command -v mvn >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
  apt-get install -y -q openjdk-17-jdk-headless maven >/dev/null
fi
mode=${1:-test}

mvn_run() {
  # Offline first (no network, faster); online when something is not cached yet.
  mvn -B -q -o "$@" >/dev/null 2>&1 || mvn -B -q "$@"
}

# The first JDK >= 21 under /usr/lib/jvm, if any.
newer_jdk() {
  for d in /usr/lib/jvm/*/; do
    v=0
    if [ -x "${d}bin/java" ] && [ -f "${d}release" ]; then
      v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "${d}release")
    fi
    if [ "${v:-0}" -ge 21 ]; then
      echo "${d%/}"
      return
    fi
  done
}

case "$mode" in
  conformance) mvn_run -pl conformance -am package -DskipTests ;;
  package) mvn_run package -DskipTests ;;
  test)
    mvn_run verify
    jdk=$(newer_jdk)
    if [ -n "$jdk" ]; then
      echo "skiff-handler unit tests on $jdk"
      mvn_run -pl skiff-handler surefire:test -Djvm="$jdk/bin/java"
    fi
    ;;
  *) echo "usage: $0 [conformance|package|test]" >&2; exit 2 ;;
esac
