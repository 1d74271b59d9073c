#!/usr/bin/env bash
# End-to-end switch benchmark: two network namespaces ("VMs") joined by
#   weft         `weft switch` with two tap ports on one local network
#   linuxbridge  a kernel bridge over veth pairs
#   ovs          Open vSwitch, userspace (netdev) datapath, two type=tap ports
#   ovs-tso      the same with other_config:userspace-tso-enable=true
# and, for each, iperf3 TCP (1 and 4 streams), 64-byte UDP packets/s received
# at the server (and loss), ping RTT p50/p99, and the CPU the switch process
# used during the TCP runs. Prints a table with weft's ratios to the others
# and writes it as markdown to benches/e2e/last-run.md.
#
# Usage (as root): benches/e2e/run.sh [--only weft|linuxbridge|ovs[,...]]
#                                    [--duration N] [--weft-bin PATH]
#                                    [--udp-rate RATE] [--out FILE] [--keep]
# --only ovs runs both OVS variants; ovs-plain / ovs-tso pick one.
# Needs: iproute2, iperf3, iputils-ping, python3, openvswitch-switch
#        (scripts/install-deps.sh --bench installs them).
#
# Every namespace and interface it makes starts with "wbn"; a trap removes
# them, the daemons it started (by pid) and its temp dir on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

orig_args="$*"
only="weft,linuxbridge,ovs"
duration=10
weft_bin="$repo/target/release/weft"
udp_rate=0 # iperf3 -b: 0 = as fast as the sender can
out="$here/last-run.md"
keep=0
ping_count=200
ping_interval=0.01

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --weft-bin) weft_bin=$2; shift 2 ;;
    --udp-rate) udp_rate=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;; # keep the temp dir (logs, raw JSON)
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (namespaces, taps)" >&2; exit 1; }
for t in ip iperf3 ping python3; do
  command -v "$t" >/dev/null || { echo "run.sh: $t missing: run scripts/install-deps.sh --bench" >&2; exit 1; }
done
if [[ ,$only, == *,ovs* ]] && ! command -v ovs-vswitchd >/dev/null; then
  echo "run.sh: ovs-vswitchd missing: run scripts/install-deps.sh --bench" >&2; exit 1
fi

tmp=$(mktemp -d /tmp/wbn.XXXXXX)
results=$tmp/results.tsv
: >"$results"
pids=() # daemons we started; the trap ends exactly these
NSA=wbnA
NSB=wbnB
IPA=10.77.0.1
IPB=10.77.0.2
hz=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

kill_pids() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  pids=()
}

