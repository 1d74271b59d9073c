#!/usr/bin/env bash
# A QEMU guest on a weft `vhostuser` port against the same guest on a tap, both on one
# `weft switch`, measured from a namespace on a weft tap port of that switch:
#   vhostuser  QEMU -netdev vhost-user: the switch reads/writes the guest's virtio rings
#   tap        QEMU -netdev tap (QEMU's own virtio-net emulation over a tap it creates),
#              the tap attached to the switch as a `system` port (as Nova plugs a VIF)
# Both guests run at once (scripts/guest-image.sh's kernel + initramfs, direct boot) and
# the rounds alternate between them. Lines: ping RTT p50/p99 namespace -> guest, and TCP
# guest -> namespace (curl of a file the guest's busybox httpd serves, from its user data).
#
# The guests run under TCG (no KVM here): the guest CPU is emulated, so every figure
# measures QEMU's TCG (the guest kernel's TCP stack, virtio driver, its interrupt handling)
# far more than the switch. They show that the vhost-user path works and what it costs
# against QEMU's own tap backend on this machine, not the switch's speed.
#
# Usage (as root): benches/e2e/vhost.sh [--rounds N] [--pings N] [--mib N]
#            [--weft-bin PATH] [--out FILE] [--keep]
#   --rounds: alternating rounds per guest (default 3); medians are reported
#   --pings: pings per round at 10 ms (default 200)
#   --mib: size of the file fetched over TCP per round (default 32)
# Every namespace and interface starts with "vhb"; a trap removes them and the
# processes it started (by pid).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
PFX=vhb
# shellcheck source=benches/e2e/lib.sh
. "$here/lib.sh"

rounds=3
pings=200
mib=32
weft_bin="$repo/target/release/weft"
out="$here/last-run-vhost.md"
keep=0
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --pings) pings=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --weft-bin) weft_bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "vhost.sh: unknown option $1" >&2; usage 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "vhost.sh: must run as root" >&2; exit 1; }
need_tools qemu-system-x86_64 curl ping python3
single_instance
tmp=$(mktemp -d /tmp/vhb.XXXXXX)
results=$tmp/results.tsv
install_trap
teardown
ensure_weft "$weft_bin" "$repo" "$repo/target/release/weft"
bash "$repo/scripts/guest-image.sh" >&2
guest=$repo/target/guest

NS=${PFX}ns
NS_IP=10.93.0.20
declare -A GUEST_IP=([vhostuser]=10.93.0.10 [tap]=10.93.0.11)
declare -A GUEST_MAC=([vhostuser]=fa:16:3e:93:00:10 [tap]=fa:16:3e:93:00:11)
# The guests' user data: 32 MiB (or --mib) in RAM, served by busybox httpd.
user_data=$(printf '#!/bin/sh\nmkdir -p /tmp/www\ndd if=/dev/zero of=/tmp/www/blob bs=1M count=%s 2>/dev/null\nhttpd -p 80 -h /tmp/www && echo "WEFT-GUEST httpd"\n' "$mib" | base64 -w0)

cat >"$tmp/switch.toml" <<EOF
[switch]
control_socket = "$tmp/switch.sock"
vhost_dir = "$tmp/vhost"
workers = 2

[[network]]
name = "net"
type = "local"

[[subnet]]
network = "net"
cidr = "10.93.0.0/24"
gateway_ip = "10.93.0.1"

[[port]]
name = "${PFX}tap"
kind = "tap"
network = "net"
mac = "fa:16:3e:93:00:20"
fixed_ips = ["$NS_IP"]

[[port]]
name = "${PFX}vm"
kind = "vhostuser"
network = "net"
mac = "${GUEST_MAC[vhostuser]}"
fixed_ips = ["${GUEST_IP[vhostuser]}"]
[port.metadata]
uuid = "00000000-0000-0000-0000-000000000010"
user_data = "$user_data"

[[port]]
name = "${PFX}gtap"
kind = "system"
network = "net"
mac = "${GUEST_MAC[tap]}"
fixed_ips = ["${GUEST_IP[tap]}"]
[port.metadata]
uuid = "00000000-0000-0000-0000-000000000011"
user_data = "$user_data"
EOF
log "weft switch ($weft_bin)"
WEFT_LOG=info "$weft_bin" switch --config "$tmp/switch.toml" 2>"$tmp/switch.log" &
sw_pid=$!
add_switch_pid $sw_pid
wait_for 100 test -S "$tmp/vhost/${PFX}vm" || { cat "$tmp/switch.log" >&2; exit 1; }
new_ns "$NS"
wait_for 100 ip link show "${PFX}tap"
plug "$NS" "${PFX}tap" "$NS_IP" fa:16:3e:93:00:20

