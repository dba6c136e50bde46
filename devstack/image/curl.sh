#!/usr/bin/env bash
# Builds the libcurl of skiff's container image: Debian 12's own curl source package (upstream
# tarball + Debian's patches, security fixes included) fetched with apt-get source, built with
# curl's CMake as a static library with HTTP and HTTPS only (OpenSSL, nghttp2, zlib; no LDAP,
# SSH, RTMP, GSSAPI, IDN, PSL, brotli, zstd, FTP, SMTP, ...), installed into PREFIX.
#
#   curl.sh PREFIX       idempotent: nothing to do when PREFIX holds a build of the same source
#
# deb-src lines for deb.debian.org are used from a private apt state directory, so the system's
# apt configuration is not touched. Needs apt-get, dpkg-source (dpkg-dev), cmake, a C compiler,
# libssl-dev, libnghttp2-dev and zlib1g-dev. SKIFF_CURL_SOURCE_VERSION pins the source version
# (default: the newest in bookworm, bookworm-updates and bookworm-security).
set -euo pipefail

prefix=${1:?usage: curl.sh PREFIX}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
cat >"$work/sources.list" <<'LIST'
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
LIST
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/nonexistent
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" -qq update
version=${SKIFF_CURL_SOURCE_VERSION:-$(apt-cache "${apt_opts[@]}" showsrc curl |
  sed -n 's/^Version: //p' | sort -V | tail -n 1)}
if [ -f "$prefix/lib/libcurl.a" ] &&
  [ "$(cat "$prefix/debian-source-version" 2>/dev/null)" = "$version" ]; then
  exit 0
fi

echo "libcurl for the image: Debian source curl $version, HTTP/HTTPS only, static" >&2
(cd "$work/src" && apt-get "${apt_opts[@]}" -qq source --download-only "curl=$version" &&
  dpkg-source --no-check -x ./*.dsc curl >/dev/null)
cmake -S "$work/src/curl" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DCMAKE_C_FLAGS="-ffunction-sections -fdata-sections" \
  -DBUILD_SHARED_LIBS=OFF -DBUILD_CURL_EXE=OFF -DBUILD_TESTING=OFF -DHTTP_ONLY=ON \
  -DCURL_USE_OPENSSL=ON -DUSE_NGHTTP2=ON -DCURL_ZLIB=ON -DCURL_BROTLI=OFF -DCURL_ZSTD=OFF \
  -DUSE_LIBIDN2=OFF -DCURL_USE_LIBSSH2=OFF -DCURL_USE_LIBSSH=OFF -DCURL_USE_GSSAPI=OFF \
  -DCURL_DISABLE_LDAP=ON -DENABLE_THREADED_RESOLVER=ON -DENABLE_UNIX_SOCKETS=ON \
  -DCURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt -DCURL_CA_PATH=/etc/ssl/certs >/dev/null
cmake --build "$work/build" -j "${SKIFF_JOBS:-2}" >/dev/null
rm -rf "$prefix"
cmake --install "$work/build" >/dev/null
printf '%s\n' "$version" >"$prefix/debian-source-version"