teardown() {
  kill_pids
  local ns l
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^wbn/ {print $1}'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep '^wbn' || true); do
    ip link del "$l" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  teardown
  if [ "$keep" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two "VMs" with IPv6 off (no stray ND/MLD traffic through the switches).
make_namespaces() {
  local ns
  for ns in $NSA $NSB; do
    ip netns add $ns
    ip -n $ns link set lo up
    ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
}

# Move a root-namespace interface into NS, give it MAC (optional) and IP.
plug() { # ns ifname ip [mac]
  ip link set "$2" netns "$1"
  [ -n "${4:-}" ] && ip -n "$1" link set "$2" address "$4"
  ip -n "$1" addr add "$3/24" dev "$2"
  ip -n "$1" link set "$2" up
}

wait_for() { # tries cmd...: poll every 0.1 s
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# ---------------------------------------------------------------- setups
# Each setup_X leaves $NSA/$NSB connected and sets switch_pid (empty for
# the kernel bridge, whose work is softirq time, not a process's).

setup_linuxbridge() {
  switch_pid=""
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

ovs() { ovs-vsctl --db="unix:$tmp/ovs/db.sock" --timeout=20 "$@"; }

start_ovs() { # tso: true|false
  export OVS_RUNDIR=$tmp/ovs OVS_LOGDIR=$tmp/ovs OVS_DBDIR=$tmp/ovs OVS_SYSCONFDIR=$tmp/ovs
  rm -rf "$tmp/ovs"; mkdir -p "$tmp/ovs"
  ovsdb-tool create "$tmp/ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server "$tmp/ovs/conf.db" --remote="punix:$tmp/ovs/db.sock" \
    --pidfile="$tmp/ovs/ovsdb-server.pid" --unixctl="$tmp/ovs/ovsdb-server.ctl" \
    --log-file="$tmp/ovs/ovsdb-server.log" -vconsole:off --no-chdir --detach
  pids+=("$(cat "$tmp/ovs/ovsdb-server.pid")")
  ovs --no-wait init
  ovs --no-wait set Open_vSwitch . other_config:userspace-tso-enable="$1"
  ovs-vswitchd "unix:$tmp/ovs/db.sock" --pidfile="$tmp/ovs/ovs-vswitchd.pid" \
    --unixctl="$tmp/ovs/ovs-vswitchd.ctl" --log-file="$tmp/ovs/ovs-vswitchd.log" -vconsole:off \
    --no-chdir --detach
  switch_pid=$(cat "$tmp/ovs/ovs-vswitchd.pid")
  pids+=("$switch_pid")
  ovs add-br wbnovs -- set bridge wbnovs datapath_type=netdev
  ovs add-port wbnovs wbnoA -- set interface wbnoA type=tap
  ovs add-port wbnovs wbnoB -- set interface wbnoB type=tap
  wait_for 100 ip link show wbnoA
  wait_for 100 ip link show wbnoB
  plug $NSA wbnoA $IPA
  plug $NSB wbnoB $IPB
}
setup_ovs() { start_ovs false; }
setup_ovs-tso() { start_ovs true; }

MACA=fa:16:3e:77:00:01
MACB=fa:16:3e:77:00:02

setup_weft() {
  if [ ! -x "$weft_bin" ]; then
    log "building weft (cargo build --release)"
    (cd "$repo" && cargo build --release --bin weft)
  fi
  cat >"$tmp/weft.toml" <<EOF
# generated by benches/e2e/run.sh
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
  "$weft_bin" switch --config "$tmp/weft.toml" >"$tmp/weft.log" 2>&1 &
  switch_pid=$!
  pids+=("$switch_pid")
  if ! wait_for 100 ip link show wbnwB; then
    log "weft did not create its taps; log:"; cat "$tmp/weft.log" >&2; return 1
  fi
  wait_for 20 ip link show wbnwA
  plug $NSA wbnwA $IPA $MACA
  plug $NSB wbnwB $IPB $MACB
}

# ---------------------------------------------------------- measurements

cpu_ticks() { # utime+stime of a process (all its threads), in clock ticks
  [ -n "$1" ] || { echo 0; return; }
  # fields after the ")" that ends comm: state is $1, utime $12, stime $13
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

iperf_server() { # name: one-shot server in $NSA writing JSON to $tmp/name.srv.json
  ip netns exec $NSA iperf3 -s -1 -J -B $IPA >"$tmp/$1.srv.json" 2>&1 &
  srv_pid=$!
  wait_for 50 sh -c "ip netns exec $NSA ss -Hltn 'sport = :5201' | grep -q 5201"
}

measure_tcp() { # setup streams
  local name=$1-tcp$2 t0 t1 c0 c1
  iperf_server "$name"
  c0=$(cpu_ticks "$switch_pid"); t0=$(date +%s.%N)
  ip netns exec $NSB iperf3 -c $IPA -t "$duration" -P "$2" -J >"$tmp/$name.json" 2>&1 || true
  c1=$(cpu_ticks "$switch_pid"); t1=$(date +%s.%N)
  wait "$srv_pid" 2>/dev/null || true
  python3 - "$tmp/$name.json" <<'EOF' | while read -r v; do record "$1" "tcp${2}_gbps" "$v"; done
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    print(f"{d['end']['sum_received']['bits_per_second'] / 1e9:.2f}")
except Exception:
    print("NaN")
EOF
  if [ -n "$switch_pid" ]; then
    record "$1" "tcp${2}_cpu" "$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
      'BEGIN { printf "%.2f", (b - a) / hz / (t1 - t0) }')"
  fi
}

measure_udp() { # setup
  local name=$1-udp
  iperf_server "$name"
  ip netns exec $NSB iperf3 -c $IPA -u -l 64 -b "$udp_rate" -t "$duration" -J >"$tmp/$name.json" 2>&1 || true
  wait "$srv_pid" 2>/dev/null || true
  # The server's own view: packets it received over the test's seconds.
  python3 - "$tmp/$name.srv.json" <<'EOF' | while read -r k v; do record "$1" "$k" "$v"; done
import json, sys
try:
    s = json.load(open(sys.argv[1]))["end"]["sum"]
    got = s["packets"] - s["lost_packets"]
    print(f"udp_kpps {got / s['seconds'] / 1e3:.1f}")
    print(f"udp_loss {s['lost_percent']:.1f}")
except Exception:
    print("udp_kpps NaN"); print("udp_loss NaN")
EOF
}

measure_ping() { # setup
  local name=$1-ping
  ip netns exec $NSB ping -c "$ping_count" -i "$ping_interval" -W 1 $IPA >"$tmp/$name.txt" 2>&1 || true
  python3 - "$tmp/$name.txt" <<'EOF' | while read -r k v; do record "$1" "$k" "$v"; done
import math, re, sys
rtt = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read()))
def pct(p):  # nearest rank
    return rtt[max(0, math.ceil(p / 100 * len(rtt)) - 1)] * 1000
if rtt:
    print(f"ping_p50 {pct(50):.0f}"); print(f"ping_p99 {pct(99):.0f}")
else:
    print("ping_p50 NaN"); print("ping_p99 NaN")
EOF
}

run_setup() { # setup
  local s=$1
  log "== $s: setting up"
  teardown
  make_namespaces
  switch_pid=""
  if ! "setup_$s"; then
    log "$s: setup failed"; record "$s" status "setup failed"; return 0
  fi
  if ! ip netns exec $NSB ping -c 3 -i 0.2 -W 2 $IPA >/dev/null 2>&1 &&
     ! ip netns exec $NSB ping -c 3 -i 0.2 -W 2 $IPA >/dev/null 2>&1; then
    log "$s: $NSB cannot ping $IPA; skipping"; record "$s" status "no connectivity"; return 0
  fi
  log "$s: ping"; measure_ping "$s"
  log "$s: tcp 1 stream, ${duration}s"; measure_tcp "$s" 1
  log "$s: tcp 4 streams, ${duration}s"; measure_tcp "$s" 4
  log "$s: udp 64 B, ${duration}s"; measure_udp "$s"
  [ -n "$switch_pid" ] && ! kill -0 "$switch_pid" 2>/dev/null && record "$s" status "switch died"
  record "$s" status ok
  teardown
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
# "ovs" means both OVS variants, (c) and (c'); ovs-plain / ovs-tso pick one.
IFS=, read -r -a wanted <<<"$only"
setups=()
for s in "${wanted[@]}"; do
  case "$s" in
    weft|linuxbridge|ovs-tso) setups+=("$s") ;;
    ovs) setups+=(ovs ovs-tso) ;;
    ovs-plain) setups+=(ovs) ;;
    *) echo "run.sh: unknown setup $s (weft|linuxbridge|ovs|ovs-plain|ovs-tso)" >&2; exit 2 ;;
  esac
