# shellcheck shell=bash disable=SC2154
# (here and work are the caller's.)
# Shared by benches/peers/placement.sh and benches/peers/glance.sh (sourced,
# not run): installing a peer from PyPI into its own venv, starting servers
# and waiting for them, measuring their memory, and ending exactly the
# processes this run started.
#
# The caller sets `work` (its temp dir) before calling peers_start_*; every
# server it starts is recorded in $work/pids and ended on exit.

peers_root=${WEFT_PEERS_ROOT:-/opt/weft-peers}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# The Debian packages a peer install needs on a fresh Debian 12: a venv,
# a compiler and Python's headers for uWSGI (PyPI ships it as source only),
# curl for the transfers. apt-get runs only when one is missing.
peers_apt() {
  local want=(python3-venv python3-dev build-essential curl procps util-linux) missing=() p
  for p in "${want[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# peers_venv NAME SPEC...: a venv at $peers_root/NAME holding exactly the
# pinned SPECs (plus their dependencies, as pip resolves them today: no
# OpenStack upper-constraints, which live outside PyPI). Idempotent: a
# marker file records what was installed; a different SPEC list reinstalls.
peers_venv() {
  local name=$1; shift
  local dir=$peers_root/$name spec="$*"
  if [ -f "$dir/.weft-peers-installed" ] && [ "$(cat "$dir/.weft-peers-installed")" = "$spec" ]; then
    return 0
  fi
  peers_apt
  log "installing $spec into $dir (a few minutes: uWSGI compiles)"
  rm -rf "$dir"
  mkdir -p "$peers_root"
  /usr/bin/python3 -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip wheel >/dev/null
  "$dir/bin/pip" install -q "$@"
  echo "$spec" >"$dir/.weft-peers-installed"
}

# Versions of what a venv holds, for the record: `peers_versions DIR pkg...`.
peers_versions() {
  local dir=$1; shift
  "$dir/bin/pip" list --format=freeze 2>/dev/null |
    awk -F'==' -v want=" $* " '{k=tolower($1); gsub("_", "-", k)} index(want, " " k " ") {printf "%s%s %s", sep, $1, $2; sep=", "}'
}

# A loopback TCP port nothing listens on. By default the kernel's pick; with
# WEFT_PEERS_PORTS=LO-HI the first port of that range that binds and that
# this run has not handed out yet (recorded in $work/ports), for machines
# where each user of loopback keeps to a range of its own.
peers_free_port() {
  python3 - "${WEFT_PEERS_PORTS:-}" "$work/ports" <<'PY'
import os, socket, sys
rng, used_file = sys.argv[1], sys.argv[2]
def binds(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
if not rng:
    print(binds(0))
    sys.exit(0)
lo, hi = (int(x) for x in rng.split("-"))
used = set(open(used_file).read().split()) if os.path.exists(used_file) else set()
for port in range(lo, hi + 1):
    if str(port) not in used and binds(port):
        with open(used_file, "a") as f:
            f.write(f"{port}\n")
        print(port)
        sys.exit(0)
sys.exit(f"no free port in {rng}")
PY
}

# The weft binary: WEFT_BIN if set, else a release build of this checkout.
peers_weft_bin() {
  if [ -n "${WEFT_BIN:-}" ]; then
    [ -x "$WEFT_BIN" ] || die "WEFT_BIN=$WEFT_BIN is not executable"
    echo "$WEFT_BIN"
    return
  fi
  (cd "$here" && cargo build --release --bin weft >&2)
  echo "$here/target/release/weft"
}

# What a weft binary is, for the record: its version, and the commit of this
# checkout when the binary is this checkout's build.
peers_weft_version() {
  local v
  v=$("$1" --version 2>/dev/null || echo "$1")
  if [ "$1" = "$here/target/release/weft" ]; then
    v="$v at $(git -C "$here" rev-parse --short HEAD)$(git -C "$here" diff --quiet HEAD -- . ':!benches' || echo '+changes')"
  fi
  echo "$v"
}

peers_add_pid() { echo "$1" >>"$work/pids"; }

# Ends the servers this run started (their pids, nothing by name), then
# removes the temp dir unless KEEP=1.
peers_cleanup() {
  local p
  if [ -s "$work/pids" ]; then
    # shellcheck disable=SC2013 # one pid a line
    for p in $(cat "$work/pids"); do kill "$p" 2>/dev/null || true; done
    # shellcheck disable=SC2013
    for p in $(cat "$work/pids"); do
      for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}

# peers_wait URL PID LOG: until URL answers (any HTTP status), or the
# server exits (its log's tail shown), or 120 s pass.
peers_wait() {
  local url=$1 pid=$2 logf=$3
  for _ in $(seq 1 1200); do
    curl -s -o /dev/null "$url" && return 0
    kill -0 "$pid" 2>/dev/null || { tail -30 "$logf" >&2; die "server for $url exited"; }
    sleep 0.1
  done
  tail -30 "$logf" >&2
  die "$url did not answer in 120 s"
}

# peers_start_weft BIN DIR PORT ARGS...: `weft serve` on 127.0.0.1:PORT with
# its state in DIR; sets weft_pid. The admin password is bench-admin-pw.
# `--compute-driver none`: this process is no compute host, as the peer is
# not (by default `weft serve` registers its own host in placement, which
# would be one provider more than the bench made, and talks to libvirt).
peers_start_weft() {
  local bin=$1 dir=$2 port=$3; shift 3
  mkdir -p "$dir"
  WEFT_ADMIN_PASSWORD=bench-admin-pw WEFT_LOG=warn "$bin" serve --state-dir "$dir" \
    --listen "127.0.0.1:$port" --compute-driver none "$@" >"$dir/serve.log" 2>&1 &
  weft_pid=$!
  peers_add_pid "$weft_pid"
  peers_wait "http://127.0.0.1:$port/identity/v3" "$weft_pid" "$dir/serve.log"
}

# peers_weft_token BASE: a project-scoped admin token from weft's identity
# service (as benches/image/transfer.sh gets one).
peers_weft_token() {
  local base=$1 token
  token=$(curl -fsS -D - -o /dev/null -H 'Content-Type: application/json' "$base/identity/v3/auth/tokens" -d '{"auth":{
    "identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"bench-admin-pw"}}},
    "scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}' |
    awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
  [ -n "$token" ] || die "no token from weft at $base"
  echo "$token"
}

# peers_uwsgi VENV DIR PORT MODULE ENV=VALUE...: the peer's WSGI app under
# uWSGI in HTTP mode, 2 worker processes of 1 thread each (one per core),
# behind a master; sets uwsgi_pid (the master). HTTP/1.1 with keep-alive
# (--http11-socket), as weft serves: with plain --http-socket uWSGI closes
# every connection after one answer, and the peer would pay a TCP
# handshake per request that weft does not.
peers_uwsgi() {
  local venv=$1 dir=$2 port=$3 module=$4; shift 4
  (cd "$dir" && exec env "$@" "$venv/bin/uwsgi" --master --processes 2 --threads 1 \
    --enable-threads --lazy-apps --die-on-term --need-app --disable-logging \
    --buffer-size 65535 --http11-socket "127.0.0.1:$port" --module "$module" \
    >"$dir/uwsgi.log" 2>&1) &
  uwsgi_pid=$!
  peers_add_pid "$uwsgi_pid"
}

# The pid and every descendant of it.
peers_tree() {
  local p=$1 c
  echo "$p"
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do peers_tree "$c"; done
}

# peers_mem_mib FIELD PID: FIELD (VmHWM = peak resident, VmRSS = now) summed
# over the process and its descendants, in MiB. A sum of per-process peaks:
# pages the processes share are counted in each, and the peaks may not have
# been simultaneous, so for a multi-process server this is an upper bound.
peers_mem_mib() {
  local field=$1 pid=$2 p kb=0 v
  for p in $(peers_tree "$pid"); do
    v=$(awk -v k="$field:" '$1==k{print $2}' "/proc/$p/status" 2>/dev/null || true)
    kb=$(( kb + ${v:-0} ))
  done
  echo $(( kb / 1024 ))
}

# peers_reset_peak PID: VmHWM back to the current RSS in the process and its
# descendants (/proc/PID/clear_refs, value 5), so that the next reading of
# VmHWM is the peak of what happened in between.
peers_reset_peak() {
  local p
  for p in $(peers_tree "$1"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
}

peers_nproc() { peers_tree "$1" | wc -l; }

# One line on the machine, for the record.
peers_machine() {
  echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# peers_stop PID: ends one server this run started, waits for it, and
# forgets its pid (so the exit cleanup never signals a reused pid).
peers_stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -vx "$pid" "$work/pids" >"$work/pids.new" || true
  mv "$work/pids.new" "$work/pids"
}
