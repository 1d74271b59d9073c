#!/usr/bin/env bash
# Security-group benchmark (issue 14): two namespace VMs on one host, joined by
#   weft-sgN   `weft switch`, both ports in one stateful security group
#   ovs-ctN    Open vSwitch userspace (netdev) with a conntrack firewall table
# where N (default 0, 10, 100) is the number of rules per port that the traffic
# never matches, ahead of the rules that admit it, so that every new connection
# walks them. Lines: TCP 1 stream (iperf3), 64 B UDP (received kpps, loss),
# TCP_RR 1-byte transactions/s (tcp_rr.c), ping. Prints and writes a table with
# the goal checks: weft-sgN against weft-sg0 (within 10 %) and against ovs-ctN.
#
# Usage (as root): benches/e2e/secgroups.sh [--rules 0,10,100] [--only weft,ovs]
#            [--rounds N] [--duration N] [--weft-bin PATH] [--out FILE] [--keep]
#   --rounds: every setup N times, alternating; medians reported (default 3)
#   --duration: seconds per iperf3 / tcp_rr run (default 8)
#   --only: weft, ovs, and the baselines without a firewall: weft-nofw (no
#           security groups: port security only), ovs-nofw (action NORMAL);
#           ovs-tso: the OVS table with other_config:userspace-tso-enable=true
# Every namespace and interface it makes starts with "sgb" (run.sh's are wbn*).
#
# The OVS table is the shape of what Neutron's openvswitch firewall driver
# installs, cut to one bridge: table 0 checks the sender's MAC and IP (as tables
# 71/73 do) and sends IP through ct(zone=1); table 1 passes +est and +rel,
# drops +inv, and matches +new against the destination port's ingress rules,
# committing what one admits (tables 82/81); anything else is dropped. Neutron
# runs a packet between two ports of one host through conntrack twice (the
# sender's egress, then the receiver's ingress); this table does it once, so
# OVS pays less here than under Neutron. weft checks the sender's egress and
# the receiver's ingress rules, as Neutron does.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
PFX=sgb
# shellcheck source=benches/e2e/lib.sh
. "$here/lib.sh"

orig_args="$*"
rule_counts="0,10,100"
only="weft,ovs"
duration=8
rounds=3
weft_bin="$repo/target/release/weft"
udp_rate=0
out="$here/last-run-secgroups.md"
keep=0

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rules) rule_counts=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --weft-bin) weft_bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "secgroups.sh: unknown option $1" >&2; usage 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "secgroups.sh: must run as root (namespaces, taps)" >&2; exit 1; }

IFS=, read -r -a counts <<<"$rule_counts"
IFS=, read -r -a kinds <<<"$only"
setups=()
for k in "${kinds[@]}"; do
  case "$k" in
    weft-nofw|ovs-nofw) setups+=("$k") ;;
    weft|ovs|ovs-tso) ;;
    *) echo "secgroups.sh: unknown switch $k (weft|ovs|ovs-tso|weft-nofw|ovs-nofw)" >&2; exit 2 ;;
  esac
done
for n in "${counts[@]}"; do
  for k in "${kinds[@]}"; do
    case "$k" in
      weft) setups+=("weft-sg$n") ;;
      ovs) setups+=("ovs-ct$n") ;;
      ovs-tso) setups+=("ovs-tso-ct$n") ;;
    esac
  done
done
need_tools ip ss iperf3 ping python3 cc
[[ " ${kinds[*]} " == *" ovs"* ]] && need_tools ovs-vswitchd ovsdb-server ovsdb-tool ovs-vsctl ovs-ofctl
[[ " ${kinds[*]} " == *" weft"* ]] && ensure_weft "$weft_bin" "$repo" "$repo/target/release/weft"

single_instance
tmp=$(mktemp -d /tmp/sgb.XXXXXX)
results=$tmp/results.tsv
: >"$results"
install_trap
cc -O2 -o "$tmp/tcp_rr" "$here/tcp_rr.c"

NET=10.77.0.0/24

# ---------------------------------------------------------------- setups

