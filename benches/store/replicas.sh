#!/usr/bin/env bash
# The store's backends and replicas under load, over real HTTP from second
# processes (wrk), against release `weft serve` processes:
#   sqlite        one replica, embedded SQLite (the default)
#   postgresql    one replica on PostgreSQL
#   postgresql x2 two replicas on one PostgreSQL database, wrk on each at once
# For each: token validations/s (GET /identity/v3/auth/tokens?nocatalog),
# port creates/s (POST /networking/v2.0/ports), and for two replicas the
# replication lag: a port created on A, polled on B until it answers 200
# (p50/p99 over --lag-samples writes).
#
# Usage: benches/store/replicas.sh [--duration S] [--connections N] [--lag-samples N]
#                                  [--weft-bin PATH] [--only sqlite,postgresql,postgresql2]
# Needs wrk (scripts/install-deps.sh --bench), curl, python3, PostgreSQL
# (scripts/postgres.sh starts it).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
dur=10 conns=16 samples=200 bin= only=sqlite,postgresql,postgresql2
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) dur=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --lag-samples) samples=$2; shift 2 ;;
    --weft-bin) bin=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "replicas.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || bash "$here/scripts/install-deps.sh" --bench
bash "$here/scripts/postgres.sh"
if [ -z "$bin" ]; then
  (cd "$here" && cargo build --release --bin weft)
  bin="$here/target/release/weft"
fi
dir=$(mktemp -d /tmp/weft-replicas.XXXXXX)
pids=()
dbs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for d in "${dbs[@]}"; do psql -qd postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
pw=bench-admin-pw
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start NAME DATABASE|"": sets BASE to its URL; the pid goes in pids[]
start() {
  local name=$1 db=$2 port
  port=$(free_port)
  local args=(serve --state-dir "$dir/$name" --listen "127.0.0.1:$port")
  [ -n "$db" ] && args+=(--database "$db")
  WEFT_ADMIN_PASSWORD=$pw WEFT_LOG=warn "$bin" "${args[@]}" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  local pid=$!
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/identity/v3" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "replicas.sh: $name exited" >&2; tail -20 "$dir/$name.log" >&2; exit 2; }
    sleep 0.1
  done
  BASE="http://127.0.0.1:$port"
}
token() {
  local body='{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"'$pw'"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}'
  curl -fsS -o /dev/null -D - -H 'Content-Type: application/json' -d "$body" "$1/identity/v3/auth/tokens" \
    | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r'
}
cat >"$dir/post.lua" <<'EOF2'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WEFT_BENCH_BODY")
EOF2
# wrk_rps FILE -> requests/s
wrk_rps() { awk '$1 == "Requests/sec:" { print $2 }' "$1"; }
wrk_p() { awk -v q="$2" '$1 == q { print $2 }' "$1"; }
# measure LABEL BASE... : validations/s and port creates/s, wrk on every base at once
measure() {
  local label=$1; shift
  local bases=("$@") tok net i
  tok=$(token "${bases[0]}")
  [ -n "$tok" ] || { echo "replicas.sh: no token" >&2; exit 2; }
  net=$(curl -fsS -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' \
    -d '{"network":{"name":"bench"}}' "${bases[0]}/networking/v2.0/networks" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["network"]["id"])')
  curl -fsS -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' \
    -d '{"subnet":{"network_id":"'$net'","cidr":"10.200.0.0/16","ip_version":4}}' \
    "${bases[0]}/networking/v2.0/subnets" >/dev/null
  sleep 0.5
  local c=$((conns / ${#bases[@]}))
  # Wait for the wrk processes only: the servers are background jobs too.
  local wrks=()
  i=0; for b in "${bases[@]}"; do
    wrk --latency -t1 -c"$c" -d"${dur}s" -H "X-Auth-Token: $tok" -H "X-Subject-Token: $tok" \
      "$b/identity/v3/auth/tokens?nocatalog" >"$dir/val.$i" & wrks+=($!); i=$((i+1))
  done; wait "${wrks[@]}"
  wrks=()
  i=0; for b in "${bases[@]}"; do
    WEFT_BENCH_BODY='{"port":{"network_id":"'$net'"}}' wrk --latency --timeout 10s -t1 -c"$c" -d"${dur}s" \
      -H "X-Auth-Token: $tok" -s "$dir/post.lua" "$b/networking/v2.0/ports" >"$dir/port.$i" & wrks+=($!); i=$((i+1))
  done; wait "${wrks[@]}"
  local val=0 port=0 bad=0
  for f in "$dir"/val.*; do val=$(python3 -c "print($val + $(wrk_rps "$f"))"); done
  for f in "$dir"/port.*; do port=$(python3 -c "print($port + $(wrk_rps "$f"))"); done
  bad=$(cat "$dir"/val.* "$dir"/port.* | awk '/Non-2xx/ {n += $NF} END {print n + 0}')
  printf '| %s | %.0f | %s | %.0f | %s / %s | %d |\n' "$label" "$val" "$(wrk_p "$dir/val.0" 50%)" \
    "$port" "$(wrk_p "$dir/port.0" 50%)" "$(wrk_p "$dir/port.0" 99%)" "$bad"
  rm -f "$dir"/val.* "$dir"/port.*
  if [ ${#bases[@]} -ge 2 ]; then
    python3 - "${bases[0]}" "${bases[1]}" "$tok" "$net" "$samples" <<'EOF2'
import http.client, json, sys, time, urllib.parse
a, b, tok, net, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def conn(u):
    p = urllib.parse.urlparse(u)
    return http.client.HTTPConnection(p.hostname, p.port)
ca, cb = conn(a), conn(b)
h = {"X-Auth-Token": tok, "Content-Type": "application/json"}
lags = []
for i in range(n):
    ca.request("POST", "/networking/v2.0/ports", json.dumps({"port": {"network_id": net}}), h)
    r = ca.getresponse(); body = r.read()
    t0 = time.perf_counter()
    assert r.status == 201, (r.status, body)
    pid = json.loads(body)["port"]["id"]
    while True:
        cb.request("GET", "/networking/v2.0/ports/" + pid, headers=h)
        r2 = cb.getresponse(); r2.read()
        if r2.status == 200:
            break
        if time.perf_counter() - t0 > 5:
            sys.exit("replication lag over 5 s")
    lags.append((time.perf_counter() - t0) * 1000)
lags.sort()
q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
print(f"replication lag A -> B over {n} port creates: p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {lags[-1]:.2f} ms")
EOF2
  fi
}
newdb() {
  local d="weft_bench_$RANDOM$RANDOM"
  psql -qd postgres -c "CREATE DATABASE $d" >/dev/null
  dbs+=("$d")
  DB="postgresql://root@%2Fvar%2Frun%2Fpostgresql/$d"
}
echo "CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores; $(date -u +%FT%TZ); wrk $conns connections, ${dur}s"
echo
echo "| setup | validations/s | p50 | port creates/s | p50 / p99 | non-2xx |"
echo "|---|---:|---|---:|---|---:|"
IFS=, read -ra want <<<"$only"
for w in "${want[@]}"; do
  case "$w" in
    sqlite) start sqlite ""; measure "sqlite, 1 replica" "$BASE" ;;
    postgresql) newdb; start pg1 "$DB"; measure "postgresql, 1 replica" "$BASE" ;;
    postgresql2)
      newdb; start pga "$DB"; b1=$BASE; start pgb "$DB"; b2=$BASE
      measure "postgresql, 2 replicas" "$b1" "$b2" ;;
    *) echo "replicas.sh: unknown setup $w" >&2; exit 2 ;;
  esac
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
done
