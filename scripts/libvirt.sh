#!/usr/bin/env bash
# Installs libvirt and QEMU (TCG is enough: these machines have no usable
# KVM) and starts libvirtd and virtlogd without systemd, idempotently.
# Prints nothing when all is ready. The compute agent's libvirt driver and
# its tests reach it as qemu:///system.
set -euo pipefail
want=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config qemu-system-x86)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "libvirt.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-o DPkg::Lock::Timeout=600)
  apt-get "${apt_opts[@]}" update -qq
  apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # qemu-system-x86 replaces the preinstalled qemu-utils: put Debian's back.
  apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends qemu-utils >/dev/null
fi
# Without udev (containers, CI) /dev/kvm stays 0600 root: libvirtd probes
# QEMU's capabilities as root (KVM found) but runs QEMU as libvirt-qemu
# (group kvm, KVM not usable), so at every domain start it finds its cached
# capabilities stale and probes QEMU again, a dozen times over: ~50 s per
# start instead of ~0.3 s. Give the device group kvm read-write, as udev does
# on a Debian host. (Whether the guests then get KVM is weft's own probe's
# call: weft_hypervisor::probe_accel.)
if [ -c /dev/kvm ] && getent group kvm >/dev/null &&
  [ $(( $(stat -c '0%a' /dev/kvm) & 8#060 )) -ne $((8#060)) ]; then
  chgrp kvm /dev/kvm && chmod g+rw /dev/kvm
fi
# Without systemd (containers, CI) the daemons are started by hand.
# The daemons must not inherit this shell's descriptors beyond stdio (a
# caller's lock file or output pipe would stay held for the daemon's life):
# start them with every other descriptor closed.
daemon() {
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec "$@" </dev/null >/dev/null 2>&1
  )
}
pgrep -x virtlogd >/dev/null || daemon virtlogd -d
pgrep -x libvirtd >/dev/null || daemon libvirtd -d
for _ in $(seq 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "libvirt.sh: libvirtd does not answer on qemu:///system" >&2
exit 1
