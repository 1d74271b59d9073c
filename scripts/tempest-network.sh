#!/usr/bin/env bash
# Runs tempest's network API tests (tempest.api.network) and those of
# neutron-tempest-plugin (neutron_tempest_plugin.api) against weft serve, and
# summarises what passed, failed and was skipped.
#
# Usage:
#   scripts/tempest-network.sh                  # builds nothing; starts target/debug/weft serve
#   WEFT_URL=http://host:port WEFT_ADMIN_PASSWORD=pw scripts/tempest-network.sh
#                                                # against a weft serve already running
#                                                # (its own network config then: give it a
#                                                # VLAN range on physnet for the provider tests)
# Environment: as scripts/lib-tempest.sh describes, and
#   TEMPEST_REGEX tests to run (default: both suites above)
# Output: $TEMPEST_OUT/summary.txt (one line per test: PASS/FAIL/SKIP + reason)
# and totals on stdout. Exit status 0 when tempest ran, whatever the results;
# non-zero only when the run itself could not happen.
#
# The deployment it describes to tempest is ML2 without agents: no routers,
# floating IPs or DHCP, so project networks are not reachable from outside and
# only the API's own behaviour is tested.
set -euo pipefail

tag=tempest-network
. "$(dirname "$0")/lib-tempest.sh"
regex=${TEMPEST_REGEX:-'^(tempest\.api\.network|neutron_tempest_plugin\.api)\.'}

tempest_install tempest=tempest neutron-tempest-plugin=neutron_tempest_plugin
# ML2's settings as devstack's: tenant networks are vxlan, and the provider
# physnet has a VLAN range, so a provider VLAN network without a
# segmentation_id gets one (neutron_plugin_options.provider_vlans below).
cat >"$out/network.toml" <<EOF
tenant_network_types = ["vxlan"]
network_vlan_ranges = ["physnet:1000:1999"]
flat_networks = ["*"]
vni_ranges = ["1000:2000"]
EOF
tempest_serve --network-config "$out/network.toml"

# The extensions weft lists are the ones tempest may test: asked of the
# server, so the config follows what it really serves.
token=$(curl -fsS -D - -o /dev/null -H 'Content-Type: application/json' \
  -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$WEFT_ADMIN_PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" \
  "$WEFT_URL/identity/v3/auth/tokens" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-subject-token"{print $2}')
[ -n "$token" ] || { echo "$tag: could not get an admin token from $WEFT_URL" >&2; exit 2; }
extensions=$(curl -fsS -H "X-Auth-Token: $token" "$WEFT_URL/networking/v2.0/extensions" |
  "$venv/bin/python3" -c 'import json,sys; print(",".join(e["alias"] for e in json.load(sys.stdin)["extensions"]))')
echo "$tag: extensions: $extensions"

tempest_workspace weft-network
{
  tempest_conf_common
  cat <<EOF

[service_available]
neutron = true
nova = false
glance = false
cinder = false
swift = false
horizon = false

[network]
catalog_type = network
region = RegionOne
endpoint_type = public
project_network_cidr = 10.100.0.0/16
project_network_mask_bits = 28
project_network_v6_cidr = 2001:db8::/48
project_network_v6_mask_bits = 64
# No routers, so nothing outside reaches a project network.
project_networks_reachable = false
public_network_id =
floating_network_name =
shared_physical_network = false

[network-feature-enabled]
api_extensions = $extensions
ipv6 = true
ipv6_subnet_attributes = true
port_admin_state_change = true
port_security = true
floating_ips = false

[neutron_plugin_options]
# The ML2 type drivers weft serves and its default config's physnet.
available_type_drivers = flat,vlan,vxlan,geneve
provider_vlans = physnet
# No agents (DHCP, L3, OVS): nothing tests what they would do.
q_agent = None
specify_floating_ip_address_available = false
create_shared_resources = false

[enforce_scope]
neutron = false

[validation]
run_validation = false
EOF
} >"$ws/etc/tempest.conf"

tempest_run "$regex"
