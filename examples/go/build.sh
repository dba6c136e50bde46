#!/usr/bin/env bash
# Builds the Go examples into examples/go/.build (Go from PATH, /usr/local/go or Debian).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PATH=$PATH:/usr/local/go/bin
if ! command -v go >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go >/dev/null
fi
export GOTOOLCHAIN=local
[ -z "$(gofmt -l .)" ] || { gofmt -l .; exit 1; }
go vet ./...
go build -o .build/risk_scorer ./risk_scorer
