#!/usr/bin/env bash
# skiff's container image (the top-level Dockerfile), built without a Docker engine: buildah
# (chroot isolation) from a Debian 12 base image made here from Debian packages by mmdebstrap.
#
#   image.sh build       base (cached) + buildah bud  ->  $SKIFF_IMAGE (local container storage)
#   image.sh test        in the image as uid 65532: skiff --version, skiff config check (a good
#                        and a bad configuration) and skiff run answering /healthz; no shell,
#                        dpkg status entries for every shared library; records the size
#   image.sh size        uncompressed and compressed (gzip, as pushed) size of the image
#   image.sh push DEST   buildah push, e.g. docker://registry.example/skiff:1.2.3 or
#                        oci-archive:skiff.tar
#   image.sh clean       removes the image, this script's containers and buildah's untagged
#                        intermediate images (the layer cache); keeps the base and its tar
#
# Caches: the base root filesystem tar in $SKIFF_CACHE/image/ (about 1 min to make, refreshed
# with SKIFF_IMAGE_REFRESH=1); buildah's layer cache (/var/lib/containers) keeps the build
# stage's apt and libcurl layers. Settings: SKIFF_IMAGE (default
# localhost/skiff:${CI_COMMIT_SHA:-dev}), SKIFF_IMAGE_MAX_MB (test's limit, default 30).
# Needs root (or sudo): mmdebstrap, buildah and skopeo are installed with apt when missing.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ROOT=$(cd "$DEVSTACK_DIR/.." && pwd)
IMAGE=${SKIFF_IMAGE:-localhost/skiff:${CI_COMMIT_SHA:-dev}}
BASE_IMAGE=localhost/skiff-debian:bookworm-slim
BASE_TAR=$SKIFF_CACHE/image/debian-bookworm-minbase.tar
MAX_MB=${SKIFF_IMAGE_MAX_MB:-30}
REPORT=$ROOT/build-image/image-size.txt
MIRRORS=("deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main")

usage() {
  sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

ensure_tools() {
  local missing=() tool
  for tool in mmdebstrap buildah skopeo; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  devstack_say "installing Debian packages: ${missing[*]}"
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

# The base root filesystem: Debian 12 minbase (what debian:bookworm-slim holds), merged /usr,
# without manual pages, documentation (copyright files kept) and locales.
base_tar() {
  mkdir -p "$(dirname "$BASE_TAR")"
  # One maker at a time (parallel CI jobs on one cache).
  exec 8>"$BASE_TAR.lock"
  flock -w 900 8 || devstack_die "timed out waiting for $BASE_TAR.lock"
  [ -s "$BASE_TAR" ] && [ "${SKIFF_IMAGE_REFRESH:-0}" != 1 ] && return 0
  devstack_say "making the Debian 12 base with mmdebstrap (cached in $BASE_TAR)"
  local tmp=${BASE_TAR%.tar}.tmp.tar log
  log=$(mktemp)
  as_root mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    bookworm "$tmp" "${MIRRORS[@]}" >"$log" 2>&1 || { cat "$log" >&2; devstack_die "mmdebstrap failed"; }
  rm -f "$log"
  sha256sum "$tmp" | cut -d' ' -f1 >"$BASE_TAR.sha256"
  mv "$tmp" "$BASE_TAR"
}

label_of() { # image label
  as_root buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" \
    2>/dev/null || true
}

# The tar as image $BASE_IMAGE, imported again only when the tar changed.
base_image() {
  local sha ctr
  sha=$(cat "$BASE_TAR.sha256")
  [ "$(label_of "$BASE_IMAGE" skiff.base.sha256)" = "$sha" ] && return 0
  ctr=$(as_root buildah from scratch)
  as_root buildah add --quiet "$ctr" "$BASE_TAR" / >/dev/null
  as_root buildah config --label "skiff.base.sha256=$sha" --env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  as_root buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
}

cmd_build() {
  local t0=$SECONDS
  ensure_tools
  base_tar
  base_image
  # The pinned librdkafka source (the rdkafka-sys crate) into the build context.
  rm -rf "$ROOT/build-image/rdkafka"
  mkdir -p "$ROOT/build-image/rdkafka"
  "$DEVSTACK_DIR/rdkafka.sh" fetch "$ROOT/build-image/rdkafka"
  as_root buildah bud --quiet --isolation chroot --pull=never --layers \
    --build-arg "DEBIAN_IMAGE=$BASE_IMAGE" -f "$ROOT/Dockerfile" -t "$IMAGE" "$ROOT" </dev/null >/dev/null
  devstack_say "built $IMAGE in $((SECONDS - t0)) s"
}

run_in() { # container, then the command
  local ctr=$1
  shift
  as_root buildah run --isolation chroot --user 65532:65532 "$ctr" -- "$@" </dev/null
}

expect() { # what, expected substring, actual
  case $3 in
  *"$2"*) printf 'image test: %s ok\n' "$1" ;;
  *) devstack_die "image test: $1: expected '$2', got: $3" ;;
  esac
}