# The group both weft ports are in: N ingress rules the traffic never matches
# (TCP to 10000.. from the VMs' subnet), then the ones that admit it: iperf3
# (TCP and UDP 5201), tcp_rr (TCP 5202), ICMP; egress anything (Neutron's
# default group).
weft_group() { # n
  local i n=$1
  printf '[[security_group]]\nid = "sgb-sg"\n'
  for ((i = 0; i < n; i++)); do
    printf '[[security_group.rule]]\nid = "miss-%d"\ndirection = "ingress"\nethertype = "IPv4"\nprotocol = "tcp"\nport_range_min = %d\nport_range_max = %d\nremote_ip_prefix = "%s"\n' \
      "$i" $((10000 + i)) $((10000 + i)) "$NET"
  done
  local rule proto port
  for rule in "tcp 5201" "udp 5201" "tcp $RR_PORT"; do
    read -r proto port <<<"$rule"
    printf '[[security_group.rule]]\nid = "allow-%s-%s"\ndirection = "ingress"\nethertype = "IPv4"\nprotocol = "%s"\nport_range_min = %s\nport_range_max = %s\n' \
      "$proto" "$port" "$proto" "$port" "$port"
  done
  printf '[[security_group.rule]]\nid = "allow-icmp"\ndirection = "ingress"\nethertype = "IPv4"\nprotocol = "icmp"\n'
  printf '[[security_group.rule]]\nid = "allow-out"\ndirection = "egress"\nethertype = "IPv4"\n'
}

setup_weft() { # n
  {
    printf '# generated by benches/e2e/secgroups.sh\n[switch]\ncontrol_socket = "%s"\n\n' "$tmp/weft.sock"
    printf '[[network]]\nname = "sgb-net"\ntype = "local"\n\n'
    local s ip mac
    for s in A B; do
      ip=IP$s; mac=MAC$s
      printf '[[port]]\nname = "sgbw%s"\nkind = "tap"\nnetwork = "sgb-net"\nmac = "%s"\nfixed_ips = ["%s"]\nport_security = true\n' \
        "$s" "${!mac}" "${!ip}"
      [ -n "$1" ] && printf 'security_groups = ["sgb-sg"]\n'
      printf '\n'
    done
    [ -z "$1" ] || weft_group "$1"
  } >"$tmp/weft.toml"
  "$weft_bin" switch --config "$tmp/weft.toml" >"$tmp/weft.log" 2>&1 9>&- &
  add_switch_pid $!
  if ! wait_for 100 ip link show sgbwB || ! wait_for 20 ip link show sgbwA; then
    log "weft did not create its taps; its log:"; cat "$tmp/weft.log" >&2; return 1
  fi
  plug "$NSA" sgbwA "$IPA" "$MACA"
  plug "$NSB" sgbwB "$IPB" "$MACB"
}

# Neutron-shaped conntrack firewall flows for two ports (ofport 1 = A, 2 = B).
ovs_flows() { # n
  local p ip mac i rule proto port n=$1
  for p in 1 2; do
    if [ $p = 1 ]; then ip=$IPA; mac=$MACA; else ip=$IPB; mac=$MACB; fi
    # table 0: anti-spoofing (tables 71/73), then IP into conntrack
    echo "table=0,priority=100,in_port=$p,ip,dl_src=$mac,nw_src=$ip,actions=ct(table=1,zone=1)"
    echo "table=0,priority=100,in_port=$p,arp,dl_src=$mac,arp_spa=$ip,actions=NORMAL"
    # table 1: the port's ingress rules, matched on new connections to it
    for ((i = 0; i < n; i++)); do
      echo "table=1,priority=50,ct_state=+new+trk,tcp,nw_dst=$ip,nw_src=$NET,tp_dst=$((10000 + i)),actions=ct(commit,zone=1),NORMAL"
    done
    for rule in "tcp 5201" "udp 5201" "tcp $RR_PORT"; do
      read -r proto port <<<"$rule"
      echo "table=1,priority=50,ct_state=+new+trk,$proto,nw_dst=$ip,tp_dst=$port,actions=ct(commit,zone=1),NORMAL"
    done
    echo "table=1,priority=50,ct_state=+new+trk,icmp,nw_dst=$ip,actions=ct(commit,zone=1),NORMAL"
  done
  echo "table=0,priority=0,actions=drop"
  echo "table=1,priority=100,ct_state=+est+trk,ip,actions=NORMAL"
  echo "table=1,priority=100,ct_state=+rel+trk,ip,actions=NORMAL"
  echo "table=1,priority=90,ct_state=+inv+trk,actions=drop"
  echo "table=1,priority=0,actions=drop"
}

