#!/usr/bin/env bash
# librdkafka for skiff: the upstream source carried by the crates.io package rdkafka-sys (its
# librdkafka/ directory), pinned by crate version and sha256, built once as a static library
# into $SKIFF_CACHE/rdkafka/ (docs/adr/0016-rdkafka-current.md), without Cyrus SASL (skiff offers
# PLAIN, SCRAM and OAUTHBEARER, which librdkafka implements itself; docs/adr/0020). skiff's CMake
# links it from there (SKIFF_RDKAFKA_DIR) and never falls back to a system librdkafka.
#
#   rdkafka.sh fetch [DIR]     the pinned .crate into $SKIFF_CACHE/rdkafka/ (cargo, else the
#                              registry's download URL with curl), sha256 checked; copied to DIR
#   rdkafka.sh build           fetch + build + install into the prefix (idempotent; ~2-4 min
#                              once, nice'd), then prints nothing when it is already there
#   rdkafka.sh install CRATE PREFIX
#                              build from a given .crate into PREFIX (the image's build stage)
#   rdkafka.sh prefix          the install prefix (lib/librdkafka.a, include/librdkafka/)
#   rdkafka.sh features [PREFIX]
#                              version and builtin.features of the built library, checked
#
# Settings: SKIFF_RDKAFKA_DIR (the prefix; default
# $SKIFF_CACHE/rdkafka/librdkafka-<version>-<FLAVOUR>, as cmake/rdkafka.cmake's),
# CURL_PREFIX (a libcurl prefix for the OIDC token client; default the system's), JOBS (2).
set -euo pipefail

# Standalone (lib/common.sh is not sourced): the image's build stage copies this file alone, so
# edits elsewhere in devstack/ do not invalidate its cached librdkafka layer.
SKIFF_CACHE=${SKIFF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skiff}
devstack_say() { printf 'devstack: %s\n' "$*" >&2; }
devstack_die() { printf 'devstack: error: %s\n' "$*" >&2; exit 1; }

CRATE_VERSION=4.10.0+2.12.1
CRATE_SHA256=e234cf318915c1059d4921ef7f75616b5219b10b46e9f3a511a15eb4b56a3f77
RDKAFKA_VERSION=2.12.1
CRATE_FILE=rdkafka-sys-$CRATE_VERSION.crate
RDKAFKA_CACHE=$SKIFF_CACHE/rdkafka
# The build options' name in the prefix: a cache shared by branches built with other options
# (or machines keeping an older build) holds each build side by side instead of rebuilding one
# prefix back and forth; the stamp below still checks the options themselves.
FLAVOUR=nocyrus
PREFIX=${SKIFF_RDKAFKA_DIR:-$RDKAFKA_CACHE/librdkafka-$RDKAFKA_VERSION-$FLAVOUR}
# What skiff needs from librdkafka (MISSION.md's topic standards: zstd, lz4, gzip; TLS, SASL
# SCRAM/PLAIN/OAUTHBEARER and librdkafka's own OIDC token client).
REQUIRED_FEATURES=(gzip snappy ssl sasl sasl_plain sasl_scram sasl_oauthbearer oidc lz4 zstd)
# The build options; the stamp records them so a change rebuilds. Sections per function and
# object let the image's link (--gc-sections) drop the parts skiff never calls (admin API,
# transactions, the mock cluster, ...).
CMAKE_OPTIONS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_LIBDIR=lib
  "-DCMAKE_C_FLAGS=-ffunction-sections -fdata-sections"
  -DRDKAFKA_BUILD_STATIC=ON -DRDKAFKA_BUILD_EXAMPLES=OFF -DRDKAFKA_BUILD_TESTS=OFF
  -DWITH_SSL=ON -DWITH_SASL=ON -DWITH_ZLIB=ON -DWITH_ZSTD=ON -DENABLE_LZ4_EXT=ON -DWITH_CURL=ON
  -DWITH_PLUGINS=OFF -DWITH_SASL_CYRUS=OFF)

