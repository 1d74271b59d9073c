#!/usr/bin/env bash
# weft's Placement API beside the real one (openstack-placement from PyPI),
# same machine, same run, same requests (benches/peers/placement_load.py):
#   allocation_candidates  GET /allocation_candidates?resources=VCPU:1,
#             MEMORY_MB:512,DISK_GB:10&limit=LIMIT at microversion 1.36,
#             K times per round after 3 untimed: p50 and p99 in ms
#   writes    PUT /allocations/{consumer} (new consumers, consumer_generation
#             null), M per round from 1 client and from C parallel clients:
#             allocations written per second (successful writes over the
#             wall clock; failed ones, e.g. the real Placement's 500s on
#             "database is locked" under parallel writers, counted apart)
# for each N in PROVIDERS: both servers fresh, populated with N providers
# (VCPU, MEMORY_MB, DISK_GB inventories and a few traits) through the API.
# Rounds alternate between the servers (weft first in odd rounds); the
# table shows the median over rounds.
#
# The real Placement: openstack-placement 16.0.0 in /opt/weft-peers/placement
# (installed on first use, with uWSGI), SQLite database, auth_strategy =
# noauth2, under uWSGI in HTTP mode with 2 processes of 1 thread.
# weft: `weft serve --placement-noauth2` (release build of this checkout, or
# WEFT_BIN), SQLite, the same noauth2 header (X-Auth-Token: admin).
#
# Usage: benches/peers/placement.sh [--providers "100 1000 5000"] [--rounds 3]
#          [--queries 100] [--limit 1000] [--writes 300] [--clients 4] [--dir DIR]
# Run as root on Debian 12 (it may apt-get install what the venv needs).
# Env: WEFT_BIN, KEEP=1 (keep the temp dir), WEFT_PEERS_ROOT (/opt/weft-peers),
# WEFT_PEERS_PORTS=LO-HI (listen ports from that range, not the kernel's pick).
# Prints a markdown table on stdout; progress on stderr. Numbers mean
# something only on an otherwise idle machine: say what else ran.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/benches/peers/lib.sh"

placement_version=16.0.0
providers="100 1000 5000" rounds=3 queries=100 limit=1000 writes=300 clients=4 parent=/tmp
while [ $# -gt 0 ]; do
  case "$1" in
    --providers) providers=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --writes) writes=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --dir) parent=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done

