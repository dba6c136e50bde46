#!/usr/bin/env bash
# skiff devstack: OpenBao (the real one, built once from the Go module proxy) as the Vault
# server on loopback, dev mode (in memory: every start is fresh), with the Kubernetes auth
# method pointed at devstack/tokenreview.py (the TokenReview stand-in: no Kubernetes API server
# here), a role "skiff" bound to the service account skiff-test/skiff with the policy "skiff"
# (read secret/data/skiff/*), and KV v2 at secret/.
#
#   openbao.sh build      build bao once into $SKIFF_CACHE/openbao/ (~8 min on 2 busy cores)
#   openbao.sh start      build if needed, start OpenBao and the TokenReview stand-in, wait
#                         until both answer, configure auth, role and policy
#   openbao.sh stop       stop both; fine when none runs
#   openbao.sh status     exit 0 when OpenBao answers, 3 when not
#   openbao.sh env        shell lines to eval: VAULT_ADDR, root token, TokenReview URL
#   openbao.sh jwt FILE   writes a new service-account JWT for skiff-test/skiff to FILE
#
# Settings (environment): SKIFF_OPENBAO_PORT (default 8200), SKIFF_TOKENREVIEW_PORT (port + 2;
# OpenBao's cluster listener takes port + 1),
# SKIFF_OPENBAO_ROOT_TOKEN (default skiff-root), SKIFF_OPENBAO_TOKEN_TTL (role token TTL,
# default 1h), SKIFF_OPENBAO_TOKEN_MAX_TTL (default 4h), SKIFF_OPENBAO_TLS_DIR (certs.sh files:
# a second listener, HTTPS on SKIFF_OPENBAO_TLS_PORT, default port + 3, that requires a client
# certificate of that CA; its cluster address takes port + 4).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

BAO_COMMIT=v0.0.0-20250828202315-f9407a27fbee
BAO_VERSION=2.4.0
BAO_DIR=$SKIFF_CACHE/openbao
BAO_BIN=$BAO_DIR/bao-$BAO_VERSION
BAO_PORT=${SKIFF_OPENBAO_PORT:-8200}
TR_PORT=${SKIFF_TOKENREVIEW_PORT:-$((BAO_PORT + 2))}
ROOT_TOKEN=${SKIFF_OPENBAO_ROOT_TOKEN:-skiff-root}
TLS_DIR=${SKIFF_OPENBAO_TLS_DIR:-}
TLS_PORT=${SKIFF_OPENBAO_TLS_PORT:-$((BAO_PORT + 3))}
TOKEN_TTL=${SKIFF_OPENBAO_TOKEN_TTL:-1h}
TOKEN_MAX_TTL=${SKIFF_OPENBAO_TOKEN_MAX_TTL:-4h}
BAO_RUN=$SKIFF_RUN_DIR/openbao-$BAO_PORT
ADDR=http://127.0.0.1:$BAO_PORT
TR_URL=https://127.0.0.1:$TR_PORT
PY=/usr/bin/python3