usage() {
  sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

sha_ok() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$CRATE_SHA256" ]; }

# The crate through cargo (which also checks it against the registry index's checksum): a
# throw-away manifest depending on exactly this version, then its file from cargo's cache.
fetch_with_cargo() {
  local tmp=$1 home=${CARGO_HOME:-$HOME/.cargo} f
  mkdir -p "$tmp/p/src"
  printf '[package]\nname = "skiff-rdkafka-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nrdkafka-sys = { version = "=%s", default-features = false }\n' \
    "$CRATE_VERSION" >"$tmp/p/Cargo.toml"
  : >"$tmp/p/src/lib.rs"
  (cd "$tmp/p" && cargo fetch --quiet) >&2 || return 1
  for f in "$home"/registry/cache/*/"$CRATE_FILE"; do
    [ -f "$f" ] && sha_ok "$f" && cp "$f" "$tmp/$CRATE_FILE" && return 0
  done
  return 1
}

# Without cargo: the download URL the way cargo makes it, from the sparse index's config.json
# ("dl", which follows a mirror when the index is served by one).
fetch_with_curl() {
  local tmp=$1 dl
  dl=$(curl -fsSL --retry 3 https://index.crates.io/config.json |
    sed -n 's/.*"dl": *"\([^"]*\)".*/\1/p')
  [ -n "$dl" ] || dl=https://static.crates.io/crates
  case $dl in
  *'{'*) dl=${dl//\{crate\}/rdkafka-sys} && dl=${dl//\{version\}/$CRATE_VERSION} ;;
  *) dl=$dl/rdkafka-sys/$CRATE_VERSION/download ;;
  esac
  curl -fsSL --retry 3 -o "$tmp/$CRATE_FILE" "$dl"
}

cmd_fetch() {
  local dest=${1:-} crate=$RDKAFKA_CACHE/$CRATE_FILE tmp
  mkdir -p "$RDKAFKA_CACHE"
  if [ ! -f "$crate" ] || ! sha_ok "$crate"; then
    tmp=$(mktemp -d "$RDKAFKA_CACHE/.fetch.XXXXXX")
    devstack_say "fetching rdkafka-sys $CRATE_VERSION (librdkafka $RDKAFKA_VERSION) from crates.io"
    if ! { command -v cargo >/dev/null 2>&1 && fetch_with_cargo "$tmp"; }; then
      fetch_with_curl "$tmp" || { rm -rf "$tmp"; devstack_die "could not fetch $CRATE_FILE"; }
    fi
    sha_ok "$tmp/$CRATE_FILE" || {
      rm -rf "$tmp"
      devstack_die "$CRATE_FILE: sha256 is not the pinned $CRATE_SHA256"
    }
    mv "$tmp/$CRATE_FILE" "$crate"
    rm -rf "$tmp"
  fi
  [ -z "$dest" ] || cp "$crate" "$dest/"
}

stamp_text() { printf '%s %s %s\n' "$CRATE_SHA256" "${CMAKE_OPTIONS[*]}" "${CURL_PREFIX:-}"; }

# Builds the library from crate $1 into prefix $2 (replaced only when the build succeeded).
cmd_install() {
  local crate=${1:?crate} prefix=${2:?prefix} work
  sha_ok "$crate" || devstack_die "$crate: sha256 is not the pinned $CRATE_SHA256"
  work=$(mktemp -d "${TMPDIR:-/tmp}/skiff-rdkafka.XXXXXX")
  tar -xzf "$crate" -C "$work" "rdkafka-sys-$CRATE_VERSION/librdkafka"
  local src=$work/rdkafka-sys-$CRATE_VERSION/librdkafka
  # librdkafka's CMake turns Cyrus SASL (GSSAPI, libsasl2) on with any SASL and offers no
  # option for it (its configure script does: --disable-gssapi): made an option, so that
  # -DWITH_SASL_CYRUS=OFF keeps PLAIN, SCRAM and OAUTHBEARER without libsasl2.
  sed -i 's/^    set(WITH_SASL_CYRUS ON)$/    option(WITH_SASL_CYRUS "Cyrus SASL" ON)/' "$src/CMakeLists.txt"
  grep -q '^    option(WITH_SASL_CYRUS ' "$src/CMakeLists.txt" ||
    devstack_die "librdkafka's CMakeLists.txt: WITH_SASL_CYRUS not found to make an option"
  grep -q "^# librdkafka v$RDKAFKA_VERSION\$" "$src/CHANGELOG.md" ||
    devstack_die "the crate does not carry librdkafka $RDKAFKA_VERSION"
  local log=$work/build.log
  if ! nice -n 10 cmake -S "$src" -B "$work/build" "${CMAKE_OPTIONS[@]}" \
    ${CURL_PREFIX:+-DCMAKE_PREFIX_PATH="$CURL_PREFIX"} \
    -DCMAKE_INSTALL_PREFIX="$prefix.tmp" >"$log" 2>&1 ||
    ! nice -n 10 cmake --build "$work/build" -j "${JOBS:-2}" >>"$log" 2>&1 ||
    ! { rm -rf "$prefix.tmp" && cmake --install "$work/build" >>"$log" 2>&1; }; then
    tail -n 40 "$log" >&2
    devstack_die "librdkafka build failed (log: $log)"
  fi
  rm -rf "$work"
  cmd_features "$prefix.tmp" >&2
  stamp_text >"$prefix.tmp/.skiff-built"
  rm -rf "$prefix"
  mv "$prefix.tmp" "$prefix"
}

