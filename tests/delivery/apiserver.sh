#!/usr/bin/env bash
# A real Kubernetes API server for a server-side dry run of the rendered charts: etcd and
# kube-apiserver built from the Go module proxy (once, cached under ~/.cache/skiff/delivery/bin),
# started on loopback ports, every object applied with `kubectl apply --dry-run=server` (the
# server's validation with strict field checking, defaulting and admission, nothing stored),
# then both stopped (also on failure).
#
#   tests/delivery/apiserver.sh build            build etcd and kube-apiserver if missing
#   tests/delivery/apiserver.sh dry-run FILE...  dry-run the Kubernetes objects in FILEs
#
# The one-time build takes 10-30 minutes on 2 cores, more than a CI run may spend: `build` does
# it only with SKIFF_APISERVER_BUILD=1 (or when nothing is missing), and `dry-run` says plainly
# that it was skipped when the binaries are not cached.
#
# Ports: SKIFF_ETCD_PORT (32379, and +1 for peers), SKIFF_APISERVER_PORT (32443).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SKIFF_CACHE:-$HOME/.cache/skiff}/delivery
BIN=$CACHE/bin
K8S_VERSION=1.31.4
ETCD_VERSION=3.5.17
ETCD_PORT=${SKIFF_ETCD_PORT:-32379}
API_PORT=${SKIFF_APISERVER_PORT:-32443}

built() { [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/etcd" ]; }

build() {
  mkdir -p "$BIN"
  local work
  if ! built && [ "${SKIFF_APISERVER_BUILD:-0}" != 1 ]; then
    echo "apiserver: etcd and kube-apiserver not cached in $BIN; not built in this run" \
      "(SKIFF_APISERVER_BUILD=1 builds them once, 10-30 min)"
    return 0
  fi
  if [ ! -x "$BIN/kube-apiserver" ]; then
    echo "apiserver: building kube-apiserver $K8S_VERSION from the Go module proxy (once)"
    work=$(mktemp -d)
    cp "$HERE/apiserver/go.mod.kube-apiserver" "$work/go.mod"
    cp "$HERE/apiserver/go.sum.kube-apiserver" "$work/go.sum"
    cp "$HERE/apiserver/tools.go" "$work/"
    (cd "$work" &&
      go build -p 2 -ldflags "-s -w" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
    rm -rf "$work"
  fi
  if [ ! -x "$BIN/etcd" ]; then
    echo "apiserver: building etcd $ETCD_VERSION from the Go module proxy (once)"
    work=$(mktemp -d)
    cp "$HERE/apiserver/go.mod.etcd" "$work/go.mod"
    cp "$HERE/apiserver/go.sum.etcd" "$work/go.sum"
    cp "$HERE/apiserver/etcd_main.go" "$work/main.go"
    (cd "$work" && go build -p 2 -ldflags "-s -w" -o "$BIN/etcd" .)
    rm -rf "$work"
  fi
}

pids=()
stop() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
}

wait_for() {  # wait_for WHAT COMMAND...: up to 60 s
  local _
  for _ in $(seq 1 120); do
    "${@:2}" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "apiserver: $1 did not come up; log:" >&2
  tail -n 30 "$run/$1.log" >&2
  return 1
}

dry_run() {
  if ! built; then
    echo "apiserver: SKIPPED the server-side dry run: etcd and kube-apiserver are not cached" \
      "(SKIFF_APISERVER_BUILD=1 tests/delivery.sh builds them)"
    return 0
  fi
  run=$(mktemp -d)
  trap stop EXIT
  "$BIN/etcd" --data-dir "$run/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 1))" >"$run/etcd.log" 2>&1 &
  pids+=($!)
  wait_for etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  openssl genrsa -out "$run/sa.key" 2048 2>/dev/null
  openssl rsa -in "$run/sa.key" -pubout -out "$run/sa.pub" 2>/dev/null
  local token
  token=$(openssl rand -hex 16)
  echo "$token,ci,ci,system:masters" >"$run/tokens.csv"
  "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$API_PORT" --cert-dir "$run/certs" \
    --token-auth-file "$run/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$run/sa.pub" --service-account-signing-key-file "$run/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 >"$run/kube-apiserver.log" 2>&1 &
  pids+=($!)
  wait_for kube-apiserver curl -skf -H "Authorization: Bearer $token" \
    "https://127.0.0.1:$API_PORT/readyz"
  local k=(kubectl --server "https://127.0.0.1:$API_PORT" --token "$token"
    --insecure-skip-tls-verify)
  "${KUBECTL:-$BIN/kubectl}" "${k[@]:1}" create namespace underwriting >/dev/null
  local f
  for f in "$@"; do
    "${KUBECTL:-$BIN/kubectl}" "${k[@]:1}" apply --dry-run=server --validate=strict \
      -n underwriting -f "$f" -o json >"$run/applied.json" 2>"$run/apply.log" ||
      { cat "$run/apply.log" >&2; return 1; }
    /usr/bin/python3 "$HERE/apiserver/check_sidecars.py" "$f" "$run/applied.json"
  done
}

case ${1:-} in
  build) build ;;
  dry-run) shift && dry_run "$@" ;;
  *) echo "usage: $0 build | dry-run FILE..." >&2; exit 2 ;;
esac
