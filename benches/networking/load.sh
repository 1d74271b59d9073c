#!/usr/bin/env bash
# Ports created per second through the real HTTP API: wrk in a second process
# POSTs /networking/v2.0/ports (one port per request, fixed IP allocated from a
# /16) to a release `weft serve` on a fresh state directory (real SQLite file),
# and reports requests/s, latency p50/p99, weft's CPU and non-2xx answers.
#
# Usage: benches/networking/load.sh [--duration S] [--connections N] [--weft-bin PATH]
# Needs wrk (scripts/install-deps.sh --bench installs it), curl, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
dur=10 conns=16 bin=
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) dur=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --weft-bin) bin=$2; shift 2 ;;
    *) echo "load.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || "$here/scripts/install-deps.sh" --bench
if [ -z "$bin" ]; then
  (cd "$here" && cargo build --release --bin weft)
  bin="$here/target/release/weft"
fi
dir=$(mktemp -d /tmp/weft-netload.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
pw=bench-admin-pw
WEFT_ADMIN_PASSWORD=$pw WEFT_LOG=warn "$bin" serve --state-dir "$dir/state" \
  --listen "127.0.0.1:$port" --public-url "$base" >"$dir/serve.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
  curl -fsS "$base/identity/v3" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "load.sh: weft serve exited" >&2; tail -20 "$dir/serve.log" >&2; exit 2; }
  sleep 0.1
done
body='{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"'$pw'"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}'
tok=$(curl -fsS -o /dev/null -D - -H 'Content-Type: application/json' -d "$body" "$base/identity/v3/auth/tokens" \
  | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
[ -n "$tok" ] || { echo "load.sh: no token" >&2; exit 2; }
api() { curl -fsS -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' "$@"; }
net=$(api -d '{"network":{"name":"bench"}}' "$base/networking/v2.0/networks" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["network"]["id"])')
api -d '{"subnet":{"network_id":"'$net'","cidr":"10.200.0.0/16","ip_version":4}}' \
  "$base/networking/v2.0/subnets" >/dev/null
api -d '{"port":{"network_id":"'$net'"}}' "$base/networking/v2.0/ports" >/dev/null
cat >"$dir/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WEFT_BENCH_BODY")
EOF
hz=$(getconf CLK_TCK)
t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
WEFT_BENCH_BODY='{"port":{"network_id":"'$net'"}}' wrk --latency --timeout 10s -t1 -c"$conns" -d"${dur}s" \
  -H "X-Auth-Token: $tok" -s "$dir/post.lua" "$base/networking/v2.0/ports" | tee "$dir/wrk.txt"
t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
n=$(api "$base/networking/v2.0/ports?fields=id" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["ports"]))')
echo "ports in the service after the run: $n"
awk -v ticks=$((t1 - t0)) -v hz="$hz" -v dur="$dur" '
  $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 } $1 == "Requests/sec:" { rps = $2 }
  /Non-2xx/ { bad = $NF }
  END { printf "port create over HTTP: %.0f ports/s, p50 %s, p99 %s, weft CPU %.2f cores, non-2xx %d\n", rps, p50, p99, ticks / hz / dur, bad + 0 }' "$dir/wrk.txt"
