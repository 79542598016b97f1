#!/bin/sh
# Builds a real Debian bookworm guest laid out the way guests are found in the
# wild, as a VMware VM (guest.vmx + guest.vmdk), for the inspection and boot
# tests. VARIANT is one of:
#
#   xfs-lvm-efi  GPT; 1: EFI system partition (FAT32) with EFI/debian/grub.cfg
#                (a UEFI stub that searches /boot by UUID), EFI/debian/grubx64.efi
#                and EFI/BOOT/BOOTX64.EFI (grub-mkimage from grub-efi-amd64-bin);
#                2: /boot on XFS v5 with the kernel, initrd and grub/grub.cfg;
#                3: an LVM2 PV, VG vg0, LVs root (ext4) and swap.
#                root=/dev/mapper/vg0-root, vmx firmware = "efi".
#   btrfs        MBR; 1: btrfs. With a mkfs.btrfs that has --subvol (6.11+):
#                subvolumes @ (root, /boot inside) and @home, rootflags=subvol=@,
#                GRUB paths /@/boot/... (Ubuntu's layout); otherwise a plain
#                top-level layout. The file "layout" says which.
#   broken       a guest moved from VMware and not fixed: build.sh's ext4-on-MBR
#                layout, but an initramfs with VMware's and AHCI's controllers only
#                (no virtio_blk), root=/dev/sda1 in grub.cfg and fstab, ifupdown
#                with a static 192.0.2.10/24 on ens192, open-vm-tools, and a unit
#                that prints "vmconv-net: <ip -br addr>" to ttyS0 once the network
#                is online. The vmx has a pvscsi controller and a vmxnet3 NIC.
#   dracut-lvm   a RHEL-family layout moved from VMware and not fixed, on Debian:
#                MBR; 1: /boot on XFS v5; 2: an LVM2 PV, VG rhel, LV root (ext4).
#                dracut (which replaces initramfs-tools) with RHEL's hostonly="yes";
#                the initramfs made for VMware's and AHCI's controllers only (no
#                virtio_blk); root=/dev/mapper/rhel-root rd.lvm.lv=rhel/root.
#                The vmx has a pvscsi controller and a vmxnet3 NIC.
#
# Every variant has a getty on ttyS0 (so a boot ends at "login:").
#
# Results are cached outside the checkout, keyed by this script's hash:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/guest-wild/<variant>/<hash>/
# holding guest.vmx, guest.vmdk, disk.raw (sparse) and the files as they were
# put into the image: vmlinuz, initrd.img, grub.cfg, cmdline, kernel-version,
# the UUIDs (*-uuid), vg/lv names (lvm), mac, layout, partitions (sfdisk -d).
# One debootstrap base tree is cached as a tarball beside them
# (guest-wild/base/<hash of the base definition>.tar) and shared by the variants.
#
# Prints the cache directory on stdout. Needs root, debootstrap, e2fsprogs,
# fdisk, qemu-utils, and per variant xfsprogs, lvm2, dosfstools, mtools
# (xfs-lvm-efi) or btrfs-progs (btrfs); network access to a Debian mirror as
# for build.sh (VMCONV_DEBIAN_MIRROR). No mount of the image and no
# device-mapper: LVM metadata is written through a loop device with
# activation off, the LVs' contents are written at their extents' offsets.
set -eu
# lvm2 warns of every inherited descriptor otherwise.
export LVM_SUPPRESS_FD_WARNINGS=1

usage() { echo "usage: build-wild.sh xfs-lvm-efi|btrfs|broken|dracut-lvm" >&2; exit 2; }
[ $# -eq 1 ] || usage
variant=$1
case "$variant" in xfs-lvm-efi | btrfs | broken | dracut-lvm) ;; *) usage ;; esac

