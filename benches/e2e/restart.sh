#!/usr/bin/env bash
# What a restart costs on a host with N real tap ports, each carrying traffic. In every setup:
#   - N taps in the root namespace (their kernel side), each sending 5 raw frames a second to
#     the next one (benches/e2e/seqflow.c mesh): per port, the longest silence and the frames lost;
#   - one 10 kpps UDP flow between two namespaces holding two more taps, counted by sequence
#     number at the receiver (seqflow send/recv): frames lost and the longest silence;
#   - after a warm-up, at t = 4 s into the 12 s of traffic, the restart:
#       agent     `weft agent --switch-socket` driving a separate `weft switch` (ports from a
#                 real `weft serve`, bound to this host): kill -9 of the agent, then a new one;
#                 event_s = until the new agent has applied the desired state (in sync)
#       handover  `weft switch --takeover`: the new process takes the old one's fds;
#                 event_s = until the old process has exited
#       cold      `weft switch` stopped (SIGTERM: its taps close, the netdevs go away) and
#                 started again; the namespaces' taps are plugged in again as a VIF driver
#                 would; event_s = until they are
#       ovs       ovs-vswitchd (userspace/netdev datapath, type=tap ports) told to exit
#                 (ovs-appctl exit) and started again; plugged in again if its taps went away
# Usage (as root): benches/e2e/restart.sh [--ports N] [--rounds R] [--only agent,handover,cold,ovs]
#            [--weft-bin PATH] [--flow-pps P] [--keep] [--out FILE]
#   --ports: taps carrying the mesh (default 1000; the flow's two come on top)
#   --rounds: alternate the setups R times and report medians (default 1)
#   --weft-bin: default target/release/weft (built with cargo first)
# Names: namespaces rsns*, interfaces rstap* (the agent setup's taps are named by the agent,
# tap<port id>, and die with their switch); listen port 19210 (weft serve).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
PFX=rs
# shellcheck source=benches/e2e/lib.sh
. "$here/lib.sh"

orig_args="$*"
ports=1000
rounds=1
only="agent,handover,cold,ovs"
weft_bin="$repo/target/release/weft"
flow_pps=10000
mesh_pps=5
secs=12
event_at=4
keep=0
out="$here/last-run-restart.md"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --ports) ports=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --weft-bin) weft_bin=$2; shift 2 ;;
    --flow-pps) flow_pps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "restart.sh: unknown option $1" >&2; usage 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "restart.sh: must run as root" >&2; exit 1; }
IFS=, read -r -a setups <<<"$only"
need_tools gcc python3 curl
[[ " ${setups[*]} " == *" ovs "* || " ${setups[*]} " == *" ovs" ]] && need_tools ovs-vswitchd ovsdb-server ovs-vsctl ovs-appctl

single_instance
tmp=$(mktemp -d /tmp/rs-restart.XXXXXX)
results=$tmp/results.tsv
install_trap
ensure_weft "$weft_bin" "$repo" "$repo/target/release/weft"
gcc -O2 -o "$tmp/seqflow" "$here/seqflow.c"

NSA=rsnsA NSB=rsnsB IPA=10.152.9.1 IPB=10.152.9.2
MACA=fa:16:3e:52:09:01 MACB=fa:16:3e:52:09:02
# Alive and not a zombie (our own children stay zombies until this shell reaps them).
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ $st != Z* ]]; }

# The kernel side of root-namespace taps: no IPv6 chatter through the switches.
quiet_taps() { # names file
  local t
  while read -r t; do
    echo 1 >"/proc/sys/net/ipv6/conf/$t/disable_ipv6" 2>/dev/null || true
  done <"$1"
}

# (Re)plug the flow's taps into the namespaces unless they are still there.
ensure_plugged() { # tapA tapB
  ip -n $NSA link show "$1" >/dev/null 2>&1 || { wait_for 100 ip link show "$1" && plug $NSA "$1" $IPA $MACA; }
  ip -n $NSB link show "$2" >/dev/null 2>&1 || { wait_for 100 ip link show "$2" && plug $NSB "$2" $IPB $MACB; }
}

