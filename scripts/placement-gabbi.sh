#!/usr/bin/env bash
# Runs Placement's own functional tests (the gabbi YAML files of
# openstack-placement, fetched from PyPI at a pinned version) against
# `weft serve --placement-noauth2 --placement-listen` (Placement alone at the
# root of a port of its own, as the suite addresses it), one fresh server
# per file, and prints the pass count per file and in total.
#
# Files whose fixture is `APIFixture` (an empty database plus some uuids in
# the environment, which this script exports) run as they are. The data
# fixtures (SharedStorageFixture, GranularFixture, NUMANetworkFixture...)
# build providers straight into Placement's database in Python; for those
# the script runs the fixture's own code, read from the same sdist, with
# its database helpers (`tb.create_provider`, `add_inventory`,
# `set_traits`, `set_allocation`...) replaced by the equivalent Placement
# API calls against the live server, then runs the file. Policy and CORS
# fixtures configure the server itself and are listed as not run.
#
# Usage: scripts/placement-gabbi.sh [FILE.yaml ...]   (default: all)
# Env: WEFT_BIN (default target/release/weft, else target/debug/weft),
#      WEFT_VENV (default /opt/weft-venv), PLACEMENT_VERSION (default 16.0.0),
#      GABBI_VERBOSE=1 (print the failing assertions), GABBI_LOGS=DIR (keep
#      each file's whole gabbi output as DIR/FILE.log).
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
fixtures_py="$src/placement/tests/functional/fixtures/gabbits.py"

# The data fixtures, run through the API (see the header).
api_fixtures=" AllocationFixture SharedStorageFixture NUMAAggregateFixture NUMANetworkFixture \
DeepNUMANetworkFixture NonSharedStorageFixture GranularFixture NeutronQoSMultiSegmentFixture "
harness="$work/fixture_via_api.py"
cat >"$harness" <<'PY'
"""Runs one of Placement's gabbi data fixtures against a live server: the
fixture classes are taken from placement/tests/functional/fixtures/gabbits.py
unchanged, with the database helpers they call answered by API requests.
Then execs gabbi-run on the file with the environment the fixture set.
Usage: fixture_via_api.py FIXTURES_PY FIXTURE URL GABBI_RUN FILE.yaml"""
import ast, json, os, sys, urllib.request, uuid as uuidlib

fixtures_py, name, url, gabbi_run, yaml_file = sys.argv[1:6]


def call(method, path, body=None, mv="1.28"):
    req = urllib.request.Request(
        url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"x-auth-token": "admin", "accept": "application/json",
                 "content-type": "application/json",
                 "openstack-api-version": "placement " + mv})
    try:
        with urllib.request.urlopen(req) as r:
            data = r.read()
            return json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        sys.exit("fixture %s: %s %s: %s %s" % (name, method, path, e.code, e.read()[:300]))


class Names:
    """orc.VCPU -> 'VCPU', ot.HW_NUMA_ROOT -> 'HW_NUMA_ROOT'."""
    def __getattr__(self, attr):
        return attr


class Sentinels:
    """oslo's uuidsentinel: one stable uuid per name."""
    def __init__(self):
        self._seen = {}

    def __getattr__(self, attr):
        return self._seen.setdefault(attr, str(uuidlib.uuid4()))


uuids = Sentinels()


class Provider:
    def __init__(self, name, uuid, parent):
        self.name, self.uuid = name, uuid
        body = {"name": name, "uuid": uuid}
        if parent:
            body["parent_provider_uuid"] = parent
        call("POST", "/resource_providers", body, mv="1.20")

    def generation(self):
        return call("GET", "/resource_providers/" + self.uuid)["generation"]

    def set_aggregates(self, aggs):
        call("PUT", "/resource_providers/%s/aggregates" % self.uuid,
             {"aggregates": list(aggs), "resource_provider_generation": self.generation()},
             mv="1.19")


class Owner:
    def __init__(self, context=None, external_id=None, **_):
        self.external_id = external_id

    def create(self):
        pass


class ResourceClass:
    def __init__(self, context=None, name=None, **_):
        self.name = name

    def create(self):
        tb.ensure_rc(None, self.name)


class Consumer:
    def __init__(self, uuid, user, project):
        self.uuid, self.user, self.project = uuid, user, project


