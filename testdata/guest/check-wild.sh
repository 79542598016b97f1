#!/bin/sh
# Checks a guest built by build-wild.sh VARIANT with tools that are not ours:
#  1. its structure, read with the real tools (sfdisk, blkid, xfs_db, mtools,
#     pvs/lvs, btrfs inspect-internal, lsinitramfs, debugfs) through read-only
#     loop devices;
#  2. that it is a bootable guest: its kernel and initrd (the files put into the
#     image) booted directly under QEMU TCG with the image's own command line
#     plus console=ttyS0, the disk as virtio-blk, must reach "login:" on the
#     serial console. For "broken" the virtio boot must NOT find its root
#     filesystem, and the same boot with the disk on a VMware PVSCSI
#     controller (QEMU's -device pvscsi, driven by the initramfs's vmw_pvscsi)
#     must reach "login:"; likewise for "dracut-lvm", whose dracut initramfs
#     activates the root LV. For "xfs-lvm-efi", when OVMF is installed, the
#     image also boots through UEFI firmware from its ESP (BOOTX64.EFI, the stub
#     grub.cfg, /boot/grub/grub.cfg on XFS) and must reach "login:".
# Exits 0 when every check passes. Prints each boot's time to "login:".
# The guest directory is VMCONV_WILD_DIR, else what build-wild.sh prints (it
# builds the guest when its cache is empty). VMCONV_BOOT_TIMEOUT (seconds,
# default 900) bounds each boot. Needs root (losetup), qemu-system-x86,
# fdisk, util-linux, e2fsprogs, cpio (or lsinitramfs), xfsprogs, lvm2, mtools, btrfs-progs.
set -eu
export LVM_SUPPRESS_FD_WARNINGS=1

