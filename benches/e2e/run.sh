#!/usr/bin/env bash
# End-to-end switch benchmark: two network namespaces ("VMs") joined by
#   weft         `weft switch` with two tap ports on one local network
#   linuxbridge  a kernel bridge over veth pairs
#   ovs          Open vSwitch, userspace (netdev) datapath, two type=tap ports
#   ovs-tso      the same with other_config:userspace-tso-enable=true
# and, for each: iperf3 TCP (1 and 4 streams), 64-byte UDP packets/s received
# at the server (and loss), ping RTT p50/p99 at 10 ms and at 1 ms intervals,
# TCP_RR transactions/s (tcp_rr.c), and the CPU the switch process used during
# the TCP runs. Prints a table with weft's ratios to the others
# and writes it as markdown to benches/e2e/last-run.md.
#
# Usage (as root): benches/e2e/run.sh [--only weft|linuxbridge|ovs[,...]]
#            [--duration N] [--weft-bin PATH] [--udp-rate RATE] [--out FILE] [--keep]
#   --only ovs runs both OVS variants; ovs-plain / ovs-tso pick one.
#   --duration: seconds per iperf3 run (default 10; a full run takes ~4*(3N+8) s)
#   --weft-bin: default target/release/weft, (re)built with cargo first
#   --udp-rate: iperf3 -b for the UDP test (default 0 = as fast as it can send)
#   --keep: keep the temp dir (raw iperf3 JSON, ping output, daemon logs)
#   --rounds N: run every setup N times, alternating, and report medians (default 1)
#   --hold: set up the (first) setup and wait until killed, for poking at it
#   --weft-before PATH: also run setup "weft-before", weft from PATH with the default
#       [switch] settings, alternating with "weft" round by round (before/after in one run)
#   --weft-switch 'k = v;k2 = v2': extra [switch] lines for the "weft" setup only
# Needs: iproute2, iperf3, iputils-ping, python3, openvswitch-switch
#        (scripts/install-deps.sh --bench installs them).
# Every namespace and interface it makes starts with "wbn"; a trap removes
# them, the daemons it started (by pid) and its temp dir on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=benches/e2e/lib.sh
. "$here/lib.sh"

orig_args="$*"
only="weft,linuxbridge,ovs"
duration=10
rounds=1
weft_bin="$repo/target/release/weft"
udp_rate=0
out="$here/last-run.md"
keep=0
hold=0
weft_before=""
weft_switch=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --weft-bin) weft_bin=$2; shift 2 ;;
    --udp-rate) udp_rate=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --hold) hold=1; keep=1; shift ;; # set up the first setup, then wait (debugging)
    --weft-before) weft_before=$2; shift 2 ;;
    --weft-switch) weft_switch=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (namespaces, taps)" >&2; exit 1; }

# "ovs" means both OVS variants, (c) and (c'); ovs-plain / ovs-tso pick one.
IFS=, read -r -a wanted <<<"$only"
setups=()
for s in "${wanted[@]}"; do
  case "$s" in
    weft) [ -n "$weft_before" ] && setups+=(weft-before); setups+=(weft) ;;
    linuxbridge|ovs-tso) setups+=("$s") ;;
    ovs) setups+=(ovs ovs-tso) ;;
    ovs-plain) setups+=(ovs) ;;
    *) echo "run.sh: unknown setup $s (weft|linuxbridge|ovs|ovs-plain|ovs-tso)" >&2; exit 2 ;;
  esac
done
need_tools ip ss iperf3 ping python3
[[ " ${setups[*]} " == *" ovs"* ]] && need_tools ovs-vswitchd ovsdb-server ovsdb-tool ovs-vsctl
[[ " ${setups[*]} " == *" weft "* ]] && ensure_weft "$weft_bin" "$repo" "$repo/target/release/weft"
[ -z "$weft_before" ] || [ -x "$weft_before" ] || { echo "run.sh: no weft binary at $weft_before" >&2; exit 1; }
need_tools cc