script=$(readlink -f "$0")
hash=$(sha256sum "$script" | cut -c1-16)
top=${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/guest-wild
cache=$top/$variant/$hash
if [ -f "$cache/guest.vmx" ]; then
	echo "$cache"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "build-wild.sh: must run as root (debootstrap, chroot, losetup)" >&2
	exit 1
fi

mirror=${VMCONV_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -o -E 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ') || true
fi
mirror=${mirror:-http://deb.debian.org/debian}

# The base tree: what every variant starts from. Its packages are installed;
# the variants' own packages are only downloaded into it, so that a variant
# installs them from the base's apt cache. Its cache key is this definition.
base_include=systemd-sysv,udev,kmod,initramfs-tools,grub2-common,ifupdown,iproute2
base_kernel=linux-image-amd64
base_download="lvm2 xfsprogs dosfstools grub-efi-amd64-bin btrfs-progs open-vm-tools"
base_rev=1
base_key=$(printf '%s\n' "$base_include" "$base_kernel" "$base_download" "$base_rev" | sha256sum | cut -c1-16)
base_tar=$top/base/$base_key.tar

mkdir -p "$top/$variant" "$top/base"
work=$(mktemp -d "$top/$variant/build.XXXXXX")
root=$work/root
loopdev=
cleanup() {
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null || true
	for m in proc sys; do
		mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true
	done
	if grep -q " $work/" /proc/mounts; then
		echo "build-wild.sh: $work still has mounts; not removing it" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

chroot_run() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
mount_api() {
	mount -t proc proc "$root/proc"
	mount -t sysfs sys "$root/sys"
}
umount_api() { for m in proc sys; do umount "$root/$m"; done; }
log() { echo "build-wild.sh[$variant]: $*" >&2; }

start=$(date +%s)

# ---- base tree -------------------------------------------------------------
if [ ! -f "$base_tar" ]; then
	log "debootstrap bookworm from $mirror (base $base_key)"
	nice -n 10 debootstrap --variant=minbase --include="$base_include" bookworm "$root" "$mirror" >&2
	mount_api
	# The kernel's first initramfs: small (the variants rebuild theirs).
	sed -i 's/^MODULES=.*/MODULES=list/; s/^#\?COMPRESS=.*/COMPRESS=gzip/' "$root/etc/initramfs-tools/initramfs.conf"
	chroot_run apt-get update >&2
	nice -n 10 chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends "$base_kernel" >&2
	# shellcheck disable=SC2086
	chroot_run apt-get install -y --no-install-recommends --download-only $base_download >&2
	# Drivers a server VM never meets (as build.sh drops them).
	kver=$(ls "$root/lib/modules" | head -n1)
	kmod=$root/lib/modules/$kver/kernel
	rm -rf "$kmod/drivers/gpu" "$kmod/drivers/media" "$kmod/drivers/net/wireless" "$kmod/drivers/infiniband" \
		"$kmod/drivers/staging" "$kmod/drivers/bluetooth" "$kmod/drivers/iio" "$kmod/drivers/isdn" "$kmod/sound" \
		"$kmod/net/wireless" "$kmod/net/mac80211" "$kmod/net/bluetooth" "$kmod/drivers/net/ethernet/mellanox" \
		"$kmod/drivers/net/ethernet/intel/ice" "$kmod/drivers/net/ethernet/broadcom" "$kmod/drivers/net/ethernet/qlogic" \
		"$kmod/drivers/net/ethernet/chelsio" "$kmod/drivers/scsi/lpfc" "$kmod/drivers/scsi/qla2xxx"
	chroot_run depmod -a "$kver" >&2
	umount_api
	log "packing base tree"
	nice -n 10 tar -C "$root" --numeric-owner --xattrs -cf "$base_tar.tmp" .
	mv "$base_tar.tmp" "$base_tar"
	rm -rf "$root"
fi
log "unpacking base $base_tar"
mkdir -p "$root"
tar -C "$root" --numeric-owner --xattrs -xpf "$base_tar"
kver=$(ls "$root/lib/modules" | head -n1)
mount_api

# ---- identities -------------------------------------------------------------
# Fixed, so that rebuilds describe the same VM.
case "$variant" in
xfs-lvm-efi)
	disk_guid=6a1f3c2e-4b5d-4e8f-9a0b-1c2d3e4f5a6b
	esp_partuuid=0e3b7f9a-1d2c-4b5a-8e6f-7a8b9c0d1e2f
	boot_partuuid=2c4e6a8b-0d1f-4a3b-9c5d-6e7f8a9b0c1d
	lvm_partuuid=4d6f8a0b-2c3e-4b5d-8f6a-7b8c9d0e1f2a
	esp_volid=1A2B3C4D
	esp_uuid=1A2B-3C4D
	boot_uuid=8c0f2a4e-6b1d-4c3e-a5f7-9b0d2e4f6a81
	root_uuid=3e5a7c9f-1b2d-4f6e-8a0c-2d4f6b8e0a13
	swap_uuid=7f9b1d3e-5a6c-4e8f-b0a2-4c6e8a0b2d35
	pv_uuid=Vmconv-Wild-PV00-aaaa-bbbb-cccc-000001
	vg=vg0
	mac=00:50:56:3f:a2:21
	;;
btrfs)
	disk_id=0x5e7a9c13
	root_uuid=9a1c3e5f-7b2d-4e6f-8a0b-1c3e5a7c9e24
	dev_uuid=b2d4f6a8-0c1e-4a3b-9d5f-7e9a1b3c5d46
	mac=00:50:56:3f:a2:22
	;;
broken)
	disk_id=0x7a3c9e52
	root_uuid=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32
	mac=00:50:56:3f:a2:23
	;;
dracut-lvm)
	disk_id=0x3d5f7b91
	boot_uuid=1f3a5c7e-9b2d-4e6f-8a1c-3e5a7c9b1d47
	root_uuid=6c8e0a2b-4d6f-4a8c-9e1b-5d7f9b1d3f58
	pv_uuid=Vmconv-Wild-PV00-aaaa-bbbb-cccc-000002
	vg=rhel
	mac=00:50:56:3f:a2:24
	;;
