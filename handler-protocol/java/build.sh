#!/bin/sh
# Builds (and tests) the Java SDK with Maven; installs JDK 17 and Maven from Debian when missing.
#   build.sh conformance   the SDK and the conformance handler, no tests (the suite's build step)
#   build.sh package       everything packaged, no tests (the example jar for test_examples.py)
#   build.sh test          everything: unit tests, the Spring Boot starter, the example (default)
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
case "$mode" in
  conformance) mvn_run -pl conformance -am package -DskipTests ;;
  package) mvn_run package -DskipTests ;;
  test) mvn_run verify ;;
  *) echo "usage: $0 [conformance|package|test]" >&2; exit 2 ;;
esac
