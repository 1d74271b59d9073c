#!/usr/bin/env bash
# Time from `openstack port create` to a VM holding its address (issue 14): the
# real CLI against a real `weft serve`, whose switch creates the port's tap and
# answers DHCP itself; a namespace "VM" takes the tap and runs busybox udhcpc.
# For each of --ports N ports (default 5) it records, from the moment the CLI
# starts: the CLI returning (the port exists), the tap appearing (the agent
# loop has wired it), and udhcpc holding its lease (DISCOVER/OFFER/REQUEST/ACK
# done and the address configured); prints each port and the p50 of each.
#
# Usage (as root): benches/dhcp/port-to-lease.sh [--ports N] [--weft-bin PATH]
#                  [--out FILE] [--keep]
#   --weft-bin: default target/release/weft (built with cargo first if absent)
# Namespaces and interfaces are named sgb*; the API listens on 127.0.0.1:18551.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ports=5
weft_bin="$repo/target/release/weft"
out=""
keep=0
venv=/opt/weft-venv
api=18551
while [ $# -gt 0 ]; do
  case "$1" in
    --ports) ports=$2; shift 2 ;;
    --weft-bin) weft_bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "port-to-lease.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "port-to-lease.sh: must run as root" >&2; exit 1; }
command -v busybox >/dev/null || { echo "port-to-lease.sh: busybox missing" >&2; exit 1; }
[ -x "$venv/bin/openstack" ] || { echo "port-to-lease.sh: no openstack CLI in $venv" >&2; exit 1; }
if [ ! -x "$weft_bin" ]; then
  (cd "$repo" && cargo build --release --bin weft) >&2
fi

H=sgb-dh
tmp=$(mktemp -d /tmp/sgb-dhcp.XXXXXX)
serve_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  local ns
  for ns in $(ip netns list | awk '$1 ~ /^sgb-dh/ {print $1}'); do
    ip netns pids "$ns" | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ "$keep" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
now() { date +%s.%N; }

ip netns add $H
ip -n $H link set lo up
# The physnet the VLAN networks ride on: a veth nobody reads.
ip -n $H link add sgb-dw1 type veth peer name sgb-dw2
ip -n $H link set sgb-dw1 up
ip -n $H link set sgb-dw2 up
printf 'tenant_network_types = ["vlan"]\nnetwork_vlan_ranges = ["physnet:300:399"]\n' >"$tmp/net.toml"
printf '[switch]\ncontrol_socket = "%s"\n\n[[physnet]]\nname = "physnet"\ninterface = "sgb-dw1"\n' \
  "$tmp/h.sock" >"$tmp/h.toml"
mkdir -p "$tmp/state"
WEFT_ADMIN_PASSWORD=sgb-secret ip netns exec $H "$weft_bin" serve --state-dir "$tmp/state" \
  --listen "127.0.0.1:$api" --public-url "http://127.0.0.1:$api" \
  --network-config "$tmp/net.toml" --switch-config "$tmp/h.toml" --host sgb-host \
  >/dev/null 2>"$tmp/serve.log" &
serve_pid=$!
for _ in $(seq 600); do [ -f "$tmp/state/admin-openrc" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
. "$tmp/state/admin-openrc"
os() { ip netns exec $H "$venv/bin/openstack" "$@"; }
for _ in $(seq 120); do os token issue -f value -c id >/dev/null 2>&1 && break; sleep 0.5; done
os network create sgb-net -f value -c id >/dev/null
os subnet create --network sgb-net --subnet-range 10.95.0.0/24 sgb-sub -f value -c id >/dev/null

cat >"$tmp/bound.sh" <<'EOF'
#!/bin/sh
case "$1" in
  bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
esac
exit 0
EOF
chmod +x "$tmp/bound.sh"

: >"$tmp/times.tsv"
for i in $(seq "$ports"); do
  vm=sgb-dhvm$i
  ip netns add "$vm"
  t0=$(now)
  created=$(os port create --network sgb-net --host sgb-host --device "sgb-dev-$i" \
         --binding-profile weft_port_kind=tap "sgb-p$i" -f shell -c id -c mac_address)
  t_cli=$(now)
  id=$(sed -n 's/^id="\(.*\)"$/\1/p' <<<"$created")
  mac=$(sed -n 's/^mac_address="\(.*\)"$/\1/p' <<<"$created")
  tap="tap${id:0:11}"
  for _ in $(seq 3000); do ip -n $H link show "$tap" >/dev/null 2>&1 && break; sleep 0.01; done
  t_tap=$(now)
  ip -n $H link set "$tap" netns "$vm"
  ip -n "$vm" link set "$tap" address "$mac"
  ip netns exec "$vm" sysctl -qw "net.ipv6.conf.$tap.disable_ipv6=1"
  ip -n "$vm" link set "$tap" up
  ip netns exec "$vm" busybox udhcpc -i "$tap" -n -q -f -t 10 -T 1 -s "$tmp/bound.sh" >"$tmp/udhcpc-$i.log" 2>&1 ||
    { echo "port $i: no lease:" >&2; cat "$tmp/udhcpc-$i.log" >&2; exit 1; }
  t_lease=$(now)
  ip -n "$vm" -4 addr show "$tap" | grep -q "inet 10.95.0." || { echo "port $i: address not set" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$i" \
    "$(echo "$t_cli - $t0" | bc)" "$(echo "$t_tap - $t0" | bc)" "$(echo "$t_lease - $t0" | bc)" \
    >>"$tmp/times.tsv"
done

python3 - "$tmp/times.tsv" "$out" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
lines = ["| port | CLI returned, s | tap wired, s | lease held, s |", "|---:|---:|---:|---:|"]
for r in rows:
    lines.append("| " + " | ".join([r[0]] + [f"{float(x):.2f}" for x in r[1:]]) + " |")
med = [statistics.median(float(r[k]) for r in rows) for k in (1, 2, 3)]
lines.append("| p50 | " + " | ".join(f"{m:.2f}" for m in med) + " |")
lines.append(f"\nLoad average at the end: {sys.argv[3]}.")
text = "\n".join(lines)
print(text)
if sys.argv[2]:
    open(sys.argv[2], "w").write(text + "\n")
EOF