weft_config() { # file socket
  {
    printf '[switch]\ncontrol_socket = "%s"\nworkers = 2\n\n[[network]]\nname = "rs-net"\ntype = "local"\n' "$2"
    printf '\n[[port]]\nname = "rstapA"\nkind = "tap"\nnetwork = "rs-net"\nmac = "%s"\nport_security = false\n' $MACA
    printf '\n[[port]]\nname = "rstapB"\nkind = "tap"\nnetwork = "rs-net"\nmac = "%s"\nport_security = false\n' $MACB
    for i in $(seq 0 $((ports - 1))); do
      printf '\n[[port]]\nname = "rstapm%d"\nkind = "tap"\nnetwork = "rs-net"\nport_security = false\n' "$i"
    done
  } >"$1"
  seq 0 $((ports - 1)) | sed 's/^/rstapm/' >"$tmp/names"
}

start_weft_switch() { # log [flags...]
  local l=$1; shift
  "$weft_bin" switch --config "$tmp/sw.toml" "$@" >"$tmp/$l" 2>&1 9>&- &
  sw_pid=$!
  add_switch_pid $sw_pid
}

setup_handover() {
  weft_config "$tmp/sw.toml" "$tmp/sw.sock"
  start_weft_switch sw.log
  wait_for 300 ip link show "rstapm$((ports - 1))" || { cat "$tmp/sw.log" >&2; return 1; }
  ensure_plugged rstapA rstapB
  quiet_taps "$tmp/names"
}
setup_cold() { setup_handover; }

event_handover() {
  local old=$sw_pid
  start_weft_switch sw-new.log --takeover
  wait_for 100 eval '! alive $old' || { log "old switch did not exit"; return 1; }
}

event_cold() {
  kill "$sw_pid"
  wait_for 100 eval '! alive $sw_pid'
  start_weft_switch sw-new.log
  wait_for 300 ip link show "rstapm$((ports - 1))"
  ensure_plugged rstapA rstapB
  quiet_taps "$tmp/names"
}

# ---- agent: weft serve (ctrl) + weft switch + weft agent --switch-socket
api() { # method path [json]
  curl -sf -X "$1" -H "X-Auth-Token: $token" -H 'Content-Type: application/json' \
    "http://127.0.0.1:19210$2" ${3:+-d "$3"}
}

setup_agent() {
  mkdir -p "$tmp/serve"
  WEFT_ADMIN_PASSWORD=rs-bench-pw "$weft_bin" serve --state-dir "$tmp/serve" \
    --listen 127.0.0.1:19210 >"$tmp/serve.log" 2>&1 9>&- &
  add_pid $!
  wait_for 600 test -s "$tmp/serve/admin-openrc" || { cat "$tmp/serve.log" >&2; return 1; }
  wait_for 100 curl -sf http://127.0.0.1:19210/identity/v3 || return 1
  # shellcheck disable=SC1091
  . "$tmp/serve/admin-openrc"
  token=$(curl -si -H 'Content-Type: application/json' "$OS_AUTH_URL/auth/tokens" -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$OS_USERNAME\",\"domain\":{\"name\":\"Default\"},\"password\":\"$OS_PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"name\":\"Default\"}}}}}" |
    awk -F': ' 'tolower($1) == "x-subject-token" { print $2 }' | tr -d '\r')
  local net
  net=$(api POST /networking/v2.0/networks '{"network":{"name":"rs-net","provider:network_type":"local"}}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["network"]["id"])')
  python3 - "$net" "$ports" $MACA $MACB >"$tmp/ports.json" <<'EOF'
import json, sys
net, n, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
macs = [a, b] + [f"02:52:00:00:{i >> 8:02x}:{i & 255:02x}" for i in range(n)]
print(json.dumps({"ports": [{"network_id": net, "mac_address": m, "port_security_enabled": False,
    "binding:host_id": "rsbench", "binding:profile": {"weft_port_kind": "tap"}} for m in macs]}))
EOF
  api POST /networking/v2.0/ports "@$tmp/ports.json" >"$tmp/ports.out" || { log "port create failed"; return 1; }
  python3 - "$tmp/ports.out" "$tmp/names" "$tmp/flow-taps" $MACA $MACB <<'EOF'
import json, sys
ports = json.load(open(sys.argv[1]))["ports"]
dev = {p["mac_address"]: "tap" + p["id"][:11] for p in ports}
a, b = sys.argv[4], sys.argv[5]
open(sys.argv[3], "w").write(f"{dev.pop(a)} {dev.pop(b)}\n")
open(sys.argv[2], "w").write("".join(dev[m] + "\n" for m in sorted(dev)))
EOF
  printf '[switch]\ncontrol_socket = "%s"\nworkers = 2\n' "$tmp/sw.sock" >"$tmp/sw.toml"
  start_weft_switch sw.log
  wait_for 100 test -S "$tmp/sw.sock" || return 1
  start_agent agent.log
  read -r fa fb <"$tmp/flow-taps"
  wait_for 600 ip link show "$(tail -1 "$tmp/names")" || { cat "$tmp/agent.log" >&2; return 1; }
  ensure_plugged "$fa" "$fb"
  quiet_taps "$tmp/names"
}

