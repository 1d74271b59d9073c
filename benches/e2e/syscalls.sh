#!/usr/bin/env bash
# Syscalls the switch makes per frame it forwards, by tap I/O backend (`[switch] io`):
# `weft switch` with two taps in namespaces ursa/ursb, one worker, and one of
#   ping  2000 pings every 1 ms        udp  iperf3 64 B UDP, 4 s, as fast as it sends
#   tcp   iperf3 TCP 1 stream, 4 s
# counted with `perf stat -e raw_syscalls:sys_enter -p <switch>` over the run and divided by
# the frames the switch read (weft ctl ports, rx). Load-independent, unlike throughput.
#
# Usage (as root; hold /tmp/weft-bench.lock): BIN=target/release/weft benches/e2e/syscalls.sh epoll|uring ping|udp|tcp
# Prints "<io> <test> frames=N syscalls=M per_frame=M/N" and the switch's "tap I/O" line.
# Listens on port 19560 in ursa; names and the temp dir are removed on exit.
set -u
BIN=${BIN:-target/release/weft}
io=$1
test=$2
d=$(mktemp -d /tmp/ur-sys.XXXXXX)
P=""
cleanup() {
  [ -n "$P" ] && kill "$P" 2>/dev/null && wait "$P" 2>/dev/null
  ip netns del ursa 2>/dev/null
  ip netns del ursb 2>/dev/null
  rm -rf "$d"
}
trap cleanup EXIT
cat >"$d/sw.toml" <<T
[switch]
control_socket = "$d/sw.sock"
io = "$io"
workers = 1
[[network]]
name = "n"
type = "local"
[[port]]
name = "ursa"
network = "n"
mac = "fa:16:3e:94:00:01"
fixed_ips = ["10.94.0.1"]
[[port]]
name = "ursb"
network = "n"
mac = "fa:16:3e:94:00:02"
fixed_ips = ["10.94.0.2"]
T
"$BIN" switch --config "$d/sw.toml" >"$d/log" 2>&1 &
P=$!
sleep 1
for x in a b; do
  ip netns add "urs$x"
  ip link set "urs$x" netns "urs$x"
  ip -n "urs$x" link set "urs$x" address "fa:16:3e:94:00:0$([ $x = a ] && echo 1 || echo 2)"
  ip -n "urs$x" addr add "10.94.0.$([ $x = a ] && echo 1 || echo 2)/24" dev "urs$x"
  ip -n "urs$x" link set "urs$x" up
  ip -n "urs$x" link set lo up
done
ip netns exec ursb ping -c 2 -i 0.2 10.94.0.1 >/dev/null
ip netns exec ursa iperf3 -s -1 -p 19560 >/dev/null 2>&1 &
sleep 0.3
frames() {
  "$BIN" ctl --socket "$d/sw.sock" --json ports |
    python3 -c 'import json,sys; print(sum(p["rx_frames"] for p in json.load(sys.stdin)["ports"]))'
}
f0=$(frames)
case $test in
  udp) cmd="iperf3 -c 10.94.0.1 -p 19560 -u -l 64 -b 0 -t 4" ;;
  tcp) cmd="iperf3 -c 10.94.0.1 -p 19560 -t 4" ;;
  ping) cmd="ping -q -W 1 -c 2000 -i 0.001 10.94.0.1" ;;
  *) echo "unknown test $test" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
perf stat -e raw_syscalls:sys_enter -p "$P" -o "$d/perf" -- ip netns exec ursb $cmd >"$d/out" 2>&1
f1=$(frames)
sc=$(awk '/raw_syscalls/ {gsub(",","",$1); print $1}' "$d/perf")
echo "$io $test frames=$((f1 - f0)) syscalls=$sc per_frame=$(python3 -c "print(round($sc/max(1,$((f1 - f0))),2))")"
"$BIN" ctl --socket "$d/sw.sock" counters | tail -1
