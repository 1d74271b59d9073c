#!/usr/bin/env bash
# End-to-end benchmark across two "hosts": host namespaces wbnH1 and wbnH2,
# joined by a veth "physical wire" (wbnwire1 <-> wbnwire2, MTU 1600), each
# with one VM namespace (wbnA on wbnH1, wbnB on wbnH2). The VMs talk across
# the wire through, per setup:
#   weft          `weft switch` in each host: a tap port on a VLAN network
#                 (segmentation_id 100) whose physnet is the wire (AF_PACKET)
#   weft-vxlan    `weft switch` in each host: a tap port on a VXLAN network
#                 (VNI 100) between the hosts' wire addresses, as kernel-vxlan
#                 (the VMs keep MTU 1500; the wire has 1600)
#   ovs-vlan      Open vSwitch userspace (netdev) datapath in each host: the
#                 VM on a type=tap port with tag=100, the wire a system port
#   ovs-vlan-tso  the same with userspace-tso-enable=true
#   kernel-vxlan  a Linux bridge in each host over a kernel VXLAN (VNI 100)
#                 (no kernel VLAN baseline: this machine kind's kernel has
#                 neither 8021q nor bridge vlan_filtering)
# Measures what run.sh measures (CPU = both switches together) and checks
# what crosses the wire (VID 100 / VXLAN) with tcpdump.
#
# Usage (as root): benches/e2e/two-host.sh [--only SETUP[,...]] [--duration N]
#            [--weft-bin PATH] [--udp-rate RATE] [--out FILE] [--keep]
#   --only: weft, weft-vxlan, ovs (= ovs-vlan + ovs-vlan-tso), ovs-vlan,
#           ovs-vlan-tso, kernel-vxlan (or kernel)
#   --vlan N: the VLAN on the wire (default 100); --vlan 0 = a flat network
#             (untagged on the wire; the ovs-vlan setups then use no tag)
#   writes benches/e2e/last-run-two-host.md by default
#   --rounds N: run every setup N times, alternating, and report medians (default 1)
#   --hold: set up the (first) setup and wait until killed, for poking at it
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=benches/e2e/lib.sh
. "$here/lib.sh"

orig_args="$*"
only="weft,ovs,kernel"
duration=10
rounds=1
weft_bin="$repo/target/release/weft"
udp_rate=0
out="$here/last-run-two-host.md"
keep=0
hold=0
vlan=100

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --vlan) vlan=$2; shift 2 ;;
    --weft-bin) weft_bin=$2; shift 2 ;;
    --udp-rate) udp_rate=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --hold) hold=1; keep=1; shift ;; # set up the first setup, then wait (debugging)
    -h|--help) usage 0 ;;
    *) echo "two-host.sh: unknown option $1" >&2; usage 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "two-host.sh: must run as root" >&2; exit 1; }

IFS=, read -r -a wanted <<<"$only"
setups=()
for s in "${wanted[@]}"; do
  case "$s" in
    weft|weft-vxlan|ovs-vlan|ovs-vlan-tso|kernel-vxlan) setups+=("$s") ;;
    ovs) setups+=(ovs-vlan ovs-vlan-tso) ;;
    kernel) setups+=(kernel-vxlan) ;;
    *) echo "two-host.sh: unknown setup $s" >&2; exit 2 ;;
  esac
done
need_tools ip ss iperf3 ping python3 tcpdump
[[ " ${setups[*]} " == *" ovs"* ]] && need_tools ovs-vswitchd ovsdb-server ovsdb-tool ovs-vsctl
[[ " ${setups[*]} " == *" weft"* ]] && ensure_weft "$weft_bin" "$repo" "$repo/target/release/weft"

single_instance
tmp=$(mktemp -d /tmp/wbn.XXXXXX)
results=$tmp/results.tsv
: >"$results"
install_trap

H1=wbnH1
H2=wbnH2

