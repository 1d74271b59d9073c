#!/bin/bash
# Download of a 1 GiB image from two `weft serve`s, one with sendfile (the
# default), one with --no-sendfile (writev of the mapped windows), rounds
# alternating; curl -o /dev/null over loopback. Per download: curl's MB/s,
# the server's CPU seconds (utime+stime from /proc), curl's own user/sys
# seconds and wall time (to tell whether curl is the ceiling), the load.
# Usage: BIN=target/release/weft ROUNDS=3 benches/image/sendfile.sh
# Ports 18510 and 18511 on 127.0.0.1. Needs 3 GiB free under /tmp.
set -e
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/weft}
ROUNDS=${ROUNDS:-3}
W=$(mktemp -d /tmp/sf-bench.XXXXXX)
head -c $((1<<30)) /dev/urandom > $W/img
hz=$(getconf CLK_TCK)
cpu() { awk -v hz=$hz '{print ($14+$15)/hz}' /proc/$1/stat; }
serve() { # $1 port, $2 flags
  WEFT_ADMIN_PASSWORD=pw nice -n 10 $BIN serve --state-dir $W/state-$1 --listen 127.0.0.1:$1 --compute-driver none $2 > $W/serve-$1.log 2>&1 &
  echo $!
}
token() {
  curl -s -i -H 'Content-Type: application/json' -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"pw"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}' http://127.0.0.1:$1/identity/v3/auth/tokens | tr -d '\r' | awk -F': ' 'tolower($1)=="x-subject-token"{print $2}'
}
declare -A PID TOK ID
for mode in on off; do
  port=$([ $mode = on ] && echo 18510 || echo 18511)
  flags=$([ $mode = on ] && echo "" || echo "--no-sendfile")
  PID[$mode]=$(serve $port "$flags")
  for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$port/identity/v3 && break; sleep 0.3; done
  TOK[$mode]=$(token $port)
  ID[$mode]=$(curl -s -H "X-Auth-Token: ${TOK[$mode]}" -H 'Content-Type: application/json' -d '{"name":"b","disk_format":"raw","container_format":"bare"}' http://127.0.0.1:$port/image/v2/images | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  curl -s -T $W/img -H "X-Auth-Token: ${TOK[$mode]}" -H 'Content-Type: application/octet-stream' http://127.0.0.1:$port/image/v2/images/${ID[$mode]}/file
done
for r in $(seq $ROUNDS); do
  for mode in on off; do
    port=$([ $mode = on ] && echo 18510 || echo 18511)
    c0=$(cpu ${PID[$mode]})
    out=$( { /usr/bin/time -f '%U %S %e' curl -s -o /dev/null -w '%{speed_download} %{size_download}\n' -H "X-Auth-Token: ${TOK[$mode]}" http://127.0.0.1:$port/image/v2/images/${ID[$mode]}/file; } 2>&1 | tr '\n' ' ')
    c1=$(cpu ${PID[$mode]})
    set -- $out
    echo "round $r sendfile=$mode MB/s=$(awk -v s=$1 'BEGIN{printf "%.0f", s/1e6}') bytes=$2 server_cpu_s=$(awk -v a=$c0 -v b=$c1 'BEGIN{printf "%.2f", b-a}') curl_user_s=$3 curl_sys_s=$4 wall_s=$5 load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
curl -s http://127.0.0.1:18510/metrics | grep sendfile_bytes_total
curl -s http://127.0.0.1:18511/metrics | grep sendfile_bytes_total
kill ${PID[on]} ${PID[off]}; wait 2>/dev/null || true
rm -rf $W
