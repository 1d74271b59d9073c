#!/usr/bin/env bash
# The main job: weft all-in-one on this host (API + identity, embedded SQLite).
# Installs what it needs, builds the release binary, then runs `weft serve`.
# Env: WEFT_STATE_DIR (default /var/lib/weft), WEFT_LISTEN (127.0.0.1:8080),
#      WEFT_PUBLIC_URL (http://LISTEN), WEFT_ADMIN_PASSWORD (else generated once),
#      WEFT_TOKEN_TTL_MINUTES (60). Extra arguments go to `weft serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bin weft
state=${WEFT_STATE_DIR:-/var/lib/weft}
listen=${WEFT_LISTEN:-127.0.0.1:8080}
args=(--state-dir "$state" --listen "$listen" --token-ttl-minutes "${WEFT_TOKEN_TTL_MINUTES:-60}")
if [ -n "${WEFT_PUBLIC_URL:-}" ]; then args+=(--public-url "$WEFT_PUBLIC_URL"); fi
echo "serve.sh: then, in another shell: source $state/admin-openrc; PATH=/opt/weft-venv/bin:\$PATH openstack token issue"
exec target/release/weft serve "${args[@]}" "$@"