usage() {
  sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

build() {
  [ -x "$BAO_BIN" ] && return 0
  local work=$BAO_DIR/build-$BAO_VERSION
  mkdir -p "$work"
  devstack_say "building OpenBao $BAO_VERSION from the Go module proxy (once, ~8 min)"
  (
    cd "$work"
    [ -f go.mod ] || go mod init w >/dev/null 2>&1
    GOFLAGS=-mod=mod go get "github.com/openbao/openbao@$BAO_COMMIT"
    GOFLAGS=-p=1 nice -n 15 go build \
      -ldflags "-s -w -X github.com/openbao/openbao/version.fullVersion=$BAO_VERSION" \
      -o bao.tmp github.com/openbao/openbao
    mv bao.tmp "$BAO_BIN"
  ) >&2
}

pid_of() {
  local f=$BAO_RUN/$1.pid pid
  [ -r "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

answers() { curl -fs -o /dev/null --max-time 2 "$ADDR/v1/sys/health"; }

api() {
  local method=$1 path=$2 body=${3:-}
  curl -fsS --max-time 10 -X "$method" -H "X-Vault-Token: $ROOT_TOKEN" \
    ${body:+-d "$body"} "$ADDR/v1/$path" >/dev/null
}

# A self-signed certificate for the TokenReview stand-in (HTTPS, as an API server).
make_cert() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=tokenreview \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$BAO_RUN/tr.key" -out "$BAO_RUN/tr.pem" \
    2>/dev/null
}

configure() {
  local ca
  ca=$("$PY" -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$BAO_RUN/tr.pem")
  api POST sys/auth/kubernetes '{"type":"kubernetes"}'
  api POST auth/kubernetes/config \
    "{\"kubernetes_host\":\"$TR_URL\",\"kubernetes_ca_cert\":$ca,\"disable_local_ca_jwt\":true}"
  api PUT sys/policies/acl/skiff \
    '{"policy":"path \"secret/data/skiff/*\" { capabilities = [\"read\"] }"}'
  api POST auth/kubernetes/role/skiff \
    "{\"bound_service_account_names\":[\"skiff\"],\"bound_service_account_namespaces\":[\"skiff-test\"],\"token_policies\":[\"skiff\"],\"token_ttl\":\"$TOKEN_TTL\",\"token_max_ttl\":\"$TOKEN_MAX_TTL\"}"
}

wait_for() {
  local what=$1 check=$2 i
  for i in $(seq 1 300); do
    if $check; then return 0; fi
    sleep 0.1
  done
  stop
  devstack_die "$what did not answer in 30 s (logs in $BAO_RUN)"
}

# The mTLS listener's configuration file (added to dev mode's own listener).
tls_config() {
  {
    printf 'listener "tcp" {\n'
    printf '  address = "127.0.0.1:%s"\n  cluster_address = "127.0.0.1:%s"\n' \
      "$TLS_PORT" "$((TLS_PORT + 1))"
    printf '  tls_cert_file = "%s/server.pem"\n  tls_key_file = "%s/server.key"\n' \
      "$TLS_DIR" "$TLS_DIR"
    printf '  tls_client_ca_file = "%s/ca.pem"\n' "$TLS_DIR"
    printf '  tls_require_and_verify_client_cert = true\n}\n'
  } >"$BAO_RUN/tls.hcl"
}

tr_answers() { curl -fs -o /dev/null --max-time 2 --cacert "$BAO_RUN/tr.pem" "$TR_URL/reviews"; }

start() {
  build
  stop
  rm -rf "$BAO_RUN"
  mkdir -p "$BAO_RUN"
  make_cert
  setsid "$PY" "$DEVSTACK_DIR/tokenreview.py" --port "$TR_PORT" \
    --cert "$BAO_RUN/tr.pem" --key "$BAO_RUN/tr.key" \
    >"$BAO_RUN/tokenreview.log" 2>&1 </dev/null &
  echo $! >"$BAO_RUN/tokenreview.pid"
  local extra=()
  if [ -n "$TLS_DIR" ]; then
    tls_config
    extra=("-config=$BAO_RUN/tls.hcl")
  fi
  setsid "$BAO_BIN" server -dev "-dev-root-token-id=$ROOT_TOKEN" \
    "-dev-listen-address=127.0.0.1:$BAO_PORT" "${extra[@]}" >"$BAO_RUN/openbao.log" 2>&1 \
    </dev/null &
  echo $! >"$BAO_RUN/openbao.pid"
  wait_for "the TokenReview stand-in" tr_answers
  wait_for OpenBao answers
  configure
  devstack_say "OpenBao $BAO_VERSION on $ADDR (TokenReview stand-in on $TR_URL)"
}

stop_one() {
  local pid i
  pid=$(pid_of "$1") || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  stop_one openbao
  stop_one tokenreview
}

jwt() {
  local out=${1:?openbao.sh jwt FILE}
  curl -fsS --max-time 5 --cacert "$BAO_RUN/tr.pem" \
    -d '{"namespace":"skiff-test","serviceaccount":"skiff"}' \
    "$TR_URL/issue" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$out"
}

case ${1:-} in
build) build ;;
start) start ;;
stop) stop ;;
status) if answers; then exit 0; else exit 3; fi ;;
env)
  printf 'export VAULT_ADDR=%s\nexport SKIFF_OPENBAO_ROOT_TOKEN=%s\n' "$ADDR" "$ROOT_TOKEN"
  printf 'export SKIFF_TOKENREVIEW_URL=%s\nexport SKIFF_TOKENREVIEW_CA=%s\n' "$TR_URL" \
    "$BAO_RUN/tr.pem"
  if [ -n "$TLS_DIR" ]; then
    printf 'export SKIFF_OPENBAO_TLS_ADDR=https://127.0.0.1:%s\n' "$TLS_PORT"
    printf 'export SKIFF_OPENBAO_TLS_DIR=%s\n' "$TLS_DIR"
  fi
  ;;
jwt) jwt "${2:-}" ;;
*) usage ;;
esac
