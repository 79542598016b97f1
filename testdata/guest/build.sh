#!/bin/sh
# Builds a real Debian bookworm guest as a VMware VM (guest.vmx + guest.vmdk):
# debootstrap minbase with linux-image-amd64 and systemd-sysv, an initramfs that
# carries the virtio (and VMware/Xen/IDE) block drivers, a getty on ttyS0, an ext4
# root on an MBR-partitioned disk, /boot/grub/grub.cfg written by grub-mkconfig
# and an fstab by UUID.
#
# The result is cached outside the checkout, keyed by this script's hash, and
# rebuilt only when the script changes:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/guest/<sha256 of this script>/
# holding guest.vmx, guest.vmdk, disk.raw (sparse), and the files as they were
# put into the image (vmlinuz, initrd.img, grub.cfg, root-uuid, cmdline) so tests
# can compare what a reader finds with what the image holds.
#
# Prints the cache directory on stdout. Needs root, debootstrap, e2fsprogs
# (mkfs.ext4 -d), fdisk (sfdisk), qemu-utils (qemu-img) and network access to a
# Debian mirror (VMCONV_DEBIAN_MIRROR, else the first deb.debian.org-style URI in
# /etc/apt/sources.list*, else http://deb.debian.org/debian). No loop device or
# mount of the image is needed.
set -eu

script=$(readlink -f "$0")
hash=$(sha256sum "$script" | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/guest/$hash
if [ -f "$cache/guest.vmx" ]; then
	echo "$cache"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "build.sh: must run as root (debootstrap, chroot)" >&2
	exit 1
fi

mirror=${VMCONV_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -o -E 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ') || true
fi
mirror=${mirror:-http://deb.debian.org/debian}

# Fixed identities so rebuilds describe the same VM.
root_uuid=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e31
disk_id=0x7a3c9e51
mac=00:50:56:3f:a2:17
disk_mib=1536
part_start=2048 # sectors

mkdir -p "$(dirname "$cache")"
work=$(mktemp -d "$(dirname "$cache")/build.XXXXXX")
root=$work/root
cleanup() {
	for m in proc sys; do
		mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true
	done
	# Never recurse into a directory that still has something mounted under it.
	if grep -q " $work/" /proc/mounts; then
		echo "build.sh: $work still has mounts; not removing it" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT INT TERM

start=$(date +%s)
echo "build.sh: debootstrap bookworm from $mirror into $root" >&2
debootstrap --variant=minbase \
	--include=systemd-sysv,udev,kmod,initramfs-tools,grub-pc-bin,grub2-common,ifupdown \
	bookworm "$root" "$mirror" >&2

chroot_run() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"

echo vmconv-guest >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvmconv-guest\n' >"$root/etc/hosts"
cat >"$root/etc/fstab" <<EOF
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=$root_uuid /               ext4    errors=remount-ro 0       1
EOF
printf 'auto lo\niface lo inet loopback\n' >"$root/etc/network/interfaces"
chroot_run passwd -d root >&2
chroot_run systemctl enable serial-getty@ttyS0.service >&2
# Under full emulation udev can take longer than systemd's 90 s device timeout
# to announce ttyS0; let the serial getty wait for it instead of giving up.
# getty-static (gettys on tty2-6 without logind) and e2scrub_reap (LVM
# snapshots) only slow such a boot down.
mkdir -p "$root/etc/systemd/system/dev-ttyS0.device.d"
printf '[Unit]\nJobRunningTimeoutSec=infinity\n' >"$root/etc/systemd/system/dev-ttyS0.device.d/wait.conf"
chroot_run systemctl mask getty-static.service e2scrub_reap.service >&2

# Initramfs: only the drivers this VM's disks need, on every hypervisor it may
# meet (virtio for the verifier, LSI Logic for VMware, blkfront for Xen, IDE/AHCI).
sed -i 's/^MODULES=.*/MODULES=list/; s/^#\?COMPRESS=.*/COMPRESS=gzip/' "$root/etc/initramfs-tools/initramfs.conf"
cat >>"$root/etc/initramfs-tools/modules" <<'EOF'
virtio_ring
virtio
virtio_mmio
virtio_pci
virtio_blk
virtio_scsi
mptspi
sd_mod
ata_piix
ahci
xen_blkfront
crc32c_generic
ext4
EOF

# The kernel goes in after the initramfs configuration, so that its one
# initramfs build uses the short module list.
chroot_run apt-get update >&2
chroot_run apt-get install -y --no-install-recommends linux-image-amd64 >&2

# Small image: no docs, no locales, no drivers a server VM never meets.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
kver=$(ls "$root/lib/modules" | head -n1)
kmod=$root/lib/modules/$kver/kernel
rm -rf "$kmod/drivers/gpu" "$kmod/drivers/media" "$kmod/drivers/net/wireless" "$kmod/drivers/infiniband" \
	"$kmod/drivers/staging" "$kmod/drivers/bluetooth" "$kmod/drivers/iio" "$kmod/drivers/isdn" "$kmod/sound" \
	"$kmod/net/wireless" "$kmod/net/mac80211" "$kmod/net/bluetooth" "$kmod/drivers/net/ethernet/mellanox" \
	"$kmod/drivers/net/ethernet/intel/ice" "$kmod/drivers/net/ethernet/broadcom" "$kmod/drivers/net/ethernet/qlogic" \
	"$kmod/drivers/net/ethernet/chelsio" "$kmod/drivers/scsi/lpfc" "$kmod/drivers/scsi/qla2xxx"
chroot_run depmod -a "$kver" >&2
chroot_run update-initramfs -u -k "$kver" >&2

# grub.cfg exactly as grub-mkconfig writes it for this disk. grub-probe cannot
# see the image's devices from a chroot, so it is stood in for by a script that
# answers for the disk as the VM sees it (/dev/sda, partition 1, ext4, msdos).
# /etc/default/grub as the grub-pc package installs it (we only need the
# configuration tools, not the BIOS installer).
cp "$root/usr/share/grub/default/grub" "$root/etc/default/grub"
echo GRUB_DISABLE_OS_PROBER=true >>"$root/etc/default/grub"
# 10_linux writes root=UUID= only when the by-uuid link exists.
mkdir -p "$root/dev/disk/by-uuid"
# (test -e follows it, so it points at something that exists).
ln -sf ../../null "$root/dev/disk/by-uuid/$root_uuid"
chroot_run dpkg-divert --local --rename --add /usr/sbin/grub-probe >&2
cat >"$root/usr/sbin/grub-probe" <<EOF
#!/bin/sh
target=
for a in "\$@"; do case "\$a" in --target=*) target=\${a#--target=} ;; esac; done
case "\$target" in
device) echo /dev/sda1 ;;
fs) echo ext2 ;;
fs_uuid) echo $root_uuid ;;
fs_label) echo ;;
partmap) echo msdos ;;
abstraction) echo ;;
drive) echo '(hd0,msdos1)' ;;
compatibility_hint) echo 'hd0,msdos1' ;;
bios_hints) echo '--hint-bios=hd0,msdos1' ;;
efi_hints|baremetal_hints|ieee1275_hints|arc_hints) echo ;;
hints_string) echo '--hint-bios=hd0,msdos1 --hint-efi=hd0,msdos1 --hint-baremetal=ahci0,msdos1' ;;
disk) echo /dev/sda ;;
partuuid) echo ${disk_id#0x}-01 ;;
*) echo ;;
esac
EOF
chmod 755 "$root/usr/sbin/grub-probe"
# grub-mkrelpath likewise: / and /boot are one filesystem, so paths are as they are.
chroot_run dpkg-divert --local --rename --add /usr/bin/grub-mkrelpath >&2
printf '#!/bin/sh\nfor a in "$@"; do p=$a; done\necho "$p"\n' >"$root/usr/bin/grub-mkrelpath"
chmod 755 "$root/usr/bin/grub-mkrelpath"
mkdir -p "$root/boot/grub"
chroot_run grub-mkconfig -o /boot/grub/grub.cfg >&2
rm -f "$root/usr/sbin/grub-probe" "$root/usr/bin/grub-mkrelpath"
chroot_run dpkg-divert --local --rename --remove /usr/sbin/grub-probe >&2
chroot_run dpkg-divert --local --rename --remove /usr/bin/grub-mkrelpath >&2
rm -rf "$root/dev/disk"