[ $# -eq 1 ] || { echo "usage: check-wild.sh xfs-lvm-efi|btrfs|broken|dracut-lvm" >&2; exit 2; }
variant=$1
here=$(dirname "$(readlink -f "$0")")
dir=${VMCONV_WILD_DIR:-$("$here/build-wild.sh" "$variant")}
timeout=${VMCONV_BOOT_TIMEOUT:-900}
raw=$dir/disk.raw
fail=0
extra= # kernel parameters added to a boot
ok() { echo "check-wild[$variant]: ok: $*"; }
bad() { echo "check-wild[$variant]: FAIL: $*"; fail=1; }
expect() { # what got want
	if [ "$2" = "$3" ]; then ok "$1 = $2"; else bad "$1: got '$2', want '$3'"; fi
}

tmp=$(mktemp -d)
# Loop devices are made in command substitutions (subshells): their names are
# kept in a file so that they are always detached.
: >"$tmp/loops"
detach_loops() {
	[ -f "$tmp/loops" ] || return 0
	while read -r l; do losetup -d "$l" 2>/dev/null || true; done <"$tmp/loops"
	: >"$tmp/loops"
}
qpid=
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
	detach_loops
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# start sector and size (sectors) of partition N, from sfdisk -d.
part() { sfdisk -d "$raw" | grep "^$raw$1 " | sed -E 's/.*start= *([0-9]+), *size= *([0-9]+).*/\1 \2/'; }
loop_part() { # N -> read-only loop device over partition N
	set -- $(part "$1")
	l=$(losetup -r -f --show -o $(($1 * 512)) --sizelimit $(($2 * 512)) "$raw")
	echo "$l" >>"$tmp/loops"
	echo "$l"
}
# The initramfs's file list: lsinitramfs where initramfs-tools is installed,
# else cpio (build-wild.sh makes one gzip'd cpio archive, no early microcode).
list_initrd() {
	if command -v lsinitramfs >/dev/null; then
		lsinitramfs "$1"
	else
		gzip -dc "$1" | cpio -it --quiet
	fi
}
blkval() { blkid -p -o value -s "$2" "$1" 2>/dev/null || true; }

# ---- structure ---------------------------------------------------------------
sfdisk -d "$raw" >"$tmp/sfdisk"
cat "$tmp/sfdisk"
case "$variant" in
xfs-lvm-efi)
	expect "label" "$(sed -n 's/^label: //p' "$tmp/sfdisk")" gpt
	grep -q "^$raw""3 .*type=E6D6D379-F507-44C2-A23C-238F2A3DF928" "$tmp/sfdisk" && ok "partition 3 is LVM" || bad "partition 3 type"
	esp=$(loop_part 1)
	expect "ESP type" "$(blkval "$esp" TYPE)" vfat
	expect "ESP uuid" "$(blkval "$esp" UUID)" "$(cat "$dir/esp-uuid")"
	expect "ESP FAT" "$(blkval "$esp" VERSION)" FAT32
	# mtools reads the image itself at the partition's offset.
	set -- $(part 1)
	espimg="$raw@@$(($1 * 512))"
	mdir -i "$espimg" -b ::/EFI/BOOT ::/EFI/debian
	mtype -i "$espimg" ::/EFI/debian/grub.cfg >"$tmp/efi.cfg"
	cmp -s "$tmp/efi.cfg" "$dir/efi-debian-grub.cfg" && ok "EFI/debian/grub.cfg as built" || bad "EFI/debian/grub.cfg differs"
	mcopy -i "$espimg" ::/EFI/BOOT/BOOTX64.EFI "$tmp/bootx64.efi"
	cmp -s "$tmp/bootx64.efi" "$dir/grubx64.efi" && ok "EFI/BOOT/BOOTX64.EFI is the GRUB image" || bad "BOOTX64.EFI differs"
	boot=$(loop_part 2)
	xfs_db -r -c version -c "sb 0" -c "p uuid" "$boot" | tee "$tmp/xfs"
	grep -q '^versionnum.*V5' "$tmp/xfs" && ok "/boot is XFS v5" || bad "/boot XFS version: $(head -1 "$tmp/xfs")"
	expect "/boot uuid" "$(sed -n 's/^uuid = //p' "$tmp/xfs")" "$(cat "$dir/boot-uuid")"
	kver=$(cat "$dir/kernel-version")
	xfs_db -r -c "ls /" -c "ls /grub" "$boot" >"$tmp/xfsls" 2>&1 || true
	for f in "vmlinuz-$kver" "initrd.img-$kver" grub.cfg; do
		grep -q " $f (good)" "$tmp/xfsls" && ok "/boot has $f (xfs_db ls)" || bad "/boot lacks $f"
	done
	pv=$(loop_part 3)
	lvmconf="devices { use_devicesfile=0 obtain_device_list_from_udev=0 } backup { backup=0 archive=0 }"
	pvs --devices "$pv" --config "$lvmconf" -o pv_name,pv_uuid,vg_name,pe_start --units b
	lvs --devices "$pv" --config "$lvmconf" -o lv_name,vg_name,lv_size,seg_pe_ranges --units b
	expect "VG" "$(pvs --devices "$pv" --config "$lvmconf" --noheadings -o vg_name | tr -d ' ')" "$(cat "$dir/vg")"
	expect "LVs" "$(lvs --devices "$pv" --config "$lvmconf" --noheadings -o lv_name | tr -d ' ' | sort | paste -s -d,)" root,swap
	set -- $(part 3)
	off=$(($1 * 512 + $(cat "$dir/root-lv-offset")))
	expect "LV root filesystem" "$(blkid -p -O "$off" -o value -s TYPE "$raw")" ext4
	expect "LV root uuid" "$(blkid -p -O "$off" -o value -s UUID "$raw")" "$(cat "$dir/root-uuid")"
	grep -q "root=/dev/mapper/$(cat "$dir/vg")-root" "$dir/cmdline" && ok "cmdline $(cat "$dir/cmdline")" || bad "cmdline: $(cat "$dir/cmdline")"
	list_initrd "$dir/initrd.img" >"$tmp/initrd"
	for m in virtio_blk virtio_pci ext4 xfs dm-mod; do
		grep -q "/$m.ko" "$tmp/initrd" && ok "initrd has $m" || bad "initrd lacks $m"
	done
	grep -q 'sbin/lvm$' "$tmp/initrd" && ok "initrd has lvm" || bad "initrd lacks lvm"
	;;
