#!/usr/bin/env bash
# The test command: installs what the tests need, then runs the whole suite
# (unit, property, HTTP and root end-to-end tests), fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="${WEFT_VENV:-/opt/weft-venv}/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace --all-targets --no-fail-fast
