#!/usr/bin/env bash
# Builds the Rust SDK's conformance handler and example (release), idempotently. Needs cargo
# and rustc >= 1.74 (rustup's, in ~/.cargo/bin); Debian 12's packaged rustc 1.63 is too old.
#   handler-protocol/rust/build.sh         build target/release/{conformance-handler,examples/risk-scorer}
#   handler-protocol/rust/build.sh test    build, cargo fmt --check, clippy -D warnings, unit tests
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "rust/build.sh: cargo not found (needs rustc >= 1.74, e.g. from rustup)" >&2
  exit 1
fi
cargo build -q --release --features tokio --bins --examples
if [ "${1:-}" = test ]; then
  cargo fmt --check
  cargo clippy -q --all-targets -- -D warnings
  cargo clippy -q --all-targets --features tokio -- -D warnings
  cargo test -q --features tokio
fi
