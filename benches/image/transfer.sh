#!/usr/bin/env bash
# Image upload and download throughput of `weft serve`, over real HTTP with
# curl, and the server's memory while it does them:
#   upload    PUT /image/v2/images/{id}/file of a SIZE MiB file (random bytes),
#             MB/s as curl measures it; then the image must be active with the
#             file's md5 as checksum (the hashes were computed while streaming)
#   download  GET .../file to /dev/null, MB/s as curl measures it
#   CPU       the server's CPU seconds (user+system, /proc/PID/stat) during
#             each upload and each download: a copy avoided shows here even
#             where curl, not the server, sets the MB/s
#   RSS       the server's VmHWM (peak resident set) per phase (reset between
#             phases through /proc/PID/clear_refs), and VmRSS before and after
#   both      a last step uploads one image while downloading another, at once
# Each round uses a new image; ROUNDS rounds, each number printed.
#
# Usage: benches/image/transfer.sh [--size-mib N] [--rounds N] [--weft-bin PATH] [--dir DIR]
# Needs curl, python3, md5sum. Numbers are only meaningful on an otherwise
# idle machine (no compiles running beside it): say what else ran.
# The same transfers against the real Glance, in the same run, alternating
# with weft: benches/peers/glance.sh (it installs glance from PyPI).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
size=1024 rounds=3 bin= work=
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --weft-bin) bin=$2; shift 2 ;;
    --dir) work=$2; shift 2 ;;
    *) echo "transfer.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  (cd "$here" && cargo build --release --bin weft)
  bin="$here/target/release/weft"
fi
dir=$(mktemp -d "${work:-/tmp}/weft-image-bench.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$dir"
}
trap cleanup EXIT
pw=bench-admin-pw
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
WEFT_ADMIN_PASSWORD=$pw WEFT_LOG=warn "$bin" serve --state-dir "$dir/state" \
  --listen "127.0.0.1:$port" --image-size-cap $(( (size + 1) << 20 )) >"$dir/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  curl -fsS "$base/identity/v3" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "transfer.sh: weft serve exited" >&2; tail -20 "$dir/serve.log" >&2; exit 2; }
  sleep 0.1
done
token=$(curl -fsS -D - -o /dev/null -H 'Content-Type: application/json' "$base/identity/v3/auth/tokens" -d '{"auth":{
  "identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"'"$pw"'"}}},
  "scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}' | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
[ -n "$token" ] || { echo "transfer.sh: no token" >&2; exit 2; }

echo "generating $size MiB of random data..." >&2
head -c $((size << 20)) /dev/urandom >"$dir/data"
want_md5=$(md5sum "$dir/data" | cut -d' ' -f1)
rss() { awk -v k="$1:" '$1==k{printf "%.1f MiB", $2/1024}' "/proc/$pid/status"; }
# The server's CPU time so far, in clock ticks (utime + stime).
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
secs() { python3 -c "print(f'{($2 - $1) / $hz:.2f}')"; }
# Resets VmHWM to the current RSS, so the next phase's peak is its own.
reset_peak() { echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; }
peak_up=0 peak_down=0
kib() { awk '$1=="VmHWM:"{print $2}' "/proc/$pid/status"; }
echo "size: $size MiB, rounds: $rounds, server RSS at start: $(rss VmRSS)"
echo "cpu: $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
new_image() {
  curl -fsS -H "X-Auth-Token: $token" -H 'Content-Type: application/json' "$base/image/v2/images" \
    -d '{"name":"bench-'"$1"'","disk_format":"raw","container_format":"bare"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
for r in $(seq 1 "$rounds"); do
  id=$(new_image "$r")
  reset_peak; c0=$(cpu)
  up=$(curl -fsS -o /dev/null -w '%{speed_upload}' -X PUT -H "X-Auth-Token: $token" \
        -H 'Content-Type: application/octet-stream' -T "$dir/data" "$base/image/v2/images/$id/file")
  c1=$(cpu); p=$(kib); [ "$p" -gt "$peak_up" ] && peak_up=$p
  got=$(curl -fsS -H "X-Auth-Token: $token" "$base/image/v2/images/$id" |
        python3 -c 'import json,sys; i=json.load(sys.stdin); print(i["status"], i["checksum"])')
  [ "$got" = "active $want_md5" ] || { echo "transfer.sh: round $r: image is '$got', want 'active $want_md5'" >&2; exit 1; }
  reset_peak; c2=$(cpu)
  down=$(curl -fsS -o /dev/null -w '%{speed_download}' -H "X-Auth-Token: $token" "$base/image/v2/images/$id/file")
  c3=$(cpu); p=$(kib); [ "$p" -gt "$peak_down" ] && peak_down=$p
  python3 -c "print(f'round $r: upload {$up/1e6:.0f} MB/s (server CPU $(secs "$c0" "$c1") s), download {$down/1e6:.0f} MB/s (server CPU $(secs "$c2" "$c3") s)')"
  if [ "$r" -lt "$rounds" ]; then
    curl -fsS -o /dev/null -X DELETE -H "X-Auth-Token: $token" "$base/image/v2/images/$id"
  fi
done
echo "peak RSS (VmHWM) while uploading: $((peak_up / 1024)) MiB, while downloading: $((peak_down / 1024)) MiB"
# Both at once: upload a new image while the last one downloads.
reset_peak
both=$(new_image both)
curl -fsS -o /dev/null -H "X-Auth-Token: $token" "$base/image/v2/images/$id/file" &
dl=$!
curl -fsS -o /dev/null -X PUT -H "X-Auth-Token: $token" -H 'Content-Type: application/octet-stream' \
  -T "$dir/data" "$base/image/v2/images/$both/file"
wait "$dl"
echo "peak RSS (VmHWM) uploading and downloading at once: $(rss VmHWM)"
echo "server RSS now: $(rss VmRSS)"
