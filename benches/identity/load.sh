#!/usr/bin/env bash
# Loopback load test of the identity API from a second process (wrk), against
# a release `weft serve` on a fresh state directory:
#   validate  GET  /identity/v3/auth/tokens            (token validation, with catalog)
#   validate  GET  /identity/v3/auth/tokens?nocatalog  (validation without the catalog)
#   issue     POST /identity/v3/auth/tokens  token method    (rescope; no password hash)
#   issue     POST /identity/v3/auth/tokens  password method (bcrypt verify per request)
# For each: requests/s, latency p50/p99 (wrk --latency), non-2xx answers, and
# the CPU weft used (utime+stime from /proc/PID/stat) as cores and as CPU
# microseconds per request.
#
# Usage: benches/identity/load.sh [--duration S] [--threads N] [--connections N]
#                                 [--weft-bin PATH] [--out FILE]
#   --duration     seconds per measurement (default 10)
#   --threads      wrk threads (default 1: on a 2-core machine the other core is weft's)
#   --connections  connections for validate / token issue (default 32);
#                  password issue uses --pw-connections (default 4), since
#                  each request holds a core for a bcrypt verify
#   --weft-bin     weft binary (default: build target/release/weft)
#   --out          where the markdown table goes (default benches/identity/last-run.md)
# Needs wrk (scripts/install-deps.sh --bench installs it) and curl.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
dur=10 threads=1 conns=32 pw_conns=4 bin= out="$here/benches/identity/last-run.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) dur=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --pw-connections) pw_conns=$2; shift 2 ;;
    --weft-bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    [0-9]*) dur=$1; shift ;;  # the old positional form: load.sh SECONDS
    *) echo "load.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || "$here/scripts/install-deps.sh" --bench
command -v wrk >/dev/null || { echo "load.sh: wrk is not installed" >&2; exit 2; }
if [ -z "$bin" ]; then
  (cd "$here" && cargo build --release --bin weft)
  bin="$here/target/release/weft"
fi
[ -x "$bin" ] || { echo "load.sh: no weft binary at $bin" >&2; exit 2; }

dir=$(mktemp -d /tmp/weft-idload.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
url=$base/identity/v3
pw=bench-admin-pw
WEFT_ADMIN_PASSWORD=$pw WEFT_LOG=warn "$bin" serve --state-dir "$dir/state" \
  --listen "127.0.0.1:$port" --public-url "$base" >"$dir/serve.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  curl -fsS "$url" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "load.sh: weft serve exited:" >&2; tail -20 "$dir/serve.log" >&2; exit 2; }
  sleep 0.1
done
curl -fsS "$url" >/dev/null || { echo "load.sh: $url not answering" >&2; exit 2; }

pw_body='{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"'$pw'"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}'
tok=$(curl -fsS -o /dev/null -D - -H 'Content-Type: application/json' -d "$pw_body" "$url/auth/tokens" \
  | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
[ -n "$tok" ] || { echo "load.sh: could not get a token" >&2; exit 2; }
# Each request shape answers as it should before it is timed.
curl -fsS -o /dev/null -H "X-Auth-Token: $tok" -H "X-Subject-Token: $tok" "$url/auth/tokens"
tok_body='{"auth":{"identity":{"methods":["token"],"token":{"id":"'$tok'"}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}'
curl -fsS -o /dev/null -H 'Content-Type: application/json' -d "$tok_body" "$url/auth/tokens"

# wrk scripts for the two POSTs (bodies from the environment).
cat >"$dir/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WEFT_BENCH_BODY")
EOF

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

rows=()
# run NAME CONNECTIONS [wrk args...]: one measurement, one table row.
run() {
  local name=$1 c=$2; shift 2
  local t0 t1 s0 s1 log="$dir/wrk-$(echo "$name" | tr -c 'a-z0-9' '-').txt"
  echo "== $name ($threads thread(s), $c connections, ${dur}s)"
  t0=$(cpu_ticks); s0=$(date +%s.%N)
  wrk --latency --timeout 10s -t"$threads" -c"$c" -d"${dur}s" "$@" >"$log"
  t1=$(cpu_ticks); s1=$(date +%s.%N)
  cat "$log"
  rows+=("$(awk -v name="$name" -v c="$c" -v ticks=$((t1 - t0)) -v hz="$hz" -v s0="$s0" -v s1="$s1" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
      if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v
    }
    $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    /requests in/ { n = $1 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /Socket errors:/ { serr = $0; sub(/.*Socket errors: /, "", serr) }
    END {
      wall = s1 - s0; cpu = ticks / hz; cores = cpu / wall
      per = (n > 0) ? cpu * 1e6 / n : 0
      printf "| %s | %d | %.0f | %.2f | %.2f | %.2f | %.0f | %d%s |", name, c, rps, p50, p99, cores, per, bad + 0, (serr ? "; socket errors " serr : "")
    }' "$log")")
}

export WEFT_BENCH_BODY
run "GET /auth/tokens (validate, with catalog)" "$conns" \
  -H "X-Auth-Token: $tok" -H "X-Subject-Token: $tok" "$url/auth/tokens"
run "GET /auth/tokens?nocatalog (validate)" "$conns" \
  -H "X-Auth-Token: $tok" -H "X-Subject-Token: $tok" "$url/auth/tokens?nocatalog"
WEFT_BENCH_BODY=$tok_body
run "POST /auth/tokens, token method (no password hash)" "$conns" -s "$dir/post.lua" "$url/auth/tokens?nocatalog"
WEFT_BENCH_BODY=$pw_body
run "POST /auth/tokens, password method (bcrypt verify)" "$pw_conns" -s "$dir/post.lua" "$url/auth/tokens?nocatalog"

{
  echo "Command: \`benches/identity/load.sh --duration $dur --threads $threads --connections $conns --pw-connections $pw_conns\`"
  echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC'), weft $(cd "$here" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| request | connections | requests/s | p50 ms | p99 ms | weft CPU, cores | weft CPU µs per request | non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} >"$out"
echo
cat "$out"
echo "load.sh: table written to $out"
