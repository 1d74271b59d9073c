#!/usr/bin/env bash
# Installs every system package and Python client weft's tests and benches
# need, idempotently: a second run on a ready machine does nothing but check.
# Usage: scripts/install-deps.sh [--bench]   (--bench adds Open vSwitch etc.)
set -euo pipefail
# busybox: its udhcpc (and a rogue udhcpd) in the DHCP end-to-end test (datapath/tests/dhcp_e2e.rs).
want=(iproute2 iperf3 tcpdump iputils-ping procps python3-venv curl postgresql busybox)
if [ "${1:-}" = "--bench" ]; then
  # gcc: benches/e2e/secgroups.sh builds its TCP_RR client (tcp_rr.c; netperf is not in
  # Debian main); bc: benches/dhcp/port-to-lease.sh's timings.
  want+=(openvswitch-switch bridge-utils wrk gcc libc6-dev bc)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Other installers (a second engineer, CI) may hold the dpkg/apt locks: wait.
  apt_opts=(-o DPkg::Lock::Timeout=600)
  apt-get "${apt_opts[@]}" update -qq
  apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Python clients (the real openstack CLI and openstacksdk) in a venv of ours.
venv=${WEFT_VENV:-/opt/weft-venv}
if [ ! -x "$venv/bin/openstack" ]; then
  echo "install-deps: creating $venv with python-openstackclient"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q python-openstackclient openstacksdk
fi
# The Placement plugin of the CLI (tests/placement_cli.rs).
if ! "$venv/bin/python" -c 'import osc_placement' 2>/dev/null; then
  echo "install-deps: adding osc-placement to $venv"
  "$venv/bin/pip" install -q osc-placement
fi
# PostgreSQL for the store's second backend and the replica tests: the
# Debian cluster started (no systemd needed), and a superuser role for root
# so tests connect over the Unix socket with peer authentication.
bash "$(dirname "$0")/postgres.sh"
# libvirt and QEMU for the compute driver (hypervisor/), and the tiny test
# guest it boots (built once into target/guest from Debian's packages).
bash "$(dirname "$0")/libvirt.sh"
bash "$(dirname "$0")/guest-image.sh"