btrfs)
	p=$(loop_part 1)
	btrfs inspect-internal dump-super "$p" | tee "$tmp/super" | grep -E '^(fsid|label|csum_type|nodesize)'
	expect "btrfs fsid" "$(awk '$1=="fsid"{print $2}' "$tmp/super")" "$(cat "$dir/root-uuid")"
	if [ "$(cat "$dir/layout")" = subvol ]; then
		# The root tree's ROOT_REF items name the top level's subvolumes.
		btrfs inspect-internal dump-tree -t root "$p" | grep -E 'root ref key .* name ' >"$tmp/refs" || true
		for s in @ @home; do
			grep -q "name $s\$" "$tmp/refs" && ok "subvolume $s" || bad "no subvolume $s"
		done
		grep -q 'rootflags=subvol=@' "$dir/cmdline" && ok "cmdline $(cat "$dir/cmdline")" || bad "cmdline: $(cat "$dir/cmdline")"
		grep -q "linux[[:space:]]*/@/boot/vmlinuz" "$dir/grub.cfg" && ok "grub.cfg kernel path $(cat "$dir/kernel-path")" || bad "grub.cfg kernel path"
	fi
	list_initrd "$dir/initrd.img" >"$tmp/initrd"
	for m in virtio_blk virtio_pci btrfs; do
		grep -q "/$m.ko" "$tmp/initrd" && ok "initrd has $m" || bad "initrd lacks $m"
	done
	;;
dracut-lvm)
	expect "label" "$(sed -n 's/^label: //p' "$tmp/sfdisk")" dos
	grep -q "^$raw""2 .*type=8e" "$tmp/sfdisk" && ok "partition 2 is LVM" || bad "partition 2 type"
	boot=$(loop_part 1)
	expect "/boot type" "$(blkval "$boot" TYPE)" xfs
	expect "/boot uuid" "$(blkval "$boot" UUID)" "$(cat "$dir/boot-uuid")"
	pv=$(loop_part 2)
	lvmconf="devices { use_devicesfile=0 obtain_device_list_from_udev=0 } backup { backup=0 archive=0 }"
	lvs --devices "$pv" --config "$lvmconf" -o lv_name,vg_name,lv_size,seg_pe_ranges --units b
	expect "VG" "$(pvs --devices "$pv" --config "$lvmconf" --noheadings -o vg_name | tr -d ' ')" rhel
	expect "LVs" "$(lvs --devices "$pv" --config "$lvmconf" --noheadings -o lv_name | tr -d ' ')" root
	set -- $(part 2)
	off=$(($1 * 512 + $(cat "$dir/root-lv-offset")))
	expect "LV root filesystem" "$(blkid -p -O "$off" -o value -s TYPE "$raw")" ext4
	expect "LV root uuid" "$(blkid -p -O "$off" -o value -s UUID "$raw")" "$(cat "$dir/root-uuid")"
	grep -q "root=/dev/mapper/rhel-root .*rd.lvm.lv=rhel/root" "$dir/cmdline" && ok "cmdline $(cat "$dir/cmdline")" || bad "cmdline: $(cat "$dir/cmdline")"
	list_initrd "$dir/initrd.img" >"$tmp/initrd"
	grep -q 'dracut' "$tmp/initrd" && ok "initrd made by dracut" || bad "initrd not dracut's"
	grep -q '/virtio_blk.ko' "$tmp/initrd" && bad "initrd has virtio_blk" || ok "initrd lacks virtio_blk"
	for m in vmw_pvscsi dm-mod ext4 xfs; do
		grep -q "/$m.ko" "$tmp/initrd" && ok "initrd has $m" || bad "initrd lacks $m"
	done
	grep -q 'sbin/lvm$' "$tmp/initrd" && ok "initrd has lvm" || bad "initrd lacks lvm"
	;;
broken)
	p=$(loop_part 1)
	expect "root type" "$(blkval "$p" TYPE)" ext4
	kver=$(cat "$dir/kernel-version")
	debugfs -R "cat /lib/modules/$kver/modules.builtin" "$p" 2>/dev/null >"$tmp/builtin"
	[ -s "$tmp/builtin" ] || bad "cannot read modules.builtin"
	grep -q virtio_blk "$tmp/builtin" && bad "virtio_blk is built into the kernel" || ok "virtio_blk is not built in"
	list_initrd "$dir/initrd.img" >"$tmp/initrd"
	grep -q '/virtio_blk.ko' "$tmp/initrd" && bad "initrd has virtio_blk" || ok "initrd lacks virtio_blk"
	grep -q '/vmw_pvscsi.ko' "$tmp/initrd" && ok "initrd has vmw_pvscsi" || bad "initrd lacks vmw_pvscsi"
	grep -q 'root=/dev/sda1' "$dir/cmdline" && ok "cmdline $(cat "$dir/cmdline")" || bad "cmdline: $(cat "$dir/cmdline")"
	debugfs -R "cat /etc/fstab" "$p" 2>/dev/null | grep -q '^/dev/sda1' && ok "fstab says /dev/sda1" || bad "fstab"
	debugfs -R "cat /etc/network/interfaces" "$p" 2>/dev/null | grep -q 'address 192.0.2.10/24' && ok "interfaces has 192.0.2.10/24 on ens192" || bad "interfaces"
	debugfs -R "stat /lib/systemd/system/open-vm-tools.service" "$p" 2>/dev/null | grep -q Inode && ok "open-vm-tools installed" || bad "open-vm-tools.service missing"
	;;
