#!/usr/bin/env bash
# Runs Placement's own functional tests (the gabbi YAML files of
# openstack-placement, fetched from PyPI at a pinned version) against
# `weft serve --placement-noauth2`, one fresh server per file, and prints
# the pass count per file and in total.
#
# Only files whose fixture is `APIFixture` (an empty database plus some
# uuids in the environment, which this script exports) can run against a
# live server; the others build providers straight into Placement's
# database in Python and are listed as not run.
#
# Usage: scripts/placement-gabbi.sh [FILE.yaml ...]   (default: all)
# Env: WEFT_BIN (default target/release/weft, else target/debug/weft),
#      WEFT_VENV (default /opt/weft-venv), PLACEMENT_VERSION (default 16.0.0).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${WEFT_VENV:-/opt/weft-venv}
version=${PLACEMENT_VERSION:-16.0.0}
bin=${WEFT_BIN:-}
if [ -z "$bin" ]; then
  for b in "$here/target/release/weft" "$here/target/debug/weft"; do
    [ -x "$b" ] && { bin=$b; break; }
  done
fi
[ -x "${bin:-}" ] || { echo "no weft binary: cargo build -p weft (or set WEFT_BIN)" >&2; exit 2; }
"$venv/bin/python" -c 'import gabbi' 2>/dev/null || "$venv/bin/pip" install -q gabbi

work=${TMPDIR:-/tmp}/weft-placement-gabbi
src="$work/openstack_placement-$version"
if [ ! -d "$src" ]; then
  mkdir -p "$work"
  "$venv/bin/pip" download -q --no-deps --no-binary :all: \
    "openstack-placement==$version" -d "$work"
  tar xzf "$work/openstack_placement-$version.tar.gz" -C "$work"
fi
gabbits="$src/placement/tests/functional/gabbits"

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for f in "$gabbits"/*.yaml; do files+=("$(basename "$f")"); done
fi

uuid() { cat /proc/sys/kernel/random/uuid; }
free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

total_ran=0 total_pass=0 total_fail=0 total_skip=0
not_run=()
for name in "${files[@]}"; do
  f="$gabbits/$name"
  fixtures=$(awk '/^fixtures:/{on=1;next} on&&/^ *- /{print $2;next} on{exit}' "$f" | tr '\n' ' ')
  if [ "$fixtures" != "APIFixture " ]; then
    not_run+=("$name ($fixtures)")
    continue
  fi
  state=$(mktemp -d "$work/state.XXXXXX")
  port=$(free_port)
  WEFT_ADMIN_PASSWORD=gabbi "$bin" serve --state-dir "$state" --listen "127.0.0.1:$port" \
    --placement-noauth2 >"$state/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/placement" >/dev/null 2>&1 && break
    sleep 0.1
  done
  # What Placement's APIFixture puts in the environment.
  for v in RP_UUID RP_NAME RP_UUID1 RP_NAME1 RP_UUID2 RP_NAME2 PROJECT_ID ADMIN_PROJECT_ID \
           SERVICE_PROJECT_ID USER_ID PROJECT_ID_ALT USER_ID_ALT INSTANCE_UUID MIGRATION_UUID \
           CONSUMER_UUID PARENT_PROVIDER_UUID ALT_PARENT_PROVIDER_UUID; do
    export "$v=$(uuid)"
  done
  export CUSTOM_RES_CLASS=CUSTOM_IRON_NFV CUSTOM_RES_CLASS1=CUSTOM_IRON_NFV1 CUSTOM_RES_CLASS2=CUSTOM_IRON_NFV2
  out=$("$venv/bin/gabbi-run" "http://127.0.0.1:$port/placement" -- "$f" 2>&1 || true)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # gabbi-run marks each test: ✓ passed, ✗ failed, - skipped (after a failure).
  pass=$(grep -c '^\.\.\. ✓' <<<"$out" || true)
  fail=$(grep -c '^\.\.\. [✗E]' <<<"$out" || true)
  ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\}.*/\1/p' <<<"$out" | tail -1)
  ran=${ran:-0}
  skip=$(( ran - pass - fail ))
  printf '%-45s ran %3d  pass %3d  fail %3d  skipped-after-failure %3d\n' "$name" "$ran" "$pass" "$fail" "$skip"
  if [ "$fail" -gt 0 ] && [ -n "${GABBI_VERBOSE:-}" ]; then
    grep -E '^(FAIL|ERROR):|AssertionError|Expect|expected' <<<"$out" | head -40
  fi
  total_ran=$((total_ran + ran)) total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail)) total_skip=$((total_skip + skip))
  rm -rf "$state"
done
echo "not run (database fixtures): ${#not_run[@]} files"
for n in "${not_run[@]}"; do echo "  $n"; done
echo "TOTAL openstack-placement $version gabbits on weft: ran $total_ran, pass $total_pass, fail $total_fail, skipped after a failure $total_skip"