boot() { # kind netdev-args...
  local kind=$1; shift
  qemu-system-x86_64 -accel tcg -m 256 -smp 1 -no-reboot -display none -monitor none \
    -serial "file:$tmp/$kind.console" -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" \
    -append "console=ttyS0 panic=-1 quiet" \
    -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
    "$@" -device "virtio-net-pci,netdev=n0,mac=${GUEST_MAC[$kind]},vectors=0" \
    </dev/null >"$tmp/$kind.qemu.log" 2>&1 &
  add_pid $!
  echo $! >"$tmp/$kind.pid"
}
log "booting both guests (TCG)"
boot vhostuser -chardev "socket,id=c0,path=$tmp/vhost/${PFX}vm" -netdev vhost-user,id=n0,chardev=c0
boot tap -netdev "tap,id=n0,ifname=${PFX}gtap,script=no,downscript=no"
for kind in vhostuser tap; do
  wait_for 3000 grep -q "WEFT-GUEST httpd" "$tmp/$kind.console" ||
    { log "$kind guest never served"; cat "$tmp/$kind.console" "$tmp/$kind.qemu.log" >&2; exit 1; }
  log "$kind guest up: $(grep -m1 'WEFT-GUEST lease' "$tmp/$kind.console")"
done

measure() { # kind round
  local kind=$1 ip=${GUEST_IP[$1]} t0 t1 q0 q1 s0 s1 bps
  ip netns exec "$NS" ping -c "$pings" -i 0.01 -W 1 "$ip" >"$tmp/$kind.$2.ping" 2>&1 || true
  python3 - "$tmp/$kind.$2.ping" <<'EOF' | while read -r k v; do record "$kind" "$k" "$v"; done
import math, re, sys
rtt = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read()))
pct = lambda p: rtt[max(0, math.ceil(p / 100 * len(rtt)) - 1)] * 1000 if rtt else float("nan")
print(f"ping_p50_us {pct(50):.0f}"); print(f"ping_p99_us {pct(99):.0f}")
EOF
  q0=$(cpu_ticks "$(cat "$tmp/$kind.pid")"); s0=$(cpu_ticks $sw_pid); t0=$(date +%s.%N)
  bps=$(ip netns exec "$NS" curl -s -o /dev/null -m 120 -w '%{speed_download}' "http://$ip/blob" || echo 0)
  t1=$(date +%s.%N); q1=$(cpu_ticks "$(cat "$tmp/$kind.pid")"); s1=$(cpu_ticks $sw_pid)
  record "$kind" tcp_mbit "$(python3 -c "print(f'{$bps * 8 / 1e6:.0f}')")"
  record "$kind" qemu_cpu_pct "$(python3 -c "print(f'{($q1 - $q0) / $hz / ($t1 - $t0) * 100:.0f}')")"
  record "$kind" switch_cpu_pct "$(python3 -c "print(f'{($s1 - $s0) / $hz / ($t1 - $t0) * 100:.0f}')")"
}
for r in $(seq "$rounds"); do
  for kind in vhostuser tap; do
    log "round $r: $kind"
    measure "$kind" "$r"
  done
done

{
  echo "## vhost-user vs tap guest, $(date -u +%Y-%m-%d) ($rounds alternating rounds, medians)"
  echo
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Guests under TCG (emulated CPU): the figures measure QEMU's TCG more than the switch."
  echo
  python3 - "$results" <<'EOF'
import statistics, sys, collections
v = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, m, x = line.rstrip("\n").split("\t")
    try:
        v[(k, m)].append(float(x))
    except ValueError:
        pass
lines = [("ping_p50_us", "ping p50, µs"), ("ping_p99_us", "ping p99, µs"),
         ("tcp_mbit", "TCP guest -> namespace, Mbit/s"), ("qemu_cpu_pct", "QEMU CPU during TCP, %"),
         ("switch_cpu_pct", "weft switch CPU during TCP, %")]
print("| line | vhostuser | tap (QEMU virtio-net) |")
print("|---|---|---|")
for m, label in lines:
    cells = []
    for k in ("vhostuser", "tap"):
        xs = v.get((k, m), [])
        cells.append(f"{statistics.median(xs):.0f} ({', '.join(f'{x:.0f}' for x in xs)})" if xs else "-")
    print(f"| {label} | {cells[0]} | {cells[1]} |")
EOF
} | tee "$out"
