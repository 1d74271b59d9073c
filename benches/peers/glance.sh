#!/usr/bin/env bash
# weft's Image v2 API beside the real Glance (glance from PyPI), same machine,
# same run, same file, with curl over loopback:
#   upload    create an image (raw/bare), PUT .../file of SIZE MiB of random
#             bytes (curl -T: Content-Length, no chunking), MB/s as curl
#             measures it; then the image must be active with the file's md5
#             as checksum (both compute md5 and sha512 while streaming)
#   download  GET .../file to /dev/null, MB/s as curl measures it, and the
#             byte count checked
#   CPU       the server's CPU seconds (user+system, all its processes)
#             spent on each transfer
#   RSS       each server's peak resident memory during each upload and
#             each download: VmHWM summed over all its processes, reset
#             (/proc/PID/clear_refs) before the transfer; and VmRSS once
#             started (idle). A file the server mmaps to send it counts
#             in its RSS (file-backed pages, the page cache's).
# Rounds alternate between the servers (weft first in odd rounds), each on
# a new image deleted after; the table shows medians and every round.
#
# The real Glance: glance 33.0.0 in /opt/weft-peers/glance (installed on
# first use, with uWSGI; Glance 33 runs only under a WSGI server), SQLite,
# the file store (enabled_backends fs:file) under the temp dir, no keystone
# (paste flavor empty: the unauthenticated-context pipeline), uWSGI in HTTP
# mode with 2 processes of 1 thread. weft: `weft serve` (release build of
# this checkout, or WEFT_BIN), SQLite, images under its state directory in
# the same temp dir, with an admin token from its identity service.
#
# Usage: benches/peers/glance.sh [--size-mib 1024] [--rounds 3] [--dir DIR]
# Run as root on Debian 12 (it may apt-get install what the venv needs).
# Env: WEFT_BIN, KEEP=1 (keep the temp dir), WEFT_PEERS_ROOT (/opt/weft-peers),
# WEFT_PEERS_PORTS=LO-HI (listen ports from that range, not the kernel's pick).
# Needs SIZE x 3 of free disk under DIR (/tmp): the file and one image in
# each server's store. Prints a markdown table on stdout; progress on
# stderr. Numbers mean something only on an otherwise idle machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/benches/peers/lib.sh"

glance_version=33.0.0
size=1024 rounds=3 parent=/tmp
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --dir) parent=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done

peers_venv glance "glance==$glance_version" uwsgi
venv=$peers_root/glance
bin=$(peers_weft_bin)
work=$(mktemp -d "$parent/peer-glance.XXXXXX")
trap peers_cleanup EXIT
: >"$work/pids"
results=$work/results.tsv
hz=$(getconf CLK_TCK)

start_date=$(date -u '+%Y-%m-%d %H:%M')
machine_start=$(peers_machine)
log "$machine_start"

# The real Glance, configured in $work/glance.
g=$work/glance
gport=$(peers_free_port)
mkdir -p "$g/images" "$g/staging" "$g/tasks"
cp "$venv/etc/glance/glance-api-paste.ini" "$g/"
cat >"$g/glance-api.conf" <<EOF
[DEFAULT]
debug = False
enabled_backends = fs:file
worker_self_reference_url = http://127.0.0.1:$gport
image_size_cap = $(( (size + 1) << 20 ))
[database]
connection = sqlite:///$g/glance.sqlite
[paste_deploy]
flavor =
config_file = $g/glance-api-paste.ini
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $g/images
[os_glance_staging_store]
filesystem_store_datadir = $g/staging
[os_glance_tasks_store]
filesystem_store_datadir = $g/tasks
# Without keystone the caller is Glance's unauthenticated context (admin,
# no project, no roles): the new default rules, written for roles and
# scopes, refuse it (403); the legacy rules let an admin through.
[oslo_policy]
enforce_new_defaults = False
enforce_scope = False
EOF
"$venv/bin/glance-manage" --config-file "$g/glance-api.conf" db_sync >"$g/db-sync.log" 2>&1 ||
  { tail -20 "$g/db-sync.log" >&2; die "glance-manage db_sync failed"; }
peers_uwsgi "$venv" "$g" "$gport" glance.wsgi.api:application OS_GLANCE_CONFIG_DIR="$g"
glance_pid=$uwsgi_pid
peers_wait "http://127.0.0.1:$gport/versions" "$glance_pid" "$g/uwsgi.log"
glance_base="http://127.0.0.1:$gport"

wport=$(peers_free_port)
peers_start_weft "$bin" "$work/weft" "$wport" --image-size-cap $(( (size + 1) << 20 ))
weft_base="http://127.0.0.1:$wport/image"
token=$(peers_weft_token "http://127.0.0.1:$wport")

# Idle memory once each server has answered a first request.
curl -fsS -o /dev/null "$glance_base/v2/images"
curl -fsS -o /dev/null -H "X-Auth-Token: $token" "$weft_base/v2/images"
printf 'real\tidle_rss\t0\t%s\n' "$(peers_mem_mib VmRSS "$glance_pid")" >>"$results"
printf 'weft\tidle_rss\t0\t%s\n' "$(peers_mem_mib VmRSS "$weft_pid")" >>"$results"