# Two hosts and the wire between them (called by every setup).
make_hosts() {
  new_ns $H1 $H2
  ip link add wbnwire1 netns $H1 mtu 1600 type veth peer name wbnwire2 netns $H2 mtu 1600
  ip -n $H1 link set wbnwire1 up
  ip -n $H2 link set wbnwire2 up
}

# A kernel bridge in host H with a veth to VM namespace ns, plus `member`.
kernel_host() { # host ns vmif ip member
  ip -n "$1" link add wbnbr type bridge stp_state 0 forward_delay 0
  ip -n "$1" link add "$3" type veth peer name "${3}v"
  ip -n "$1" link set "$3" master wbnbr
  ip -n "$1" link set "$5" master wbnbr
  ip -n "$1" link set "$3" up
  ip -n "$1" link set "$5" up
  ip -n "$1" link set wbnbr up
  plug -n "$1" "$2" "${3}v" "$4"
}

setup_kernel-vxlan() {
  make_hosts
  ip -n $H1 addr add 192.168.77.1/24 dev wbnwire1
  ip -n $H2 addr add 192.168.77.2/24 dev wbnwire2
  # MTU 1550 on the VXLAN device (the wire has 1600), so the VMs keep 1500
  ip -n $H1 link add wbnvx mtu 1550 type vxlan id 100 local 192.168.77.1 remote 192.168.77.2 dstport 4789 dev wbnwire1
  ip -n $H2 link add wbnvx mtu 1550 type vxlan id 100 local 192.168.77.2 remote 192.168.77.1 dstport 4789 dev wbnwire2
  kernel_host $H1 $NSA wbnkA $IPA wbnvx
  kernel_host $H2 $NSB wbnkB $IPB wbnvx
}