start_agent() { # log
  "$weft_bin" agent --ctrl http://127.0.0.1:19210 --host rsbench --config "$tmp/sw.toml" \
    --switch-socket "$tmp/sw.sock" >"$tmp/$1" 2>&1 9>&- &
  agent_pid=$!
  add_pid $agent_pid
}

event_agent() {
  kill -9 "$agent_pid"
  start_agent agent-new.log
  wait_for 600 grep -q "applied desired state" "$tmp/agent-new.log"
}

# ---- ovs: userspace datapath, type=tap ports
ovs_vswitchd() {
  nice -n -10 ovs-vswitchd "$ovs_db" --pidfile="$tmp/ovs/ovs-vswitchd.pid" \
    --unixctl="$tmp/ovs/ovs-vswitchd.ctl" -vconsole:off --log-file="$tmp/ovs/ovs-vswitchd.log" \
    --no-chdir --detach 9>&-
  add_switch_pid "$(cat "$tmp/ovs/ovs-vswitchd.pid")"
}

setup_ovs() {
  start_ovs "" ovs false
  local v=(ovs-vsctl --db="$ovs_db" --timeout=300) args=()
  "${v[@]}" add-br rsovs -- set bridge rsovs datapath_type=netdev
  args+=(-- add-port rsovs rstapA -- set interface rstapA type=tap)
  args+=(-- add-port rsovs rstapB -- set interface rstapB type=tap)
  for i in $(seq 0 $((ports - 1))); do
    args+=(-- add-port rsovs "rstapm$i" -- set interface "rstapm$i" type=tap)
  done
  "${v[@]}" "${args[@]}"
  seq 0 $((ports - 1)) | sed 's/^/rstapm/' >"$tmp/names"
  wait_for 300 ip link show "rstapm$((ports - 1))" || return 1
  sed 's/^/link set up dev /' "$tmp/names" | ip -batch -
  ensure_plugged rstapA rstapB
  quiet_taps "$tmp/names"
}

event_ovs() {
  local old
  old=$(cat "$tmp/ovs/ovs-vswitchd.pid")
  ovs-appctl --timeout=20 -t "$tmp/ovs/ovs-vswitchd.ctl" exit || log "ovs-appctl exit failed"
  if ! wait_for 200 sh -c "! kill -0 $old"; then
    log "ovs-vswitchd did not exit within 20 s of ovs-appctl exit: kill -9"
    record ovs note "exit hung: killed"
    kill -9 "$old"
    wait_for 50 sh -c "! kill -0 $old"
  fi
  ovs_vswitchd
  wait_for 300 ovs-appctl -t "$tmp/ovs/ovs-vswitchd.ctl" version
  ensure_plugged rstapA rstapB
  sed 's/^/link set up dev /' "$tmp/names" | ip -batch - 2>/dev/null || true
}

