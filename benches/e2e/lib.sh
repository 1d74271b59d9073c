# Shared by benches/e2e/run.sh and benches/e2e/two-host.sh (sourced, not run).
#
# The caller sets: tmp (its temp dir), keep (1 = keep tmp), duration,
# udp_rate, results (a TSV file: setup, metric, value). Two "VM" namespaces
# $NSA (iperf3 server, $IPA) and $NSB (client, $IPB); a setup function
# connects them and registers the switch process(es) with add_switch_pid
# (none for kernel switching, whose work is softirq time no process owns).
#
# Every namespace and interface is named wbn*: teardown removes all of them.

# PFX: the prefix of every namespace and interface (a script may set another one
# before sourcing, e.g. secgroups.sh's sgb, so that its runs never touch run.sh's).
PFX=${PFX:-wbn}
NSA=${PFX}A
NSB=${PFX}B
IPA=10.77.0.1
IPB=10.77.0.2
MACA=fa:16:3e:77:00:01
MACB=fa:16:3e:77:00:02
ping_count=200
ping_interval=0.01
hz=$(getconf CLK_TCK)
switch_pids=""
# Daemons we started, one pid a line in $tmp/pids: teardown ends exactly
# these. A file, not an array, because setups run in a subshell (set -e).
add_pid() { echo "$1" >>"$tmp/pids"; }
add_switch_pid() { add_pid "$1"; echo "$1" >>"$tmp/switch_pids"; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

need_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null ||
      { echo "$(basename "$0"): $t missing: run scripts/install-deps.sh --bench" >&2; exit 1; }
  done
}

kill_pids() {
  local p ps
  [ -s "$tmp/pids" ] || return 0
  ps=$(cat "$tmp/pids")
  for p in $ps; do kill "$p" 2>/dev/null || true; done
  for p in $ps; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  : >"$tmp/pids"
}

teardown() {
  kill_pids
  local ns l
  for ns in $(ip netns list 2>/dev/null | awk -v p="^$PFX" '$1 ~ p {print $1}'); do
    # what still runs in our namespaces is ours (iperf3 servers, switches)
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep "^$PFX" || true); do
    ip link del "$l" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  teardown
  if [ "${keep:-0}" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
  exit $rc
}

# The names (wbnA, wbnB, ...) are fixed and teardown removes every wbn*, so
# two runs at once would wreck each other: take a lock first.
single_instance() {
  exec 9>"/tmp/$PFX-e2e.lock"
  flock -n 9 || { echo "$(basename "$0"): another e2e bench run holds /tmp/$PFX-e2e.lock" >&2; exit 1; }
}

install_trap() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

new_ns() { # ns...: with IPv6 off (no stray ND/MLD through the switches)
  local ns
  for ns in "$@"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
}

# Move an interface (from the root namespace, or from -n NS) into a VM
# namespace, give it a MAC (optional) and an IP/24, bring it up.
plug() { # [-n fromns] ns ifname ip [mac]
  local from=()
  if [ "$1" = -n ]; then from=(-n "$2"); shift 2; fi
  ip "${from[@]}" link set "$2" netns "$1"
  [ -n "${4:-}" ] && ip -n "$1" link set "$2" address "$4"
  ip -n "$1" addr add "$3/24" dev "$2"
  ip -n "$1" link set "$2" up
}

