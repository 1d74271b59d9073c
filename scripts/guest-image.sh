#!/usr/bin/env bash
# Builds the tiny test guest the compute tests boot under QEMU: a whole-disk
# image that boots on its own the way a real cloud image does (an MBR, the
# SYSLINUX bootloader on a FAT partition, Debian's kernel and a busybox
# initramfs), made only from Debian's packages, so that no image has to be
# downloaded from outside the distribution.
#
# The guest's init:
#   - loads the virtio network modules and brings eth0 up;
#   - takes eth0's address by DHCP (busybox udhcpc, asking for the MTU and the
#     classless static routes), applies the lease and keeps renewing it;
#   - prints one line per lease on the serial console:
#       WEFT-GUEST lease ip=10.0.0.5/24 router=10.0.0.1 mtu=1450 routes=...
#     and "WEFT-GUEST up" once it is ready (or "WEFT-GUEST no-lease");
#   - answers ping (the kernel does), and listens on TCP 22 and 23, each
#     answering one line ("weft-guest 22") and closing, for reachability and
#     security-group checks;
#   - asks the metadata service (169.254.169.254) for meta_data.json and
#     prints "WEFT-GUEST metadata uuid=<its uuid>" (or "WEFT-GUEST no-metadata"),
#     then runs the user data in the background when it is a script ("#!"),
#     its output on the console, as cloud-init and CirrOS do.
#
# Outputs, in OUT (default target/guest):
#   weft-guest.raw    the whole disk (MBR + one bootable FAT partition)
#   weft-guest.qcow2  the same disk as qcow2 (what `openstack image create` takes)
#   vmlinuz, initrd.img   the kernel and initramfs, for direct kernel boot
# Rebuilt only when this script changes (a stamp holds its checksum).
#
# Usage: scripts/guest-image.sh [OUT]     Needs root only for apt-get.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp="$out/.stamp"
want_stamp=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] &&
  [ -f "$out/weft-guest.qcow2" ]; then
  exit 0
fi

# Tools to build the disk (installed), and the guest's parts (only unpacked:
# the host's own kernel and busybox stay as they are).
tools=(mtools dosfstools syslinux syslinux-common fdisk cpio qemu-utils xz-utils)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "guest-image: no linux-image package found (apt-get update?)" >&2; exit 1; }
# apt-get download writes as _apt when it can; a private dir it may write to.
chmod 777 "$work"
apt-get download -q "$kpkg" busybox-static >/dev/null 2>&1 ||
  { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get download -q "$kpkg" busybox-static >/dev/null; }
for d in ./*.deb; do dpkg-deb -x "$d" pkg; done
kver=${kpkg#linux-image-}
mods=pkg/lib/modules/$kver/kernel

# The initramfs: busybox, the modules in load order, init and the DHCP hook.
root=initramfs
mkdir -p $root/bin $root/lib/modules $root/proc $root/sys $root/dev $root/tmp $root/etc
cp pkg/bin/busybox $root/bin/busybox
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko \
  drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko \
  drivers/virtio/virtio_pci.ko net/core/failover.ko drivers/net/net_failover.ko \
  drivers/net/virtio_net.ko; do
  src=$mods/$m
  [ -f "$src" ] || { [ -f "$src.xz" ] && xz -dc "$src.xz" >"$work/$(basename "$m")" && src=$work/$(basename "$m"); }
  cp "$src" $root/lib/modules/
  echo "$(basename "$m")" >>$root/lib/modules/order
done
cat >$root/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "WEFT-GUEST $*" >/dev/console; }
# Load the modules, in passes: each pass loads what the last one made possible.
for pass in 1 2 3 4; do
  for m in $(cat /lib/modules/order); do
    grep -q "^${m%.ko} " /proc/modules || insmod /lib/modules/$m 2>/dev/null
  done
done
hostname weft-guest
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up
if udhcpc -i eth0 -s /bin/lease -O mtu -O staticroutes -O hostname -t 20 -T 2 -n -q; then
  # Keep the lease: renew in the background as long as the guest runs.
  udhcpc -i eth0 -s /bin/lease -O mtu -O staticroutes -O hostname -b -S >/dev/null 2>&1
else
  say no-lease
fi
for p in 22 23; do
  (while true; do echo "weft-guest $p" | nc -l -p $p >/dev/null 2>&1; done) &
done
# What a cloud image's init does next (CirrOS, cloud-init): ask the metadata
# service who it is, and run the user data when it is a script.
# (busybox-static's `wget -T` segfaults: the deadline is `timeout`'s.)
md=http://169.254.169.254/openstack/latest
i=0
until timeout 10 wget -q -O /tmp/meta_data.json $md/meta_data.json 2>/tmp/wget.err || [ $i -ge 10 ]; do
  i=$((i + 1))
  sleep 2
done
if [ -s /tmp/meta_data.json ]; then
  say "metadata uuid=$(sed -n 's/.*"uuid": *"\([^"]*\)".*/\1/p' /tmp/meta_data.json)"
  if timeout 10 wget -q -O /tmp/user_data $md/user_data && head -c 2 /tmp/user_data | grep -q '#!'; then
    chmod +x /tmp/user_data
    (/tmp/user_data >/dev/console 2>&1 &)
  fi
else
  say "no-metadata: $(cat /tmp/wget.err)"
fi
say up
while true; do sleep 3600; done
EOF
cat >$root/bin/lease <<'EOF'
#!/bin/sh
# udhcpc's hook: apply the lease and say what it was on the console.
event=$1
case "$event" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    set -- $staticroutes
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    echo "WEFT-GUEST lease ip=$ip/${mask:-24} router=${router%% *} mtu=${mtu:-} routes=$(echo $staticroutes | tr ' ' ,) hostname=${hostname:-} event=$event" >/dev/console
    ;;
esac
EOF
chmod +x $root/init $root/bin/lease
(cd $root && find . | cpio -o -H newc --quiet | gzip -9) >initrd.img
cp pkg/boot/vmlinuz-"$kver" vmlinuz

# The disk: an MBR with one bootable FAT16 partition at 1 MiB holding
# SYSLINUX, the kernel and the initramfs.
disk=weft-guest.raw
size_mib=$(( ($(stat -c %s vmlinuz) + $(stat -c %s initrd.img)) / 1048576 + 12 ))
truncate -s ${size_mib}M $disk
echo 'start=2048, type=6, bootable' | sfdisk -q $disk
part_sectors=$(((size_mib * 1048576) / 512 - 2048))
mkfs.vfat -F 16 -n WEFTGUEST --offset 2048 $disk $((part_sectors / 2)) >/dev/null
export MTOOLS_SKIP_CHECK=1
cat >syslinux.cfg <<'EOF'
DEFAULT weft
PROMPT 0
TIMEOUT 0
LABEL weft
  KERNEL /vmlinuz
  APPEND initrd=/initrd.img console=tty0 console=ttyS0 quiet panic=5
EOF
mcopy -i $disk@@1M vmlinuz initrd.img syslinux.cfg ::/
syslinux --offset $((2048 * 512)) --install $disk
dd if=/usr/lib/syslinux/mbr/mbr.bin of=$disk bs=440 count=1 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 $disk weft-guest.qcow2

mv $disk weft-guest.qcow2 vmlinuz initrd.img "$out/"
echo "$want_stamp" >"$stamp"
echo "guest-image: $out/weft-guest.qcow2 (kernel $kver)"