# ---- one setup, one round
run_one() { # setup
  local s=$1 t0 t1 fa=rstapA fb=rstapB
  : >"$tmp/pids"; : >"$tmp/switch_pids"
  new_ns $NSA $NSB
  log "$s: setting up $ports ports"
  if ! "setup_$s"; then record "$s" status "setup failed"; teardown; return 0; fi
  [ -s "$tmp/flow-taps" ] && [ "$s" = agent ] && read -r fa fb <"$tmp/flow-taps"
  wait_for 50 ip netns exec $NSA ping -c 1 -W 1 $IPB || { record "$s" status "no connectivity"; teardown; return 0; }
  # Warm-up: every MAC learned before the measured run.
  "$tmp/seqflow" mesh "@$tmp/names" "$ports" "$mesh_pps" 2 >/dev/null
  ip netns exec $NSB "$tmp/seqflow" recv $IPB 19211 $((secs + 3)) >"$tmp/$s.recv.json" 9>&- &
  local rpid=$!
  sleep 0.3
  ip netns exec $NSA "$tmp/seqflow" send $IPB 19211 "$flow_pps" "$secs" >"$tmp/$s.send.json" 9>&- &
  local spid=$!
  "$tmp/seqflow" mesh "@$tmp/names" "$ports" "$mesh_pps" "$secs" >"$tmp/$s.mesh.json" 9>&- &
  local mpid=$!
  sleep "$event_at"
  log "$s: restart"
  t0=$(date +%s.%N)
  local st=ok
  if "event_$s"; then t1=$(date +%s.%N); else t1=NaN; st="restart failed"; fi
  wait $spid $mpid $rpid || true
  record "$s" event_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { if (b == "NaN") print "NaN"; else printf "%.2f", b - a }')"
  python3 - "$tmp/$s" <<'EOF' | while read -r k v; do record "$s" "$k" "$v"; done
import json, sys
p = sys.argv[1]
try:
    snd, rcv, mesh = (json.load(open(f"{p}.{x}.json")) for x in ("send", "recv", "mesh"))
except Exception as e:
    print("flow_lost NaN"); sys.exit()
print(f"flow_lost {snd['sent'] - rcv['received']}")
print(f"flow_gap_ms {rcv['max_gap_ms']}")
print(f"mesh_lost {mesh['sent'] - mesh['received']}")
print(f"mesh_gap_p50_ms {mesh['gap_p50_ms']}")
print(f"mesh_gap_max_ms {mesh['gap_max_ms']}")
print(f"mesh_silent_ports {mesh['ports_silent_at_end']}")
EOF
  record "$s" status "$st"
  [ "$keep" = 1 ] && for f in "$tmp"/*.log; do cp "$f" "$tmp/$s-$(basename "$f")"; done
  teardown
  rm -f "$tmp/flow-taps"
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
for _ in $(seq "$rounds"); do
  for s in "${setups[@]}"; do run_one "$s"; done
done

python3 - "$results" "$out" "$started" "$orig_args" "$ports" "$flow_pps" "$mesh_pps" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import sys, math
res_file, out, started, args, ports, fpps, mpps, cpu, ncpu, load = sys.argv[1:]
res, order = {}, []
for line in open(res_file):
    s, k, v = line.rstrip("\n").split("\t")
    if s not in res:
        res[s] = {}; order.append(s)
    res[s].setdefault(k, []).append(v)
def med(vals):
    try:
        xs = sorted(float(v) for v in vals)
    except ValueError:
        bad = [v for v in vals if v != "ok"]
        return bad[0] if bad else vals[0]
    m = len(xs) // 2
    x = xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2
    return f"{x:g}"
rows = [("event_s", "restart until done (s): agent in sync / old switch gone / replugged"),
        ("flow_lost", f"{fpps} pps flow: frames lost"),
        ("flow_gap_ms", "flow: longest silence at the receiver, ms"),
        ("mesh_lost", f"{ports} ports x {mpps} fps: frames lost"),
        ("mesh_gap_p50_ms", "ports: longest silence per port, median, ms"),
        ("mesh_gap_max_ms", "ports: longest silence per port, worst port, ms (until every port forwards again)"),
        ("mesh_silent_ports", "ports silent at the end (never came back)"),
        ("status", "status")]
rounds = max(len(v) for r in res.values() for v in r.values()) if res else 0
md = [f"# weft restart benchmark ({started})", "",
      f"Command: `benches/e2e/restart.sh {args}`".replace(" `", " `").rstrip(),
      f"CPU: {cpu} ({ncpu} cores); load average at the end: {load}. Rounds: {rounds} (medians).", "",
      "| metric | " + " | ".join(order) + " |", "|---|" + "---:|" * len(order)]
for k, label in rows:
    md.append(f"| {label} | " + " | ".join(med(res[s].get(k, ['-'])) for s in order) + " |")
open(out, "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
