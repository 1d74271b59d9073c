#!/usr/bin/env bash
# Compute benchmarks on a real `weft serve` (release build of this checkout,
# or WEFT_BIN), SQLite, each mode on a fresh server:
#   boot   `server create` -> ACTIVE with real QEMU guests (TCG where KVM is
#          not usable) through libvirt, one after another, p50 over N; the
#          share of each build spent in weft's own steps (image cache, qcow2
#          overlay, ports) against libvirt/QEMU's define + start, from the
#          server's "spawned" log lines; the server's RSS idle (every
#          service up, nothing asked yet) and its peak (VmHWM) after the run.
#   sched  scheduler decisions per second with many fake hosts
#          (`--compute-driver fake --fake-hosts H`): N creates from C parallel
#          clients, wall clock from the first POST to the last server out of
#          BUILD; and the RSS with that many hosts.
# Usage: benches/compute/run.sh [--mode boot|sched|all] [--servers N]
#          [--hosts H] [--clients C]
# Run as root (libvirt, the guest's tap). Prints markdown on stdout. Numbers
# mean something only on an otherwise idle machine: say what else ran.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
mode=all servers=10 hosts=1000 clients=4 sched_servers=500
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --sched-servers) sched_servers=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bin=${WEFT_BIN:-$here/target/release/weft}
[ -x "$bin" ] || { echo "no $bin: cargo build --release --bin weft" >&2; exit 1; }
work=$(mktemp -d /tmp/bench-compute.XXXXXX)
# libvirt's QEMU runs as its own user and must reach the instance disks.
chmod 755 "$work"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  ip link del bcw-w1 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
rss() { awk -v k="$2:" '$1 == k {print int($2 / 1024)}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve NAME ARGS...: a fresh weft serve; sets pid and base.
serve() {
  local name=$1; shift
  local port; port=$(free_port)
  mkdir -p "$work/$name"
  WEFT_ADMIN_PASSWORD=bench-pw "$bin" serve --state-dir "$work/$name/state" \
    --listen "127.0.0.1:$port" "$@" >"$work/$name/serve.log" 2>&1 &
  pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 600); do
    [ -f "$work/$name/state/admin-openrc" ] && curl -s -o /dev/null "$base/identity/v3" && return 0
    kill -0 "$pid" 2>/dev/null || { tail -20 "$work/$name/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "weft serve did not come up" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
echo "CPU: $cpu, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo

if [ "$mode" = boot ] || [ "$mode" = all ]; then
  bash "$here/scripts/libvirt.sh"
  bash "$here/scripts/guest-image.sh" >/dev/null
  ip link del bcw-w1 2>/dev/null || true
  ip link add bcw-w1 type veth peer name bcw-w2
  ip link set bcw-w1 up; ip link set bcw-w2 up
  printf 'tenant_network_types = ["vlan"]\nnetwork_vlan_ranges = ["physnet:700:799"]\n' >"$work/net.toml"
  printf '[switch]\ncontrol_socket = "%s"\n\n[[physnet]]\nname = "physnet"\ninterface = "bcw-w1"\n' \
    "$work/switch.sock" >"$work/host.toml"
  serve boot --network-config "$work/net.toml" --switch-config "$work/host.toml" \
    --compute-driver libvirt --host bench-host --shutdown-timeout-secs 3
  sleep 2
  idle=$(rss "$pid" VmRSS)
  log "boot: $servers servers one after another"
  out=$(python3 "$here/benches/compute/load.py" --base "$base" --password bench-pw \
    --image-file "$here/target/guest/weft-guest.qcow2" --mode boot --servers "$servers")
  peak=$(rss "$pid" VmHWM)
  stop
  python3 - "$out" "$work/boot/serve.log" "$idle" "$peak" <<'PY'
import json, re, statistics, sys
out = json.loads(sys.argv[1])
rows = []
# The log is tracing's colored output: strip the escapes before reading fields.
log = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in open(sys.argv[2], errors="replace")]
for line in log:
    if "spawned" not in line:
        continue
    v = {k: float(x) for k, x in re.findall(r"(image_ms|disk_ms|domain_ms)=([0-9.]+)", line)}
    if len(v) == 3:
        rows.append(v)
t = out["create_to_active_s"]
accel = next((m.group(1) for m in (re.search(r"accel=(\w+)", l) for l in log) if m), "?")
print("### create -> ACTIVE, real guests (libvirt, accel %s)" % accel)
print()
print("| servers | p50 s | min s | max s | weft steps p50 ms (image / disk / ports+rest) | libvirt define+start p50 ms |")
print("|---|---|---|---|---|---|")
med = lambda k: statistics.median(r[k] for r in rows) if rows else float("nan")
total = statistics.median(t) * 1000
rest = total - med("image_ms") - med("disk_ms") - med("domain_ms")
print("| %d | %.2f | %.2f | %.2f | %.0f / %.0f / %.0f | %.0f |" % (
    len(t), statistics.median(t), min(t), max(t), med("image_ms"), med("disk_ms"), rest,
    med("domain_ms")))
print()
print("weft serve RSS, every service on (identity, networking + switch, image, placement, compute + libvirt driver): idle %s MiB, peak %s MiB after the run." % (sys.argv[3], sys.argv[4]))
print()
PY
fi

if [ "$mode" = sched ] || [ "$mode" = all ]; then
  log "sched: $hosts fake hosts, $sched_servers creates from $clients clients"
  serve sched --compute-driver fake --host bench --fake-hosts "$hosts" \
    --fake-host-vcpus 64 --fake-host-memory-mb 262144
  idle=$(rss "$pid" VmRSS)
  head -c 1048576 /dev/zero >"$work/img.raw"
  out=$(python3 "$here/benches/compute/load.py" --base "$base" --password bench-pw \
    --image-file "$work/img.raw" --mode sched --servers "$sched_servers" --clients "$clients")
  peak=$(rss "$pid" VmHWM)
  stop
  python3 - "$out" "$hosts" "$idle" "$peak" <<'PY'
import json, sys
o = json.loads(sys.argv[1])
print("### scheduler decisions per second, %s fake hosts" % sys.argv[2])
print()
print("| servers | clients | POSTs done s | all settled s | decisions/s | ACTIVE | ERROR | RSS idle / peak MiB |")
print("|---|---|---|---|---|---|---|---|")
print("| %d | %d | %.2f | %.2f | %.1f | %d | %d | %s / %s |" % (o["servers"], o["clients"], o["post_s"],
      o["wall_s"], o["decisions_per_s"], o["active"], o["error"], sys.argv[3], sys.argv[4]))
print()
for msg, n in sorted(o.get("faults", {}).items(), key=lambda x: -x[1]):
    print("- %d ERROR: %s" % (n, msg))
if o.get("faults"):
    print()
PY
fi
