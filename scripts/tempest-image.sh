#!/usr/bin/env bash
# Runs tempest's own image API tests (tempest.api.image, Image API v2)
# against weft serve, and summarises what passed, failed and was skipped.
# Made from scripts/tempest-identity.sh: same server start and summary; the
# config enables glance with the features weft serves (no import, no
# multi-store, no locations, no cache).
#
# Usage:
#   scripts/tempest-image.sh                 # builds nothing; starts target/debug/weft serve
#   WEFT_URL=http://host:port WEFT_ADMIN_PASSWORD=pw scripts/tempest-image.sh
#                                                # against a weft serve already running
# Environment:
#   WEFT_BIN      weft binary to start (default: target/debug/weft, then target/release/weft)
#   WEFT_VENV     the Python venv (default /opt/weft-venv, made by scripts/install-deps.sh)
#   TEMPEST_REGEX tests to run (default: tempest.api.image)
#   TEMPEST_OUT   where the workspace, subunit stream and summary go
#                 (default: a fresh directory under /tmp)
#   TEMPEST_CONCURRENCY (default 2)
# Output: $TEMPEST_OUT/summary.txt (one line per test: PASS/FAIL/SKIP + reason)
# and totals on stdout. Exit status 0 when tempest ran, whatever the results;
# non-zero only when the run itself could not happen.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${WEFT_VENV:-/opt/weft-venv}
regex=${TEMPEST_REGEX:-tempest.api.image}
out=${TEMPEST_OUT:-$(mktemp -d /tmp/weft-tempest.XXXXXX)}
mkdir -p "$out"

if [ ! -x "$venv/bin/python3" ]; then
  "$here/scripts/install-deps.sh"
fi
if [ ! -x "$venv/bin/tempest" ]; then
  echo "tempest-image: installing tempest into $venv"
  "$venv/bin/pip" install -q tempest
fi

server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [ -z "${WEFT_URL:-}" ]; then
  bin=${WEFT_BIN:-}
  if [ -z "$bin" ]; then
    for b in "$here/target/debug/weft" "$here/target/release/weft"; do
      if [ -x "$b" ]; then bin=$b; break; fi
    done
  fi
  [ -n "$bin" ] || { echo "tempest-image: no weft binary (cargo build first, or set WEFT_BIN)" >&2; exit 2; }
  port=$("$venv/bin/python3" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  WEFT_URL="http://127.0.0.1:$port"
  export WEFT_ADMIN_PASSWORD=${WEFT_ADMIN_PASSWORD:-tempest-admin-pw}
  echo "tempest-image: starting $bin serve on $WEFT_URL (state in $out/state)"
  "$bin" serve --state-dir "$out/state" --listen "127.0.0.1:$port" --public-url "$WEFT_URL" \
    >"$out/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    if curl -fsS "$WEFT_URL/identity/v3" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "tempest-image: weft serve exited; log:" >&2; tail -30 "$out/serve.log" >&2; exit 2
    fi
    sleep 0.1
  done
fi
: "${WEFT_ADMIN_PASSWORD:?set WEFT_ADMIN_PASSWORD to the admin password of $WEFT_URL}"
curl -fsS "$WEFT_URL/identity/v3" >/dev/null || { echo "tempest-image: $WEFT_URL/identity/v3 not answering" >&2; exit 2; }

# A tempest workspace with a config for weft: identity v3 and image v2,
# dynamic credentials (tempest creates its own projects and users as admin).
ws="$out/workspace"
rm -rf "$ws"
# tempest registers workspaces by name in ~/.tempest/workspace.yaml; drop an
# earlier run's entry so a second run on the same machine can init again.
"$venv/bin/tempest" workspace remove --name weft-image >/dev/null 2>&1 || true
"$venv/bin/tempest" init --name weft-image "$ws" >/dev/null
cat >"$ws/etc/tempest.conf" <<EOF
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

[identity-feature-enabled]
api_v2 = false
api_v3 = true

[image]
region = RegionOne
endpoint_type = public
container_formats = bare,ami,ari,aki,ovf,ova,docker,compressed
disk_formats = qcow2,raw,ami,ari,aki,vhd,vhdx,vmdk,vdi,iso,ploop
image_caching_enabled = false

[image-feature-enabled]
import_image = false
os_glance_reserved = true
manage_locations = false
image_conversion = false
image_format_enforcement = false

[enforce_scope]
keystone = true
glance = true

[service_available]
nova = false
neutron = false
glance = true
cinder = false
swift = false
horizon = false
EOF

echo "tempest-image: running tempest (regex: $regex) from $ws"
set +e
(cd "$ws" && "$venv/bin/tempest" run --regex "$regex" --concurrency "${TEMPEST_CONCURRENCY:-2}" \
  --subunit >"$out/results.subunit" 2>"$out/tempest-run.stderr")
run_rc=$?
set -e
[ -s "$out/results.subunit" ] || { echo "tempest-image: tempest produced no results (rc $run_rc):" >&2; tail -30 "$out/tempest-run.stderr" >&2; exit 2; }

# One line per test with the reason for failures and skips.
"$venv/bin/python3" - "$out/results.subunit" "$out/summary.txt" <<'PY'
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
print("tempest-image: " + ", ".join(f"{k} {counts[k]}" for k in ("PASS", "FAIL", "SKIP", "NOTRUN")) +
      f" (of {sum(counts.values())}); details in {sys.argv[2]}")
PY
grep '^FAIL' "$out/summary.txt" | head -100 || true
