#!/usr/bin/env bash
# Runs tempest's own image API tests (tempest.api.image, Image API v2)
# against weft serve, and summarises what passed, failed and was skipped.
# The config enables glance with the features weft serves (no import, no
# multi-store, no locations, no cache).
#
# Usage:
#   scripts/tempest-image.sh                 # builds nothing; starts target/debug/weft serve
#   WEFT_URL=http://host:port WEFT_ADMIN_PASSWORD=pw scripts/tempest-image.sh
#                                                # against a weft serve already running
# Environment: as scripts/lib-tempest.sh describes, and
#   TEMPEST_REGEX tests to run (default: tempest.api.image)
# Output: $TEMPEST_OUT/summary.txt (one line per test: PASS/FAIL/SKIP + reason)
# and totals on stdout. Exit status 0 when tempest ran, whatever the results;
# non-zero only when the run itself could not happen.
set -euo pipefail

tag=tempest-image
. "$(dirname "$0")/lib-tempest.sh"
regex=${TEMPEST_REGEX:-tempest.api.image}

tempest_install tempest=tempest
tempest_serve

tempest_workspace weft-image
{
  tempest_conf_common
  cat <<EOF

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
} >"$ws/etc/tempest.conf"

tempest_run "$regex"