esac

# ---- common guest configuration --------------------------------------------
echo vmconv-wild >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvmconv-wild\n' >"$root/etc/hosts"
printf 'auto lo\niface lo inet loopback\n' >"$root/etc/network/interfaces"
chroot_run passwd -d root >&2
chroot_run systemctl enable serial-getty@ttyS0.service >&2
mkdir -p "$root/etc/systemd/system/dev-ttyS0.device.d"
printf '[Unit]\nJobRunningTimeoutSec=infinity\n' >"$root/etc/systemd/system/dev-ttyS0.device.d/wait.conf"
chroot_run systemctl mask getty-static.service e2scrub_reap.service >&2
sed -i 's/^MODULES=.*/MODULES=list/; s/^#\?COMPRESS=.*/COMPRESS=gzip/' "$root/etc/initramfs-tools/initramfs.conf"
echo RESUME=none >"$root/etc/initramfs-tools/conf.d/resume"
cp "$root/usr/share/grub/default/grub" "$root/etc/default/grub"
echo GRUB_DISABLE_OS_PROBER=true >>"$root/etc/default/grub"

# initramfs-tools' fsck hook probes the root's device for its type, and a
# chroot has no such device: name the type the probe would find in the VM
# (only while the initramfs is built; the VM's own rebuilds probe).
case "$variant" in btrfs) root_fstype=btrfs ;; *) root_fstype=ext4 ;; esac
echo "FSTYPE=$root_fstype" >"$root/etc/initramfs-tools/conf.d/vmconv-build-fstype"

install_pkgs() { chroot_run apt-get install -y --no-install-recommends "$@" >&2; }
modules_list() { printf '%s\n' "$@" >"$root/etc/initramfs-tools/modules"; }

case "$variant" in
xfs-lvm-efi)
	install_pkgs lvm2 xfsprogs dosfstools grub-efi-amd64-bin
	modules_list virtio_ring virtio virtio_mmio virtio_pci virtio_blk virtio_scsi sd_mod ahci mptspi \
		crc32c_generic ext4 xfs dm_mod
	cat >"$root/etc/fstab" <<EOF
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=$root_uuid /               ext4    errors=remount-ro 0       1
UUID=$boot_uuid /boot           xfs     defaults        0       2
UUID=$esp_uuid  /boot/efi       vfat    umask=0077      0       1
UUID=$swap_uuid none            swap    sw              0       0
EOF
	mkdir -p "$root/boot/efi"
	;;
btrfs)
	install_pkgs btrfs-progs
	modules_list virtio_ring virtio virtio_mmio virtio_pci virtio_blk virtio_scsi sd_mod ahci mptspi \
		crc32c_generic btrfs
	if mkfs.btrfs --help 2>&1 | grep -q -- '--subvol'; then
		layout=subvol
		cat >"$root/etc/fstab" <<EOF
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=$root_uuid /               btrfs   defaults,subvol=@ 0       0
UUID=$root_uuid /home           btrfs   defaults,subvol=@home 0       0
EOF
	else
		layout=plain
		cat >"$root/etc/fstab" <<EOF
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=$root_uuid /               btrfs   defaults        0       0
EOF
	fi
	;;