wait_for() { # tries cmd...: poll every 0.1 s
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# The default binary (repo/target/release/weft) is always brought up to date
# with cargo (a no-op when it is), so a run never measures a stale build; a
# binary given with --weft-bin is used as it is.
ensure_weft() { # bin repo default-bin
  if [ "$1" = "$3" ]; then
    log "cargo build --release --bin weft"
    (cd "$2" && cargo build --release --bin weft) >&2 || { echo "$(basename "$0"): cargo build failed" >&2; exit 1; }
  fi
  [ -x "$1" ] || { echo "$(basename "$0"): no weft binary at $1" >&2; exit 1; }
}

# Start Open vSwitch (ovsdb-server + ovs-vswitchd) with its own db/run/log
# dir $tmp/$2, optionally inside a namespace; sets ovs_db and adds the
# vswitchd pid to the switch pids.
start_ovs() { # ns|"" name tso(true|false)
  local dir=$tmp/$2 ex=()
  [ -n "$1" ] && ex=(ip netns exec "$1")
  rm -rf "$dir"; mkdir -p "$dir"
  ovs_db=unix:$dir/db.sock
  ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  OVS_RUNDIR=$dir OVS_LOGDIR=$dir OVS_DBDIR=$dir OVS_SYSCONFDIR=$dir \
    "${ex[@]}" ovsdb-server "$dir/conf.db" --remote="punix:$dir/db.sock" \
    --pidfile="$dir/ovsdb-server.pid" --unixctl="$dir/ovsdb-server.ctl" \
    -vconsole:off --log-file="$dir/ovsdb-server.log" --no-chdir --detach 9>&-
  add_pid "$(cat "$dir/ovsdb-server.pid")"
  ovs-vsctl --db="$ovs_db" --no-wait init
  ovs-vsctl --db="$ovs_db" --no-wait set Open_vSwitch . other_config:userspace-tso-enable="$3"
  # nice -10: what ovs-ctl (the Debian service) starts ovs-vswitchd with
  # (--ovs-vswitchd-priority, default -10); weft's workers run at -10 too.
  OVS_RUNDIR=$dir OVS_LOGDIR=$dir OVS_DBDIR=$dir OVS_SYSCONFDIR=$dir \
    "${ex[@]}" nice -n -10 ovs-vswitchd "$ovs_db" --pidfile="$dir/ovs-vswitchd.pid" \
    --unixctl="$dir/ovs-vswitchd.ctl" -vconsole:off --log-file="$dir/ovs-vswitchd.log" \
    --no-chdir --detach 9>&-
  add_switch_pid "$(cat "$dir/ovs-vswitchd.pid")"
}

# ---------------------------------------------------------- measurements

cpu_ticks() { # utime+stime summed over processes (all their threads), in ticks
  local p sum=0 t
  for p in "$@"; do
    # fields after the ")" that ends comm: state is $1, utime $12, stime $13
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
    sum=$((sum + ${t:-0}))
  done
  echo $sum
}

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

iperf_server() { # name: one-shot server in $NSA writing JSON to $tmp/name.srv.json
  ip netns exec $NSA iperf3 -s -1 -J -B $IPA >"$tmp/$1.srv.json" 2>&1 9>&- &
  srv_pid=$!
  wait_for 50 sh -c "ip netns exec $NSA ss -Hltn 'sport = :5201' | grep -q 5201"
}

# The one-shot server exits after its test; if the client never reached it,
# it would wait forever: give it 5 s, then end it.
iperf_server_done() {
  wait_for 50 sh -c "! kill -0 $srv_pid" || kill "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
}

measure_tcp() { # setup streams
  local name=$1-tcp$2 t0 t1 c0 c1
  iperf_server "$name"
  # shellcheck disable=SC2086 # switch_pids is a list
  c0=$(cpu_ticks $switch_pids); t0=$(date +%s.%N)
  ip netns exec $NSB iperf3 -c $IPA --connect-timeout 3000 -t "$duration" -P "$2" -J >"$tmp/$name.json" 2>&1 || true
  # shellcheck disable=SC2086
  c1=$(cpu_ticks $switch_pids); t1=$(date +%s.%N)
  iperf_server_done
  python3 - "$tmp/$name.json" <<'EOF' | while read -r k v; do record "$1" "tcp${2}_$k" "$v"; done
import json, sys
try:
    e = json.load(open(sys.argv[1]))["end"]
    print(f"gbps {e['sum_received']['bits_per_second'] / 1e9:.2f}")
    print(f"retr {e['sum_sent'].get('retransmits', 0)}")
except Exception:
    print("gbps NaN")
EOF
  if [ -n "${switch_pids// /}" ]; then
    record "$1" "tcp${2}_cpu" "$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
      'BEGIN { printf "%.2f", (b - a) / hz / (t1 - t0) }')"
  fi
}

udp_rcvbuf_errors() { # ns: UDP datagrams dropped for a full socket buffer
  ip netns exec "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp
}

