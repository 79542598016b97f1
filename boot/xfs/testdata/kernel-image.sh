#!/bin/sh
# Builds an XFS image whose files the Linux kernel wrote (needs root, loop
# devices and the xfs module), for TestKernelImage: a /boot, a file of 60
# one-block extents (a B+tree data fork), a sparse file with a hole and an unwritten
# extent, a one- and a two-block remote symlink, and a directory with
# entries removed. Usage: sh kernel-image.sh OUT.img, then
#   VMCONV_XFS_KERNEL_IMG=OUT.img go test -tags xfsseeds -run TestWriteSeeds ./boot/xfs
# stores it as testdata/kernel-v5.bin.gz.
set -eu
out=$1
mnt=$(mktemp -d)
rm -f "$out"
truncate -s 32M "$out"
# mkfs.xfs refuses filesystems under 300 MB unless run by xfstests.
TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f -b size=1024 -d agcount=1 -L kernel "$out"
mount -o loop "$out" "$mnt"
trap 'cd /; umount "$mnt"; rmdir "$mnt"' EXIT
cd "$mnt"
mkdir -p boot/grub2 boot/loader/entries dir
printf 'set default=0\n' >boot/grub2/grub.cfg
printf 'title Alma\nlinux /vmlinuz-6.0\n' >boot/loader/entries/a-6.0.conf
yes kernel | head -c 7000 >boot/vmlinuz-6.0
ln -s vmlinuz-6.0 boot/vmlinuz
ln -s "$(head -c 500 /dev/zero | tr '\0' /)boot/vmlinuz-6.0" boot/remote1
ln -s "$(head -c 990 /dev/zero | tr '\0' /)boot/vmlinuz-6.0" boot/remote2
# A sparse file: 4 KiB of data, a 60 KiB hole, 4 KiB of data, then 8 KiB
# preallocated (unwritten) inside the size.
yes sparse | head -c 4096 >sparse
yes tail | head -c 4096 | dd of=sparse bs=1024 seek=64 conv=notrunc status=none
fallocate -o 69632 -l 8192 sparse
truncate -s 77824 sparse
for i in $(seq 0 299); do echo "entry $i" >"dir/entry-$i"; done
for i in $(seq 0 2 299); do rm "dir/entry-$i"; done
sync
# Two files appended to in turn, one block at a time, each block flushed
# before the next: each block of frag ends up next to one of other, so frag
# gets one-block extents. Both stay under 64 KiB, below the size where XFS
# starts preallocating past the end of file.
n=60
j=0
while [ $j -lt $n ]; do
	yes "frag $j" | head -c 1024 | dd of=frag bs=1024 oflag=append conv=notrunc,fsync status=none
	yes "other $j" | head -c 1024 | dd of=other bs=1024 oflag=append conv=notrunc,fsync status=none
	j=$((j + 1))
done
sync