broken)
	# What a VMware install leaves: no virtio in the initramfs, /dev/sda names.
	install_pkgs open-vm-tools
	modules_list vmw_pvscsi mptspi mptsas ahci ata_piix sd_mod crc32c_generic ext4
	cat >"$root/etc/fstab" <<EOF
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
/dev/sda1       /               ext4    errors=remount-ro 0       1
EOF
	cat >"$root/etc/network/interfaces" <<'EOF'
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface ("auto": up before network-online.target,
# so the marker unit below prints its address)
auto ens192
iface ens192 inet static
	address 192.0.2.10/24
	gateway 192.0.2.1
EOF
	cat >"$root/etc/systemd/system/vmconv-net-marker.service" <<'EOF'
[Unit]
Description=Print the guest's addresses to the serial console
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "vmconv-net: $(ip -br addr | tr -s " " | paste -s -d ";")" >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
EOF
	chroot_run systemctl enable vmconv-net-marker.service >&2
	echo 'GRUB_DISABLE_LINUX_UUID=true' >>"$root/etc/default/grub"
	;;
dracut-lvm)
	# dracut replaces initramfs-tools (and builds an image as it installs).
	# It is not among the base's downloads: fresh package lists, since a
	# cached base's may name versions the mirror no longer has.
	chroot_run apt-get update >&2
	install_pkgs lvm2 xfsprogs dracut
	cat >"$root/etc/fstab" <<EOF
# <file system>         <mount point>   <type>  <options>       <dump>  <pass>
/dev/mapper/$vg-root    /               ext4    defaults        0       1
UUID=$boot_uuid /boot           xfs     defaults        0       0
EOF
	echo 'GRUB_CMDLINE_LINUX="rd.lvm.lv='"$vg"'/root"' >>"$root/etc/default/grub"
	;;
esac

if [ "$variant" = dracut-lvm ]; then
	# What the VMware install left: an image for its controllers only. The
	# build host's devices are not the VM's, so not host-only here (and
	# without dracut's qemu module, which a host-only image made on VMware
	# leaves out); the guest's own configuration is host-only (RHEL's
	# default), for its rebuilds.
	chroot_run dracut --force --no-hostonly --omit "qemu qemu-net" --drivers "vmw_pvscsi mptspi ahci sd_mod dm_mod crc32c_generic ext4 xfs" \
		"/boot/initrd.img-$kver" "$kver" >&2
	echo 'hostonly="yes"' >"$root/etc/dracut.conf.d/10-hostonly.conf"
else
	chroot_run update-initramfs -u -k "$kver" >&2
fi
rm -f "$root/etc/initramfs-tools/conf.d/vmconv-build-fstype"

# ---- grub.cfg by grub-mkconfig ----------------------------------------------
# grub-probe cannot see the image's devices from a chroot: a stand-in answers
# for the disk as the VM sees it (/dev/sda); grub-mkrelpath likewise.
case "$variant" in
xfs-lvm-efi)
	# 10_linux writes root=/dev/mapper/... for an LV ("lvm" abstraction).
	probe_root="/dev/mapper/$vg-root|ext2|$root_uuid|gpt|lvm|(lvm/$vg-root)|lvm/$vg-root||"
	probe_boot="/dev/sda2|xfs|$boot_uuid|gpt||(hd0,gpt2)|hd0,gpt2|--hint-bios=hd0,gpt2 --hint-efi=hd0,gpt2 --hint-baremetal=ahci0,gpt2|$boot_partuuid"
	probe_esp="/dev/sda1|fat|$esp_uuid|gpt||(hd0,gpt1)|hd0,gpt1|--hint-bios=hd0,gpt1 --hint-efi=hd0,gpt1 --hint-baremetal=ahci0,gpt1|$esp_partuuid"
	relpath_strip=/boot relpath_prefix=
	mkdir -p "$root/dev/mapper"
	ln -sf ../null "$root/dev/mapper/$vg-root"
	;;
btrfs)
	probe_root="/dev/sda1|btrfs|$root_uuid|msdos||(hd0,msdos1)|hd0,msdos1|--hint-bios=hd0,msdos1 --hint-efi=hd0,msdos1 --hint-baremetal=ahci0,msdos1|${disk_id#0x}-01"
	probe_boot=$probe_root probe_esp=$probe_root
	relpath_strip=
	if [ "$layout" = subvol ]; then relpath_prefix=/@; else relpath_prefix=; fi
	;;
broken)
	probe_root="/dev/sda1|ext2|$root_uuid|msdos||(hd0,msdos1)|hd0,msdos1|--hint-bios=hd0,msdos1 --hint-efi=hd0,msdos1 --hint-baremetal=ahci0,msdos1|${disk_id#0x}-01"
	probe_boot=$probe_root probe_esp=$probe_root
	relpath_strip= relpath_prefix=
	;;
