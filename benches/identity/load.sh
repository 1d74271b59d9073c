#!/usr/bin/env bash
# Loopback load test of the identity API from a second process (wrk):
# GET /auth/tokens (validate) and POST /auth/tokens (issue, token method:
# no password hash; and password method: bcrypt dominates).
# Usage: benches/identity/load.sh [duration-seconds]   (needs wrk: install-deps.sh --bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
port=${WEFT_BENCH_PORT:-18499}
cargo build --release --bin weft >/dev/null
dir=$(mktemp -d)
WEFT_ADMIN_PASSWORD=benchpw WEFT_LOG=warn target/release/weft serve --state-dir "$dir" --listen 127.0.0.1:$port >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
url=http://127.0.0.1:$port/identity/v3
for _ in $(seq 50); do curl -sf "$url" >/dev/null && break; sleep 0.2; done
body='{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"benchpw"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}'
tok=$(curl -si -H 'Content-Type: application/json' -d "$body" "$url/auth/tokens" | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
export WEFT_TOKEN=$tok WEFT_PW_BODY=$body
echo "== GET /auth/tokens (validate), 2 threads, 32 connections"
wrk -t2 -c32 -d"${dur}s" -H "X-Auth-Token: $tok" -H "X-Subject-Token: $tok" "$url/auth/tokens?nocatalog"
echo "== POST /auth/tokens, token method (rescope; no password hash)"
wrk -t2 -c32 -d"${dur}s" -s benches/identity/issue-token.lua "$url/auth/tokens?nocatalog"
echo "== POST /auth/tokens, password method (bcrypt cost 10 per request)"
wrk -t2 -c8 -d"${dur}s" -s benches/identity/issue-password.lua "$url/auth/tokens?nocatalog"