single_instance
tmp=$(mktemp -d /tmp/wbn.XXXXXX)
results=$tmp/results.tsv
: >"$results"
install_trap
cc -O2 -o "$tmp/tcp_rr" "$here/tcp_rr.c"

# ---------------------------------------------------------------- setups

setup_linuxbridge() {
  ip link add wbnbr type bridge stp_state 0 forward_delay 0
  ip link set wbnbr up
  local s
  for s in A B; do
    ip link add wbnlb$s type veth peer name wbnlb${s}v
    ip link set wbnlb$s master wbnbr
    ip link set wbnlb$s up
  done
  plug $NSA wbnlbAv $IPA
  plug $NSB wbnlbBv $IPB
}

setup_ovs_common() { # tso
  start_ovs "" ovs "$1"
  local v=(ovs-vsctl --db="$ovs_db" --timeout=20)
  "${v[@]}" add-br wbnovs -- set bridge wbnovs datapath_type=netdev
  "${v[@]}" add-port wbnovs wbnoA -- set interface wbnoA type=tap
  "${v[@]}" add-port wbnovs wbnoB -- set interface wbnoB type=tap
  wait_for 100 ip link show wbnoA
  wait_for 100 ip link show wbnoB
  plug $NSA wbnoA $IPA
  plug $NSB wbnoB $IPB
}
setup_ovs() { setup_ovs_common false; }
setup_ovs-tso() { setup_ovs_common true; }

setup_weft() { # [binary [extra switch lines]] (default: --weft-bin, --weft-switch)
  local bin=${1:-$weft_bin} extra=${2-$weft_switch}
  cat >"$tmp/weft.toml" <<EOF
# generated by benches/e2e/run.sh
[switch]
control_socket = "$tmp/weft.sock"
$(tr ';' '\n' <<<"$extra")

[[network]]
name = "wbn-net"
type = "local"

[[port]]
name = "wbnwA"
kind = "tap"
network = "wbn-net"
mac = "$MACA"
fixed_ips = ["$IPA"]
port_security = true

[[port]]
name = "wbnwB"
kind = "tap"
network = "wbn-net"
mac = "$MACB"
fixed_ips = ["$IPB"]
port_security = true
EOF
  "$bin" switch --config "$tmp/weft.toml" >"$tmp/weft.log" 2>&1 9>&- &
  add_switch_pid $!
  if ! wait_for 100 ip link show wbnwB || ! wait_for 20 ip link show wbnwA; then
    log "weft did not create its taps; its log:"; cat "$tmp/weft.log" >&2; return 1
  fi
  plug $NSA wbnwA $IPA $MACA
  plug $NSB wbnwB $IPB $MACB
}

setup_weft-before() { setup_weft "$weft_before" ""; }

# Keep weft's own view of the run (port counters, drops) next to the numbers.
after_weft() {
  local c
  for c in ports counters; do
    "$weft_bin" ctl --socket "$tmp/weft.sock" $c >"$tmp/weft-$c.txt" 2>&1 || true
    log "weft ctl $c after the run:"; cat "$tmp/weft-$c.txt" >&2
  done
}

after_weft-before() { after_weft; }

# The common lines, then the latency ones: ping every 1 ms (a worker that sleeps between
# frames pays a wake-up on each; one that spins does not) and TCP_RR.
measure_one_host() { # setup
  measure_all "$1"
  log "$1: ping every 1 ms"; measure_ping "$1" 0.001 1000 ping1
  log "$1: tcp_rr, ${duration}s"; measure_rr "$1"
}
measure=measure_one_host

# ------------------------------------------------------------------- run
started=$(date -u '+%Y-%m-%d %H:%M UTC')
# Rounds alternate the setups (A B C A B C ...) so a slow minute of the
# machine does not land on one setup only; the table shows each metric's median.
for _ in $(seq "$rounds"); do
  for s in "${setups[@]}"; do run_setup "$s"; done
done
report "$out" "weft end-to-end benchmark, one host ($started)" \
  "$(echo "benches/e2e/run.sh $orig_args" | sed 's/ *$//')" "" linuxbridge ovs ovs-tso weft-before