dracut-lvm)
	probe_root="/dev/mapper/$vg-root|ext2|$root_uuid|msdos|lvm|(lvm/$vg-root)|lvm/$vg-root||"
	probe_boot="/dev/sda1|xfs|$boot_uuid|msdos||(hd0,msdos1)|hd0,msdos1|--hint-bios=hd0,msdos1 --hint-efi=hd0,msdos1 --hint-baremetal=ahci0,msdos1|${disk_id#0x}-01"
	probe_esp=$probe_boot
	relpath_strip=/boot relpath_prefix=
	mkdir -p "$root/dev/mapper"
	ln -sf ../null "$root/dev/mapper/$vg-root"
	;;
esac
mkdir -p "$root/dev/disk/by-uuid"
ln -sf ../../null "$root/dev/disk/by-uuid/$root_uuid"
chroot_run dpkg-divert --local --rename --add /usr/sbin/grub-probe >&2
cat >"$root/usr/sbin/grub-probe" <<EOF
#!/bin/sh
target= arg=
for a in "\$@"; do case "\$a" in --target=*) target=\${a#--target=} ;; -*) ;; *) arg=\$a ;; esac; done
case "\$arg" in
/boot/efi | /boot/efi/* | ${probe_esp%%|*}) info='$probe_esp' ;;
/boot | /boot/* | ${probe_boot%%|*}) info='$probe_boot' ;;
*) info='$probe_root' ;;
esac
IFS='|'
set -- \$info
case "\$target" in
device) echo "\$1" ;;
fs) echo "\$2" ;;
fs_uuid) echo "\$3" ;;
fs_label) echo ;;
partmap) echo "\$4" ;;
abstraction) echo "\$5" ;;
drive) echo "\$6" ;;
compatibility_hint) echo "\$7" ;;
bios_hints) echo "\$8" | cut -d' ' -f1 ;;
hints_string) echo "\$8" ;;
disk) echo /dev/sda ;;
partuuid) echo "\$9" ;;
*) echo ;;
esac
EOF
chmod 755 "$root/usr/sbin/grub-probe"
chroot_run dpkg-divert --local --rename --add /usr/bin/grub-mkrelpath >&2
{
	echo '#!/bin/sh'
	echo 'for a in "$@"; do p=$a; done'
	# A separate /boot: paths under it are relative to its filesystem.
	[ -z "$relpath_strip" ] ||
		echo "case \"\$p\" in $relpath_strip) p=/ ;; $relpath_strip/*) p=\${p#$relpath_strip} ;; esac"
	# A root subvolume: paths are relative to the filesystem's top level.
	[ -z "$relpath_prefix" ] || echo "[ \"\$p\" = / ] && p=; p=$relpath_prefix\$p"
	# grub-mkrelpath drops trailing slashes: a filesystem's own root is "".
	echo '[ "$p" = / ] && p='
	echo 'echo "$p"'
} >"$root/usr/bin/grub-mkrelpath"
chmod 755 "$root/usr/bin/grub-mkrelpath"
mkdir -p "$root/boot/grub"
chroot_run grub-mkconfig -o /boot/grub/grub.cfg >&2
rm -f "$root/usr/sbin/grub-probe" "$root/usr/bin/grub-mkrelpath"
chroot_run dpkg-divert --local --rename --remove /usr/sbin/grub-probe >&2
chroot_run dpkg-divert --local --rename --remove /usr/bin/grub-mkrelpath >&2
rm -rf "$root/dev/disk" "$root/dev/mapper"

out=$work/out
mkdir -p "$out"
if [ "$variant" = xfs-lvm-efi ]; then
	# What grub-install --target=x86_64-efi leaves: modules and font under
	# /boot/grub, a core image on the ESP, and beside it the UEFI stub config
	# that finds /boot by UUID (as Debian's signed GRUB reads it).
	mkdir -p "$root/boot/grub/x86_64-efi" "$root/boot/grub/fonts"
	cp "$root"/usr/lib/grub/x86_64-efi/*.mod "$root"/usr/lib/grub/x86_64-efi/*.lst "$root/boot/grub/x86_64-efi/"
	cp "$root/usr/share/grub/unicode.pf2" "$root/boot/grub/fonts/"
	chroot_run grub-editenv /boot/grub/grubenv create >&2
	chroot_run grub-mkimage -O x86_64-efi -o /tmp/grubx64.efi -p /EFI/debian \
		part_gpt part_msdos fat xfs ext2 lvm search search_fs_uuid search_fs_file configfile normal \
		linux echo test gzio all_video efi_gop >&2
	mv "$root/tmp/grubx64.efi" "$out/grubx64.efi"
	cat >"$out/efi-grub.cfg" <<EOF
search --no-floppy --fs-uuid --set=dev $boot_uuid
set prefix=(\$dev)/grub
export \$prefix
configfile \$prefix/grub.cfg
EOF
fi

chroot_run apt-get clean >&2
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
umount_api

# ---- what the image holds, kept beside it ------------------------------------
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
cp "$root/boot/grub/grub.cfg" "$out/grub.cfg"
cp "$root/etc/fstab" "$out/fstab"
echo "$kver" >"$out/kernel-version"
echo "$root_uuid" >"$out/root-uuid"
echo "$mac" >"$out/mac"
grep -m1 -E '^[[:space:]]*linux[[:space:]]' "$out/grub.cfg" | sed -E 's/^[[:space:]]*linux[[:space:]]+[^[:space:]]+[[:space:]]*//' >"$out/cmdline"
grep -m1 -E '^[[:space:]]*linux[[:space:]]' "$out/grub.cfg" | awk '{print $2}' >"$out/kernel-path"

# ---- the disk ----------------------------------------------------------------
raw=$out/disk.raw

# xfs_boot START MIB: $root/boot becomes an XFS v5 filesystem (UUID $boot_uuid,
# from a protofile listing the tree) at sector START of the image; the tree
# keeps an empty /boot.
xfs_boot() {
	mv "$root/boot" "$work/boot"
	mkdir -m 755 "$root/boot"
	proto_dir() { # dir indent
		for f in "$1"/* "$1"/.[!.]*; do
			[ -e "$f" ] || [ -L "$f" ] || continue
			n=${f##*/}
			m=$(stat -c %a "$f")
			m=$(printf '%03o' $((0$m & 0777)))
			if [ -L "$f" ]; then
				echo "$2$n l--$m 0 0 $(readlink "$f")"
			elif [ -d "$f" ]; then
				echo "$2$n d--$m 0 0"
				proto_dir "$f" "$2 "
				echo "$2\$"
			else
				echo "$2$n ---$m 0 0 $f"
			fi
		done
	}
	{
		echo /dev/null
		echo 0 0
		echo "d--755 0 0"
		proto_dir "$work/boot" " "
		echo '$'
	} >"$work/boot.proto"
	cp "$work/boot.proto" "$out/boot.proto"
	truncate -s "${2}M" "$work/boot.xfs"
	mkfs.xfs -q -f -m crc=1,uuid="$boot_uuid" -L boot -p "$work/boot.proto" "$work/boot.xfs" >&2
	dd if="$work/boot.xfs" of="$raw" bs=1M seek=$(($1 / 2048)) conv=notrunc,sparse status=none
	rm -rf "$work/boot.xfs" "$work/boot"
}

