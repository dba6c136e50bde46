#!/usr/bin/env bash
# Builds the Rust SDK's conformance handler and example (release), idempotently; installs the
# toolchain with rustup's installer from Debian's packages when cargo is missing.
#   handler-protocol/rust/build.sh         build target/release/{conformance-handler,examples/risk-scorer}
#   handler-protocol/rust/build.sh test    build, cargo fmt --check, clippy -D warnings, unit tests
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  apt-get install -y -q cargo >/dev/null
fi
cargo build -q --release --features tokio --bins --examples
if [ "${1:-}" = test ]; then
  cargo fmt --check
  cargo clippy -q --all-targets -- -D warnings
  cargo clippy -q --all-targets --features tokio -- -D warnings
  cargo test -q --features tokio
fi
