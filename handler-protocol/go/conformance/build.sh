#!/usr/bin/env bash
# Conformance build of the Go SDK (idempotent): Go from PATH, /usr/local/go or Debian's
# golang-go, then gofmt, go vet, the unit tests and the conformance handler's binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH=$PATH:/usr/local/go/bin
if ! command -v go >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go >/dev/null
fi
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { echo "gofmt: $unformatted"; exit 1; }
go vet ./...
go test -count=1 ./...
go build -o .build/conformance-handler ./cmd/conformance