# lvm_pv START MIB root:MIB [swap:MIB]: an LVM2 PV (UUID $pv_uuid) with VG $vg
# at sector START of the image; LV root holds $root as ext4 ($root_uuid), LV
# swap a swap area ($swap_uuid). The metadata is written through a loop
# device, nothing activated; the LVs' contents at their extents' offsets.
lvm_pv() {
	pv_at=$1 pv_mib=$2
	shift 2
	truncate -s "${pv_mib}M" "$work/pv.img"
	loopdev=$(losetup -f --show "$work/pv.img")
	lvmconf="devices { use_devicesfile=0 obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 monitoring=0 } backup { backup=0 archive=0 }"
	lvmx() { cmd=$1; shift; "$cmd" --devices "$loopdev" --config "$lvmconf" "$@" >&2; }
	q() { cmd=$1; shift; "$cmd" --devices "$loopdev" --config "$lvmconf" --noheadings --nosuffix --units b "$@" | tr -d ' '; }
	lvmx pvcreate -ff -y --uuid "$pv_uuid" --norestorefile "$loopdev"
	lvmx vgcreate -s 4M "$vg" "$loopdev"
	for lv in "$@"; do
		lvmx lvcreate --driverloaded n -an -Zn -y -n "${lv%%:*}" -L "${lv#*:}M" "$vg"
	done
	pe_start=$(q pvs -o pe_start "$loopdev")
	extent=$(q vgs -o vg_extent_size "$vg")
	q vgs -o vg_uuid "$vg" >"$out/vg-uuid"
	q lvs -o lv_name,lv_uuid,seg_pe_ranges --separator , "$vg" >"$out/lv-segments"
	offsets=
	for lv in "$@"; do
		pe=$(q lvs -o seg_pe_ranges "$vg/${lv%%:*}" | sed -E 's/.*:([0-9]+)-.*/\1/')
		offsets="$offsets ${lv%%:*}:$((pe_start + pe * extent))"
	done
	losetup -d "$loopdev"
	loopdev=
	echo "$pe_start" >"$out/pe-start"
	echo "$extent" >"$out/extent-size"
	echo "$pv_uuid" >"$out/pv-uuid"
	echo "$vg" >"$out/vg"
	for lv in "$@"; do echo "${lv%%:*}"; done >"$out/lvs"
	for lv in "$@"; do
		name=${lv%%:*} mib=${lv#*:}
		off=$(echo "$offsets" | tr ' ' '\n' | sed -n "s/^$name://p")
		case "$name" in
		root)
			echo "$off" >"$out/root-lv-offset"
			mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$root" "$work/lv.img" "${mib}M" >&2
			;;
		swap)
			truncate -s "${mib}M" "$work/lv.img"
			mkswap -L swap -U "$swap_uuid" "$work/lv.img" >&2
			;;
		esac
		dd if="$work/lv.img" of="$work/pv.img" bs=1M oflag=seek_bytes seek="$off" conv=notrunc,sparse status=none
		rm -f "$work/lv.img"
	done
	dd if="$work/pv.img" of="$raw" bs=1M seek=$((pv_at / 2048)) conv=notrunc,sparse status=none
	rm -f "$work/pv.img"
}