check_files() { # mounted root filesystem
  local mnt=$1 f pkg
  for f in bin/sh bin/bash bin/dash usr/bin/sh usr/bin/bash usr/bin/dash bin/busybox; do
    [ ! -e "$mnt/$f" ] || devstack_die "image test: $f is in the image"
  done
  for pkg in libc6 ca-certificates base-files netbase; do
    grep -q '^Status: install ok installed' "$mnt/var/lib/dpkg/status.d/$pkg" ||
      devstack_die "image test: no dpkg status entry for $pkg"
  done
  # Every executable file is skiff or a file of a package with a status entry (its md5sums).
  # The packaged list is read once: "awk | grep -q" under pipefail fails when grep stops early.
  local packaged
  packaged=$(awk '{ print $2 }' "$mnt"/var/lib/dpkg/status.d/*.md5sums)
  while IFS= read -r f; do
    [ "$f" = usr/bin/skiff ] && continue
    grep -qxF "$f" <<<"$packaged" ||
      devstack_die "image test: /$f is executable and belongs to no package"
  done < <(cd "$mnt" && find . -type f -perm /111 | sed 's|^\./||')
  printf 'image test: no shell; executables are skiff and packaged files; dpkg entries ok\n'
}

# The pid of the skiff serving admin address $1 (a child of buildah run), or nothing.
skiff_pid() {
  local d
  for d in /proc/[0-9]*; do
    [ "$(basename "$(readlink "$d/exe" 2>/dev/null)")" = skiff ] || continue
    tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -q -- "--admin.address=$1 " && basename "$d"
  done
  return 0
}

# skiff run in the image (no gateway: without job types it connects lazily) until /healthz
# answers; checks it runs as uid 65532; prints its memory.
check_run() { # container
  local ctr=$1 admin=127.0.0.1:${SKIFF_IMAGE_ADMIN_PORT:-9479} pid="" runner i
  run_in "$ctr" /usr/bin/skiff run --handler.socket=/tmp/handler.sock "--admin.address=$admin" \
    >"$ROOT/build-image/run.log" 2>&1 &
  runner=$!
  for i in $(seq 1 100); do
    pid=$(skiff_pid "$admin")
    TEST_PID=$pid
    [ -n "$pid" ] && curl -fsS "http://$admin/healthz" >/dev/null 2>&1 && break
    kill -0 "$runner" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$pid" ] || ! curl -fsS "http://$admin/healthz" >/dev/null 2>&1; then
    cat "$ROOT/build-image/run.log" >&2
    devstack_die "image test: skiff run: no /healthz after $i tries"
  fi
  expect "skiff run: uid" "65532" "$(grep '^Uid:' "/proc/$pid/status")"
  printf 'image test: skiff run, no gateway, /healthz 200: %s\n' \
    "$(grep -E '^(VmRSS|RssAnon|RssFile)' "/proc/$pid/status" | tr -s ' \t\n' ' ')"
  kill -TERM "$pid"
  wait "$runner" || devstack_die "image test: skiff run exited $? after SIGTERM"
  TEST_PID=
}

# EXIT trap of test: the skiff it started (if still running) and its container.
test_cleanup() {
  [ -z "${TEST_PID:-}" ] || kill -KILL "$TEST_PID" 2>/dev/null || true
  [ -z "${TEST_CTR:-}" ] || as_root buildah rm "$TEST_CTR" >/dev/null 2>&1 || true
}

cmd_test() {
  local ctr mnt out
  mkdir -p "$ROOT/build-image"
  [ "$(label_of "$IMAGE" org.opencontainers.image.title)" = skiff ] ||
    devstack_die "no image $IMAGE: run image.sh build first"
  expect "image user" "65532:65532" \
    "$(as_root buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")"
  ctr=$(as_root buildah from --pull=never --name "skiff-image-test-$$" "$IMAGE")
  TEST_CTR=$ctr
  trap test_cleanup EXIT
  # The files as built, before buildah run adds /etc/hosts and /etc/resolv.conf.
  mnt=$(as_root buildah mount "$ctr")
  check_files "$mnt"
  as_root buildah umount "$ctr" >/dev/null
  expect "skiff --version" "skiff " "$(run_in "$ctr" /usr/bin/skiff --version)"
  expect "skiff config check" "configuration ok" "$(run_in "$ctr" /usr/bin/skiff config check)"
  out=$(run_in "$ctr" /usr/bin/skiff config check --zeebe.max_jobs_active=0 2>&1) &&
    devstack_die "image test: a bad configuration passed the check: $out"
  expect "skiff config check refuses a bad value" "1 problem found" "$out"
  out=$(run_in "$ctr" /bin/sh -c true 2>&1) && devstack_die "image test: /bin/sh ran in the image"
  printf 'image test: /bin/sh cannot run ok\n'
  check_run "$ctr"
  cmd_size | tee "$REPORT"
  awk -v max="$MAX_MB" '/uncompressed/ { if ($2 > max) exit 1 }' "$REPORT" ||
    devstack_die "image test: larger than $MAX_MB MB"
}

cmd_size() {
  local dir ctr mnt bytes packed
  dir=$(mktemp -d)
  as_root buildah push --quiet "$IMAGE" "oci:$dir" >/dev/null
  packed=$(du -sb "$dir/blobs" | cut -f1)
  rm -rf "$dir"
  ctr=$(as_root buildah from --pull=never "$IMAGE")
  mnt=$(as_root buildah mount "$ctr")
  bytes=$(du -sb "$mnt" | cut -f1)
  as_root buildah umount "$ctr" >/dev/null
  as_root buildah rm "$ctr" >/dev/null
  awk -v i="$IMAGE" -v u="$bytes" -v c="$packed" 'BEGIN {
    printf "image %s\n  uncompressed %.1f MB (files unpacked; MB = 10^6 bytes)\n", i, u / 1e6
    printf "  compressed %.1f MB (gzip layers: what a registry stores and a node pulls)\n", c / 1e6 }'
}

cmd_push() {
  [ -n "${1:-}" ] || usage
  as_root buildah push --quiet "$IMAGE" "$1"
}

cmd_clean() {
  local ctr
  for ctr in $(as_root buildah containers --quiet --filter name=skiff-image-test 2>/dev/null); do
    as_root buildah rm "$ctr" >/dev/null
  done
  as_root buildah rmi "$IMAGE" >/dev/null 2>&1 || true
  # Untagged intermediate images: buildah's layer cache of earlier builds.
  as_root buildah rmi --prune >/dev/null 2>&1 || true
}

case ${1:-} in
build) cmd_build ;;
test) cmd_test ;;
size) cmd_size ;;
push) cmd_push "${2:-}" ;;
clean) cmd_clean ;;
*) usage ;;
esac