nic_tx_dropped() { # ns: frames its NICs dropped on send (e.g. a tap the switch reads too slowly)
  ip netns exec "$1" sh -c 'cat /sys/class/net/*/statistics/tx_dropped' | awk '{ s += $1 } END { print s + 0 }'
}

measure_udp() { # setup
  local name=$1-udp r0 r1 d0 d1
  iperf_server "$name"
  r0=$(udp_rcvbuf_errors $NSA)
  d0=$(nic_tx_dropped $NSB)
  # The receiving VM's side of the cost: how often the server slept and was
  # woken again (voluntary context switches) and its CPU, sampled until it exits.
  # A sample taken as the process exits can miss either value: keep only whole ones.
  (while kill -0 "$srv_pid" 2>/dev/null; do
     sw=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$srv_pid/status" 2>/dev/null)
     tk=$(cpu_ticks "$srv_pid")
     [ -n "$sw" ] && [ "${tk:-0}" -gt 0 ] && echo "$sw $tk" >"$tmp/$name.srvctx"
     sleep 0.2
   done) 9>&- &
  local sampler=$!
  ip netns exec $NSB iperf3 -c $IPA --connect-timeout 3000 -u -l 64 -b "$udp_rate" -t "$duration" -J >"$tmp/$name.json" 2>&1 || true
  iperf_server_done
  wait "$sampler" 2>/dev/null || true
  r1=$(udp_rcvbuf_errors $NSA)
  d1=$(nic_tx_dropped $NSB)
  # The server's own view: packets it received over the test's seconds.
  python3 - "$tmp/$name.srv.json" "$tmp/$name.json" "$((r1 - r0))" "$((d1 - d0))" "$tmp/$name.srvctx" "$(getconf CLK_TCK)" <<'EOF' | while read -r k v; do record "$1" "$k" "$v"; done
import json, sys
try:
    s = json.load(open(sys.argv[1]))["end"]["sum"]
    got = s["packets"] - s["lost_packets"]
    c = json.load(open(sys.argv[2]))["end"]["sum"]
    print(f"udp_sent_kpps {c['packets'] / c['seconds'] / 1e3:.1f}")
    print(f"udp_kpps {got / s['seconds'] / 1e3:.1f}")
    print(f"udp_loss {s['lost_percent']:.1f}")
    if s["packets"] > 0:  # of the loss, the share the receiving socket dropped
        print(f"udp_loss_rcvbuf {100 * int(sys.argv[3]) / s['packets']:.1f}")
        nic, rcv = 100 * int(sys.argv[4]) / s['packets'], 100 * int(sys.argv[3]) / s['packets']
        print(f"udp_loss_nic {nic:.1f}")
        print(f"udp_loss_between {max(0.0, s['lost_percent'] - nic - rcv):.1f}")
    try:
        wakeups, ticks = (int(x) for x in open(sys.argv[5]).read().split())
        if got > 0:
            print(f"udp_srv_wakeups {1000 * wakeups / got:.1f}")
        print(f"udp_srv_cpu {ticks / int(sys.argv[6]) / s['seconds']:.2f}")
    except (OSError, ValueError):
        pass
except Exception:
    print("udp_kpps NaN"); print("udp_loss NaN")
EOF
}

measure_ping() { # setup [interval count key]: key_p50/key_p99 (default 10 ms, 200, ping)
  local name=$1-${4:-ping}
  ip netns exec $NSB ping -c "${3:-$ping_count}" -i "${2:-$ping_interval}" -W 1 $IPA >"$tmp/$name.txt" 2>&1 || true
  python3 - "$tmp/$name.txt" "${4:-ping}" <<'EOF' | while read -r k v; do record "$1" "$k" "$v"; done
import math, re, sys
rtt = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read()))
key = sys.argv[2]
def pct(p):  # nearest rank
    return rtt[max(0, math.ceil(p / 100 * len(rtt)) - 1)] * 1000
if rtt:
    print(f"{key}_p50 {pct(50):.0f}"); print(f"{key}_p99 {pct(99):.0f}")
else:
    print(f"{key}_p50 NaN"); print(f"{key}_p99 NaN")
EOF
}