case "$variant" in
xfs-lvm-efi)
	cp "$out/efi-grub.cfg" "$out/efi-debian-grub.cfg"
	echo "$boot_uuid" >"$out/boot-uuid"
	echo "$esp_uuid" >"$out/esp-uuid"
	echo "gpt esp=fat32 boot=xfs lvm:$vg/root=ext4 lvm:$vg/swap=swap" >"$out/layout"
	esp_mib=128 boot_mib=512 root_mib=1536 swap_mib=128 pv_mib=1700
	esp_start=2048
	boot_start=$((esp_start + esp_mib * 2048))
	pv_start=$((boot_start + boot_mib * 2048))
	disk_mib=$((pv_start / 2048 + pv_mib + 1))
	truncate -s "${disk_mib}M" "$raw"
	printf 'label: gpt\nlabel-id: %s\nunit: sectors\nfirst-lba: 2048\n%s\n%s\n%s\n' "$disk_guid" \
		"start=$esp_start, size=$((esp_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_partuuid, name=\"EFI System Partition\"" \
		"start=$boot_start, size=$((boot_mib * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$boot_partuuid, name=\"boot\"" \
		"start=$pv_start, size=$((pv_mib * 2048)), type=E6D6D379-F507-44C2-A23C-238F2A3DF928, uuid=$lvm_partuuid, name=\"lvm\"" |
		sfdisk --no-reread --no-tell-kernel "$raw" >&2

	# ESP: FAT32, files copied in with mtools.
	mkfs.vfat -F 32 -n EFI -i "$esp_volid" -C "$work/esp.img" $((esp_mib * 1024)) >&2
	mmd -i "$work/esp.img" ::/EFI ::/EFI/debian ::/EFI/BOOT
	mcopy -i "$work/esp.img" "$out/efi-grub.cfg" ::/EFI/debian/grub.cfg
	mcopy -i "$work/esp.img" "$out/grubx64.efi" ::/EFI/debian/grubx64.efi
	mcopy -i "$work/esp.img" "$out/grubx64.efi" ::/EFI/BOOT/BOOTX64.EFI
	dd if="$work/esp.img" of="$raw" bs=1M seek=$((esp_start / 2048)) conv=notrunc,sparse status=none
	rm -f "$work/esp.img"

	xfs_boot "$boot_start" "$boot_mib"
	lvm_pv "$pv_start" "$pv_mib" "root:$root_mib" "swap:$swap_mib"
	echo "$swap_uuid" >"$out/swap-uuid"
	firmware=efi adapter=lsilogic nic=e1000e
	;;
