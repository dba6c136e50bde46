#!/usr/bin/env bash
# Egress end to end (issue 12): the real skiff (ASan+UBSan) as the handlers' egress proxy, in
# front of devstack/llm_upstream.py (an OpenAI-compatible stand-in: no real provider runs here),
# called with clients we did not write (the official openai client, httpx, curl), its API keys
# read from the real OpenBao (devstack/openbao.sh on port 8400). tests/egress/ starts the
# upstreams and one skiff per test; this script starts OpenBao and stops what it started, also
# on failure. test_egress_oauth.py uses the real Keycloak (devstack/keycloak.sh): the one
# running, else it starts one for its tests and stops it after.
#
#   tests/egress.sh [pytest args]   SKIFF_BIN: the skiff binary (default build-asan/skiff)
#   tests/egress.sh python [ARGS]   the clients venv's python (openai, httpx, hvac, pytest)
#
# The clients live in a venv under $SKIFF_CACHE/egress/ (from tests/egress/requirements.txt,
# wheels only), rebuilt only when that file changes: the same scheme as devstack/kafka.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=devstack/lib/common.sh
. devstack/lib/common.sh

BASE_PY=/usr/bin/python3
REQS=$ROOT/tests/egress/requirements.txt
VENV=$SKIFF_CACHE/egress/venv-py$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
export SKIFF_OPENBAO_PORT=${SKIFF_OPENBAO_PORT:-8400}

stamp() { sha256sum <"$REQS" | cut -c1-16; }
installed() { [ -f "$VENV/.skiff-installed" ] && [ "$(cat "$VENV/.skiff-installed")" = "$(stamp)" ]; }

install_venv() {
  installed && return 0
  mkdir -p "$SKIFF_CACHE/egress"
  exec 8>"$SKIFF_CACHE/egress/install.lock"
  flock -w 600 8 || devstack_die "timed out waiting for $SKIFF_CACHE/egress/install.lock"
  if ! installed; then
    devstack_say "installing the egress test clients (openai, httpx, hvac) into $VENV"
    rm -rf "$VENV"
    if ! "$BASE_PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      devstack_apt_install python3-venv || devstack_die "could not install python3-venv"
    fi
    "$BASE_PY" -m venv "$VENV" >/dev/null || devstack_die "$BASE_PY -m venv failed"
    local log
    log=$(mktemp)
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
      --only-binary=:all: -r "$REQS" >"$log" 2>&1; then
      cat "$log" >&2
      rm -rf "$VENV" "$log"
      devstack_die "pip could not install $REQS"
    fi
    rm -f "$log"
    stamp >"$VENV/.skiff-installed"
  fi
  exec 8>&-
}

install_venv
if [ "${1:-}" = python ]; then
  exec "$VENV/bin/python" "${@:2}"
fi

bao=0
cleanup() {
  if [ "$bao" = 1 ]; then devstack/openbao.sh stop || true; fi
}
trap cleanup EXIT
if ! devstack/openbao.sh status >/dev/null 2>&1; then
  bao=1
  devstack/openbao.sh start
fi
eval "$(devstack/openbao.sh env)"
SKIFF_BIN=${SKIFF_BIN:-$ROOT/build-asan/skiff} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/egress "$@"
