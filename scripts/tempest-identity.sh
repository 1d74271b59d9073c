#!/usr/bin/env bash
# Runs tempest's own identity API tests (tempest.api.identity, v3 only)
# against weft serve, and summarises what passed, failed and was skipped.
#
# Usage:
#   scripts/tempest-identity.sh                 # builds nothing; starts target/debug/weft serve
#   WEFT_URL=http://host:port WEFT_ADMIN_PASSWORD=pw scripts/tempest-identity.sh
#                                                # against a weft serve already running
# Environment: as scripts/lib-tempest.sh describes, and
#   TEMPEST_REGEX tests to run (default: tempest.api.identity)
# Output: $TEMPEST_OUT/summary.txt (one line per test: PASS/FAIL/SKIP + reason)
# and totals on stdout. Exit status 0 when tempest ran, whatever the results;
# non-zero only when the run itself could not happen.
set -euo pipefail

tag=tempest-identity
. "$(dirname "$0")/lib-tempest.sh"
regex=${TEMPEST_REGEX:-tempest.api.identity}

tempest_install tempest=tempest
tempest_serve

# A config for weft: identity v3 only, no other services, and the identity
# features weft serves switched on.
tempest_workspace weft-identity
{
  tempest_conf_common
  cat <<EOF

[identity-feature-enabled]
api_v2 = false
api_v2_admin = false
api_v3 = true
api_extensions = OS-TRUST,OS-INHERIT
trust = true
access_rules = false
security_compliance = false
domain_specific_drivers = false
immutable_user_source = false

[enforce_scope]
keystone = true

[service_available]
nova = false
neutron = false
glance = false
cinder = false
swift = false
horizon = false
EOF
} >"$ws/etc/tempest.conf"

tempest_run "$regex"