peers_venv placement "openstack-placement==$placement_version" uwsgi
venv=$peers_root/placement
bin=$(peers_weft_bin)
work=$(mktemp -d "$parent/peer-placement.XXXXXX")
trap peers_cleanup EXIT
: >"$work/pids"
results=$work/results.tsv
# The load driver; when it fails, the servers' last words.
load() {
  "$venv/bin/python" "$here/benches/peers/placement_load.py" "$@" && return 0
  local f
  for f in "$work"/real-*/uwsgi.log "$work"/weft-*/serve.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -15 "$f" >&2; }
  done
  die "placement_load.py $1 failed"
}
field() { "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

start_date=$(date -u '+%Y-%m-%d %H:%M')
machine_start=$(peers_machine)
log "$machine_start"

# The real Placement with a fresh SQLite database in $1; sets real_url.
start_real() {
  local dir=$1 port
  mkdir -p "$dir"
  cat >"$dir/placement.conf" <<EOF
[DEFAULT]
debug = False
[api]
auth_strategy = noauth2
[placement_database]
connection = sqlite:///$dir/placement.sqlite
EOF
  "$venv/bin/placement-manage" --config-file "$dir/placement.conf" db sync >"$dir/db-sync.log" 2>&1 ||
    { tail -20 "$dir/db-sync.log" >&2; die "placement-manage db sync failed"; }
  # Loading the app writes the standard traits and resource classes into
  # the database. Done once here: two uWSGI workers loading it at once on
  # SQLite race, one gets "database is locked" and uWSGI (need-app) exits.
  (cd "$dir" && OS_PLACEMENT_CONFIG_DIR="$dir" "$venv/bin/python" -c 'import placement.wsgi.api' \
    >"$dir/app-sync.log" 2>&1) || { tail -20 "$dir/app-sync.log" >&2; die "loading the Placement app failed"; }
  port=$(peers_free_port)
  peers_uwsgi "$venv" "$dir" "$port" placement.wsgi.api:application OS_PLACEMENT_CONFIG_DIR="$dir"
  real_pid=$uwsgi_pid
  real_url="http://127.0.0.1:$port"
  peers_wait "$real_url/" "$real_pid" "$dir/uwsgi.log"
}

# weft with a fresh state directory in $1; sets weft_url.
start_weft() {
  local dir=$1 port
  port=$(peers_free_port)
  peers_start_weft "$bin" "$dir" "$port" --placement-noauth2
  weft_url="http://127.0.0.1:$port/placement"
}

order() { if [ $(( $1 % 2 )) -eq 1 ]; then echo weft real; else echo real weft; fi; }
url_of() { if [ "$1" = weft ]; then echo "$weft_url"; else echo "$real_url"; fi; }

for n in $providers; do
  log "N=$n: starting both servers"
  start_real "$work/real-$n"
  start_weft "$work/weft-$n"
  for s in weft real; do
    out=$(load populate --url "$(url_of "$s")" --n "$n")
    log "N=$n $s: populated in $(field seconds <<<"$out" | cut -c1-6) s"
    printf '%s\t%s\tpopulate_s\t0\t%s\n' "$n" "$s" "$(field seconds <<<"$out")" >>"$results"
  done
  for r in $(seq 1 "$rounds"); do
    for s in $(order "$r"); do
      out=$(load candidates --url "$(url_of "$s")" --n "$n" --k "$queries" --limit "$limit")
      log "N=$n round $r $s: candidates $out; load $(cut -d" " -f1 /proc/loadavg)"
      printf '%s\t%s\tp50_ms\t%s\t%s\n' "$n" "$s" "$r" "$(field p50_ms <<<"$out")" >>"$results"
      printf '%s\t%s\tp99_ms\t%s\t%s\n' "$n" "$s" "$r" "$(field p99_ms <<<"$out")" >>"$results"
    done
  done
  for r in $(seq 1 "$rounds"); do
    for s in $(order "$r"); do
      for c in 1 "$clients"; do
        out=$(load allocate --url "$(url_of "$s")" --n "$n" --m "$writes" --clients "$c" \
                --tag "r$r-c$c" --offset $(( (r * 2 + (c > 1)) * writes )))
        log "N=$n round $r $s: writes $out; load $(cut -d" " -f1 /proc/loadavg)"
        printf '%s\t%s\twrites_c%s\t%s\t%s\n' "$n" "$s" "$c" "$r" "$(field writes_per_s <<<"$out")" >>"$results"
        printf '%s\t%s\tfailed_c%s\t%s\t%s\n' "$n" "$s" "$c" "$r" "$(field errors <<<"$out")" >>"$results"
      done
    done
  done
  peers_stop "$real_pid"
  peers_stop "$weft_pid"
done

# The table: medians over rounds, every round's value beside it.
"$venv/bin/python" - "$results" "$clients" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    n, s, metric, _r, v = line.split("\t")
    rows[(int(n), s, metric)].append(float(v))
clients = sys.argv[2]
def cell(n, s, m, fmt):
    vs = rows[(n, s, m)]
    med = statistics.median(vs)
    each = "/".join(fmt.format(v) for v in vs)
    text = f"**{fmt.format(med)}** ({each})" if len(vs) > 1 else fmt.format(med)
    # A write the server refused is not counted in writes/s: say how many.
    failed = sum(rows.get((n, s, m.replace("writes_", "failed_")), [])) if m.startswith("writes_") else 0
    return text + (f", {failed:.0f} writes failed" if failed else "")
def ratio(n, m, higher_is_better):
    w, r = statistics.median(rows[(n, "weft", m)]), statistics.median(rows[(n, "real", m)])
    x = w / r if higher_is_better else r / w
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"
ns = sorted({k[0] for k in rows})
print("| providers | metric | weft | real Placement | weft better by |")
print("|---|---|---|---|---|")
metrics = [("p50_ms", "allocation_candidates p50, ms", "{:.2f}", False),
           ("p99_ms", "allocation_candidates p99, ms", "{:.2f}", False),
           ("writes_c1", "allocations written/s, 1 client", "{:.0f}", True),
           (f"writes_c{clients}", f"allocations written/s, {clients} clients", "{:.0f}", True)]
for n in ns:
    for m, label, fmt, hib in metrics:
        print(f"| {n:,} | {label} | {cell(n, 'weft', m, fmt)} | {cell(n, 'real', m, fmt)} | {ratio(n, m, hib)} |")
print()
print("Populating through the API (POST provider, PUT inventories, PUT traits; 1 client), seconds: " +
      "; ".join(f"{n:,}: weft {rows[(n, 'weft', 'populate_s')][0]:.1f}, real {rows[(n, 'real', 'populate_s')][0]:.1f}" for n in ns))
EOF
echo
echo "Run $start_date UTC, $rounds alternating rounds; $queries timed queries a round (limit=$limit, microversion 1.36),"
echo "$writes writes a round per client count. $machine_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo "Real Placement: $(peers_versions "$venv" openstack-placement uwsgi sqlalchemy oslo.db), Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), uWSGI 2 processes x 1 thread, SQLite. weft: $(peers_weft_version "$bin"), SQLite."