log "generating $size MiB of random data"
head -c $(( size << 20 )) /dev/urandom >"$work/data"
want_md5=$(md5sum "$work/data" | cut -d' ' -f1)

# CPU seconds (user+system) of a process tree so far.
cpu_s() {
  local p t=0 v
  for p in $(peers_tree "$1"); do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true)
    t=$(( t + ${v:-0} ))
  done
  echo "$t"
}

# transfer SERVER ROUND: one upload and one download against SERVER.
transfer() {
  local s=$1 r=$2 base pid auth=() id up down got c0 c1 c2 c3 up_rss down_rss
  if [ "$s" = weft ]; then
    base=$weft_base pid=$weft_pid auth=(-H "X-Auth-Token: $token")
  else
    base=$glance_base pid=$glance_pid
  fi
  id=$(curl -fsS "${auth[@]}" -H 'Content-Type: application/json' "$base/v2/images" \
         -d '{"name":"bench-'"$r"'","disk_format":"raw","container_format":"bare"}' |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  peers_reset_peak "$pid"
  c0=$(cpu_s "$pid")
  up=$(curl -fsS -o /dev/null -w '%{speed_upload}' -X PUT "${auth[@]}" \
         -H 'Content-Type: application/octet-stream' -T "$work/data" "$base/v2/images/$id/file")
  c1=$(cpu_s "$pid")
  up_rss=$(peers_mem_mib VmHWM "$pid")
  got=$(curl -fsS "${auth[@]}" "$base/v2/images/$id" |
        python3 -c 'import json,sys; i=json.load(sys.stdin); print(i["status"], i["checksum"], i["os_hash_algo"])')
  [ "$got" = "active $want_md5 sha512" ] ||
    die "$s round $r: image is '$got', want 'active $want_md5 sha512'"
  peers_reset_peak "$pid"
  c2=$(cpu_s "$pid")
  down=$(curl -fsS -o /dev/null -w '%{speed_download} %{size_download}' "${auth[@]}" "$base/v2/images/$id/file")
  c3=$(cpu_s "$pid")
  down_rss=$(peers_mem_mib VmHWM "$pid")
  [ "${down#* }" = $(( size << 20 )) ] || die "$s round $r: downloaded ${down#* } bytes, want $(( size << 20 ))"
  curl -fsS -o /dev/null -X DELETE "${auth[@]}" "$base/v2/images/$id"
  log "round $r $s: $(awk -v u="$up" -v d="${down% *}" 'BEGIN{printf "upload %.0f MB/s, download %.0f MB/s", u/1e6, d/1e6}'), peak RSS up $up_rss MiB, down $down_rss MiB; load $(cut -d' ' -f1 /proc/loadavg)"
  {
    printf '%s\tup_mbs\t%s\t%s\n' "$s" "$r" "$up"
    printf '%s\tdown_mbs\t%s\t%s\n' "$s" "$r" "${down% *}"
    printf '%s\tup_cpu\t%s\t%s\n' "$s" "$r" "$(( c1 - c0 ))"
    printf '%s\tdown_cpu\t%s\t%s\n' "$s" "$r" "$(( c3 - c2 ))"
    printf '%s\tup_rss\t%s\t%s\n' "$s" "$r" "$up_rss"
    printf '%s\tdown_rss\t%s\t%s\n' "$s" "$r" "$down_rss"
  } >>"$results"
}

for r in $(seq 1 "$rounds"); do
  if [ $(( r % 2 )) -eq 1 ]; then order="weft real"; else order="real weft"; fi
  for s in $order; do transfer "$s" "$r"; done
done
glance_procs=$(peers_nproc "$glance_pid")

python3 - "$results" "$hz" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    s, metric, _r, v = line.split("\t")
    rows[(s, metric)].append(float(v))
hz = float(sys.argv[2])
scale = {"up_mbs": 1e-6, "down_mbs": 1e-6, "up_cpu": 1 / hz, "down_cpu": 1 / hz}
def cell(s, m, fmt):
    vs = [v * scale.get(m, 1) for v in rows[(s, m)]]
    med = fmt.format(statistics.median(vs))
    return f"**{med}** ({'/'.join(fmt.format(v) for v in vs)})" if len(vs) > 1 else med
print("| server | upload MB/s | download MB/s | server CPU s per upload | per download | peak RSS MiB during upload (VmHWM) | during download | RSS idle MiB |")
print("|---|---|---|---|---|---|---|---|")
for s, name in (("weft", "weft serve"), ("real", "Glance")):
    print(f"| {name} | {cell(s, 'up_mbs', '{:.0f}')} | {cell(s, 'down_mbs', '{:.0f}')} | "
          f"{cell(s, 'up_cpu', '{:.1f}')} | {cell(s, 'down_cpu', '{:.1f}')} | "
          f"{cell(s, 'up_rss', '{:.0f}')} | {cell(s, 'down_rss', '{:.0f}')} | {cell(s, 'idle_rss', '{:.0f}')} |")
EOF
echo
echo "Run $start_date UTC: $rounds alternating rounds of a $size MiB image (random bytes), curl on loopback."
echo "$machine_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo "Glance: $(peers_versions "$venv" glance glance-store uwsgi), Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), uWSGI 2 processes x 1 thread ($glance_procs processes with the master: its RSS is their sum), SQLite, file store. weft: $(peers_weft_version "$bin"), one process, SQLite."