chroot_run apt-get clean >&2
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
for m in proc sys; do umount "$root/$m"; done

# What the image holds, kept beside it for the tests.
out=$work/out
mkdir -p "$out"
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
cp "$root/boot/grub/grub.cfg" "$out/grub.cfg"
echo "$root_uuid" >"$out/root-uuid"
echo "$kver" >"$out/kernel-version"
grep -m1 -E '^[[:space:]]*linux[[:space:]]' "$out/grub.cfg" | sed -E 's/^[[:space:]]*linux[[:space:]]+[^[:space:]]+[[:space:]]*//' >"$out/cmdline"

# ext4 root from the directory, spliced into an MBR-partitioned sparse disk.
sectors=$((disk_mib * 2048))
part_sectors=$((sectors - part_start))
truncate -s "${disk_mib}M" "$out/disk.raw"
printf 'label: dos\nlabel-id: %s\nunit: sectors\nstart=%s, size=%s, type=83, bootable\n' \
	"$disk_id" "$part_start" "$part_sectors" | sfdisk --no-reread --no-tell-kernel "$out/disk.raw" >&2
mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$root" "$work/root.ext4" "$((part_sectors / 2))k" >&2
dd if="$work/root.ext4" of="$out/disk.raw" bs=1M seek=$((part_start / 2048)) conv=notrunc,sparse status=none
rm -f "$work/root.ext4"
rm -rf "$root"

qemu-img convert -f raw -O vmdk -o adapter_type=lsilogic,subformat=monolithicSparse "$out/disk.raw" "$out/guest.vmdk"
cat >"$out/guest.vmx" <<EOF
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "14"
displayName = "vmconv-guest"
guestOS = "debian12-64"
numvcpus = "2"
cpuid.coresPerSocket = "1"
memsize = "1024"
firmware = "bios"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "guest.vmdk"
scsi0:0.deviceType = "scsi-hardDisk"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "e1000"
ethernet0.connectionType = "nat"
ethernet0.addressType = "static"
ethernet0.address = "$mac"
uuid.bios = "56 4d 3a 9f 1c 2e 7b 40-8a 6d 5e 0f 21 c3 94 b8"
serial0.present = "TRUE"
serial0.fileType = "file"
serial0.fileName = "serial.log"
EOF
echo "$(($(date +%s) - start))" >"$out/build-seconds"

rm -rf "$cache"
mv "$out" "$cache"
echo "build.sh: built in $(cat "$cache/build-seconds") s: $cache" >&2
echo "$cache"