class tb:
    @staticmethod
    def create_provider(context, name, *aggs, **kw):
        rp = Provider(name, kw.get("uuid") or getattr(uuids, name), kw.get("parent"))
        if aggs:
            rp.set_aggregates(aggs)
        return rp

    @staticmethod
    def ensure_rc(context, rc):
        if rc.startswith("CUSTOM_"):
            call("PUT", "/resource_classes/" + rc, mv="1.7")

    @staticmethod
    def add_inventory(rp, rc, total, **kw):
        tb.ensure_rc(None, rc)
        inv = {"total": total, "max_unit": total}
        inv.update(kw)
        inv["resource_class"] = rc
        inv["resource_provider_generation"] = rp.generation()
        call("POST", "/resource_providers/%s/inventories" % rp.uuid, inv)

    @staticmethod
    def set_traits(rp, *traits):
        for t in traits:
            if t.startswith("CUSTOM_"):
                call("PUT", "/traits/" + t, mv="1.6")
        call("PUT", "/resource_providers/%s/traits" % rp.uuid,
             {"traits": list(traits), "resource_provider_generation": rp.generation()},
             mv="1.6")

    @staticmethod
    def ensure_consumer(ctx, user, project, consumer_id=None):
        return Consumer(consumer_id or str(uuidlib.uuid4()), user, project)

    @staticmethod
    def set_allocation(ctx, rp, consumer, rc_used_dict):
        # replace_all: the consumer's allocations become exactly these.
        gen = call("GET", "/allocations/" + consumer.uuid).get("consumer_generation")
        call("PUT", "/allocations/" + consumer.uuid, {
            "allocations": {rp.uuid: {"resources": dict(rc_used_dict)}},
            "project_id": consumer.project.external_id,
            "user_id": consumer.user.external_id,
            "consumer_generation": gen})

    @staticmethod
    def create_user_and_project(ctx, prefix="fake"):
        return Owner(external_id="%s-user" % prefix), Owner(external_id="%s-project" % prefix)


class APIFixture:
    """The uuids APIFixture puts in the environment are exported already."""
    context = None

    def start_fixture(self):
        pass


class Objs:
    User = Project = Owner
    ResourceClass = ResourceClass


class UuidUtils:
    @staticmethod
    def generate_uuid():
        return str(uuidlib.uuid4())


tree = ast.parse(open(fixtures_py).read())
classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
chain, at = [], name
while at != "APIFixture":
    chain.append(classes[at])
    at = chain[-1].bases[0].id
module = ast.Module(body=list(reversed(chain)), type_ignores=[])
ns = {"os": os, "tb": tb, "orc": Names(), "ot": Names(), "uuids": uuids,
      "uuidutils": UuidUtils, "user_obj": Objs, "project_obj": Objs,
      "rc_obj": Objs, "APIFixture": APIFixture}
exec(compile(module, fixtures_py, "exec"), ns)
ns[name]().start_fixture()
os.execv(gabbi_run, [gabbi_run, url, "--", yaml_file])
PY

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
  fixtures=$("$venv/bin/python" -c 'import sys, yaml; print(" ".join(yaml.safe_load(open(sys.argv[1])).get("fixtures", [])))' "$f")
  if [ "$fixtures" != "APIFixture" ] && [[ "$api_fixtures" != *" $fixtures "* ]]; then
    not_run+=("$name ($fixtures)")
    continue
  fi
  state=$(mktemp -d "$work/state.XXXXXX")
  port=$(free_port) pport=$(free_port)
  # Placement alone at the root of its own port, as the suite addresses it
  # (its links and Locations are then root-relative, as it expects); no
  # in-process compute host, which would register this host as a provider.
  WEFT_ADMIN_PASSWORD=gabbi "$bin" serve --state-dir "$state" --listen "127.0.0.1:$port" \
    --placement-noauth2 --placement-listen "127.0.0.1:$pport" --compute-driver none \
    >"$state/serve.log" 2>&1 &
  pid=$!
  url="http://127.0.0.1:$pport"
  for _ in $(seq 1 100); do
    curl -sf "$url/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  # What Placement's APIFixture puts in the environment.
  for v in RP_UUID RP_NAME RP_UUID1 RP_NAME1 RP_UUID2 RP_NAME2 PROJECT_ID ADMIN_PROJECT_ID \
           SERVICE_PROJECT_ID USER_ID PROJECT_ID_ALT USER_ID_ALT INSTANCE_UUID MIGRATION_UUID \
           CONSUMER_UUID PARENT_PROVIDER_UUID ALT_PARENT_PROVIDER_UUID; do
    export "$v=$(uuid)"
  done
  export CUSTOM_RES_CLASS=CUSTOM_IRON_NFV CUSTOM_RES_CLASS1=CUSTOM_IRON_NFV1 CUSTOM_RES_CLASS2=CUSTOM_IRON_NFV2
  if [ "$fixtures" = "APIFixture" ]; then
    out=$("$venv/bin/gabbi-run" "$url" -- "$f" 2>&1 || true)
  else
    out=$("$venv/bin/python" "$harness" "$fixtures_py" "$fixtures" "$url" \
          "$venv/bin/gabbi-run" "$f" 2>&1 || true)
    grep '^fixture ' <<<"$out" || true
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -n "${GABBI_LOGS:-}" ]; then
    mkdir -p "$GABBI_LOGS"
    printf '%s\n' "$out" >"$GABBI_LOGS/$name.log"
  fi
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
echo "not run (policy/CORS fixtures that configure the server): ${#not_run[@]} files"
for n in "${not_run[@]}"; do echo "  $n"; done
echo "TOTAL openstack-placement $version gabbits on weft: ran $total_ran, pass $total_pass, fail $total_fail, skipped after a failure $total_skip"