# TCP_RR through tcp_rr.c (the caller builds it as $tmp/tcp_rr): 1-byte transactions/s.
RR_PORT=${RR_PORT:-5202}
measure_rr() { # setup
  ip netns exec "$NSA" "$tmp/tcp_rr" server "$IPA" "$RR_PORT" 9>&- &
  local srv=$!
  ip netns exec "$NSB" "$tmp/tcp_rr" client "$IPA" "$RR_PORT" "$duration" >"$tmp/$1-rr.txt" 2>&1 || true
  wait_for 30 sh -c "! kill -0 $srv" || kill "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  local tps
  tps=$(awk '/^transactions_per_second/ {print $2}' "$tmp/$1-rr.txt")
  record "$1" rr_tps "${tps:-NaN}"
}

# The measurements run.sh and two-host.sh take (a script sets measure= to run its own).
measure_all() { # setup
  log "$1: ping"; measure_ping "$1"
  log "$1: tcp 1 stream, ${duration}s"; measure_tcp "$1" 1
  log "$1: tcp 4 streams, ${duration}s"; measure_tcp "$1" 4
  log "$1: udp 64 B, ${duration}s"; measure_udp "$1"
}

# Run one setup function and every measurement over it.
run_setup() { # setup  (calls setup_$setup)
  local s=$1 p
  log "== $s: setting up"
  teardown
  new_ns $NSA $NSB
  : >"$tmp/switch_pids"
  # In a subshell with set -e in force (it would not be inside `if`), so
  # the first failing command fails the setup.
  local rc=0
  set +e
  (set -e; "setup_$s")
  rc=$?
  set -e
  switch_pids=$(tr '\n' ' ' <"$tmp/switch_pids")
  if [ $rc != 0 ]; then
    log "$s: setup failed"; record "$s" status "setup failed"; teardown; return 0
  fi
  if ! ip netns exec $NSB ping -c 3 -i 0.2 -W 2 $IPA >/dev/null 2>&1 &&
     ! ip netns exec $NSB ping -c 3 -i 0.2 -W 2 $IPA >/dev/null 2>&1; then
    log "$s: $NSB cannot ping $IPA; skipping"; record "$s" status "no connectivity"; teardown; return 0
  fi
  [ "$(type -t "verify_$s")" = function ] && "verify_$s"
  if [ "${hold:-0}" = 1 ]; then
    log "$s: set up; holding (namespaces $NSA $NSB, temp dir $tmp); Ctrl-C or kill $$ to tear down"
    sleep 1d &
    add_pid $!
    wait $!
  fi
  "${measure:-measure_all}" "$s"
  for p in $switch_pids; do
    kill -0 "$p" 2>/dev/null || record "$s" status "switch died"
  done
  local failed
  failed=$(awk -F'\t' -v s="$s" '$1 == s && $3 == "NaN" { sub(/_.*/, "", $2); print $2 }' "$results" | sort -u | tr '\n' ' ')
  [ -n "$failed" ] && record "$s" status "FAILED: ${failed% } (see --keep logs)"
  record "$s" status ok
  [ "$(type -t "after_$s")" = function ] && "after_$s"
  teardown
}