ovs_host() { # host name tso vm-ns tap ip
  start_ovs "$1" "$2" "$3"
  local v=(ovs-vsctl --db="$ovs_db" --timeout=20) wire=wbnwire${1#wbnH}
  "${v[@]}" add-br wbnovs -- set bridge wbnovs datapath_type=netdev
  "${v[@]}" add-port wbnovs "$wire"
  local tag=()
  [ "$vlan" != 0 ] && tag=(tag="$vlan")
  "${v[@]}" add-port wbnovs "$5" "${tag[@]}" -- set interface "$5" type=tap
  wait_for 100 ip -n "$1" link show "$5"
  plug -n "$1" "$4" "$5" "$6"
}
setup_ovs-vlan() {
  make_hosts
  ovs_host $H1 ovs1 false $NSA wbnoA $IPA
  ovs_host $H2 ovs2 false $NSB wbnoB $IPB
}
setup_ovs-vlan-tso() {
  make_hosts
  ovs_host $H1 ovs1 true $NSA wbnoA $IPA
  ovs_host $H2 ovs2 true $NSB wbnoB $IPB
}

weft_host() { # host n vm-ns tap ip mac [vxlan]
  local net uplink mtu=""
  uplink=$'[[physnet]]\nname = "physnet"\ninterface = "wbnwire'"$2"'"'
  if [ "${7:-}" = vxlan ]; then
    uplink=$'[tunnel]\nlocal_ip = "192.168.77.'"$2"$'"\n\n[[tunnel_peer]]\nip = "192.168.77.'"$((3 - $2))"'"'
    net=$'type = "vxlan"\nsegmentation_id = 100'
    mtu="mtu = 1500"
  elif [ "$vlan" = 0 ]; then
    net=$'type = "flat"\nphysnet = "physnet"'
  else
    net=$'type = "vlan"\nphysnet = "physnet"\nsegmentation_id = '"$vlan"
  fi
  cat >"$tmp/weft$2.toml" <<EOF
# generated by benches/e2e/two-host.sh
[switch]
control_socket = "$tmp/weft$2.sock"

$uplink

[[network]]
name = "wbn-net"
$net

[[port]]
name = "$4"
kind = "tap"
network = "wbn-net"
mac = "$6"
fixed_ips = ["$5"]
port_security = true
$mtu
EOF
  ip netns exec "$1" "$weft_bin" switch --config "$tmp/weft$2.toml" >"$tmp/weft$2.log" 2>&1 9>&- &
  add_switch_pid $!
  if ! wait_for 100 ip -n "$1" link show "$4"; then
    log "weft on $1 did not create $4; its log:"; cat "$tmp/weft$2.log" >&2; return 1
  fi
  plug -n "$1" "$3" "$4" "$5" "$6"
}
setup_weft() {
  make_hosts
  weft_host $H1 1 $NSA wbnwA $IPA $MACA
  weft_host $H2 2 $NSB wbnwB $IPB $MACB
}
setup_weft-vxlan() {
  make_hosts
  ip -n $H1 addr add 192.168.77.1/24 dev wbnwire1
  ip -n $H2 addr add 192.168.77.2/24 dev wbnwire2
  weft_host $H1 1 $NSA wbnwA $IPA $MACA vxlan
  weft_host $H2 2 $NSB wbnwB $IPB $MACB vxlan
}

# What crosses the wire: capture a few of the VMs' pings on wbnwire1.
wire_check() { # setup tcpdump-filter label
  ip netns exec $H1 timeout 5 tcpdump -nn -e -c 4 -i wbnwire1 "$2" >"$tmp/$1-wire.txt" 2>/dev/null &
  local t=$!
  sleep 1
  ip netns exec $NSB ping -c 4 -i 0.2 -W 1 $IPA >/dev/null 2>&1 || true
  wait $t 2>/dev/null || true
  local n tagged
  n=$(grep -c . "$tmp/$1-wire.txt" || true)
  tagged=$(grep -c 'vlan' "$tmp/$1-wire.txt" || true)
  if [ "$n" -ge 4 ] && { [ "$3" != untagged ] || [ "$tagged" = 0 ]; }; then
    record "$1" wire "$3"
  else
    record "$1" wire "NOT $3"
  fi
}
vlan_check() { # setup
  if [ "$vlan" = 0 ]; then
    wire_check "$1" 'icmp' "untagged"
  else
    wire_check "$1" "vlan $vlan and icmp" "VID $vlan"
  fi
}
verify_weft() { vlan_check weft; }
verify_ovs-vlan() { vlan_check ovs-vlan; }
verify_ovs-vlan-tso() { vlan_check ovs-vlan-tso; }
verify_kernel-vxlan() { wire_check kernel-vxlan 'udp port 4789' "VXLAN"; }
verify_weft-vxlan() { wire_check weft-vxlan 'udp port 4789' "VXLAN"; }

after_weft-vxlan() { after_weft; }
after_weft() {
  local h c
  for h in 1 2; do
    for c in ports counters; do
      "$weft_bin" ctl --socket "$tmp/weft$h.sock" $c >"$tmp/weft$h-$c.txt" 2>&1 || true
      log "weft on wbnH$h, ctl $c after the run:"; cat "$tmp/weft$h-$c.txt" >&2
    done
  done
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
# Rounds alternate the setups (A B C A B C ...) so a slow minute of the
# machine does not land on one setup only; the table shows each metric's median.
for _ in $(seq "$rounds"); do
  for s in "${setups[@]}"; do run_setup "$s"; done
done
wire="a VLAN $vlan wire"
[ "$vlan" = 0 ] && wire="a flat (untagged) wire"
report "$out" "weft end-to-end benchmark, two hosts over $wire ($started)" \
  "$(echo "benches/e2e/two-host.sh $orig_args" | sed 's/ *$//')" \
  "Hosts are namespaces joined by a veth wire (MTU 1600); VMs are namespaces behind each host's switch." \
  ovs-vlan ovs-vlan-tso kernel-vxlan