dracut-lvm)
	echo "$boot_uuid" >"$out/boot-uuid"
	echo "mbr boot=xfs lvm:$vg/root=ext4 dracut initramfs-without-virtio" >"$out/layout"
	boot_mib=512 root_mib=1536 pv_mib=1600
	boot_start=2048
	pv_start=$((boot_start + boot_mib * 2048))
	disk_mib=$((pv_start / 2048 + pv_mib + 1))
	truncate -s "${disk_mib}M" "$raw"
	printf 'label: dos\nlabel-id: %s\nunit: sectors\n%s\n%s\n' "$disk_id" \
		"start=$boot_start, size=$((boot_mib * 2048)), type=83, bootable" \
		"start=$pv_start, size=$((pv_mib * 2048)), type=8e" |
		sfdisk --no-reread --no-tell-kernel "$raw" >&2
	xfs_boot "$boot_start" "$boot_mib"
	lvm_pv "$pv_start" "$pv_mib" "root:$root_mib"
	firmware=bios adapter=pvscsi nic=vmxnet3
	;;
btrfs)
	echo "$layout" >"$out/layout"
	echo "$dev_uuid" >"$out/dev-uuid"
	disk_mib=2048 part_start=2048
	part_sectors=$((disk_mib * 2048 - part_start))
	truncate -s "${disk_mib}M" "$raw"
	printf 'label: dos\nlabel-id: %s\nunit: sectors\nstart=%s, size=%s, type=83, bootable\n' \
		"$disk_id" "$part_start" "$part_sectors" | sfdisk --no-reread --no-tell-kernel "$raw" >&2
	truncate -s "$((part_sectors * 512))" "$work/root.btrfs"
	if [ "$layout" = subvol ]; then
		# The tree goes in as subvolume @, /home as @home.
		mkdir "$work/top"
		mv "$root" "$work/top/@"
		mv "$work/top/@/home" "$work/top/@home"
		mkdir -m 755 "$work/top/@/home"
		root=$work/top/@
		mkfs.btrfs -q -f -L root -U "$root_uuid" --device-uuid "$dev_uuid" -r "$work/top" \
			--subvol rw:@ --subvol rw:@home "$work/root.btrfs" >&2
		rm -rf "$work/top"
	else
		mkfs.btrfs -q -f -L root -U "$root_uuid" --device-uuid "$dev_uuid" -r "$root" "$work/root.btrfs" >&2
	fi
	dd if="$work/root.btrfs" of="$raw" bs=1M seek=$((part_start / 2048)) conv=notrunc,sparse status=none
	rm -f "$work/root.btrfs"
	firmware=bios adapter=lsilogic nic=e1000
	;;
broken)
	echo "mbr ext4 root=/dev/sda1 initramfs-without-virtio" >"$out/layout"
	disk_mib=1536 part_start=2048
	part_sectors=$((disk_mib * 2048 - part_start))
	truncate -s "${disk_mib}M" "$raw"
	printf 'label: dos\nlabel-id: %s\nunit: sectors\nstart=%s, size=%s, type=83, bootable\n' \
		"$disk_id" "$part_start" "$part_sectors" | sfdisk --no-reread --no-tell-kernel "$raw" >&2
	cp "$root/etc/network/interfaces" "$out/interfaces"
	echo 192.0.2.10/24 >"$out/ip"
	echo ens192 >"$out/nic-name"
	mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$root" "$work/root.ext4" "$((part_sectors / 2))k" >&2
	dd if="$work/root.ext4" of="$raw" bs=1M seek=$((part_start / 2048)) conv=notrunc,sparse status=none
	rm -f "$work/root.ext4"
	firmware=bios adapter=pvscsi nic=vmxnet3
	;;
esac
rm -rf "$root"
sfdisk -d "$raw" >"$out/partitions"

vmdk_adapter=$adapter
[ "$adapter" = pvscsi ] && vmdk_adapter=lsilogic
qemu-img convert -f raw -O vmdk -o adapter_type=$vmdk_adapter,subformat=monolithicSparse "$raw" "$out/guest.vmdk"
cat >"$out/guest.vmx" <<EOF
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "14"
displayName = "vmconv-wild-$variant"
guestOS = "debian12-64"
numvcpus = "2"
cpuid.coresPerSocket = "1"
memsize = "1024"
firmware = "$firmware"
scsi0.present = "TRUE"
scsi0.virtualDev = "$adapter"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "guest.vmdk"
scsi0:0.deviceType = "scsi-hardDisk"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "$nic"
ethernet0.connectionType = "nat"
ethernet0.addressType = "static"
ethernet0.address = "$mac"
serial0.present = "TRUE"
serial0.fileType = "file"
serial0.fileName = "serial.log"
EOF
echo "$(($(date +%s) - start))" >"$out/build-seconds"

rm -rf "$cache"
mv "$out" "$cache"
log "built in $(cat "$cache/build-seconds") s: $cache"
echo "$cache"