setup_ovs() { # n [tso]
  start_ovs "" ovs "${2:-false}"
  local v=(ovs-vsctl --db="$ovs_db" --timeout=20)
  "${v[@]}" add-br sgbovs -- set bridge sgbovs datapath_type=netdev fail_mode=secure
  "${v[@]}" add-port sgbovs sgboA -- set interface sgboA type=tap ofport_request=1
  "${v[@]}" add-port sgbovs sgboB -- set interface sgboB type=tap ofport_request=2
  wait_for 100 ip link show sgboA
  wait_for 100 ip link show sgboB
  if [ -n "$1" ]; then ovs_flows "$1"; else echo "priority=0,actions=NORMAL"; fi >"$tmp/flows.txt"
  ovs-ofctl del-flows "unix:$tmp/ovs/sgbovs.mgmt"
  ovs-ofctl add-flows "unix:$tmp/ovs/sgbovs.mgmt" "$tmp/flows.txt"
  plug "$NSA" sgboA "$IPA" "$MACA"
  plug "$NSB" sgboB "$IPB" "$MACB"
}

for n in "${counts[@]}"; do
  eval "setup_weft-sg$n() { setup_weft $n; }"
  eval "setup_ovs-ct$n() { setup_ovs $n; }"
  eval "setup_ovs-tso-ct$n() { setup_ovs $n true; }"
done
setup_weft-nofw() { setup_weft ""; }
setup_ovs-nofw() { setup_ovs ""; }

# ---------------------------------------------------------- measurements

measure_sg() { # setup
  log "$1: ping"; measure_ping "$1"
  log "$1: tcp 1 stream, ${duration}s"; measure_tcp "$1" 1
  log "$1: udp 64 B, ${duration}s"; measure_udp "$1"
  log "$1: tcp_rr, ${duration}s"; measure_rr "$1"
}
measure=measure_sg

after_weft() {
  "$weft_bin" ctl --socket "$tmp/weft.sock" counters >"$tmp/weft-counters.txt" 2>&1 || true
}
for n in "${counts[@]}"; do eval "after_weft-sg$n() { after_weft; }"; done
after_weft-nofw() { after_weft; }

# ------------------------------------------------------------------- run
started=$(date -u '+%Y-%m-%d %H:%M UTC')
for _ in $(seq "$rounds"); do
  for s in "${setups[@]}"; do run_setup "$s"; done
done
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
report "$out" "weft security groups against OVS + conntrack, one host ($started)" \
  "$(echo "benches/e2e/secgroups.sh $orig_args" | sed 's/ *$//')" \
  "CPU: $cpu. N in weft-sgN / ovs-ctN: rules per port the traffic never matches, ahead of the admitting ones (see the script's header for the OVS flows)."

# The goal checks, appended to the table: weft with N rules against weft with
# the fewest, and against OVS + conntrack with the same rules.
python3 - "$results" "$out" "${counts[@]}" <<'EOF'
import math, statistics, sys
res_file, out, counts = sys.argv[1], sys.argv[2], sys.argv[3:]
vals = {}
for line in open(res_file):
    s, k, v = line.rstrip("\n").split("\t")
    try:
        vals.setdefault((s, k), []).append(float(v))
    except ValueError:
        pass
def med(s, k):
    xs = [x for x in vals.get((s, k), []) if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan
setups = {s for s, _ in vals}
ovs = [o for o in ("ovs-ct", "ovs-tso-ct") if any(f"{o}{n}" in setups for n in counts)]
cols = [(f"weft-sg{n}", f"weft-sg{counts[0]}") for n in counts[1:]]
cols += [(f"weft-sg{n}", f"{o}{n}") for o in ovs for n in counts]
lines = ["", "| line | " + " | ".join(f"{a}/{b}" for a, b in cols) + " |"]
lines.append("|---|" + "---:|" * len(cols))
for k, label in [("tcp1_gbps", "TCP 1 stream"), ("udp_kpps", "UDP 64 B received"), ("rr_tps", "TCP_RR")]:
    lines.append("| " + " | ".join([label] + [f"{med(a, k) / med(b, k):.2f}" for a, b in cols]) + " |")
text = "\n".join(lines) + "\n"
open(out, "a").write(text)
print(text)
EOF