cmd_build() {
  if [ -f "$PREFIX/.skiff-built" ] && [ "$(cat "$PREFIX/.skiff-built")" = "$(stamp_text)" ]; then
    return 0
  fi
  mkdir -p "$RDKAFKA_CACHE"
  # One builder at a time (setup.sh, CI jobs on one cache).
  exec 7>"$RDKAFKA_CACHE/build.lock"
  flock -w 900 7 || devstack_die "timed out waiting for $RDKAFKA_CACHE/build.lock"
  if [ -f "$PREFIX/.skiff-built" ] && [ "$(cat "$PREFIX/.skiff-built")" = "$(stamp_text)" ]; then
    return 0
  fi
  cmd_fetch
  devstack_say "building librdkafka $RDKAFKA_VERSION (static) into $PREFIX (once, a few minutes)"
  cmd_install "$RDKAFKA_CACHE/$CRATE_FILE" "$PREFIX"
}

# Compiles a probe against the static library and prints its version and builtin.features;
# fails when one of REQUIRED_FEATURES is missing.
cmd_features() {
  local prefix=${1:-$PREFIX} dir out f libs
  [ -f "$prefix/lib/librdkafka.a" ] || devstack_die "no $prefix/lib/librdkafka.a: run $0 build"
  dir=$(mktemp -d)
  cat >"$dir/probe.c" <<'EOF'
#include <stdio.h>
#include <librdkafka/rdkafka.h>
int main(void)
{
    char buf[512];
    size_t n = sizeof buf;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_get(conf, "builtin.features", buf, &n) != RD_KAFKA_CONF_OK)
        return 1;
    printf("librdkafka %s\nbuiltin.features %s\n", rd_kafka_version_str(), buf);
    rd_kafka_conf_destroy(conf);
    return 0;
}
EOF
  # A static libcurl (CURL_PREFIX, the image's) needs its private dependencies too.
  libs=$(PKG_CONFIG_PATH=${CURL_PREFIX:+$CURL_PREFIX/lib/pkgconfig:}${PKG_CONFIG_PATH:-} \
    pkg-config ${CURL_PREFIX:+--static} --libs libcurl libssl libcrypto libzstd liblz4 zlib)
  # shellcheck disable=SC2086 # $libs is a list of flags
  cc -o "$dir/probe" "$dir/probe.c" -I"$prefix/include" "$prefix/lib/librdkafka.a" $libs \
    -lpthread -lm -ldl || devstack_die "the librdkafka probe did not link"
  out=$("$dir/probe")
  rm -rf "$dir"
  printf '%s\n' "$out"
  grep -q "^librdkafka $RDKAFKA_VERSION\$" <<<"$out" ||
    devstack_die "expected librdkafka $RDKAFKA_VERSION"
  for f in "${REQUIRED_FEATURES[@]}"; do
    grep -Eq "^builtin.features (.*,)?$f(,|\$)" <<<"$out" ||
      devstack_die "librdkafka was built without '$f' in builtin.features"
  done
}

case ${1:-} in
fetch) cmd_fetch "${2:-}" ;;
build) cmd_build ;;
install) cmd_install "${2:-}" "${3:-}" ;;
prefix) printf '%s\n' "$PREFIX" ;;
features) cmd_features "${2:-}" ;;
*) usage ;;
esac
