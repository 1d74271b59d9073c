# What the tempest scripts share (sourced, not run): the venv and its packages,
# a `weft serve` to test (or WEFT_URL), a tempest workspace, the run, and the
# per-test summary. The caller sets `tag` (the prefix of its messages) first.
#
# Environment (read by every tempest script):
#   WEFT_URL, WEFT_ADMIN_PASSWORD  a weft serve already running, instead of starting one
#   WEFT_BIN      weft binary to start (default: target/debug/weft, then target/release/weft)
#   WEFT_VENV     the Python venv (default /opt/weft-venv, made by scripts/install-deps.sh)
#   TEMPEST_OUT   where the workspace, subunit stream and summary go
#                 (default: a fresh directory under /tmp)
#   TEMPEST_CONCURRENCY (default 2)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${WEFT_VENV:-/opt/weft-venv}
out=${TEMPEST_OUT:-$(mktemp -d /tmp/weft-tempest.XXXXXX)}
mkdir -p "$out"

# tempest_install PACKAGE=MODULE...: pip-installs each package whose Python
# module the venv cannot import yet (the venv itself comes from install-deps.sh).
tempest_install() {
  if [ ! -x "$venv/bin/python3" ]; then
    "$here/scripts/install-deps.sh"
  fi
  local spec
  for spec in "$@"; do
    if ! "$venv/bin/python3" -c "import ${spec#*=}" 2>/dev/null; then
      echo "$tag: installing ${spec%%=*} into $venv"
      "$venv/bin/pip" install -q "${spec%%=*}"
    fi
  done
}

server_pid=
tempest_cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap tempest_cleanup EXIT

# tempest_serve [EXTRA SERVE ARGS...]: unless WEFT_URL is set, starts weft serve
# on a free loopback port with its state under $out, and sets WEFT_URL and
# WEFT_ADMIN_PASSWORD. Either way, checks that identity answers.
tempest_serve() {
  if [ -z "${WEFT_URL:-}" ]; then
    local bin=${WEFT_BIN:-} b port
    if [ -z "$bin" ]; then
      for b in "$here/target/debug/weft" "$here/target/release/weft"; do
        if [ -x "$b" ]; then bin=$b; break; fi
      done
    fi
    [ -n "$bin" ] || { echo "$tag: no weft binary (cargo build first, or set WEFT_BIN)" >&2; exit 2; }
    port=$("$venv/bin/python3" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    WEFT_URL="http://127.0.0.1:$port"
    export WEFT_ADMIN_PASSWORD=${WEFT_ADMIN_PASSWORD:-tempest-admin-pw}
    echo "$tag: starting $bin serve on $WEFT_URL (state in $out/state)"
    "$bin" serve --state-dir "$out/state" --listen "127.0.0.1:$port" --public-url "$WEFT_URL" "$@" \
      >"$out/serve.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 600); do
      if curl -fsS "$WEFT_URL/identity/v3" >/dev/null 2>&1; then break; fi
      if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "$tag: weft serve exited; log:" >&2; tail -30 "$out/serve.log" >&2; exit 2
      fi
      sleep 0.1
    done
  fi
  : "${WEFT_ADMIN_PASSWORD:?set WEFT_ADMIN_PASSWORD to the admin password of $WEFT_URL}"
  curl -fsS "$WEFT_URL/identity/v3" >/dev/null || { echo "$tag: $WEFT_URL/identity/v3 not answering" >&2; exit 2; }
}

# tempest_workspace NAME: a fresh tempest workspace under $out; sets ws. The
# caller writes $ws/etc/tempest.conf, starting from tempest_conf_common.
tempest_workspace() {
  ws="$out/workspace"
  rm -rf "$ws"
  # tempest registers workspaces by name in ~/.tempest/workspace.yaml; drop an
  # earlier run's entry so a second run on the same machine can init again.
  "$venv/bin/tempest" workspace remove --name "$1" >/dev/null 2>&1 || true
  "$venv/bin/tempest" init --name "$1" "$ws" >/dev/null
}

# The part of tempest.conf every script shares: logging, dynamic credentials
# (tempest creates its own projects and users as admin) and identity v3.
tempest_conf_common() {
  cat <<EOF
[DEFAULT]
log_file = $out/tempest.log
debug = false

[auth]
use_dynamic_credentials = true
create_isolated_networks = false
admin_username = admin
admin_password = $WEFT_ADMIN_PASSWORD
admin_project_name = admin
admin_domain_name = Default
admin_system = all

[identity]
uri_v3 = $WEFT_URL/identity/v3
auth_version = v3
region = RegionOne
v3_endpoint_type = public
default_domain_id = default
admin_domain_scope = false
user_unique_last_password_count = 0
user_lockout_failure_attempts = 0
EOF
}

# tempest_run REGEX: runs the tests matching REGEX from $ws into
# $out/results.subunit, then writes $out/summary.txt (one line per test:
# PASS/FAIL/SKIP/NOTRUN + reason), prints the totals and the failures.
# Exits non-zero only when tempest produced no results at all.
tempest_run() {
  echo "$tag: running tempest (regex: $1) from $ws"
  local run_rc
  set +e
  (cd "$ws" && "$venv/bin/tempest" run --regex "$1" --concurrency "${TEMPEST_CONCURRENCY:-2}" \
    --subunit >"$out/results.subunit" 2>"$out/tempest-run.stderr")
  run_rc=$?
  set -e
  [ -s "$out/results.subunit" ] || { echo "$tag: tempest produced no results (rc $run_rc):" >&2; tail -30 "$out/tempest-run.stderr" >&2; exit 2; }
  "$venv/bin/python3" - "$out/results.subunit" "$out/summary.txt" "$tag" <<'PY'
import sys, collections
import subunit, testtools

stream = open(sys.argv[1], "rb")
results = {}
def on_test(test):
    tid = test["id"]
    if tid.startswith("setUpClass") or tid.startswith("tearDownClass"):
        name = tid
    else:
        name = tid.split("[")[0]
    status = test["status"]
    reason = ""
    details = test.get("details", {})
    if status in ("fail", "uxsuccess"):
        tb = details.get("traceback")
        text = tb.as_text() if tb else ""
        lines = [l for l in text.strip().splitlines() if l.strip()]
        reason = lines[-1].strip() if lines else ""
        # Prefer the HTTP detail tempest prints (status and body) when present.
        for l in lines:
            if "Details:" in l or "Unexpected http" in l:
                reason = l.strip()
    elif status == "skip":
        r = details.get("reason")
        reason = r.as_text().strip() if r else ""
    results[name] = (status, reason[:300])

case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
result = testtools.StreamToDict(on_test)
result.startTestRun()
case.run(result)
result.stopTestRun()

# "exists": listed but never run, because its class set-up failed.
label = {"success": "PASS", "fail": "FAIL", "skip": "SKIP", "xfail": "PASS", "uxsuccess": "FAIL",
         "exists": "NOTRUN"}
counts = collections.Counter()
with open(sys.argv[2], "w") as f:
    for name in sorted(results):
        status, reason = results[name]
        l = label.get(status, status.upper())
        counts[l] += 1
        f.write(f"{l} {name}" + (f" -- {reason}" if reason else "") + "\n")
print(f"{sys.argv[3]}: " + ", ".join(f"{k} {counts[k]}" for k in ("PASS", "FAIL", "SKIP", "NOTRUN")) +
      f" (of {sum(counts.values())}); details in {sys.argv[2]}")
PY
  grep '^FAIL' "$out/summary.txt" | head -100 || true
}