# Table on stdout, markdown to $out. ratio_to: setups weft is divided by.
report() { # out title command note ratio_to...
  local out=$1 title=$2 cmd=$3 note=$4; shift 4
  python3 - "$results" "$out" "$title" "$cmd" "$note" "$duration" "$udp_rate" "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(uname -r)" "$@" <<'EOF'
import sys, math
res_file, out, title, cmd, note, duration, udp_rate, ncpu, load, kernel = sys.argv[1:11]


def cpu_model():
    """The CPU model every RESULTS.md entry records (machines of one kind differ)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return "CPU " + repr(line.split(":", 1)[1].strip())
    except OSError:
        pass
    return "CPU unknown"

bases = sys.argv[11:]
res, order = {}, []
for line in open(res_file):
    s, k, v = line.rstrip("\n").split("\t")
    if s not in res:
        res[s] = {}
        order.append(s)
    res[s].setdefault(k, []).append(v)
def pick(vals):
    """Median of a metric's rounds; a status that is not ok in any round wins."""
    try:
        xs = sorted(float(v) for v in vals)
    except ValueError:
        bad = [v for v in vals if v != "ok"]
        return bad[0] if bad else vals[0]
    if any(math.isnan(x) for x in xs):
        return "NaN"
    m = len(xs) // 2
    x = xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2
    digits = max((len(v.split(".")[1]) if "." in v else 0) for v in vals)
    return f"{x:.{digits}f}"
rounds = max(len(v) for r in res.values() for v in r.values()) if res else 1
for s in res:
    for k in res[s]:
        res[s][k] = pick(res[s][k])
rows = [
    ("tcp1_gbps", "TCP 1 stream, Gbit/s (higher better)"),
    ("tcp4_gbps", "TCP 4 streams, Gbit/s (higher better)"),
    ("tcp1_cpu", "switch CPU during TCP 1, cores"),
    ("tcp4_cpu", "switch CPU during TCP 4, cores"),
    ("tcp1_cpg", "switch CPU per Gbit/s, TCP 1 (lower better)"),
    ("tcp4_cpg", "switch CPU per Gbit/s, TCP 4 (lower better)"),
    ("tcp1_retr", "TCP 1 stream retransmits"),
    ("udp_kpps", "UDP 64 B received, kpps (higher better)"),
    ("udp_sent_kpps", "UDP 64 B sent by iperf3, kpps"),
    ("udp_loss", "UDP 64 B loss, %"),
    ("udp_loss_nic", "  of which: dropped on send by the client's NIC, %"),
    ("udp_loss_between", "  of which: lost in between (switch, wire), %"),
    ("udp_loss_rcvbuf", "  of which: server socket buffer full, %"),
    ("udp_srv_cpu", "receiving iperf3's CPU during UDP, cores"),
    ("udp_srv_wakeups", "receiving iperf3's sleeps per 1000 packets received (lower better)"),
    ("rr_tps", "TCP_RR 1-byte transactions/s (higher better)"),
    ("ping_p50", "ping RTT p50, µs (lower better)"),
    ("ping_p99", "ping RTT p99, µs (lower better)"),
    ("ping1_p50", "ping every 1 ms, RTT p50, µs (lower better)"),
    ("ping1_p99", "ping every 1 ms, RTT p99, µs (lower better)"),
    ("wire", "on the wire (ICMP between the VMs)"),
]
no_ratio = {"tcp1_retr", "udp_sent_kpps", "udp_srv_cpu", "udp_loss", "udp_loss_rcvbuf", "udp_loss_nic", "udp_loss_between", "wire"}
for s in order:  # CPU per Gbit/s: cores spent per Gbit/s moved
    for n in ("1", "4"):
        try:
            c, g = float(res[s][f"tcp{n}_cpu"]), float(res[s][f"tcp{n}_gbps"])
            res[s][f"tcp{n}_cpg"] = f"{c / g:.3f}" if g > 0 else "NaN"
        except (KeyError, ValueError):
            pass
def num(s, k):
    try:
        return float(res.get(s, {}).get(k, "nan"))
    except ValueError:
        return math.nan
ratios = [b for b in bases if "weft" in res and b in res]
head = ["metric"] + order + [f"weft/{b}" for b in ratios]
table = []
for k, label in rows:
    if all(k not in res[s] for s in order):
        continue
    r = [label] + [res[s].get(k, "-") for s in order]
    for b in ratios:
        x, y = num("weft", k), num(b, k)
        ok = k not in no_ratio and not math.isnan(x) and not math.isnan(y) and y != 0
        r.append(f"{x / y:.2f}" if ok else "-")
    table.append(r)
table.append(["status"] + [res[s].get("status", "?") for s in order] + [""] * len(ratios))
md = [
    f"# {title}",
    "",
    f"Command: `{cmd}`",
    f"Machine: {cpu_model()}, {ncpu} cores, kernel {kernel}, load average at the end: {load}.",
    f"Each iperf3 run {duration} s; UDP is `iperf3 -u -l 64 -b {udp_rate}` (64-byte payload), received"
    " packets counted at the server; ping is 200 pings at 10 ms; CPU is utime+stime of the switch"
    " process(es) over the TCP run (kernel switching has none: its work is softirq time).",
]
if rounds > 1:
    md.append(f"Each setup ran {rounds} times, alternating with the others; every figure is the median of its rounds.")
if note:
    md.append(note)
md += [
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
}