done
for s in "${setups[@]}"; do run_setup "$s"; done

# ---------------------------------------------------------------- report
python3 - "$results" "$out" "$started" "$duration" "$udp_rate" "$(nproc)" "$(cat /proc/loadavg)" \
  "$(uname -r)" "$orig_args" <<'EOF'
import sys, math
res_file, out, started, duration, udp_rate, ncpu, load, kernel, _ = sys.argv[1:]
res = {}
order = []
for line in open(res_file):
    s, k, v = line.rstrip("\n").split("\t")
    if s not in res:
        res[s] = {}
        order.append(s)
    res[s].setdefault(k, v)
rows = [
    ("tcp1_gbps", "TCP 1 stream, Gbit/s (higher better)"),
    ("tcp4_gbps", "TCP 4 streams, Gbit/s (higher better)"),
    ("tcp1_cpu", "switch CPU during TCP 1, cores"),
    ("tcp4_cpu", "switch CPU during TCP 4, cores"),
    ("udp_kpps", "UDP 64 B received, kpps (higher better)"),
    ("udp_loss", "UDP 64 B loss, %"),
    ("ping_p50", "ping RTT p50, µs (lower better)"),
    ("ping_p99", "ping RTT p99, µs (lower better)"),
]
def num(s, k):
    try:
        v = float(res.get(s, {}).get(k, "nan"))
    except ValueError:
        return math.nan
    return v
ratios = [o for o in ("linuxbridge", "ovs", "ovs-tso") if "weft" in res and o in res]
head = ["metric"] + order + [f"weft/{o}" for o in ratios]
table = []
for k, label in rows:
    if all(math.isnan(num(s, k)) for s in order):
        continue
    r = [label]
    for s in order:
        v = num(s, k)
        r.append("-" if math.isnan(v) else res[s][k])
    for o in ratios:
        a, b = num("weft", k), num(o, k)
        r.append("-" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}")
    table.append(r)
table.append(["status"] + [res[s].get("status", "?") for s in order] + [""] * len(ratios))
md = [
    f"# weft end-to-end benchmark ({started})",
    "",
    f"Command: `{('benches/e2e/run.sh ' + sys.argv[9]).strip()}`",
    f"Machine: {ncpu} cores, kernel {kernel}, load average at the end: {load.split()[0]} {load.split()[1]} {load.split()[2]}.",
    f"Each iperf3 run {duration} s; UDP is `iperf3 -u -l 64 -b {udp_rate}` (64-byte payload), counted at the server;"
    " ping is 200 pings at 10 ms; CPU is utime+stime of the switch process (the kernel bridge has none: softirq).",
    "",
    "| " + " | ".join(head) + " |",
    "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
]
md += ["| " + " | ".join(r) + " |" for r in table]
open(out, "w").write("\n".join(md) + "\n")
w = [max(len(r[i]) for r in [head] + table) for i in range(len(head))]
for r in [head] + table:
    print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
print(f"\nwritten to {out}")
EOF
