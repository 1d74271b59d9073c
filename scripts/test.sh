#!/usr/bin/env bash
# The test command: installs what the tests need, then runs the whole suite
# (unit, property, HTTP and root end-to-end tests), fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="${WEFT_VENV:-/opt/weft-venv}/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# No import cycle between sibling modules of any crate (scripts/module-cycles.py says why).
python3 scripts/module-cycles.py
cargo build --workspace --bins
cargo test --workspace --all-targets --no-fail-fast
# Every service's HTTP tests once more on the other backend: PostgreSQL
# (started by install-deps.sh; the default pass above ran them on SQLite).
WEFT_TEST_STORE=postgresql cargo test -p weft-identity --test http --no-fail-fast
WEFT_TEST_STORE=postgresql cargo test -p weft-ctrl --tests --no-fail-fast