esac
detach_loops

# ---- boot ----------------------------------------------------------------------
# boot NAME WANT DRIVE-ARGS...: WANT is login (must reach login:) or noroot
# (must stop in the initramfs without a root filesystem).
boot() {
	name=$1 want=$2
	shift 2
	cmdline="$(sed -E 's/(^| )(BOOT_IMAGE=[^ ]*|quiet)//g' "$dir/cmdline") console=ttyS0${extra:+ $extra}"
	log=$tmp/serial-$name.log
	: >"$log"
	t0=$(date +%s)
	if [ "$name" = uefi ]; then
		# The whole chain: firmware, EFI/BOOT/BOOTX64.EFI, the ESP's stub
		# grub.cfg, /boot/grub/grub.cfg on XFS, the kernel and initrd from there.
		cp "$ovmf_vars" "$tmp/vars.fd"
		set -- -drive if=pflash,format=raw,unit=0,readonly=on,file="$ovmf_code" \
			-drive if=pflash,format=raw,unit=1,file="$tmp/vars.fd" "$@"
		cmdline="(grub.cfg's: $(cat "$dir/cmdline"))"
	else
		set -- -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" -append "$cmdline" "$@"
	fi
	qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nographic -nic none -no-reboot "$@" \
		</dev/null >"$log" 2>&1 &
	qpid=$!
	result=timeout
	while kill -0 "$qpid" 2>/dev/null; do
		if grep -q 'login:' "$log"; then result=login; break; fi
		if grep -q -E 'ALERT!|Gave up waiting for root|Could not boot|Entering emergency mode' "$log"; then result=noroot; break; fi
		if [ $(($(date +%s) - t0)) -ge "$timeout" ]; then break; fi
		sleep 1
	done
	secs=$(($(date +%s) - t0))
	# Let a booted guest print a little more (the network marker follows login:).
	[ "$result" = login ] && sleep 5
	kill "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
	qpid=
	cp "$log" "${VMCONV_WILD_LOGDIR:-$tmp}/serial-$variant-$name.log" 2>/dev/null || true
	grep -a -E 'vmconv-net:|ALERT!|Gave up|login:|Mounted /boot|Emergency|Failed' "$log" | tail -n 8 | sed 's/^/    | /'
	if [ "$result" = "$want" ]; then
		ok "boot $name: $result after $secs s (cmdline: $cmdline)"
	else
		bad "boot $name: $result after $secs s, want $want; last lines:"
		tail -n 25 "$log" | sed 's/^/    | /'
	fi
}

virtio="-drive file=$raw,if=virtio,format=raw,snapshot=on"
case "$variant" in
broken | dracut-lvm)
	# dracut's wait for the root is shortened from 180 s.
	[ "$variant" = dracut-lvm ] && extra="rd.retry=10 rd.timeout=30" || extra=
	boot virtio noroot $virtio
	boot pvscsi login -device pvscsi,id=pvscsi0 -drive file="$raw",if=none,id=d0,format=raw,snapshot=on \
		-device scsi-hd,drive=d0,bus=pvscsi0.0
	;;
xfs-lvm-efi)
	boot virtio login $virtio
	# Through UEFI firmware too, when OVMF (Debian's ovmf package) is here.
	ovmf_code=${VMCONV_OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
	ovmf_vars=${VMCONV_OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
	if [ -f "$ovmf_code" ] && [ -f "$ovmf_vars" ]; then
		boot uefi login $virtio
	else
		echo "check-wild[$variant]: no OVMF ($ovmf_code): UEFI boot not checked"
	fi
	;;
*)
	boot virtio login $virtio
	;;
esac

if [ "$fail" = 0 ]; then echo "check-wild[$variant]: PASS"; else echo "check-wild[$variant]: FAIL"; fi
exit "$fail"
